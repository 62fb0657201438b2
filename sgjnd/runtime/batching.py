"""Running a graph over more rows than one call takes: one batching rule for the encoder and the head.

Every caller (the predictor, compare, the benchmarks, calibration, export parity) goes through here, so a graph is
always fed the way the predictor feeds it: batches of the runner's preferred size (or the size asked for), never
above its maximum, the last one optionally padded to full size by repeating its last row (for engines tuned to one
shape; the padding rows' outputs are dropped).

The same rule runs on numpy arrays through ``runner.infer`` and, with ``device=True``, on torch tensors through
``runner.infer_device`` (:class:`~sgjnd.runtime.backends.base.DeviceRunner`: the predictor's device-resident rounds),
so a round on a GPU is batched exactly as on the host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from sgjnd.errors import UsageError
from sgjnd.runtime.backends.base import ModelBackends, Runner

Stage = Callable[[], AbstractContextManager[object]]
"""Something to time inference with: called around each ``infer`` (default: nothing)."""


def batch_size_for(runner: Runner, requested: int | None = None) -> int:
    """The batch size to fill: ``requested`` (else the runner's preferred), never above the runner's maximum."""
    if requested is not None and requested < 1:
        raise UsageError(f"batch size must be at least 1, got {requested}")
    size = requested or runner.preferred_batch_size
    limit = runner.max_batch_size
    return min(size, limit) if limit else size


class _NumpyRows:
    """Row operations on numpy arrays, run through ``runner.infer``."""

    @staticmethod
    def concat(parts: Sequence[Any]) -> Any:
        return np.concatenate(parts)

    @staticmethod
    def pad(v: Any, extra: int) -> Any:
        return np.concatenate([v, np.repeat(v[-1:], extra, axis=0)])

    @staticmethod
    def contiguous(v: Any) -> Any:
        return np.ascontiguousarray(v)

    @staticmethod
    def infer(runner: Runner, feeds: Mapping[str, Any]) -> dict[str, Any]:
        return {name: np.asarray(out) for name, out in runner.infer(feeds).items()}


class _TensorRows:
    """Row operations on torch tensors on a device, run through ``runner.infer_device``."""

    @staticmethod
    def concat(parts: Sequence[Any]) -> Any:
        import torch

        return torch.cat(list(parts))

    @staticmethod
    def pad(v: Any, extra: int) -> Any:
        import torch

        return torch.cat([v, v[-1:].expand(extra, *v.shape[1:])])

    @staticmethod
    def contiguous(v: Any) -> Any:
        return v.contiguous()

    @staticmethod
    def infer(runner: Runner, feeds: Mapping[str, Any]) -> dict[str, Any]:
        infer_device = getattr(runner, "infer_device", None)
        if infer_device is None:
            raise UsageError(f"{runner.description} cannot run on device tensors: use device=False")
        result: dict[str, Any] = infer_device(feeds)
        return result


def _rows_of(device: bool) -> type[_NumpyRows] | type[_TensorRows]:
    return _TensorRows if device else _NumpyRows


def run_batch(
    runner: Runner, feeds: Mapping[str, Any], size: int, *, pad: bool = False, device: bool = False
) -> dict[str, Any]:
    """One call on at most ``size`` rows; with ``pad``, a short batch is padded to ``size`` first. ``device``: the
    feeds are torch tensors on the runner's device and go through ``infer_device`` (outputs stay there)."""
    ops = _rows_of(device)
    rows = _rows(feeds)
    if rows > size:
        raise UsageError(f"a batch of {rows} rows does not fit the batch size {size}")
    if pad and rows < size:
        feeds = {k: ops.pad(v, size - rows) for k, v in feeds.items()}
    else:
        feeds = {k: ops.contiguous(v) for k, v in feeds.items()}
    return {name: out[:rows] for name, out in ops.infer(runner, feeds).items()}


def run_batched(
    runner: Runner,
    feeds: Mapping[str, Any],
    batch_size: int | None = None,
    *,
    pad: bool = False,
    stage: Stage = nullcontext,
    device: bool = False,
) -> dict[str, Any]:
    """Run ``feeds`` (all with the same number of rows) through ``runner`` in batches; outputs concatenated.

    Args:
        runner: an entered runner.
        feeds: input name -> array; rows are split into batches along axis 0.
        batch_size: rows per call; None: the runner's preferred size (see :func:`batch_size_for`).
        pad: pad the last batch to full size.
        stage: timing context entered around each call.
        device: torch tensors on the runner's device (see :func:`run_batch`).
    """
    ops = _rows_of(device)
    size = batch_size_for(runner, batch_size)
    total = _rows(feeds)
    parts: list[dict[str, Any]] = []
    for start in range(0, total, size):
        batch = {k: v[start : start + size] for k, v in feeds.items()}
        with stage():
            parts.append(run_batch(runner, batch, size, pad=pad, device=device))
    return {name: ops.concat([p[name] for p in parts]) for name in parts[0]}


def run_stream(
    runner: Runner,
    input_name: str,
    parts: Iterable[Any],
    batch_size: int | None = None,
    *,
    pad: bool = False,
    stage: Stage = nullcontext,
    device: bool = False,
) -> dict[str, Any]:
    """:func:`run_batched` over the concatenation of ``parts`` for a one-input graph, without concatenating them.

    Only the pending rows (less than one batch plus one part) are held, so the batches, and so the results, are
    those of one concatenated array, bit for bit, at a fraction of its memory: a search round's distorted patches
    (28 patches x 101 QFs would be 4 GB of float32) stream through the encoder as they are made.
    """
    ops = _rows_of(device)
    size = batch_size_for(runner, batch_size)
    outputs: list[dict[str, Any]] = []
    pending: list[Any] = []
    held = 0
    for part in parts:
        pending.append(part)
        held += len(part)
        while held >= size:
            joined = ops.concat(pending) if len(pending) > 1 else pending[0]
            with stage():
                outputs.append(run_batch(runner, {input_name: joined[:size]}, size, pad=pad, device=device))
            pending = [joined[size:]] if len(joined) > size else []
            held = len(joined) - size
    if held:
        with stage():
            outputs.append(run_batch(runner, {input_name: ops.concat(pending)}, size, pad=pad, device=device))
    if not outputs:
        raise UsageError(f"nothing to run: the stream of {input_name!r} rows was empty")
    return {name: ops.concat([o[name] for o in outputs]) for name in outputs[0]}


def encode(
    models: ModelBackends,
    patches: np.ndarray | Iterable[np.ndarray],
    batch_size: int | None = None,
    *,
    pad: bool = False,
    stage: Stage = nullcontext,
) -> np.ndarray:
    """Encoder features of ``patches`` (one array, or parts streamed as in :func:`run_stream`)."""
    if isinstance(patches, np.ndarray):
        out = run_batched(models.encoder, {"patches": patches}, batch_size, pad=pad, stage=stage)
    else:
        out = run_stream(models.encoder, "patches", patches, batch_size, pad=pad, stage=stage)
    return out["features"]


def score_pairs(
    models: ModelBackends,
    f_ref: np.ndarray,
    f_dis: np.ndarray,
    batch_size: int | None = None,
    *,
    pad: bool = False,
    stage: Stage = nullcontext,
) -> tuple[np.ndarray, np.ndarray]:
    """The head's quality q and weight w, flat float32, of each (reference, distorted) feature pair."""
    if len(f_ref) != len(f_dis):
        raise UsageError(f"the head scores pairs: got {len(f_ref)} reference and {len(f_dis)} distorted features")
    out = run_batched(models.head, {"f_ref": f_ref, "f_dis": f_dis}, batch_size, pad=pad, stage=stage)
    return out["q"].astype(np.float32).reshape(-1), out["w"].astype(np.float32).reshape(-1)


def _rows(feeds: Mapping[str, Any]) -> int:
    if not feeds:
        raise UsageError("no feeds to run")
    counts = {name: len(array) for name, array in feeds.items()}
    if len(set(counts.values())) != 1:
        raise UsageError(f"all inputs must have the same number of rows, got {counts}")
    rows = next(iter(counts.values()))
    if rows < 1:
        raise UsageError(f"nothing to run: the inputs have 0 rows ({', '.join(counts)})")
    return rows

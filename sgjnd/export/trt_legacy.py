"""LEGACY, TensorRT 10 only: weakly typed builds with BuilderFlag.FP16/INT8 and the implicit INT8 entropy calibrator.

TensorRT deprecated the implicit-quantization calibrators in 10.1 and removed them, weak typing and the precision
builder flags in 11.0. The supported path on 10 and 11 is a STRONGLY_TYPED build from a precision-prepared ONNX
graph (``sgjnd calibrate``, then ``sgjnd build``). This module stays for TensorRT 10 users (Jetson stays on 10.x)
who want the old behaviour; delete it when TensorRT 10 support ends.

The calibration cache is keyed by a hash of (ONNX sha256, preprocessing spec, calibration set, TensorRT version),
so a stale cache is never reused after any of them changes (a common INT8 accuracy bug).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from sgjnd.engine_spec import batch_shape
from sgjnd.errors import BuildError, UsageError
from sgjnd.fileio import write_atomic
from sgjnd.runtime import cuda
from sgjnd.spec import ModelSpec, TensorSpec

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

CALIBRATION_INPUT = "patches"
"""The input calibration batches feed: only the encoder is calibrated."""


@runtime_checkable
class CalibrationBatches(Protocol):
    """A re-iterable source of calibration batches: each ``iter()`` starts again from the first batch.

    Each batch is ``{"patches": array}`` as the encoder graph takes it (``(B, 3, s, s)`` float32 preprocessed exactly
    as the runtime does, or ``(B, s, s, 3)`` uint8 pixels for a uint8-input graph: ``ModelSpec.encoder_input``), from
    reference and JPEG-distorted patches across the QF range. All batches
    have the same B. A generator is not re-iterable: wrap it in a class whose ``__iter__`` makes a new one.

    A source may also carry ``fingerprint: str``, a stable hash of the calibration set (image hashes, sampling
    seed, QFs); without one, the batches are hashed, which reads the set once more.
    """

    def __iter__(self) -> Iterator[Mapping[str, np.ndarray]]: ...


EMPTY_SOURCE_CAUSES = (
    "Calibration batches provided no data. Possible reasons:\n"
    "(1) the source has nothing to provide (an empty image folder, or every image smaller than the patch size);\n"
    "(2) the source is a generator or an iterator that was already consumed: generators cannot be rewound, so "
    "pass an object whose __iter__ starts over;\n"
    "(3) the source yields something other than {'patches': array} as the encoder graph takes it."
)
"""The error for an empty calibration source, Polygraphy style."""


def legacy_supported(trt_module: Any) -> bool:
    """True when this TensorRT still has weak typing, the precision flags and the entropy calibrator (TRT 10)."""
    return hasattr(trt_module, "IInt8EntropyCalibrator2") and hasattr(trt_module.BuilderFlag, "FP16")


def require_legacy(trt_version: str) -> None:
    """Refuse the legacy path on TensorRT 11 and later.

    Raises:
        UsageError: naming the TensorRT version and the supported path.
    """
    import tensorrt as trt

    if not legacy_supported(trt):
        raise UsageError(
            f"--legacy-precision-flags needs TensorRT 10: TensorRT {trt_version} removed weak typing, "
            "BuilderFlag.FP16/INT8 and the INT8 calibrator. Build from a precision-prepared graph instead: "
            "sgjnd calibrate MODEL_DIR --precision P, then sgjnd build MODEL_DIR --precision P"
        )


# -- the source: checked once, before TensorRT sees it ---------------------------------------------------------------
@dataclass(frozen=True)
class SourceSummary:
    """What a calibration source holds: batch size, count and content fingerprint."""

    batch_size: int
    batches: int
    fingerprint: str


def check_calibration_source(source: object, model: ModelSpec) -> SourceSummary:
    """Check that ``source`` is re-iterable and yields uniform patch batches of ``model``'s encoder input (float32
    ``(B, 3, s, s)`` or uint8 ``(B, s, s, 3)``).

    Reads the whole source once (to hash it when it has no ``fingerprint``); the calibrator reads it again.

    Raises:
        UsageError: the source is a one-shot iterator, or a batch has the wrong key, dtype or shape.
        BuildError: the source yields nothing (with numbered possible causes).
    """
    if not isinstance(source, CalibrationBatches):
        raise UsageError(f"calibration batches must be an iterable, got {type(source).__name__}")
    if iter(source) is source:
        raise UsageError(
            f"calibration batches must be re-iterable, but {type(source).__name__} is a one-shot iterator "
            "(generators cannot be rewound): pass an object whose __iter__ starts over, such as a list"
        )
    (patches,) = model.encoder_graph().inputs
    expected_tail = batch_shape(patches, 1)[1:]
    digest = hashlib.sha256()
    batch_size = 0
    count = 0
    for index, batch in enumerate(source):
        array = _batch_array(batch, index)
        if array.dtype != np.dtype(patches.dtype) or array.ndim != 4 or tuple(array.shape[1:]) != expected_tail:
            raise UsageError(
                f"calibration batch {index} must be {patches.dtype} (B, {', '.join(map(str, expected_tail))}), "
                f"got {array.dtype} {array.shape}"
            )
        if count == 0:
            batch_size = int(array.shape[0])
        elif array.shape[0] != batch_size:
            raise UsageError(
                f"calibration batches must all have the same batch size: batch 0 has {batch_size}, "
                f"batch {index} has {array.shape[0]} (drop or pad the last batch)"
            )
        digest.update(np.ascontiguousarray(array).tobytes())
        count += 1
    if count == 0 or batch_size < 1:
        raise BuildError(EMPTY_SOURCE_CAUSES.replace("\n", " "))
    fingerprint = getattr(source, "fingerprint", None)
    return SourceSummary(batch_size, count, str(fingerprint) if fingerprint else digest.hexdigest())


def _batch_array(batch: object, index: int) -> np.ndarray:
    if not isinstance(batch, Mapping) or CALIBRATION_INPUT not in batch:
        got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise UsageError(f"calibration batch {index} must be a mapping with key {CALIBRATION_INPUT!r}, got {got}")
    array = batch[CALIBRATION_INPUT]
    if not isinstance(array, np.ndarray):
        raise UsageError(f"calibration batch {index} must hold a numpy array, got {type(array).__name__}")
    return array


# -- the cache: keyed so that it is never stale -------------------------------------------------------------
def preprocessing_record(model: ModelSpec) -> dict[str, Any]:
    """The parts of the model spec that change what the network sees (so they key the calibration cache)."""
    return {
        "patch_size": model.patch_size,
        "mean": list(model.mean),
        "std": list(model.std),
        "channel_order": model.channel_order,
        "jpeg": asdict(model.jpeg),
    }


def calibration_key_parts(onnx_sha256: str, model: ModelSpec, trt_version: str) -> dict[str, Any]:
    """Everything but the calibration set that a calibration cache depends on."""
    return {"onnx_sha256": onnx_sha256, "preprocessing": preprocessing_record(model), "tensorrt": trt_version}


def calibration_key(parts: Mapping[str, Any], set_fingerprint: str) -> str:
    """sha256 over the key parts and the calibration set's fingerprint."""
    text = json.dumps({**parts, "calibration_set": set_fingerprint}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def calibration_cache_path(model_dir: Path, graph: str) -> Path:
    """Where the legacy calibration cache of ``graph`` lives; its key is in the ``.json`` beside it."""
    return Path(model_dir) / f"{graph}.legacy-int8.calib"


def read_cache_record(cache: Path) -> dict[str, Any] | None:
    """The key record beside a cache, or None when there is no readable one."""
    try:
        data = json.loads(cache.with_name(cache.name + ".json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class CachePlan:
    """Whether to reuse a calibration cache or to calibrate, and under which key."""

    path: Path
    key: str
    parts: dict[str, Any]
    reuse: bool


def plan_calibration_cache(cache: Path, parts: dict[str, Any], summary: SourceSummary | None) -> CachePlan:
    """Decide on the cache: reuse it when its key matches; without a source, when all but the set matches.

    Raises:
        BuildError: there is no source and no usable cache (says how to get one).
    """
    record = read_cache_record(cache)
    present = cache.is_file() and record is not None
    if summary is not None:
        key = calibration_key(parts, summary.fingerprint)
        return CachePlan(cache, key, parts, reuse=present and record is not None and record.get("key") == key)
    if present and record is not None and record.get("parts") == parts and record.get("key"):
        log.info("reusing calibration cache %s (calibration set %s)", cache, record.get("calibration_set", "?"))
        return CachePlan(cache, str(record["key"]), parts, reuse=True)
    reason = "it does not exist" if not cache.is_file() else "it was made for another ONNX, preprocessing or TensorRT"
    raise BuildError(
        f"LEGACY int8 needs calibration batches or a matching calibration cache ({cache}: {reason}). Pass "
        "calibration=... to sgjnd.export.trt.engine_from_onnx, or use the supported path: sgjnd calibrate "
        f"{cache.parent} --precision int8, then sgjnd build {cache.parent} --precision int8"
    )


def write_cache(plan: CachePlan, data: bytes, set_fingerprint: str) -> None:
    """Write the cache and its key record atomically."""
    write_atomic(plan.path, data)
    record = {"key": plan.key, "parts": plan.parts, "calibration_set": set_fingerprint}
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    write_atomic(plan.path.with_name(plan.path.name + ".json"), text.encode())


# -- the calibrator ----------------------------------------------------------------------------------------------------
class CalibratorState:
    """What the calibrator did, read after the build: batches fed and the first error (TensorRT swallows raises)."""

    def __init__(self) -> None:
        self.batches = 0
        self.error: str | None = None
        self.buffer: cuda.DeviceBuffer | None = None

    def close(self) -> None:
        """Free the device buffer."""
        if self.buffer is not None:
            self.buffer.close()
            self.buffer = None


def make_entropy_calibrator(
    source: CalibrationBatches | None,
    summary: SourceSummary,
    plan: CachePlan,
    api: cuda.CudaApi,
    sample: TensorSpec,
    state: CalibratorState,
) -> trt.IInt8EntropyCalibrator2:
    """An IInt8EntropyCalibrator2 that copies each batch to one device buffer and reads/writes the keyed cache.

    Errors inside TensorRT's callbacks cannot propagate, so they end calibration and land in ``state.error``;
    the caller raises them after the build. ``source`` None: the cache is reused and no batch is read.
    """
    import tensorrt as trt

    sample_shape = batch_shape(sample, 1)[1:]
    dtype = np.dtype(sample.dtype)
    nbytes = summary.batch_size * int(np.prod(sample_shape)) * dtype.itemsize
    fingerprint = summary.fingerprint

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # pybind trampolines segfault without this
            self._batches: Iterator[Mapping[str, np.ndarray]] = iter(source if source is not None else ())

        def get_batch_size(self) -> int:
            return summary.batch_size

        def get_batch(self, names: list[str]) -> list[int]:
            if list(names) != [CALIBRATION_INPUT]:
                state.error = f"only the encoder (input {CALIBRATION_INPUT!r}) is calibrated, got inputs {names}"
                return []
            try:
                batch = next(self._batches)
            except StopIteration:
                if state.batches == 0:
                    state.error = EMPTY_SOURCE_CAUSES.replace("\n", " ")
                return []  # TensorRT: no more batches
            try:
                array = np.ascontiguousarray(_batch_array(batch, state.batches), dtype=dtype)
                if array.shape != (summary.batch_size, *sample_shape):
                    raise UsageError(f"calibration batch {state.batches} has shape {array.shape}, expected "
                                     f"{(summary.batch_size, *sample_shape)}")
                if state.buffer is None:
                    state.buffer = cuda.DeviceBuffer(api, nbytes)
                api.memcpy_htod(state.buffer.ptr, array)
            except Exception as exc:  # raising here would only print inside TensorRT
                state.error = f"{type(exc).__name__}: {exc}"
                return []
            state.batches += 1
            return [state.buffer.ptr]

        def read_calibration_cache(self) -> Any:  # None tells TensorRT to calibrate
            if plan.reuse:
                log.info("using calibration cache %s (key %s)", plan.path, plan.key[:12])
                return plan.path.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            try:
                write_cache(plan, bytes(cache), fingerprint)
                log.info("wrote calibration cache %s (key %s)", plan.path, plan.key[:12])
            except OSError as exc:  # a cache is an optimisation: log, do not fail the build
                log.error("could not write calibration cache %s: %s", plan.path, exc)

    return _EntropyCalibrator()

"""Checkpoints: a torch file of plain data plus a JSON spec sidecar, and loading of torchvision ResNet-50 weights.

A checkpoint ``model.pt`` is ``torch.save`` of ``{"format": 1, "model": <ModelSpec as a dict>, "state_dict": ...}``;
``model.pt.json`` is its :class:`sgjnd.spec.Sidecar` (spec, sha256, weights statement, producer versions). Files are
read with ``torch.load(weights_only=True)``: a checkpoint is data, never code.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import sgjnd
from sgjnd.errors import CheckpointError, SpecError, UsageError
from sgjnd.fileio import sha256_bytes, write_atomic
from sgjnd.model.resnet import TORCHVISION_IGNORED_PREFIXES, ResNet
from sgjnd.model.sgjnd_net import SGJND, model_from_spec
from sgjnd.spec import ArtifactInfo, Sidecar, read_sidecar, spec_dict, write_sidecar

CHECKPOINT_FORMAT = 1
"""Version of the checkpoint payload layout."""

BACKBONE_PREFIXES = ("module.", "backbone.")
"""Prefixes stripped from every key of a backbone state_dict (DataParallel, detection/IQA wrappers)."""

REBUILD_HINT = "save the model again with sgjnd.model.save_checkpoint(model, path, weights=...)"

_EXPECTED = "an sgjnd checkpoint (a torch zip file written by sgjnd.model.save_checkpoint)"


@dataclass(frozen=True)
class StateDictDiff:
    """How a state_dict differs from the one a module expects.

    Attributes:
        missing: keys the module has and the state_dict lacks.
        unexpected: keys the state_dict has and the module lacks.
        mismatched: ``(key, expected shape, shape that came)`` for keys present in both; a value that is not a tensor
            is reported with the shape ``None``.
    """

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...] | None]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when keys and shapes match exactly."""
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 5) -> str:
        """One line per kind of difference, each listing the first ``limit`` keys and the total count."""

        def head(items: list[str]) -> str:
            more = f", … and {len(items) - limit} more" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {head(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {head(self.unexpected)}")
        if self.mismatched:
            shapes = [
                f"{k} expected {tuple(want)} got {'a non-tensor' if got is None else tuple(got)}"
                for k, want, got in self.mismatched
            ]
            parts.append(f"{len(self.mismatched)} shape mismatch(es): {head(shapes)}")
        return "; ".join(parts) if parts else "keys and shapes match"


def diff_state_dict(expected: Mapping[str, Tensor], got: Mapping[str, Any]) -> StateDictDiff:
    """Compare the keys and shapes of ``got`` with those of ``expected`` (values and dtypes are not compared)."""
    missing = [k for k in expected if k not in got]
    unexpected = sorted(k for k in got if k not in expected)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...] | None]] = []
    for key, want in expected.items():
        if key not in got:
            continue
        value = got[key]
        if not isinstance(value, Tensor):
            mismatched.append((key, tuple(want.shape), None))
        elif value.shape != want.shape:
            mismatched.append((key, tuple(want.shape), tuple(value.shape)))
    return StateDictDiff(missing, unexpected, mismatched)


# -- sgjnd checkpoints ------------------------------------------------------------------------------------------


def save_checkpoint(model: SGJND, path: Path | str, *, weights: str, details: dict[str, Any] | None = None
                    ) -> Sidecar:
    """Write ``model`` to ``path`` and its spec sidecar to ``path.json``, each atomically.

    Args:
        model: the network; its ``spec`` is recorded in both files.
        path: the checkpoint file to write (conventionally ``*.pt``).
        weights: a plain statement of what the weights are, e.g.
            ``"UNTRAINED: deterministic random initialisation from seed 0"``.
        details: facts recorded in the sidecar's ``artifact.details`` (``sgjnd train`` records its training
            labels' median JND there, the constant guess ``sgjnd evaluate`` scores beside the model).

    Returns:
        The sidecar written; ``sidecar.artifact.sha256`` is the checkpoint's hash. ``model.checkpoint_info`` is set
        to ``sidecar.artifact``.

    Raises:
        UsageError: ``model`` is not an SGJND network or ``weights`` is empty.
    """
    if not isinstance(model, SGJND):
        raise UsageError(f"save_checkpoint expects an SGJND network (from create_model), got {type(model).__name__}")
    if not weights.strip():
        raise UsageError("weights must state what the weights are (trained on what, or untrained), got an empty string")
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": spec_dict(model.spec),
        "state_dict": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
    }
    buffer = io.BytesIO()  # a fixed in-archive name, so equal models give equal bytes and hashes
    torch.save(payload, buffer)
    data = buffer.getvalue()
    info = ArtifactInfo(
        kind="checkpoint",
        file=path.name,
        sha256=sha256_bytes(data),
        weights=weights,
        producer={"torch": str(torch.__version__), "sgjnd": sgjnd.__version__},
        details=dict(details or {}),
    )
    sidecar = Sidecar(model=model.spec, artifact=info)
    write_atomic(path, data)
    write_sidecar(path, sidecar)
    model.checkpoint_info = info
    return sidecar


def load_checkpoint(path: Path | str, *, verify_hash: bool = True) -> SGJND:
    """Load a checkpoint written by :func:`save_checkpoint`, checked against its sidecar, in eval mode on the CPU.

    Args:
        path: the checkpoint file; its sidecar ``path.json`` must be beside it.
        verify_hash: compare the file's sha256 with the sidecar's.

    Returns:
        The network, with ``checkpoint_info`` set to the sidecar's artifact record.

    Raises:
        CheckpointError: the file is not an sgjnd checkpoint, or its keys or shapes do not fit the model its spec
            names.
        SpecError: the sidecar is missing or unreadable, or does not match the file (hash or embedded spec).
    """
    path = Path(path)
    payload = _read_checkpoint_payload(path)
    sidecar = read_sidecar(path, rebuild_hint=REBUILD_HINT, verify_hash=verify_hash)
    differing = _spec_differences(payload["model"], spec_dict(sidecar.model))
    if differing:
        raise SpecError(
            f"{path}: the model spec inside the checkpoint differs from its sidecar in {differing} "
            f"(the sidecar was edited or belongs to another file). Regenerate both: {REBUILD_HINT}"
        )
    model = model_from_spec(sidecar.model)
    state = payload["state_dict"]
    diff = diff_state_dict(model.state_dict(), state)
    if not diff.ok:
        raise CheckpointError(
            f"{path} does not fit the model its spec names ({sidecar.model.name}, arch {sidecar.model.arch}): "
            f"{diff.describe()}"
        )
    model.load_state_dict(state, strict=True)
    model.checkpoint_info = sidecar.artifact
    return model.eval()


def checkpoint_sha256(path: Path | str) -> str:
    """The checkpoint's sha256 as recorded in its sidecar, after checking that the file still has it.

    Raises:
        SpecError: the sidecar is missing or the file does not match it.
    """
    return read_sidecar(Path(path), rebuild_hint=REBUILD_HINT).artifact.sha256


def _read_checkpoint_payload(path: Path) -> dict[str, Any]:
    obj = _torch_load(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected {_EXPECTED}, got a torch file holding a {type(obj).__name__}")
    if "format" not in obj or "state_dict" not in obj or "model" not in obj:
        if obj and all(isinstance(v, Tensor) for v in obj.values()):
            got = f"a plain state_dict of {len(obj)} tensors (first keys: {', '.join(list(map(str, obj))[:3])})"
            hint = (
                " For torchvision/timm ResNet-50 weights use sgjnd.model.load_backbone_weights; "
                "to make a checkpoint, load weights into create_model(...) and call save_checkpoint."
            )
        else:
            got = f"a dict with keys {sorted(map(str, obj))[:8]}"
            hint = ""
        raise CheckpointError(f"{path}: expected {_EXPECTED} with keys format, model, state_dict; got {got}.{hint}")
    if obj["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {obj['format']!r}; this version of sgjnd reads format {CHECKPOINT_FORMAT}"
        )
    state = obj["state_dict"]
    if not isinstance(obj["model"], dict) or not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{path} is damaged: 'model' and 'state_dict' must be dicts with string keys")
    return obj


def _spec_differences(embedded: Any, sidecar: dict[str, Any]) -> list[str]:
    """Top-level spec fields whose JSON forms differ (tuples and lists compare equal)."""
    if not isinstance(embedded, dict):
        return ["<the whole spec>"]
    a = json.loads(json.dumps(embedded, sort_keys=True, default=str))
    b = json.loads(json.dumps(sidecar, sort_keys=True, default=str))
    for spec in (a, b):  # a float-input spec may be written with or without the field (spec.spec_dict)
        spec.setdefault("encoder_input", "float32")
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _torch_load(path: Path, expected: str = _EXPECTED) -> Any:
    """``torch.load(weights_only=True)``; every way a file can fail to be a torch file becomes a CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: expected {expected}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): expected {expected}")
    with open(path, "rb") as fh:
        start = fh.read(64)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ValueError, ... by file kind
        reason, refused = _load_failure_reason(exc)
        torch_like = start.startswith(b"PK\x03\x04") or start[:1] == b"\x80"  # zip (torch.save) or bare pickle
        detail = f" ({reason})" if torch_like else ""  # torch's reason for text or noise is noise itself
        raise CheckpointError(
            f"{path}: expected {expected}, got {_describe_bytes(start, size, refused)}{detail}"
        ) from exc


def _load_failure_reason(exc: Exception) -> tuple[str, bool]:
    """A one-line reason, and whether the weights-only unpickler refused an object.

    torch's own message for a refusal suggests ``weights_only=False``; that advice is dropped on purpose.
    """
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = " ".join(text.split(marker, 1)[1].split())
        detail = detail.split(". ", 1)[0].split(" Check the documentation", 1)[0].rstrip(".")
        return f"weights-only loading refused it: {detail[:160]}", True
    first = text.strip().splitlines()[0].split(". ", 1)[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first[:160]}" if first else type(exc).__name__, False


def _describe_bytes(start: bytes, size: int, refused: bool) -> str:
    """What a file looks like from its first bytes, for error messages."""
    is_zip = start.startswith(b"PK\x03\x04")
    if refused and (is_zip or start[:1] == b"\x80"):
        return (
            f"a {size}-byte torch/pickle file holding Python objects beyond tensors and plain data "
            "(a checkpoint is data, never code; it is not loaded with weights_only=False)"
        )
    if is_zip:
        return f"a zip archive of {size} bytes that torch cannot read (truncated, or not written by torch.save)"
    try:
        text = start.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"{size} bytes of text starting {text[:40]!r}"
    return f"{size} bytes of binary data starting 0x{start[:8].hex()}"


# -- torchvision / timm ResNet-50 weights -----------------------------------------------------------------------


def load_backbone_weights(model: SGJND | ResNet, source: Path | str | Mapping[str, Tensor]) -> list[str]:
    """Load torchvision-layout ResNet weights (e.g. ImageNet ``resnet50``) into the backbone, strictly.

    Keys may carry a ``module.`` and/or ``backbone.`` prefix (stripped when every key has it). A file may also hold
    the state_dict under ``"state_dict"`` or ``"model"`` (training checkpoints). The classifier ``fc.*`` is ignored;
    every other difference is an error.

    Args:
        model: an SGJND network (its ``encoder.backbone`` is loaded) or a bare :class:`ResNet`.
        source: a torch file (read with ``weights_only=True``) or a state_dict.

    Returns:
        The keys that were ignored (the ``fc.*`` keys).

    Raises:
        CheckpointError: the file cannot be read, or any key other than ``fc.*`` is missing, unexpected or of another
            shape; the message lists the first few of each with counts.
        UsageError: ``model`` is neither an SGJND network nor a ResNet.
    """
    if isinstance(model, SGJND):
        backbone = model.encoder.backbone
    elif isinstance(model, ResNet):
        backbone = model
    else:
        raise UsageError(f"load_backbone_weights expects an SGJND network or a ResNet, got {type(model).__name__}")
    layout = f"ResNet backbone (blocks {backbone.blocks}, width {backbone.width}; torchvision resnet50 layout expected)"
    return load_state_into(backbone, source, layout=layout, ignored_prefixes=TORCHVISION_IGNORED_PREFIXES)


def load_state_into(
    backbone: nn.Module, source: Path | str | Mapping[str, Any], *, layout: str, ignored_prefixes: tuple[str, ...]
) -> list[str]:
    """Load backbone weights from a torch file or a state_dict strictly, apart from ``ignored_prefixes``.

    Unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` and strips ``module.`` / ``backbone.`` prefixes first.

    Args:
        backbone: the module to load into.
        source: a torch file (read with ``weights_only=True``) or a state_dict.
        layout: what the backbone is, for error messages ("ResNet backbone (...)").
        ignored_prefixes: keys to drop (a classifier the backbone does not have).

    Returns:
        The keys that were ignored.

    Raises:
        CheckpointError: the file cannot be read, or a kept key is missing, unexpected or of another shape.
    """
    label = "the given state_dict" if isinstance(source, Mapping) else str(source)
    obj = source if isinstance(source, Mapping) else _torch_load(Path(source), f"a torch file with {layout} weights")
    state = _unwrap_state_dict(obj, label)
    state = _strip_prefixes(state)
    ignored = sorted(k for k in state if k.startswith(ignored_prefixes))
    kept = {k: v for k, v in state.items() if not k.startswith(ignored_prefixes)}
    diff = diff_state_dict(backbone.state_dict(), kept)
    if not diff.ok:
        raise CheckpointError(f"{label} does not fit the {layout}: {diff.describe()}")
    backbone.load_state_dict(kept, strict=True)
    return ignored


def _unwrap_state_dict(obj: Any, label: str) -> dict[str, Any]:
    if isinstance(obj, Mapping) and "format" in obj and "state_dict" in obj and "model" in obj:
        raise CheckpointError(f"{label} is an sgjnd checkpoint, not backbone weights: load it with load_checkpoint")
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(k, str) for k in obj):
        raise CheckpointError(
            f"{label} is not a backbone state_dict: expected a non-empty mapping of parameter names to tensors, "
            f"got {type(obj).__name__}"
        )
    return dict(obj)


def _strip_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    changed = True
    while changed:
        changed = False
        for prefix in BACKBONE_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state

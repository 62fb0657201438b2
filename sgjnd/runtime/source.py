"""Naming a model: one :class:`ModelSource` (backend, location, precision, options) and one way to open it.

Every command, the service, the Ray job, compare and the embedding API describe what to run with a ModelSource and
open it with :func:`open_source`, which resolves what was left open (:func:`resolve_source`):

- no location: the bundled demo model (:mod:`sgjnd.runtime.demo`);
- backend ``auto``: a checkpoint file runs on ``torch``; a model directory runs on the fastest installed CPU
  backend and precision whose graphs passed ``sgjnd calibrate``'s accuracy gate
  (:mod:`sgjnd.runtime.backends.choose`), or on its TensorRT engines where TensorRT and a GPU are here;
- options are checked once, here, against the backend that will run (:data:`BACKEND_OPTIONS`).

The resolution says what it picked in one line (:attr:`ResolvedSource.line`), which commands print.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sgjnd.errors import UsageError
from sgjnd.runtime.backends.base import ModelBackends

log = logging.getLogger(__name__)

AUTO = "auto"


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _texts(value: Any) -> bool:
    return isinstance(value, tuple) and bool(value) and all(_text(v) for v in value)


def _path(value: Any) -> bool:
    return isinstance(value, Path)


def _mapping(value: Any) -> bool:
    return isinstance(value, Mapping)


def _device_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_OptionCheck = tuple[Callable[[Any], bool], str]
_THREADS: _OptionCheck = (_positive_int, "a positive integer")
_GPU: dict[str, _OptionCheck] = {
    "device": (_device_index, "a CUDA device index (0, 1, ...)"),
    "allocator": (lambda v: v in ("auto", "cuda-python", "pycuda"), "auto, cuda-python or pycuda"),
    "allow_other_gpu_model": (_flag, "true or false"),
}

BACKEND_OPTIONS: dict[str, dict[str, _OptionCheck]] = {
    "torch": {"device": (_text, "a torch device such as cpu or cuda:0"), "threads": _THREADS,
              "encoder_input": (lambda v: v in ("float32", "uint8"), "float32 or uint8")},
    "onnxruntime": {
        "providers": (_texts, "execution provider names in order of preference, e.g. ('cuda', 'cpu')"),
        "threads": _THREADS,
        "graph_optimization": (lambda v: v in ("all", "extended", "basic", "disabled"), "all, extended, basic or "
                               "disabled"),
        "optimized_cache": (_path, "a folder path"),
        "max_batch": (_positive_int, "a positive integer"),
        "provider_options": (_mapping, "provider name -> options"),
    },
    "openvino": {
        "threads": _THREADS,
        "inference_precision": (lambda v: v in ("fp32", "bf16"), "fp32 or bf16"),
        "static_batch": (_positive_int, "a positive integer"),
        "cache_dir": (_path, "a folder path"),
        "max_batch": (_positive_int, "a positive integer"),
    },
    "tensorrt": {**_GPU, "allow_host_code": (_flag, "true or false"), "threads": _THREADS},
    "tensorrt-rtx": {**_GPU, "runtime_cache": (lambda v: v == "auto" or isinstance(v, (str, Path)) or v is False,
                                                "auto, a file path, or false"), "threads": _THREADS},
}
"""Backend -> the options it takes, each with its check and what it expects (one place, one style)."""

OPTION_FLAGS: dict[str, str] = {"providers": "--providers", "device": "--device", "threads": "--threads"}
"""Options the command line sets, by the flag that sets them (for errors)."""


def check_options(backend: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` checked against what ``backend`` takes; None values are dropped (they mean the default).

    Raises:
        UsageError: an option the backend does not take, or a value of the wrong kind.
    """
    accepted = BACKEND_OPTIONS.get(backend)
    if accepted is None:
        raise UsageError(f"unknown backend {backend!r}: expected one of {', '.join(sorted(BACKEND_OPTIONS))}")
    checked: dict[str, Any] = {}
    for name, value in options.items():
        if value is None:
            continue
        flag = OPTION_FLAGS.get(name, name)
        if name not in accepted:
            takers = sorted(b for b, names in BACKEND_OPTIONS.items() if name in names)
            where = f" (it is for {', '.join(takers)})" if takers else ""
            raise UsageError(
                f"{flag} does not apply to the {backend} backend{where}; {backend} takes {', '.join(sorted(accepted))}"
            )
        if isinstance(value, list):
            value = tuple(value)
        check, expected = accepted[name]
        if not check(value):
            raise UsageError(f"{flag} for the {backend} backend must be {expected}, got {value!r}")
        checked[name] = value
    return checked


@dataclass(frozen=True)
class ModelSource:
    """What to run: a backend, the model it opens, the precision, and backend options.

    Attributes:
        backend: a registered backend name, or ``auto`` (see the module docstring).
        location: a checkpoint (torch) or a model directory; None: the bundled demo model.
        precision: which prepared graphs to run (or ``bf16``: the fp32 graphs at bf16, openvino); None: fp32, or
            whatever ``auto`` picks.
        options: backend options (see :data:`BACKEND_OPTIONS`); checked against the backend that will run.
    """

    backend: str = AUTO
    location: Path | None = None
    precision: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from sgjnd.runtime.backends.registry import list_backends
        from sgjnd.runtime.modeldir import RUN_PRECISIONS

        if self.backend != AUTO and self.backend not in list_backends():
            raise UsageError(f"unknown backend {self.backend!r}: expected one of {', '.join(list_backends())}, or auto")
        if self.precision is not None and self.precision not in RUN_PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}: expected one of {', '.join(RUN_PRECISIONS)}")
        if self.location is not None and not isinstance(self.location, Path):
            object.__setattr__(self, "location", Path(self.location))
        if self.backend != AUTO:
            object.__setattr__(self, "options", check_options(self.backend, self.options))

    @property
    def label(self) -> str:
        """``backend:location:precision``, as on the command line."""
        return f"{self.backend}:{self.location if self.location is not None else 'demo'}:{self.precision or 'fp32'}"

    @classmethod
    def parse(cls, text: str, **options: Any) -> ModelSource:
        """Parse ``BACKEND:LOCATION[:PRECISION]`` (``torch:model.pt``, ``onnxruntime:models/r50:int8-ort``,
        ``auto:models/r50``), the form ``sgjnd compare`` takes for each model.

        Raises:
            UsageError: no backend or location, or an unknown backend.
        """
        from sgjnd.runtime.backends.registry import list_backends
        from sgjnd.runtime.modeldir import RUN_PRECISIONS

        backend, sep, rest = text.partition(":")
        if not sep or not backend or not rest:
            raise UsageError(
                f"a model is BACKEND:LOCATION[:PRECISION], e.g. torch:model.pt, onnxruntime:models/r50:fp16 or "
                f"auto:models/r50; got {text!r}"
            )
        if backend not in (*list_backends(), AUTO):
            raise UsageError(
                f"unknown backend {backend!r} in {text!r}: expected one of {', '.join(list_backends())}, or auto"
            )
        location, precision = rest, None
        head, sep, tail = rest.rpartition(":")
        if sep and tail in RUN_PRECISIONS:
            location, precision = head, tail
        return cls(backend, Path(location), precision, dict(options))


@dataclass(frozen=True)
class ResolvedSource:
    """A :class:`ModelSource` with nothing left open: what :func:`open_source` opens.

    Attributes:
        backend: the backend that runs.
        location: the checkpoint or model directory.
        precision: the precision that runs.
        options: the checked backend options.
        why: how it was picked (empty when nothing was left open).
    """

    backend: str
    location: Path
    precision: str
    options: Mapping[str, Any]
    why: str = ""

    @property
    def line(self) -> str:
        """One line for the console: ``model: onnxruntime fp32, DIR (auto: ...)``."""
        return f"model: {self.backend} {self.precision}, {self.location}" + (f" ({self.why})" if self.why else "")


def resolve_source(source: ModelSource) -> ResolvedSource:
    """Fill in what ``source`` leaves open (see the module docstring) and check the options against the backend.

    Raises:
        UsageError: the location does not fit the backend, nothing can run it here, or an option does not apply.
        SpecError: the demo model's files are unreadable.
    """
    why: list[str] = []
    backend, location, precision = source.backend, source.location, source.precision
    if location is None:
        from sgjnd.runtime.demo import demo_checkpoint, demo_model_dir

        location = demo_checkpoint() if backend == "torch" else demo_model_dir()
        why.append("no model given: the bundled demo model, see models/demo/MODEL_CARD.md")
    if backend == AUTO:
        backend, precision, reason = _auto(location, precision)
        why.append(reason)
    options = check_options(backend, source.options)
    return ResolvedSource(backend, location, precision or "fp32", options, "; ".join(why))


def _auto(location: Path, precision: str | None) -> tuple[str, str, str]:
    """(backend, precision, why) for ``--backend auto`` on ``location``."""
    if location.is_file():
        if precision not in (None, "fp32"):
            raise UsageError(f"{location} is a checkpoint, which runs on torch in fp32 only; export it for {precision}")
        return "torch", "fp32", "auto: a checkpoint runs on the PyTorch reference"
    if not location.is_dir():
        raise UsageError(
            f"{location} is neither a checkpoint nor a model directory: give a .pt checkpoint or the folder "
            f"written by `sgjnd export`"
        )
    engine = _runnable_engine(location, precision)
    if engine is not None:
        return engine
    from sgjnd.runtime.backends.choose import choose_for_model_dir

    choice = choose_for_model_dir(location, precision=None if precision in (None, "fp32") else precision)
    return choice.backend, choice.precision, choice.line()


def _runnable_engine(model_dir: Path, precision: str | None) -> tuple[str, str, str] | None:
    """TensorRT engines in ``model_dir`` that can run here (the library and a GPU present), fastest precision first."""
    import importlib.util

    from sgjnd.runtime.modeldir import available_precisions

    for backend, module, ext in (("tensorrt", "tensorrt", "engine"), ("tensorrt-rtx", "tensorrt_rtx", "rtx.engine")):
        if importlib.util.find_spec(module) is None:
            continue
        present = available_precisions(model_dir, ext)  # type: ignore[arg-type]
        wanted = [p for p in ("int8", "fp16", "fp32") if p in present and precision in (None, p)]
        if not wanted or not _gpu_present():
            continue
        return backend, wanted[0], f"auto: {backend} engines and an NVIDIA GPU are here"
    return None


def _gpu_present() -> bool:
    try:
        from sgjnd.runtime.cuda import load_cuda

        return load_cuda().device_count() > 0
    except Exception:  # no driver, no library, no device: all mean "no GPU to run on"
        return False


def concrete_source(source: ModelSource, *, announce: Callable[[str], None] | None = None) -> ModelSource:
    """``source`` with nothing left open, as a ModelSource: resolve once, then hand the result to processes,
    actors or targets that must all run the same thing. ``announce`` is told what was picked (default: logged)."""
    resolved = resolve_source(source)
    if resolved.why:
        (announce or log.info)(resolved.line)
    return ModelSource(resolved.backend, resolved.location, resolved.precision, resolved.options)


def open_source(source: ModelSource, *, announce: Callable[[str], None] | None = None) -> ModelBackends:
    """Open (not yet load) the model ``source`` names: use the result in a ``with`` block.

    Args:
        source: what to run.
        announce: told the one-line :attr:`ResolvedSource.line` when something was picked (default: logged).
    """
    from sgjnd.runtime.backends.registry import open_model

    resolved = resolve_source(source)
    if resolved.why:
        (announce or log.info)(resolved.line)
    return open_model(resolved.backend, resolved.location, precision=resolved.precision, **resolved.options)


def with_options(source: ModelSource, **options: Any) -> ModelSource:
    """``source`` with ``options`` added (None values leave an option as it is)."""
    merged = {**source.options, **{k: v for k, v in options.items() if v is not None}}
    return replace(source, options=merged)

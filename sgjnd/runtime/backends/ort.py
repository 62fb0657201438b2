"""ONNX Runtime backend: CPU, CUDA and TensorRT execution providers, in the order the caller asks for.

Never imports torch (``infer_device`` is given torch tensors, so torch is loaded already).
The session is built from the exact bytes whose sha256 was checked against the sidecar, and its
inputs and outputs are checked against the model spec before the first inference (DESIGN.md §2, §7).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from sgjnd.engine_spec import batch_shape
from sgjnd.errors import BackendError, BackendUnavailable, SpecError, UsageError
from sgjnd.fileio import atomic_output, sha256_bytes, write_atomic
from sgjnd.runtime.backends.base import Backend, ModelBackends, torch_installed
from sgjnd.runtime.backends.registry import graph_names
from sgjnd.runtime.modeldir import (
    PRECISIONS,
    artifact_name,
    artifact_path,
    available_precisions,
    require_model_dir,
)
from sgjnd.spec import GraphName, GraphSpec, ModelSpec, Sidecar, read_sidecar, sidecar_path

log = logging.getLogger(__name__)

PROVIDER_ALIASES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
"""Short provider names accepted besides ONNX Runtime's own (matched case-insensitively)."""

DEFAULT_PROVIDERS: tuple[str, ...] = ("cpu",)
"""Execution providers used when none are given."""

GraphOptimization = Literal["disable", "basic", "extended", "all"]

CACHE_SAFE_PROVIDERS: frozenset[str] = frozenset({"CPUExecutionProvider", "CUDAExecutionProvider"})
"""Providers that run ONNX Runtime's own kernels, so a session on them can save its optimised graph.

Every other provider may compile nodes into its own engine (TensorRT, NvTensorRTRTX, OpenVINO, MIGraphX, QNN, ...):
ONNX Runtime then fails to save the optimised graph ("Unable to serialize model as it contains compiled nodes").
"""

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}
_GPU_HINT = (
    "CUDA and TensorRT providers need the onnxruntime-gpu package instead of onnxruntime (never both in one "
    "environment: pip uninstall onnxruntime && pip install onnxruntime-gpu), plus an NVIDIA driver"
)


def rebuild_hint(model_dir: Path, precision: str) -> str:
    """The command that (re)creates the ``precision`` graphs of ``model_dir``."""
    if precision == "fp32":
        return f"sgjnd export CHECKPOINT -o {model_dir}"
    if precision == "int8-ort":
        return f"sgjnd calibrate {model_dir} --precision int8 --target ort-cpu --images PHOTOS"
    if precision == "int8":
        return f"sgjnd calibrate {model_dir} --precision int8 --images PHOTOS"
    return f"sgjnd calibrate {model_dir} --precision {precision}"


def resolve_providers(requested: Sequence[str], available: Sequence[str] | None = None) -> list[str]:
    """Map provider names (aliases or ONNX Runtime names, any case) to the ONNX Runtime names, in order.

    Args:
        requested: providers in order of preference, e.g. ``("tensorrt", "cuda", "cpu")``.
        available: the providers this ONNX Runtime build offers; None asks ``onnxruntime.get_available_providers()``.

    Returns:
        ONNX Runtime provider names, e.g. ``["CUDAExecutionProvider", "CPUExecutionProvider"]``.

    Raises:
        UsageError: the list is empty or names a provider twice.
        BackendUnavailable: a name is unknown to ONNX Runtime, or known but not available in this build or on
            this machine; the message lists the available ones.
    """
    import onnxruntime as ort

    if isinstance(requested, str):
        requested = (requested,)
    if not requested:
        raise UsageError(f"at least one execution provider is needed, e.g. ('cpu',); aliases: {_alias_text()}")
    if available is None:
        available = list(ort.get_available_providers())
    known = list(ort.get_all_providers())
    by_lower = {name.lower(): name for name in known}
    by_lower.update({name.lower(): name for name in available})
    resolved: list[str] = []
    for raw in requested:
        key = str(raw).strip().lower()
        name = PROVIDER_ALIASES.get(key) or by_lower.get(key) or by_lower.get(key + "executionprovider")
        if name is None:
            raise BackendUnavailable(
                f"unknown ONNX Runtime execution provider {raw!r}: expected an alias ({_alias_text()}) or a provider "
                f"name; available here: {', '.join(available)}"
            )
        if name not in available:
            hint = f". {_GPU_HINT}" if name in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else ""
            raise BackendUnavailable(
                f"execution provider {raw!r} ({name}) is not available in this ONNX Runtime build "
                f"(onnxruntime {ort.__version__}); available: {', '.join(available)}{hint}"
            )
        if name in resolved:
            raise UsageError(f"execution provider {name} is listed twice in {list(requested)}")
        resolved.append(name)
    return resolved


def _alias_text() -> str:
    return ", ".join(f"{k} = {v}" for k, v in PROVIDER_ALIASES.items())


def compiling_providers(providers: Sequence[str]) -> list[str]:
    """The providers in ``providers`` that rule out an optimised-graph cache, in order.

    A provider counts unless it is in :data:`CACHE_SAFE_PROVIDERS`: an unknown one is assumed to compile nodes, so
    the worst outcome of a wrong guess is a session built without the cache, never one that fails to build.

    Args:
        providers: ONNX Runtime provider names (as :func:`resolve_providers` returns them).

    Returns:
        The providers that may compile nodes; empty when the optimised graph can be saved and reused.
    """
    return [p for p in providers if p not in CACHE_SAFE_PROVIDERS]


_CACHE_SKIP_EXPLAINED: set[tuple[str, ...]] = set()
"""Provider lists for which the skipped optimised-graph cache was already explained (once per process each)."""


def _explain_cache_skip(providers: Sequence[str], blockers: Sequence[str], cache: Path) -> None:
    key = tuple(providers)
    if key in _CACHE_SKIP_EXPLAINED:
        return
    _CACHE_SKIP_EXPLAINED.add(key)
    log.warning(
        "optimized_cache %s is not used with providers %s: %s may compile nodes into its own engine, and ONNX Runtime "
        "cannot save a graph with compiled nodes. Sessions are built from the verified artifact instead; the cache "
        "is used when the providers are only %s.",
        cache, ", ".join(providers), ", ".join(blockers), " and ".join(sorted(CACHE_SAFE_PROVIDERS)),
    )


class OrtBackend(Backend):
    """One graph on ONNX Runtime.

    Construction stores the arguments only; ``with backend:`` checks the file against its sidecar, creates the
    session and checks its inputs and outputs against the spec.

    Args:
        artifact: the ``.onnx`` file; its sidecar ``<file>.json`` must be beside it.
        model: the model spec the graph must implement.
        graph: which graph of the model the file holds.
        providers: execution providers in order of preference (aliases cpu, cuda, tensorrt, or ONNX Runtime names).
        threads: intra-op threads; None leaves the choice to ONNX Runtime (one per physical core).
        graph_optimization: ONNX Runtime's graph optimisation level.
        optimized_cache: a folder where the optimised graph is kept and reused by later sessions on this machine
            with the same ONNX Runtime version, optimisation level and providers (keyed by the artifact's sha256,
            checked against a recorded hash before use); keep it as private as the model directory. None keeps
            nothing. Not used when a provider other than CPU or CUDA is in ``providers`` (see
            :func:`compiling_providers`): ONNX Runtime cannot save a graph with compiled nodes.
        max_batch: the largest batch to accept; None reads the sidecar's ``details.max_batch`` at load.
        provider_options: extra options per provider (ONNX Runtime name -> {option: value}).
    """

    name = "onnxruntime"

    def __init__(
        self,
        artifact: Path,
        model: ModelSpec,
        graph: GraphSpec,
        *,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        threads: int | None = None,
        graph_optimization: GraphOptimization = "all",
        optimized_cache: Path | None = None,
        max_batch: int | None = None,
        provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(
            artifact,
            model,
            graph,
            providers=tuple(providers),
            threads=threads,
            graph_optimization=graph_optimization,
            optimized_cache=optimized_cache,
            provider_options=provider_options,
        )
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise UsageError(f"threads must be a positive integer or None (ONNX Runtime's choice), got {threads!r}")
        if graph_optimization not in _OPT_LEVELS:
            raise UsageError(f"graph_optimization must be one of {sorted(_OPT_LEVELS)}, got {graph_optimization!r}")
        self.providers = tuple(providers)
        self.threads = threads
        self.graph_optimization = graph_optimization
        self.optimized_cache = None if optimized_cache is None else Path(optimized_cache)
        self.provider_options = {k: dict(v) for k, v in (provider_options or {}).items()}
        self._max_batch = max_batch
        self._session: Any = None
        self._sidecar: Sidecar | None = None
        self._active_providers: list[str] = []
        self._tensor_device: str | None = None

    # -- properties ------------------------------------------------------------------------------------------
    @property
    def max_batch_size(self) -> int | None:
        """The sidecar's ``max_batch`` (the export's bound) unless given explicitly; None when unbounded."""
        return self._max_batch

    @property
    def description(self) -> str:
        """Backend, providers in use (or requested, before loading) and precision."""
        providers = self._active_providers or list(self.providers)
        precision = self._sidecar.artifact.precision if self._sidecar else "?"
        return f"onnxruntime {'+'.join(p.removesuffix('ExecutionProvider') for p in providers)} {precision}"

    @property
    def session(self) -> Any:
        """The ``onnxruntime.InferenceSession`` while loaded (for inspection and profiling)."""
        if self._session is None:
            raise BackendError(f"onnxruntime backend for {self.graph.name} is not loaded: use it in a `with` block")
        return self._session

    @classmethod
    def open_model(
        cls,
        model_dir: Path,
        *,
        precision: str = "fp32",
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        threads: int | None = None,
        **options: Any,
    ) -> ModelBackends:
        """Both graphs of a model directory on ONNX Runtime; see :func:`open_model`."""
        return open_model(model_dir, precision=precision, providers=providers, threads=threads, **options)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def _load(self) -> None:
        import onnxruntime as ort

        sidecar, data, _, hint = load_checked_graph(self.artifact, self.model, self.graph.name)
        actual = sidecar.artifact.sha256
        if self._max_batch is None:
            self._max_batch = max_batch_of(sidecar)
        providers = resolve_providers(self.providers)
        options = self._session_options(ort)
        provider_options = [self._options_for(p, sidecar) for p in providers]
        source: bytes | str = data
        cached = self._cached_model(actual, providers, ort.__version__)
        staged: Path | None = None
        if cached is not None and cached.is_file() and _cache_valid(cached):
            source = str(cached)
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        elif cached is not None:
            staged = atomic_output(cached)  # ORT writes it while building the session; renamed once complete
            options.optimized_model_filepath = str(staged)
        try:
            session = ort.InferenceSession(source, sess_options=options, providers=providers,
                                           provider_options=provider_options)
            if staged is not None and cached is not None and staged.stat().st_size:
                os.replace(staged, cached)
                write_atomic(_cache_hash_path(cached), (sha256_bytes(cached.read_bytes()) + "\n").encode())
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/RuntimeException types
            raise BackendError(
                f"ONNX Runtime could not load {self.artifact} with {providers}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
        check_session_io(session, self.graph, self.artifact, hint)
        self._session = session
        self._sidecar = sidecar
        self._active_providers = list(session.get_providers())
        self._tensor_device = self._device_of_session(session)
        log.debug("loaded %s on %s", self.artifact, self._active_providers)
        if self._active_providers[:1] == ["CPUExecutionProvider"]:
            _warn_if_u8s8_saturates(self.artifact, sidecar)

    def _unload(self) -> None:
        self._session = None
        self._tensor_device = None

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [t.name for t in self.graph.outputs]
        try:
            results = self.session.run(names, {k: np.ascontiguousarray(v) for k, v in feeds.items()})
        except Exception as exc:  # ORT's error types are not importable as a stable hierarchy
            raise BackendError(f"ONNX Runtime failed on {self.artifact.name}: {type(exc).__name__}: {exc}") from exc
        return dict(zip(names, results, strict=True))

    # -- device-resident inference ------------------------------------------------------------------------------
    @property
    def tensor_device(self) -> str | None:
        """``cuda:N`` when the session runs on the CUDA provider, ``cpu`` on the CPU provider, where torch is
        installed; None otherwise (another provider first, or not loaded). Decided once, when loading: it is read
        on every ``infer_device`` call."""
        return self._tensor_device

    @staticmethod
    def _device_of_session(session: Any) -> str | None:
        if not torch_installed():
            return None
        first = (session.get_providers() or [""])[0]
        if first == "CPUExecutionProvider":
            return "cpu"
        if first == "CUDAExecutionProvider":
            options = session.get_provider_options().get("CUDAExecutionProvider", {})
            return f"cuda:{int(options.get('device_id', 0))}"
        return None

    def _infer_device(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """The session on torch tensors through I/O binding: inputs and preallocated outputs are bound by address,
        so nothing is copied between host and device.

        Synchronisation, on CUDA: the caller's current torch stream is synchronised before the run (ONNX Runtime runs
        on its own stream and cannot wait for torch's work), and ONNX Runtime synchronises its stream at the end of
        the run, so the outputs are complete when this returns.
        """
        import torch

        session = self.session
        device = next(iter(feeds.values())).device
        n = int(next(iter(feeds.values())).shape[0])
        binding = session.io_binding()
        kind, index = ("cuda", device.index or 0) if device.type == "cuda" else ("cpu", 0)
        kept = []
        for spec in self.graph.inputs:
            tensor = feeds[spec.name].contiguous()
            kept.append(tensor)
            binding.bind_input(spec.name, kind, index, np.dtype(spec.dtype), tuple(tensor.shape), tensor.data_ptr())
        outputs: dict[str, torch.Tensor] = {}
        for spec in self.graph.outputs:
            shape = batch_shape(spec, n)
            out = outputs[spec.name] = torch.empty(shape, dtype=getattr(torch, spec.dtype), device=device)
            binding.bind_output(spec.name, kind, index, np.dtype(spec.dtype), shape, out.data_ptr())
        if device.type == "cuda":
            torch.cuda.current_stream(device).synchronize()
        try:
            session.run_with_iobinding(binding)
        except Exception as exc:  # ORT's error types are not importable as a stable hierarchy
            raise BackendError(f"ONNX Runtime failed on {self.artifact.name}: {type(exc).__name__}: {exc}") from exc
        return outputs

    # -- helpers ---------------------------------------------------------------------------------------------
    def _session_options(self, ort: Any) -> Any:
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[self.graph_optimization])
        options.intra_op_num_threads = self.threads or 0  # 0 = ONNX Runtime's default (one per physical core)
        # One graph runs at a time and its nodes form a chain: a second pool would only compete for cores.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        return options

    def _options_for(self, provider: str, sidecar: Sidecar) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if provider == "TensorrtExecutionProvider":
            options.update(_tensorrt_ep_options(self.artifact, sidecar, self._max_batch))
        options.update(self.provider_options.get(provider, {}))
        return {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}

    def _cached_model(self, sha256: str, providers: list[str], ort_version: str) -> Path | None:
        if self.optimized_cache is None:
            return None
        blockers = compiling_providers(providers)
        if blockers:
            _explain_cache_skip(providers, blockers, self.optimized_cache)
            return None
        key = sha256_bytes(f"{sha256}|{ort_version}|{self.graph_optimization}|{','.join(providers)}".encode())
        return self.optimized_cache / f"{self.artifact.stem}.{key[:16]}.ort.onnx"


def _cache_hash_path(cached: Path) -> Path:
    return cached.with_name(cached.name + ".sha256")


def _cache_valid(cached: Path) -> bool:
    """A cached optimised graph is used only if its bytes still have the hash recorded when it was written."""
    record = _cache_hash_path(cached)
    if not record.is_file():
        return False
    return record.read_text().strip() == sha256_bytes(cached.read_bytes())


def _tensorrt_ep_options(artifact: Path, sidecar: Sidecar, max_batch: int | None) -> dict[str, Any]:
    """TensorRT EP options (engine and timing caches, a batch profile up to the sidecar's max batch)."""
    from sgjnd.runtime.backends.ort_trt import tensorrt_ep_options_for

    return dict(tensorrt_ep_options_for(artifact, sidecar, max_batch))


def precision_of(artifact: Path) -> str:
    """Precision encoded in a model-directory file name (``encoder.onnx`` -> fp32, ``head.fp16.onnx`` -> fp16)."""
    parts = artifact.name.split(".")
    return parts[1] if len(parts) == 3 and parts[1] in PRECISIONS else "fp32"


def _warn_if_u8s8_saturates(artifact: Path, sidecar: Sidecar) -> None:
    """Warn when a U8S8 graph with 8-bit weights runs on an x86 CPU without VNNI, where ONNX Runtime's int8 kernels
    sum u8×s8 pairs in int16 and can saturate (``sgjnd calibrate --reduce-range on`` makes a graph without it)."""
    calibration = sidecar.artifact.details.get("calibration") or {}
    if calibration.get("flavour") != "ort-cpu" or calibration.get("reduce_range", True):
        return
    from sgjnd.runtime.cpu import cpu_info

    cpu = cpu_info()
    if cpu["machine"] in ("x86_64", "AMD64") and not cpu["vnni"]:
        log.warning("%s has 8-bit weights (calibrated with --reduce-range off or on a CPU with VNNI); this CPU (%s) "
                    "has no VNNI, so ONNX Runtime's U8S8 kernels may saturate and lose accuracy: recalibrate with "
                    "`sgjnd calibrate ... --reduce-range on` for such CPUs", artifact.name, cpu["model"])


def read_verified_bytes(artifact: Path, sidecar: Sidecar, hint: str) -> bytes:
    """The bytes of ``artifact``, read once and checked against the sha256 its sidecar records.

    Build the session from these bytes (never from the path again), so the file cannot change between the check and
    the load.

    Raises:
        SpecError: the hash differs; the message names the command that regenerates the artifact.
    """
    data = artifact.read_bytes()
    actual = sha256_bytes(data)
    if actual != sidecar.artifact.sha256:
        raise SpecError(
            f"{artifact} does not match its sidecar: sha256 {actual[:12]}… but "
            f"{sidecar_path(artifact).name} records {sidecar.artifact.sha256[:12]}… (the file was changed, "
            f"truncated or replaced). Regenerate it with: {hint}"
        )
    return data


class CheckedGraph(NamedTuple):
    """An ONNX graph read for a session: its sidecar, its verified bytes, the precision in its file name, and the
    command that rebuilds it (for later errors)."""

    sidecar: Sidecar
    data: bytes
    precision: str
    hint: str


def load_checked_graph(artifact: Path, model: ModelSpec, graph: GraphName) -> CheckedGraph:
    """What every backend that runs our ONNX files does before building a session: read the sidecar, check it
    describes ``graph`` of ``model``, and read the graph's bytes once, verified against the sidecar's sha256.

    Build the session from the returned bytes (never from the path again), so the file cannot change between the
    check and the load.

    Returns:
        The sidecar, the bytes, the file name's precision and the rebuild command.

    Raises:
        SpecError: the sidecar is missing, describes something else, or does not match the bytes (with the command
            that rebuilds the graph).
    """
    precision = precision_of(artifact)
    hint = rebuild_hint(artifact.parent, precision)
    sidecar = read_sidecar(artifact, rebuild_hint=hint, verify_hash=False)
    check_onnx_sidecar(sidecar, artifact, model, graph, hint)
    return CheckedGraph(sidecar, read_verified_bytes(artifact, sidecar, hint), precision, hint)


def max_batch_of(sidecar: Sidecar) -> int | None:
    value = sidecar.artifact.details.get("max_batch")
    return int(value) if isinstance(value, int) and value > 0 else None


def check_onnx_sidecar(sidecar: Sidecar, artifact: Path, model: ModelSpec, graph: GraphName, hint: str) -> None:
    """Refuse a sidecar that is not an ONNX graph of ``graph`` of ``model``."""
    info = sidecar.artifact
    where = sidecar_path(artifact)
    if info.kind != "onnx":
        raise SpecError(f"{where} describes a {info.kind}, not an ONNX graph. Regenerate it with: {hint}")
    if info.graph != graph:
        raise SpecError(
            f"{where} describes the {info.graph} graph, but {graph} was expected. Regenerate it with: {hint}"
        )
    if sidecar.model != model:
        raise SpecError(
            f"{where} describes model {sidecar.model.name!r} (patch {sidecar.model.patch_size}, features "
            f"{sidecar.model.feature_dim}), which differs from the expected {model.name!r} (patch {model.patch_size}, "
            f"features {model.feature_dim}). Regenerate it with: {hint}"
        )


def check_session_io(session: Any, graph: GraphSpec, artifact: Path, hint: str) -> None:
    """Refuse a session whose inputs or outputs differ from ``graph`` in name, order, dtype or fixed dimensions.

    Raises:
        SpecError: naming both signatures and the command that regenerates the artifact.
    """
    checks = (("inputs", graph.inputs, session.get_inputs()), ("outputs", graph.outputs, session.get_outputs()))
    for role, specs, args in checks:
        got = [(a.name, _dims(a.shape), _ORT_DTYPES.get(a.type, a.type)) for a in args]
        want = [(t.name, tuple(d if isinstance(d, int) else "?" for d in t.shape), t.dtype) for t in specs]
        if got != want:
            raise SpecError(
                f"{artifact} does not implement the {graph.name} graph of its spec: {role} expected "
                f"{_describe(want)}, got {_describe(got)}. Regenerate it with: {hint}"
            )


def _dims(shape: Sequence[Any]) -> tuple[int | str, ...]:
    """ONNX Runtime shape -> fixed ints, with every symbolic or unknown dimension as ``"?"``."""
    return tuple(d if isinstance(d, int) else "?" for d in shape)


def _describe(tensors: Sequence[tuple[str, tuple[int | str, ...], str]]) -> str:
    return ", ".join(f"{name}{list(shape)}:{dtype}" for name, shape, dtype in tensors) or "none"


def open_model(
    model_dir: Path,
    *,
    precision: str = "fp32",
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    threads: int | None = None,
    **options: Any,
) -> ModelBackends:
    """Both graphs of the model in ``model_dir`` at ``precision`` on ONNX Runtime (use the result in ``with``).

    Reads the two sidecars (cheap: the hashes are checked at load, on the bytes that are loaded) and checks that
    they describe the same model from the same checkpoint.

    Args:
        model_dir: a directory written by ``sgjnd export`` (and ``sgjnd calibrate`` for reduced precisions).
        precision: which graphs to run: fp32 (``encoder.onnx``), fp16, int8, int8-ort (``encoder.<p>.onnx``).
        providers: execution providers in order of preference.
        threads: intra-op threads per session; None leaves the choice to ONNX Runtime.
        options: further :class:`OrtBackend` options (graph_optimization, optimized_cache, provider_options).

    Raises:
        UsageError: unknown precision or option.
        SpecError: the directory, a graph or a sidecar is missing, or the sidecars disagree; the message names the
            command that regenerates them.
    """
    model_dir = Path(model_dir)
    sidecars = read_graph_sidecars(model_dir, precision)
    enc = sidecars["encoder"]
    model = enc.model
    backends = {
        graph: OrtBackend(
            artifact_path(model_dir, graph, precision),
            model,
            model.graph(graph),
            providers=providers,
            threads=threads,
            max_batch=max_batch_of(sidecars[graph]),
            **options,
        )
        for graph in graph_names()
    }
    return ModelBackends(model=model, encoder=backends["encoder"], head=backends["head"], weights=enc.artifact.weights)


def read_graph_sidecars(model_dir: Path, precision: str) -> dict[GraphName, Sidecar]:
    """The sidecars of both ONNX graphs of ``model_dir`` at ``precision``, checked to describe one model.

    Cheap: the graphs' hashes are checked at load, on the bytes that are loaded.

    Raises:
        UsageError: unknown precision.
        SpecError: the directory, a graph or a sidecar is missing, or the sidecars disagree; the message names the
            command that regenerates them.
    """
    if precision not in PRECISIONS:
        artifact_name("encoder", precision)  # raises, explaining an inference-only precision such as bf16
    hint = rebuild_hint(model_dir, precision)
    require_model_dir(model_dir, rebuild_hint=hint)
    sidecars: dict[GraphName, Sidecar] = {}
    for graph in graph_names():
        path = artifact_path(model_dir, graph, precision)
        if not path.is_file():
            have = available_precisions(model_dir)
            raise SpecError(
                f"{model_dir} has no {precision} {graph} graph (expected {path.name}; precisions present: "
                f"{', '.join(have) or 'none'}). Create it with: {hint}"
            )
        sidecars[graph] = read_sidecar(path, rebuild_hint=hint, verify_hash=False)
    enc, head = sidecars["encoder"], sidecars["head"]
    if enc.model != head.model or enc.artifact.checkpoint_sha256 != head.artifact.checkpoint_sha256:
        raise SpecError(
            f"encoder and head in {model_dir} come from different models or checkpoints "
            f"({enc.model.name} {str(enc.artifact.checkpoint_sha256)[:12]}… vs {head.model.name} "
            f"{str(head.artifact.checkpoint_sha256)[:12]}…). Regenerate both with: {hint}"
        )
    return sidecars


__all__ = [
    "CACHE_SAFE_PROVIDERS",
    "DEFAULT_PROVIDERS",
    "PROVIDER_ALIASES",
    "OrtBackend",
    "check_onnx_sidecar",
    "check_session_io",
    "compiling_providers",
    "max_batch_of",
    "open_model",
    "precision_of",
    "read_graph_sidecars",
    "read_verified_bytes",
    "rebuild_hint",
    "resolve_providers",
]

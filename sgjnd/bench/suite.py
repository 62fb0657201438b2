"""The measurement grid: every target (backend × precision) through four suites, in one run, side by side.

1. **frame**: sgemm peak of this machine (numpy and torch) and the encoder's MACs per patch.
2. **latency**: encoder and head at each batch size; warm-up excluded; p50/p90/p99/mean and patches/s; achieved
   GFLOP/s and fraction of the sgemm peak on CPU targets. An out-of-memory error stops that series (an ``oom``
   row); any other failure stops it with an ``error`` row.
3. **e2e**: each photo through :class:`~sgjnd.runtime.predictor.JNDPredictor` per search strategy: per-stage
   times, encoder passes, JND QF.
4. **drift**: against the reference (``torch/fp32``) in the same run: features, q and w on one fixed batch of real
   (reference and JPEG-distorted) patches, and the JND QF per photo.

A target whose backend, provider, device or graphs are missing gives one SKIPPED row per suite with the reason.
Targets run one after another with each model loaded once, so the latency grid is also the warm-up of the later
suites.
"""

from __future__ import annotations

import datetime
import gc
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from sgjnd.bench.config import REFERENCE, BenchConfig, Target
from sgjnd.bench.frame import MacCount, MatmulLibrary, PeakResult
from sgjnd.bench.jpeg_stage import measure_jpeg_stage
from sgjnd.bench.prepare import Prepared, prepare
from sgjnd.bench.results import BenchRun, Measurement, Status, Suite, skipped, target_row
from sgjnd.bench.timing import LoopConfig, summarize, throughput, time_calls
from sgjnd.engine_spec import batch_shape
from sgjnd.errors import SgjndError
from sgjnd.progress import Progress
from sgjnd.runtime.backends.base import ModelBackends, Runner
from sgjnd.runtime.backends.registry import open_model
from sgjnd.runtime.modeldir import INFERENCE_ONLY_PRECISIONS, Extension
from sgjnd.runtime.search import Strategy
from sgjnd.spec import GraphName, ModelSpec

log = logging.getLogger(__name__)

Opener = Callable[[Target, Prepared, BenchConfig], ModelBackends]
"""Opens a target's model (not loaded yet); replaceable for tests."""

SUITES_PER_TARGET: tuple[Suite, ...] = ("latency", "e2e", "drift")
"""The suites every target runs (frame is per machine)."""

_OOM_WORDS = ("out of memory", "outofmemory", "failed to allocate", "cudaerrormemoryallocation", "bad_alloc",
              "cannot allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) is an out-of-memory error: MemoryError, torch's OutOfMemoryError, or a backend
    error whose message says so (ONNX Runtime "Failed to allocate memory", CUDA "out of memory")."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MemoryError) or "outofmemory" in type(seen).__name__.lower():
            return True
        text = str(seen).lower()
        if any(word in text for word in _OOM_WORDS):
            return True
        seen = seen.__cause__
    return False


# -- availability --------------------------------------------------------------------------------------------------


def unavailable_reason(target: Target, prepared: Prepared) -> str | None:
    """Why ``target`` cannot be measured here, or None when it can.

    Checks, in order: the backend's library, the execution providers (ONNX Runtime), the TensorRT build, and that
    the checkpoint or the graphs/engines of the target's precision exist.
    """
    from sgjnd.environment import backend_status
    from sgjnd.runtime.backends.registry import backend_class
    from sgjnd.runtime.modeldir import available_precisions

    try:
        backend_class(target.backend)
    except SgjndError as exc:
        return str(exc)
    status = backend_status().get(target.backend, "available")
    if not status.startswith("available"):
        return f"{target.backend}: {status}"
    if target.backend == "onnxruntime":
        from sgjnd.runtime.backends.ort import resolve_providers

        try:
            resolve_providers(target.providers or ("cpu",))
        except SgjndError as exc:
            return str(exc)
    if target.backend == "torch":
        if target.device == "gpu":
            import torch

            if not torch.cuda.is_available():
                return f"torch {torch.__version__} sees no CUDA device"
        return None if prepared.checkpoint is not None else prepared.checkpoint_reason
    if prepared.model_dir is None:
        return prepared.model_dir_reason or "no model directory"
    from sgjnd.engine_spec import PRODUCTS

    ext: Extension = PRODUCTS[target.backend].engine_ext if target.backend in PRODUCTS else "onnx"
    graphs = INFERENCE_ONLY_PRECISIONS.get(target.precision, target.precision)
    if graphs not in available_precisions(prepared.model_dir, ext):
        default = f"no {graphs} {ext} files in {prepared.model_dir}"
        return prepared.missing.get(f"{ext}:{graphs}", default)
    if target.backend == "openvino" and target.precision == "bf16":
        return _bf16_reason()
    return None


def _bf16_reason() -> str | None:
    """Why OpenVINO bf16 cannot run on this CPU (flags and OpenVINO's capabilities), or None."""
    from sgjnd.environment import cpu_info, openvino_cpu
    from sgjnd.runtime.backends.openvino_backend import bf16_refusal

    cpu = cpu_info()
    return bf16_refusal(cpu["flags"], openvino_cpu().get("capabilities"), cpu["model"]) or None


def open_target(target: Target, prepared: Prepared, config: BenchConfig) -> ModelBackends:
    """Open ``target``'s model with the run's thread setting (not loaded yet)."""
    options: dict[str, Any] = {}
    if target.backend in ("torch", "onnxruntime", "openvino"):
        options["threads"] = config.threads
    if target.backend == "onnxruntime":
        options["providers"] = target.providers or ("cpu",)
    if target.backend == "torch" and target.device == "gpu":
        options["device"] = "cuda"
    location = prepared.checkpoint if target.backend == "torch" else prepared.model_dir
    if location is None:
        raise SgjndError(f"{target.name}: nothing to open")
    return open_model(target.backend, location, precision=target.precision, **options)


# -- latency -------------------------------------------------------------------------------------------------------


def make_feeds(spec: ModelSpec, graph: GraphName, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs of ``graph`` at ``batch``, as its spec declares them: uniform pixels for uint8 inputs,
    standard-normal values for float32 ones (normalised patches, features)."""
    feeds: dict[str, np.ndarray] = {}
    for tensor in spec.graph(graph).inputs:
        shape = batch_shape(tensor, batch)
        if tensor.dtype == "uint8":
            feeds[tensor.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            feeds[tensor.name] = rng.standard_normal(shape, dtype=np.float32)
    return feeds


@dataclass(frozen=True)
class FrameFigures:
    """What latency rows need from the frame: GFLOP per patch of the encoder, the CPU's sgemm peak and, where
    measured, its int8 and bf16 matrix-engine peaks (``{"int8": GOP/s, "bf16": GFLOP/s}``)."""

    encoder_gflop: float | None = None
    peak_gflops: float | None = None
    engine_peaks: Mapping[str, float] = field(default_factory=dict)

    def peak_for(self, precision: str) -> float | None:
        """The peak a target of ``precision`` is bounded by: sgemm for fp32, the int8 engine for int8 and int8-ort,
        the bf16 engine for bf16; None for mixed graphs (fp16) or an engine peak not measured."""
        if precision == "fp32":
            return self.peak_gflops
        key = "int8" if precision.startswith("int8") else precision
        return self.engine_peaks.get(key)


def measure_latency(
    target: Target,
    backend: Runner,
    graph: GraphName,
    spec: ModelSpec,
    batches: Sequence[int],
    loop: LoopConfig,
    *,
    frame: FrameFigures = FrameFigures(),
    seed: int = 0,
    on_point: Callable[[Measurement], None] | None = None,
) -> list[Measurement]:
    """Time ``backend`` (loaded) at each batch size; an OOM or error stops the series with a row saying so.

    Args:
        target: the target being measured (for the rows' labels).
        backend: an entered backend of ``graph``.
        graph: ``encoder`` or ``head``.
        spec: the model spec (input shapes).
        batches: batch sizes, ascending.
        loop: warm-up and iteration limits of each point.
        frame: encoder GFLOP per patch and the CPU peak, for achieved GFLOP/s on encoder rows.
        seed: seed of the random inputs.
        on_point: called with each row as it is made (progress).

    Returns:
        One row per batch size run, plus at most one ``oom``/``error`` row that ends the series; batches above the
        backend's ``max_batch_size`` give ``skipped`` rows.
    """
    rng = np.random.default_rng(seed)
    rows: list[Measurement] = []
    limit = backend.max_batch_size
    for position, batch in enumerate(batches):
        if limit is not None and batch > limit:
            row = skipped("latency", target, f"batch {batch} exceeds the artifact's maximum batch {limit}",
                          graph=graph, batch=batch)
            rows.append(row)
            if on_point:
                on_point(row)
            continue
        feeds = make_feeds(spec, graph, batch, rng)
        splits: list[Mapping[str, float]] = []

        def call(feeds: dict[str, np.ndarray] = feeds, splits: list[Mapping[str, float]] = splits) -> None:
            backend.infer(feeds)
            split = getattr(backend, "last_timings_ms", None)  # H2D/compute/D2H, where a GPU backend measures them
            if isinstance(split, Mapping):
                splits.append(split)

        try:
            samples = time_calls(call, loop)
        except Exception as exc:  # every failure ends the series with a row; OOM is told apart
            del feeds
            gc.collect()
            later = ", ".join(str(b) for b in batches[position + 1:])
            rest = f"; batch sizes {later} not run" if later else ""
            status: Status = "oom" if is_out_of_memory(exc) else "error"
            what = "out of memory" if status == "oom" else "failed"
            row = target_row("latency", target, graph=graph, batch=batch, status=status,
                             reason=f"{what} at batch {batch}: {type(exc).__name__}: {_short(exc)}{rest}")
            rows.append(row)
            if on_point:
                on_point(row)
            break
        stats = summarize(samples)
        rate = throughput(batch, stats.mean_ms)
        row = target_row(
            "latency", target, graph=graph, batch=batch, n=stats.n, mean_ms=stats.mean_ms, p50_ms=stats.p50_ms,
            p90_ms=stats.p90_ms, p99_ms=stats.p99_ms, min_ms=stats.min_ms, max_ms=stats.max_ms, std_ms=stats.std_ms,
            per_patch_ms=stats.p50_ms / batch, throughput_per_s=rate,
        )
        if splits:  # only what the backend measured itself, never an estimate
            for key in ("h2d_ms", "compute_ms", "d2h_ms"):
                values = [float(s[key]) for s in splits if key in s]
                if values:
                    setattr(row, key, float(np.mean(values[-stats.n:])))
        if graph == "encoder" and frame.encoder_gflop is not None and math.isfinite(rate):
            row.achieved_gflops = frame.encoder_gflop * rate
            peak = frame.peak_for(target.precision)
            if target.device == "cpu" and peak:
                row.peak_fraction = row.achieved_gflops / peak
        rows.append(row)
        if on_point:
            on_point(row)
    return rows


def unsupported_variant_rows(target: Target, backend: Runner) -> list[Measurement]:
    """Rows for GPU timing variants the backend does not offer (CUDA graphs), so they are reported, not missing."""
    if target.device != "gpu":
        return []
    if getattr(backend, "supports_cuda_graphs", False):
        return []
    reason = (
        f"CUDA graphs are not supported by the sgjnd {target.backend} backend (no capture/replay API); "
        "`trtexec --useCudaGraph` measures them for an engine"
    )
    return [Measurement(suite="latency", target=target.name, backend=target.backend, precision=target.precision,
                        device=target.device, graph="encoder", variant="cuda-graph", status="skipped", reason=reason)]


# -- end to end ----------------------------------------------------------------------------------------------------


def measure_e2e(
    target: Target,
    models: ModelBackends,
    strategy: str,
    images: Sequence[Path],
    max_patches: int,
    *,
    on_image: Callable[[Measurement], None] | None = None,
    prefetch_jpeg: bool = True,
) -> list[Measurement]:
    """Predict each image with ``strategy`` and record the predictor's stage times, passes, encoder input bytes and
    JND.

    An out-of-memory error stops the series (``oom`` row); an error on one image gives an ``error`` row for it.
    Without ``prefetch_jpeg`` the JPEG trials are made in line with inference (rows of variant ``serial-jpeg``).
    """
    from sgjnd.runtime.predictor import JNDPredictor, PredictConfig
    from sgjnd.runtime.search import SearchConfig

    search = SearchConfig(strategy=cast(Strategy, strategy))  # SearchConfig rejects an unknown name
    config = PredictConfig(search=search, max_patches=max_patches, prefetch_jpeg=prefetch_jpeg)
    predictor = JNDPredictor(models, config)
    variant = "" if prefetch_jpeg else "serial-jpeg"
    rows: list[Measurement] = []
    for image in images:
        try:
            result = predictor.predict(image)
        except Exception as exc:  # one failed photo is a row; OOM ends the series
            oom = is_out_of_memory(exc)
            row = target_row("e2e", target, strategy=strategy, image=image.name, status="oom" if oom else "error",
                             variant=variant, reason=f"{type(exc).__name__}: {_short(exc)}")
            rows.append(row)
            if on_image:
                on_image(row)
            if oom or not isinstance(exc, SgjndError):
                break
            continue
        t = result.timings_ms
        row = target_row(
            "e2e", target, strategy=strategy, image=image.name, variant=variant, patches=len(result.patches),
            encoder_passes=result.encoder_passes, h2d_bytes=result.host_input_bytes,
            jnd_qf=result.jnd_qf, recommended_qf=result.recommended_qf,
            decode_ms=t["decode"], patches_ms=t["patches"], jpeg_ms=t["jpeg"], inference_ms=t["inference"],
            search_ms=t["search"], report_ms=t["report"], total_ms=t["total"],
            note="; ".join(result.notes),
        )
        rows.append(row)
        if on_image:
            on_image(row)
    return rows


# -- drift ---------------------------------------------------------------------------------------------------------


@dataclass
class DriftBatch:
    """The fixed inputs of the tensor-drift suite: reference patches and their JPEG-distorted versions, as uint8 BGR
    pixels (each target gets them as its encoder graph takes them: :func:`run_graphs`)."""

    reference: np.ndarray
    distorted: np.ndarray
    qfs: tuple[int, ...]
    source: str


def make_drift_batch(images: Sequence[Path], spec: ModelSpec, n_reference: int, qfs: Sequence[int]) -> DriftBatch:
    """Up to ``n_reference`` reference patches spread over ``images``, and each one distorted at every QF in ``qfs``.

    The patches are cut and JPEG-coded by the predictor's own pair maker.
    """
    from sgjnd.runtime.decode import decode_image
    from sgjnd.runtime.pairs import PairMaker

    maker = PairMaker(spec)
    per_image = max(1, math.ceil(n_reference / max(len(images), 1)))
    refs, dis = [], []
    for path in images:
        image = maker.grid(decode_image(path).bgr, max_patches=per_image)
        refs.append(maker.reference_pixels(image))
        dis.append(np.stack([maker.distorted_pixels(image, qf) for qf in qfs], axis=1))  # (N, QF, s, s, 3)
    reference = np.concatenate(refs)[:n_reference]
    distorted = np.concatenate(dis)[:n_reference]
    n = len(reference)
    flat = distorted.reshape(n * len(qfs), *distorted.shape[2:])  # patch-major: patch i at every QF in turn
    return DriftBatch(
        reference=np.ascontiguousarray(reference),
        distorted=np.ascontiguousarray(flat),
        qfs=tuple(qfs),
        source=f"{n} patches from {len(images)} photos, each also JPEG-coded at QF {', '.join(map(str, qfs))}",
    )


def run_graphs(models: ModelBackends, batch: DriftBatch) -> dict[str, np.ndarray]:
    """Features of every drift patch and q, w of every (reference, distorted) pair, through ``models`` (entered),
    batched as the predictor batches them, the patches as the model's encoder graph takes them."""
    from sgjnd.runtime.batching import encode, score_pairs
    from sgjnd.runtime.pairs import PairMaker

    maker = PairMaker(models.model)
    f_ref = encode(models, maker.encoder_input(batch.reference))
    f_dis = encode(models, maker.encoder_input(batch.distorted))
    q, w = score_pairs(models, np.repeat(f_ref, len(batch.qfs), axis=0), f_dis)
    return {"features": np.concatenate([f_ref, f_dis]), "q": q, "w": w}


def drift_rows(target: Target, reference: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray],
               source: str) -> list[Measurement]:
    """One row per output: cosine, max/mean |Δ| and PASS/FAIL against the precision's default tolerance."""
    from sgjnd.compare.tensors import compare_outputs, tolerances_for

    rows = []
    for c in compare_outputs(reference, outputs, tolerances_for(target.precision)):
        rows.append(Measurement(
            suite="drift", target=target.name, backend=target.backend, precision=target.precision,
            device=target.device, output=c.name, cosine=c.cosine, max_abs=c.max_abs, mean_abs=c.mean_abs,
            tolerance=c.tolerance.describe(), passed=c.passed, reason=c.reason, note=source,
        ))
    return rows


def qf_drift_rows(rows: Sequence[Measurement], reference: str = REFERENCE) -> list[Measurement]:
    """JND QF of every target against the reference's, per photo and strategy (same patches, same search).

    A JND of None (even the lowest candidate is invisible) counts as QF 0.
    """
    ref = {(r.image, r.strategy): r for r in rows
           if r.suite == "e2e" and r.target == reference and r.status == "ok" and not r.variant}
    out = []
    for r in rows:
        if (r.suite != "e2e" or r.target == reference or r.status != "ok" or r.variant
                or (r.image, r.strategy) not in ref):
            continue
        base = ref[(r.image, r.strategy)]
        ours, theirs = r.jnd_qf or 0, base.jnd_qf or 0
        out.append(Measurement(
            suite="drift", target=r.target, backend=r.backend, precision=r.precision, device=r.device,
            output="jnd_qf", image=r.image, strategy=r.strategy, jnd_qf=r.jnd_qf, ref_jnd_qf=base.jnd_qf,
            qf_diff=ours - theirs,
        ))
    return out


# -- frame ---------------------------------------------------------------------------------------------------------


def frame_rows(peaks: Sequence[PeakResult], macs: Sequence[MacCount], patch_size: int) -> list[Measurement]:
    """Rows for the sgemm and matrix-engine peaks and the MAC counts."""
    rows = [
        Measurement(suite="frame", target=_peak_name(p), device="cpu", library=p.library, size=p.size,
                    threads=p.threads, gflops=p.gflops, min_ms=p.seconds * 1e3, n=p.repeats,
                    note=f"{_PEAK_KINDS.get(p.dtype, p.dtype)} {p.size}x{p.size} @ {p.size}x{p.size}, best of "
                         f"{p.repeats}; {'' if p.library == 'openvino' else 'threads: '}{p.note}")
        for p in peaks
    ]
    for m in macs:
        kinds = ", ".join(f"{k} {v / 1e9:.3f}" for k, v in m.by_kind.items())
        missing = f"; uncounted: {', '.join(m.uncounted)}" if m.uncounted else ""
        rows.append(Measurement(
            suite="frame", target=f"encoder-macs/{m.source.split()[0]}", library=m.source, gmac=m.gmac,
            size=patch_size, note=f"GMAC per {patch_size}px patch: {kinds}{missing}",
        ))
    return rows


_PEAK_KINDS = {"float32": "float32", "int8": "int8 (u8×s8, int32 sums; GOP/s)", "bf16": "bf16"}


def _peak_name(peak: PeakResult) -> str:
    """``numpy-sgemm``, ``torch-sgemm``, ``openvino-int8-gemm``, ``openvino-bf16-gemm``."""
    return f"{peak.library}-sgemm" if peak.dtype == "float32" else f"{peak.library}-{peak.dtype}-gemm"


def measure_engine_peaks(config: BenchConfig, say: Callable[[str], None]) -> tuple[list[PeakResult],
                                                                                   list[Measurement]]:
    """The fp32 GEMM, int8 and bf16 matrix-engine peaks through OpenVINO, or a skipped row saying why each is not
    measured."""
    import importlib.util

    from sgjnd.bench.frame import EnginePrecision, engine_peak

    peaks: list[PeakResult] = []
    rows: list[Measurement] = []
    kinds: tuple[EnginePrecision, ...] = ("fp32", "int8", "bf16")
    for kind in kinds:
        name = "openvino-sgemm" if kind == "fp32" else f"openvino-{kind}-gemm"
        if importlib.util.find_spec("openvino") is None:
            rows.append(Measurement(suite="frame", target=name, status="skipped",
                                    reason=f"{kind} matrix-engine peak not measured: it is measured through OpenVINO, "
                                           "which is not installed (pip install 'sgjnd[openvino]')"))
            continue
        if kind == "bf16":
            reason = _bf16_reason()
            if reason:
                rows.append(Measurement(suite="frame", target=name, status="skipped",
                                        reason=f"bf16 matrix-engine peak not measured: {reason}"))
                continue
        say(f"frame: OpenVINO {kind} GEMM {config.peak_size}^3")
        try:
            peaks.append(engine_peak(kind, size=config.peak_size, repeats=config.peak_repeats,
                                     threads=config.threads))
        except Exception as exc:  # the engine peak is context; its failure is a row, not the end of the run
            rows.append(Measurement(suite="frame", target=name, status="error",
                                    reason=f"{type(exc).__name__}: {_short(exc)}"))
    return peaks, rows


def measure_frame(config: BenchConfig, prepared: Prepared, say: Callable[[str], None]) -> tuple[
    list[Measurement], FrameFigures
]:
    """sgemm peaks and MAC counts (torch hooks on the checkpoint's encoder, ONNX graph of the FP32 encoder)."""
    import importlib.util

    from sgjnd.bench.frame import count_macs_onnx, count_macs_torch, matmul_peak
    from sgjnd.runtime.modeldir import artifact_path

    peaks: list[PeakResult] = []
    rows: list[Measurement] = []
    libraries: list[MatmulLibrary] = ["numpy"]
    if importlib.util.find_spec("torch"):
        libraries.append("torch")
    for library in libraries:
        say(f"frame: {library} sgemm {config.peak_size}^3")
        peaks.append(matmul_peak(library, size=config.peak_size, repeats=config.peak_repeats, threads=config.threads))
    engine_peaks, engine_rows = measure_engine_peaks(config, say)
    rows += engine_rows
    macs: list[MacCount] = []
    if importlib.util.find_spec("torch"):
        import torch

        from sgjnd.model import model_from_spec

        # Shapes are all the count needs: build the spec's network on the meta device (no weights, no memory).
        with torch.device("meta"):
            network = model_from_spec(prepared.spec)
            s = prepared.spec.patch_size
            macs.append(count_macs_torch(network.encoder, torch.zeros(1, 3, s, s)))
        del network
    if prepared.model_dir is not None and importlib.util.find_spec("onnx"):
        try:
            macs.append(count_macs_onnx(artifact_path(prepared.model_dir, "encoder")))
        except Exception as exc:  # the ONNX count is a cross-check; its failure is a row, not the end of the run
            rows.append(Measurement(suite="frame", target="encoder-macs/onnx", status="error",
                                    reason=f"{type(exc).__name__}: {_short(exc)}"))
    rows = frame_rows(peaks + engine_peaks, macs, prepared.spec.patch_size) + rows
    gflop = macs[0].gflop if macs else None
    peak = max((p.gflops for p in peaks + engine_peaks if p.dtype == "float32"), default=None)
    engines = {p.dtype: p.gflops for p in engine_peaks if p.dtype != "float32"}
    return rows, FrameFigures(gflop, peak, engines)


# -- the run -------------------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """What each available target will run, to size the progress bar."""

    available: dict[str, bool] = field(default_factory=dict)
    serial_jpeg: str | None = None

    def steps(self, config: BenchConfig, images: int) -> int:
        total = 0
        for t in config.targets:
            if not self.available.get(t.name):
                continue
            total += len(config.batches_for(t)) * (2 if config.head else 1) + 1
            runs = sum(1 for tt, _ in config.e2e_plan() if tt.name == t.name) + (t.name == self.serial_jpeg)
            total += images * runs
        return total


def _serial_jpeg_target(config: BenchConfig, reasons: Mapping[str, str | None]) -> str | None:
    """The target whose first end-to-end strategy also runs with JPEG trials in line (``serial-jpeg``): the first
    available CPU target with an end-to-end strategy, where overlapping trials with inference matters."""
    with_e2e = {t.name for t, _ in config.e2e_plan()}
    return next((t.name for t in config.targets
                 if t.device == "cpu" and reasons.get(t.name) is None and t.name in with_e2e), None)


def run_suite(
    config: BenchConfig,
    out_dir: Path,
    *,
    weights: Path | None = None,
    model_dir: Path | None = None,
    show_progress: bool = True,
    opener: Opener = open_target,
) -> BenchRun:
    """Prepare, then measure every target of ``config`` through every suite; return the run (nothing written).

    Args:
        config: what to measure.
        out_dir: the output directory (``<out_dir>/model`` receives the prepared model).
        weights: benchmark this checkpoint instead of a seeded one.
        model_dir: benchmark this model directory as it is.
        show_progress: a progress line on stderr.
        opener: opens a target's model (tests pass fakes).

    Returns:
        The run with its rows, environment, model facts and notes.
    """
    from sgjnd.bench.machine import machine_info

    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()

    def say(message: str) -> None:
        if show_progress:
            print(f"[bench {time.perf_counter() - t0:6.1f}s] {message}", file=_stderr(), flush=True)
        else:
            log.info("%s", message)

    environment = machine_info(config.threads)
    engine_backends = ("tensorrt", "tensorrt-rtx")
    gpu = bool(environment["gpu"].get("available"))
    need_engines = gpu and any(t.backend in engine_backends for t in config.targets)
    prepared = prepare(config, out_dir, weights=weights, model_dir=model_dir, need_engines=need_engines, say=say)
    if not gpu:  # engines are built only where they can run: say so rather than "no engine files"
        from sgjnd.engine_spec import PRODUCTS

        why = environment["gpu"].get("reason") or "none found"
        for t in config.targets:
            if t.backend in engine_backends:
                product = PRODUCTS[t.backend]
                prepared.missing.setdefault(
                    f"{product.engine_ext}:{t.precision}",
                    f"no NVIDIA GPU here ({why}): {product.title} engines are built and run where one is",
                )
    rows, frame = measure_frame(config, prepared, say)
    rows += measure_jpeg_stage(prepared.spec, prepared.images, config.e2e_max_patches, say)

    reasons = {t.name: unavailable_reason(t, prepared) for t in config.targets}
    serial = _serial_jpeg_target(config, reasons)
    plan = _Plan({name: reason is None for name, reason in reasons.items()}, serial)
    progress = Progress(plan.steps(config, len(prepared.images)), "bench", enabled=show_progress, stream=_stderr())

    def step(row: Measurement) -> None:
        progress.step(_describe(row))

    loop = LoopConfig(config.warmup, config.iters, config.min_iters, config.max_seconds)
    drift_batch: DriftBatch | None = None
    drift_reason = prepared.images_reason
    if prepared.images:
        drift_batch = make_drift_batch(prepared.images, prepared.spec, config.drift_patches, config.drift_qfs)
    reference: dict[str, np.ndarray] | None = None
    reference_reason = ""
    for target in config.targets:
        reason = reasons[target.name]
        if reason is not None:
            say(f"{target.name}: SKIPPED ({reason})")
            rows += [skipped(suite, target, reason) for suite in SUITES_PER_TARGET]
            if target.name == REFERENCE:
                reference_reason = f"the reference {REFERENCE} was skipped: {reason}"
            continue
        say(f"{target.name}: measuring")
        try:
            target_rows, outputs = _measure_target(target, opener(target, prepared, config), config, prepared, loop,
                                                   frame, drift_batch, step, serial_jpeg=target.name == serial)
        except Exception as exc:  # a target that cannot even load is one error row per suite, and the run goes on
            kind: Status = "oom" if is_out_of_memory(exc) else "error"
            text = f"{type(exc).__name__}: {_short(exc)}"
            say(f"{target.name}: {kind.upper()} ({text})")
            rows += [target_row(suite, target, status=kind, reason=text) for suite in SUITES_PER_TARGET]
            if target.name == REFERENCE:
                reference_reason = f"the reference {REFERENCE} failed: {text}"
            continue
        rows += target_rows
        if target.name == REFERENCE:
            reference = outputs
            continue
        if outputs is None or reference is None or drift_batch is None:
            why = drift_reason or reference_reason or "no drift outputs"
            rows.append(skipped("drift", target, why))
        else:
            rows += drift_rows(target, reference, outputs, drift_batch.source)
    rows += qf_drift_rows(rows)

    run = BenchRun(
        profile=config.profile,
        config=config.to_dict(),
        model=_model_facts(prepared, frame),
        environment=environment,
        rows=rows,
        notes=_notes(config, prepared, environment, drift_batch),
        started=started,
        duration_s=time.perf_counter() - t0,
    )
    return run


def _measure_target(
    target: Target,
    models: ModelBackends,
    config: BenchConfig,
    prepared: Prepared,
    loop: LoopConfig,
    frame: FrameFigures,
    drift_batch: DriftBatch | None,
    step: Callable[[Measurement], None],
    *,
    serial_jpeg: bool = False,
) -> tuple[list[Measurement], dict[str, np.ndarray] | None]:
    rows: list[Measurement] = []
    outputs: dict[str, np.ndarray] | None = None
    with models:
        graphs: list[tuple[GraphName, Runner]] = [("encoder", models.encoder)]
        if config.head:
            graphs.append(("head", models.head))
        for graph, backend in graphs:
            rows += measure_latency(target, backend, graph, models.model, config.batches_for(target), loop,
                                    frame=frame, on_point=step)
        rows += unsupported_variant_rows(target, models.encoder)
        strategies = [s for t, s in config.e2e_plan() if t.name == target.name]
        if strategies and not prepared.images:
            rows.append(skipped("e2e", target, prepared.images_reason or "no images"))
        for strategy in strategies if prepared.images else []:
            rows += measure_e2e(target, models, strategy, prepared.images, config.e2e_max_patches, on_image=step)
        if serial_jpeg and strategies and prepared.images:  # the same photos with JPEG trials in line: before/after
            rows += measure_e2e(target, models, strategies[0], prepared.images, config.e2e_max_patches,
                                on_image=step, prefetch_jpeg=False)
        if drift_batch is not None:
            try:
                outputs = run_graphs(models, drift_batch)
            except Exception as exc:  # drift failure is a row; the timing rows stand
                rows.append(target_row("drift", target, status="oom" if is_out_of_memory(exc) else "error",
                                       reason=f"{type(exc).__name__}: {_short(exc)}"))
        step(Measurement(suite="drift", target=target.name))
    return rows, outputs


def _model_facts(prepared: Prepared, frame: FrameFigures) -> dict[str, Any]:
    spec = prepared.spec
    return {
        "name": spec.name,
        "patch_size": spec.patch_size,
        "feature_dim": spec.feature_dim,
        "weights": prepared.weights,
        "untrained": prepared.weights.upper().startswith("UNTRAINED"),
        "checkpoint": str(prepared.checkpoint) if prepared.checkpoint else None,
        "checkpoint_sha256": prepared.checkpoint_sha256(),
        "model_dir": str(prepared.model_dir) if prepared.model_dir else None,
        "encoder_gflop_per_patch": frame.encoder_gflop,
        "images": [p.name for p in prepared.images],
    }


def _notes(config: BenchConfig, prepared: Prepared, environment: Mapping[str, Any],
           drift_batch: DriftBatch | None) -> list[str]:
    notes = list(prepared.notes)
    if prepared.weights.upper().startswith("UNTRAINED"):
        notes.append(f"weights: {prepared.weights}. Speed figures are those of the real network; JND values are not "
                     "perceptually meaningful, but the drift between backends is.")
    if config.cpu_max_batch is not None and any(b > config.cpu_max_batch for b in config.batch_sizes):
        notes.append(f"CPU targets stop at batch {config.cpu_max_batch} to bound the run time; GPU targets run "
                     f"{', '.join(map(str, config.batch_sizes))}.")
    cpu = environment.get("cpu", {})
    if not cpu.get("vnni"):
        notes.append(f"this CPU ({cpu.get('model', '?')}; {', '.join(cpu.get('flags', [])) or 'no relevant flags'}) "
                     "has no VNNI: ONNX Runtime INT8 (U8S8) is expected near FP32 speed here; the >= 5x INT8 target "
                     "applies only to VNNI/AMX CPUs.")
    if not environment.get("gpu", {}).get("available"):
        notes.append(f"no GPU: {environment.get('gpu', {}).get('reason', 'none found')}")
    notes.append(f"end to end: {config.e2e_max_patches} patches per photo; strategies "
                 + "; ".join(f"{s} on {', '.join(t)}" for s, t in config.e2e_strategies.items())
                 + ". The first photo of each series follows the latency grid on the same loaded model (warm).")
    if drift_batch is not None:
        notes.append(f"tensor drift on {drift_batch.source}")
    if config.threads is not None:
        notes.append(f"threads: every backend and the sgemm peak ran with {config.threads} intra-op thread(s) "
                     "(config `threads`), so ratios and % of peak compare like with like.")
    notes.append("timings are wall-clock (time.perf_counter) around backend.infer; ratios are meaningful within one "
                 "run only (other processes share the cores).")
    return notes


def _describe(row: Measurement) -> str:
    if row.suite == "latency":
        figure = f"p50 {row.p50_ms:.1f} ms" if row.p50_ms is not None else row.status.upper()
        return f"{row.target} {row.graph} b{row.batch} {figure}"
    if row.suite == "e2e":
        figure = f"{row.total_ms:.0f} ms, {row.encoder_passes} passes" if row.total_ms is not None else row.status
        return f"{row.target} {row.strategy} {row.image} {figure}"
    return f"{row.target} {row.suite}"


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _stderr() -> Any:
    import sys

    return sys.stderr

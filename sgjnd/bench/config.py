"""What a benchmark run measures: targets (backend × precision), batch sizes, loop lengths, end-to-end plan.

The two built-in profiles live here, as data (:data:`PROFILES`); ``benchmarks/quick.json`` and
``benchmarks/full.json`` are their JSON form (``sgjnd bench --profile full --dump-config``), and a test keeps them
equal. A JSON config may give any subset of the fields; the rest take the dataclass defaults.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sgjnd.errors import UsageError
from sgjnd.fileio import read_json
from sgjnd.runtime.search import STRATEGIES

Device = Literal["cpu", "gpu"]

ALL = "*"
"""In an end-to-end plan, stands for every target."""


@dataclass(frozen=True)
class Target:
    """One backend at one precision, as the suite measures it.

    Attributes:
        name: short unique label used in rows and tables (``ort-cpu/fp32``).
        backend: registry name of the backend (``torch``, ``onnxruntime``, ``openvino``, ``tensorrt``).
        precision: which prepared graphs to run (``fp32``, ``fp16``, ``int8``, ``int8-ort``), or ``bf16`` (the fp32
            graphs at bf16 inference precision, openvino only).
        providers: ONNX Runtime execution providers in order (``cpu``, ``cuda``, ``tensorrt``); empty otherwise.
        device: where it computes; GPU targets are timed with synchronisation and are not capped by
            ``cpu_max_batch``.
        label: a readable description for reports.
    """

    name: str
    backend: str
    precision: str = "fp32"
    providers: tuple[str, ...] = ()
    device: Device = "cpu"
    label: str = ""


REFERENCE = "torch/fp32"
"""The target every speed-up and every drift figure is measured against."""

DEFAULT_TARGETS: tuple[Target, ...] = (
    Target(REFERENCE, "torch", "fp32", label="PyTorch eager FP32 (reference)"),
    Target("ort-cpu/fp32", "onnxruntime", "fp32", ("cpu",), label="ONNX Runtime CPU FP32"),
    Target("ort-cpu/int8-ort", "onnxruntime", "int8-ort", ("cpu",), label="ONNX Runtime CPU INT8 (U8S8 QDQ)"),
    Target("ort-cpu/fp16", "onnxruntime", "fp16", ("cpu",), label="ONNX Runtime CPU on the FP16 (AutoCast) graph"),
    Target("ov-cpu/fp32", "openvino", "fp32", label="OpenVINO CPU FP32"),
    Target("ov-cpu/bf16", "openvino", "bf16", label="OpenVINO CPU BF16 (FP32 graphs, AVX-512-BF16/AMX)"),
    Target("ov-cpu/int8-ort", "openvino", "int8-ort", label="OpenVINO CPU INT8 (U8S8 QDQ graph)"),
    Target("ov-cpu/int8", "openvino", "int8", label="OpenVINO CPU INT8 (S8S8 QDQ graph, TensorRT placement)"),
    Target("torch-cuda/fp32", "torch", "fp32", device="gpu", label="PyTorch CUDA FP32 (device-resident rounds)"),
    Target("ort-cuda/fp32", "onnxruntime", "fp32", ("cuda",), "gpu", label="ONNX Runtime CUDA FP32 (device rounds)"),
    Target("ort-cuda/fp16", "onnxruntime", "fp16", ("cuda",), "gpu", label="ONNX Runtime CUDA FP16 (device rounds)"),
    Target("trt/fp32", "tensorrt", "fp32", device="gpu", label="TensorRT FP32"),
    Target("trt/fp16", "tensorrt", "fp16", device="gpu", label="TensorRT FP16 (strongly typed)"),
    Target("trt/int8", "tensorrt", "int8", device="gpu", label="TensorRT INT8 (QDQ, strongly typed)"),
    Target("trt-rtx/fp16", "tensorrt-rtx", "fp16", device="gpu", label="TensorRT-RTX FP16 (RTX GPUs, cc 7.5/8.x/12.x)"),
    Target("trt-rtx/int8", "tensorrt-rtx", "int8", device="gpu", label="TensorRT-RTX INT8 (QDQ; RTX GPUs)"),
    Target("ort-trt-ep/fp32", "onnxruntime", "fp32", ("tensorrt", "cuda", "cpu"), "gpu",
           label="ONNX Runtime TensorRT EP FP32"),
)
"""Every target the toolkit knows; the ones not installed here become SKIPPED rows."""


@dataclass(frozen=True)
class BenchConfig:
    """A benchmark run's settings.

    Attributes:
        profile: name recorded in the report.
        model: registered model variant to create when no checkpoint is given.
        seed: seed of the (untrained) weights when the suite creates the checkpoint.
        batch_sizes: batch sizes of the latency grid.
        cpu_max_batch: largest batch for CPU targets (None: no cap); keeps slow CPU runs bounded.
        warmup: untimed calls before each latency point.
        iters: the most timed calls per latency point.
        min_iters: the fewest timed calls per latency point.
        max_seconds: time budget of one latency point; timing stops after it once ``min_iters`` are done.
        head: also time the head graph.
        threads: intra-op threads for every backend; None leaves each library's default.
        targets: what to measure; the first must be the reference (``torch/fp32``).
        prepare: precisions the suite tries to prepare in its model directory (through ``sgjnd.calibration``).
        calibration_patches: patches (reference and distorted) of the INT8 calibration set.
        e2e_strategies: search strategy -> target names to run it on (``"*"`` for all).
        e2e_max_patches: patches per image in the end-to-end suite.
        e2e_images: how many bundled photos to use; None for all.
        drift_patches: reference patches in the tensor-drift batch (each also distorted at every ``drift_qfs``).
        drift_qfs: JPEG qualities of the distorted patches in the drift batch.
        speedup_batch: the batch of the per-patch speed-up table.
        peak_size: matrix side of the sgemm peak measurement.
        peak_repeats: timed products of the sgemm peak measurement.
        compare_threshold: relative change beyond which ``--compare`` flags a row.
    """

    profile: str = "custom"
    model: str = "sgjnd_tiny"
    seed: int = 0
    batch_sizes: tuple[int, ...] = (1, 8, 16, 32, 64)
    cpu_max_batch: int | None = None
    warmup: int = 2
    iters: int = 20
    min_iters: int = 3
    max_seconds: float = 5.0
    head: bool = True
    threads: int | None = None
    targets: tuple[Target, ...] = DEFAULT_TARGETS
    prepare: tuple[str, ...] = ("int8-ort", "fp16", "int8")
    calibration_patches: int = 128
    e2e_strategies: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"coarse-to-fine": (ALL,), "full": ("ort-cpu/fp32",), "bisect": ("ort-cpu/fp32",)}
    )
    e2e_max_patches: int = 4
    e2e_images: int | None = None
    drift_patches: int = 8
    drift_qfs: tuple[int, ...] = (10, 50, 90)
    speedup_batch: int = 16
    peak_size: int = 2048
    peak_repeats: int = 3
    compare_threshold: float = 0.10

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes) or list(self.batch_sizes) != sorted(
            set(self.batch_sizes)
        ):
            raise UsageError(f"batch_sizes must be distinct, ascending and >= 1, got {list(self.batch_sizes)}")
        if self.cpu_max_batch is not None and self.cpu_max_batch < 1:
            raise UsageError(f"cpu_max_batch must be >= 1 or null, got {self.cpu_max_batch}")
        if self.warmup < 0 or self.iters < 1 or not 1 <= self.min_iters <= self.iters or self.max_seconds <= 0:
            raise UsageError(
                f"need warmup >= 0, 1 <= min_iters <= iters and max_seconds > 0, got warmup={self.warmup} "
                f"iters={self.iters} min_iters={self.min_iters} max_seconds={self.max_seconds}"
            )
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1 or null, got {self.threads}")
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise UsageError(f"target names must be unique, got {names}")
        if not self.targets or self.targets[0].name != REFERENCE:
            raise UsageError(f"the first target must be the reference {REFERENCE!r}, got {names[:1]}")
        for strategy, wanted in self.e2e_strategies.items():
            if strategy not in STRATEGIES:
                raise UsageError(f"unknown search strategy {strategy!r} in e2e_strategies: expected {STRATEGIES}")
            unknown = [w for w in wanted if w != ALL and w not in names]
            if unknown:
                raise UsageError(f"e2e_strategies[{strategy!r}] names unknown targets {unknown}: expected {names}")
        if self.e2e_max_patches < 1 or (self.e2e_images is not None and self.e2e_images < 1):
            raise UsageError(f"e2e_max_patches and e2e_images must be >= 1, got {self.e2e_max_patches}, "
                             f"{self.e2e_images}")
        if self.drift_patches < 1 or any(not 1 <= q <= 100 for q in self.drift_qfs):
            raise UsageError(f"need drift_patches >= 1 and drift_qfs in 1..100, got {self.drift_patches}, "
                             f"{list(self.drift_qfs)}")
        if self.calibration_patches < 2:
            raise UsageError(f"calibration_patches must be >= 2, got {self.calibration_patches}")
        if self.peak_size < 64 or self.peak_repeats < 1 or self.compare_threshold <= 0:
            raise UsageError("need peak_size >= 64, peak_repeats >= 1 and compare_threshold > 0")

    def target(self, name: str) -> Target:
        """The target called ``name``."""
        for t in self.targets:
            if t.name == name:
                return t
        raise UsageError(f"no target {name!r}: expected one of {[t.name for t in self.targets]}")

    def batches_for(self, target: Target) -> tuple[int, ...]:
        """The latency-grid batch sizes of ``target`` (CPU targets capped at ``cpu_max_batch``)."""
        if target.device == "cpu" and self.cpu_max_batch is not None:
            return tuple(b for b in self.batch_sizes if b <= self.cpu_max_batch)
        return self.batch_sizes

    def e2e_plan(self) -> list[tuple[Target, str]]:
        """(target, strategy) pairs of the end-to-end suite, in target order, then strategy order."""
        plan = []
        for t in self.targets:
            for strategy, wanted in self.e2e_strategies.items():
                if ALL in wanted or t.name in wanted:
                    plan.append((t, strategy))
        return plan

    def replace(self, **changes: Any) -> BenchConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; ``config_from_dict`` inverts it."""
        data = dataclasses.asdict(self)
        data["batch_sizes"] = list(self.batch_sizes)
        data["targets"] = [{**dataclasses.asdict(t), "providers": list(t.providers)} for t in self.targets]
        data["prepare"] = list(self.prepare)
        data["e2e_strategies"] = {k: list(v) for k, v in self.e2e_strategies.items()}
        data["drift_qfs"] = list(self.drift_qfs)
        return data


def config_from_dict(data: dict[str, Any]) -> BenchConfig:
    """Build a config from JSON data; missing fields take their defaults.

    Raises:
        UsageError: an unknown field (the message lists the known ones) or a value of the wrong kind.
    """
    if not isinstance(data, dict):
        raise UsageError(f"a benchmark config must be a JSON object, got {type(data).__name__}")
    known = [f.name for f in dataclasses.fields(BenchConfig)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise UsageError(f"unknown benchmark config field(s) {unknown}: expected some of {known}")
    values = dict(data)
    try:
        for key in ("batch_sizes", "prepare", "drift_qfs"):
            if key in values:
                values[key] = tuple(values[key])
        if "targets" in values:
            values["targets"] = tuple(_target(t) for t in values["targets"])
        if "e2e_strategies" in values:
            values["e2e_strategies"] = {str(k): tuple(v) for k, v in dict(values["e2e_strategies"]).items()}
        return BenchConfig(**values)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"benchmark config does not have the expected types: {exc}") from exc


def _target(data: Any) -> Target:
    if not isinstance(data, dict):
        raise UsageError(f"each target must be a JSON object, got {data!r}")
    known = [f.name for f in dataclasses.fields(Target)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise UsageError(f"unknown target field(s) {unknown}: expected some of {known}")
    values = dict(data)
    if "providers" in values:
        values["providers"] = tuple(values["providers"])
    if values.get("device", "cpu") not in ("cpu", "gpu"):
        raise UsageError(f"target device must be 'cpu' or 'gpu', got {values['device']!r}")
    return Target(**values)


def load_config(path: Path) -> BenchConfig:
    """Read a JSON benchmark config.

    Raises:
        UsageError: the file is missing, not JSON, or not a valid config.
    """
    path = Path(path)
    data = read_json(path, missing=f"no benchmark config at {path}: give a JSON file or --profile quick|full",
                     kind="JSON config")
    try:
        return config_from_dict(data)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from exc


def dump_config(config: BenchConfig) -> str:
    """The config as indented JSON (what ``benchmarks/<profile>.json`` holds)."""
    return json.dumps(config.to_dict(), indent=2) + "\n"


PROFILES: dict[str, BenchConfig] = {
    # CI and `make demo`: the tiny model, every target, a few calls per point; seconds on two cores.
    "quick": BenchConfig(
        profile="quick",
        model="sgjnd_tiny",
        batch_sizes=(1, 8, 16, 32, 64),
        warmup=1,
        iters=10,
        min_iters=3,
        max_seconds=1.0,
        prepare=("int8-ort", "fp16"),
        calibration_patches=32,
        e2e_strategies={"coarse-to-fine": (ALL,), "full": ("ort-cpu/fp32",), "bisect": ("ort-cpu/fp32",)},
        e2e_max_patches=2,
        e2e_images=2,
        drift_patches=4,
        peak_size=1024,
        peak_repeats=2,
    ),
    # Real measurements: sgjnd_r50 (untrained weights from seed 0). CPU targets stop at batch 32 so that the run
    # stays within about 15 minutes on two cores; GPU targets keep the whole grid. The `full` search runs once, on
    # ONNX Runtime FP32 (the fastest CPU target), so its encoder-pass count and JND are measured, not extrapolated.
    "full": BenchConfig(
        profile="full",
        model="sgjnd_r50",
        batch_sizes=(1, 8, 16, 32, 64),
        cpu_max_batch=32,
        warmup=1,
        iters=10,
        min_iters=3,
        max_seconds=8.0,
        prepare=("int8-ort", "fp16", "int8"),
        calibration_patches=128,
        e2e_strategies={"coarse-to-fine": (ALL,), "full": ("ort-cpu/fp32",), "bisect": ("ort-cpu/fp32",)},
        e2e_max_patches=2,
        e2e_images=None,
        drift_patches=8,
        peak_size=3072,
        peak_repeats=3,
    ),
}
"""The built-in profiles, by name."""


def profile_config(name: str) -> BenchConfig:
    """The built-in profile ``name``.

    Raises:
        UsageError: unknown profile.
    """
    if name not in PROFILES:
        raise UsageError(f"unknown benchmark profile {name!r}: expected one of {', '.join(PROFILES)} or --config FILE")
    return PROFILES[name]

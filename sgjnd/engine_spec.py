"""The TensorRT part of the sidecar contract, shared by the builder and the runtime.

:mod:`sgjnd.export.trt` builds engines and :mod:`sgjnd.runtime.backends.trt` runs them; both need the same facts
about an engine: the batch profile, the build options (to reproduce a build), what the sidecar records about the
machine that built it, and whether an engine may run on this machine. They live here, in pure Python, so the runtime
never imports the export package and every decision can be unit-tested without TensorRT or a GPU.

This module imports nothing from the package but :mod:`sgjnd.errors` and :mod:`sgjnd.spec`.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sgjnd.errors import SpecError, UsageError
from sgjnd.spec import BATCH, TensorSpec

BUILD_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
"""Precisions ``sgjnd build`` makes engines for."""


@dataclass(frozen=True)
class TrtProduct:
    """One of NVIDIA's TensorRT products that build and run our engines (same ONNX parser, QDQ rules and I/O API).

    Attributes:
        name: what ``--runtime`` and the sidecar call it.
        title: what messages call it (``TensorRT``).
        module: the Python module it installs.
        extra: the ``sgjnd`` pip extra that installs it.
        install: the pip line quoted in errors.
        builds_without_gpu: its builder compiles ahead of time with no GPU (the engine still needs one to run).
        engine_ext: the engine file extension in a model directory (``encoder.fp16.<ext>``).
        unsupported: ``sgjnd build`` options it does not have, each with the reason (refused, never recorded).
    """

    name: str
    title: str
    module: str
    extra: str
    install: str
    builds_without_gpu: bool
    engine_ext: Literal["engine", "rtx.engine"] = "engine"
    unsupported: Mapping[str, str] = field(default_factory=dict)


TENSORRT = TrtProduct(
    name="tensorrt",
    title="TensorRT",
    module="tensorrt",
    extra="trt",
    install="pip install 'sgjnd[trt]' (or: pip install tensorrt cuda-python)",
    builds_without_gpu=False,
)
TENSORRT_RTX = TrtProduct(
    name="tensorrt-rtx",
    title="TensorRT-RTX",
    module="tensorrt_rtx",
    extra="trt-rtx",
    install="pip install 'sgjnd[trt-rtx]' (or: pip install tensorrt-rtx-cu13==1.7.1.116)",
    builds_without_gpu=True,
    engine_ext="rtx.engine",
    unsupported={
        "--timing-cache": "TensorRT-RTX has no timing cache (it compiles kernels just in time and keeps them in its "
        "runtime cache instead)",
        "--version-compatible": "TensorRT-RTX has no version-compatible engines",
        "--hardware-compatibility": "TensorRT-RTX engines are portable by construction: name the targets with "
        "--compute-capability",
        "--legacy-precision-flags": "TensorRT-RTX is strongly typed only (no FP16/INT8 builder flags, no calibrator)",
    },
)
PRODUCTS: dict[str, TrtProduct] = {p.name: p for p in (TENSORRT, TENSORRT_RTX)}
"""``--runtime`` name -> product."""

RTX_COMPUTE_CAPABILITIES: tuple[str, ...] = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")
"""Compute capabilities TensorRT-RTX 1.7 builds for (its ``ComputeCapability`` enum; no 9.0 or 10.x: Hopper and
datacenter Blackwell are full TensorRT's)."""

RTX_DEFAULT_COMPUTE_CAPABILITIES: tuple[str, ...] = ("8.0", "8.6", "8.9", "12.0", "12.1")
"""What a TensorRT-RTX engine targets when none are named: its own default, Ampere and later ("CPU-Only AOT and
TensorRT-RTX Engines" in NVIDIA's docs). Turing (7.5) must be asked for alone: its FP32 GEMMs are not supported, so
an FP32 graph with MatMuls fails to build for it, and a portable engine that includes it runs slower elsewhere."""


def trt_product(name: str) -> TrtProduct:
    """The product called ``name``.

    Raises:
        UsageError: the name is not one of :data:`PRODUCTS`.
    """
    if name not in PRODUCTS:
        raise UsageError(f"--runtime must be one of {', '.join(PRODUCTS)}, got {name!r}")
    return PRODUCTS[name]

HARDWARE_COMPATIBILITY: tuple[str, ...] = ("ampere+", "same-cc")
"""Values of ``--hardware-compatibility``: TensorRT's AMPERE_PLUS and SAME_COMPUTE_CAPABILITY levels."""

AMPERE_PLUS_MIN_CC = (8, 0)
"""Lowest compute capability an ``ampere+`` engine runs on."""

MAX_OPT_LEVEL = 5
"""Highest TensorRT builder optimisation level (0 builds fastest, 5 searches most)."""

Shape = tuple[int, ...]


# -- batch profile ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchProfile:
    """The optimisation profile over the batch axis: the smallest, the tuned and the largest batch an engine takes.

    Attributes:
        min: smallest batch the engine accepts.
        opt: the batch TensorRT tunes kernels for; the runtime fills batches of this size.
        max: largest batch the engine accepts; buffers are allocated for it.
    """

    min: int = 1
    opt: int = 16
    max: int = 64

    def validate(self) -> BatchProfile:
        """Return self if ``1 <= min <= opt <= max``.

        Raises:
            UsageError: naming the rule that is broken and the values given.
        """
        values = (self.min, self.opt, self.max)
        if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
            raise UsageError(f"batch profile values must be integers, got {values}")
        if self.min < 1:
            raise UsageError(f"batch profile min must be at least 1, got {self}")
        if not self.min <= self.opt <= self.max:
            raise UsageError(f"batch profile must satisfy min <= opt <= max, got min,opt,max = {self}")
        return self

    @classmethod
    def parse(cls, text: str) -> BatchProfile:
        """Parse ``MIN,OPT,MAX`` (or a single ``N`` for a fixed batch) and validate it.

        Raises:
            UsageError: the text is not one or three integers in order.
        """
        parts = [p.strip() for p in str(text).split(",")]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise UsageError(f"--batch must be MIN,OPT,MAX integers such as 1,16,64, got {text!r}") from None
        if len(values) == 1:
            values = values * 3
        if len(values) != 3:
            raise UsageError(f"--batch must be MIN,OPT,MAX (three integers) or one integer, got {text!r}")
        return cls(*values).validate()

    def __str__(self) -> str:
        return f"{self.min},{self.opt},{self.max}"

    def as_dict(self) -> dict[str, int]:
        """``{"min": .., "opt": .., "max": ..}`` for JSON."""
        return {"min": self.min, "opt": self.opt, "max": self.max}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchProfile:
        """Inverse of :meth:`as_dict`; raises SpecError when a value is missing or not an integer."""
        try:
            return cls(int(data["min"]), int(data["opt"]), int(data["max"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError(f"batch profile must have integer min, opt and max, got {data!r}") from exc


def batch_shape(spec: TensorSpec, batch: int) -> Shape:
    """The shape of ``spec`` with its batch axis set to ``batch``.

    Raises:
        SpecError: the tensor has a dynamic axis other than the batch, which an engine profile cannot cover here.
    """
    shape: list[int] = []
    for dim in spec.shape:
        if dim == BATCH:
            shape.append(int(batch))
        elif isinstance(dim, int):
            shape.append(dim)
        else:
            raise SpecError(
                f"tensor {spec.name!r} has dynamic axis {dim!r} besides {BATCH!r}; only the batch axis may be dynamic "
                "in a TensorRT profile. Re-export the graph with fixed spatial sizes."
            )
    return tuple(shape)


def profile_shapes(profile: BatchProfile, inputs: Sequence[TensorSpec]) -> dict[str, tuple[Shape, Shape, Shape]]:
    """Min, opt and max shapes of every input under ``profile`` (the head has two inputs, both get the profile)."""
    return {
        t.name: (batch_shape(t, profile.min), batch_shape(t, profile.opt), batch_shape(t, profile.max)) for t in inputs
    }


def buffer_nbytes(spec: TensorSpec, max_batch: int, itemsize: int) -> int:
    """Bytes of a buffer that holds ``spec`` at ``max_batch`` with elements of ``itemsize`` bytes."""
    return math.prod(batch_shape(spec, max_batch)) * int(itemsize)


# -- build options ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildConfig:
    """How ``sgjnd build`` turns a model directory's ONNX graphs into TensorRT engines.

    Attributes:
        precision: fp32 builds from ``encoder.onnx``; fp16/int8 from the precision-prepared ``encoder.fp16.onnx`` /
            ``encoder.int8.onnx`` as a STRONGLY_TYPED network, which works on TensorRT 10 and 11.
        batch: the batch-axis optimisation profile, applied to every input.
        workspace_gib: the builder's workspace memory pool limit, in GiB.
        opt_level: the builder optimisation level, 0..5; lower builds faster, higher may run faster.
        timing_cache: a timing cache file, loaded before and saved (atomically) after each build; None: none.
        version_compatible: build an engine that later TensorRT releases of the same major version can run (it
            embeds the lean runtime as host code; loading it must be allowed explicitly).
        hardware_compatibility: ``ampere+`` (any GPU of compute capability >= 8.0) or ``same-cc`` (any GPU of the
            building GPU's compute capability); None: only the building GPU model.
        legacy_precision_flags: LEGACY, TensorRT 10 only: build from the FP32 graphs as a weakly typed network with
            BuilderFlag.FP16/INT8 (and an entropy calibrator for int8) instead of from precision-prepared graphs.
        tf32: allow TF32 math in FP32 layers (faster on Ampere and later, about 1e-3 relative error).
        runtime: the product that builds and runs the engine: ``tensorrt`` or ``tensorrt-rtx``.
        compute_capabilities: TensorRT-RTX only: the compute capabilities (``8.6``) the engine is built for;
            empty: :data:`RTX_DEFAULT_COMPUTE_CAPABILITIES` (Ampere and later).
    """

    precision: str = "fp32"
    batch: BatchProfile = field(default_factory=BatchProfile)
    workspace_gib: float = 4.0
    opt_level: int = 3
    timing_cache: Path | None = None
    version_compatible: bool = False
    hardware_compatibility: str | None = None
    legacy_precision_flags: bool = False
    tf32: bool = False
    runtime: str = "tensorrt"
    compute_capabilities: tuple[str, ...] = ()

    @property
    def product(self) -> TrtProduct:
        """The product named by ``runtime`` (UsageError when it is unknown)."""
        return trt_product(self.runtime)

    def validate(self) -> BuildConfig:
        """Return self if every option can work; call before any work.

        Raises:
            UsageError: naming the option, what it must be and what was given.
        """
        if self.precision not in BUILD_PRECISIONS:
            raise UsageError(f"--precision must be one of {', '.join(BUILD_PRECISIONS)}, got {self.precision!r}")
        self.batch.validate()
        if not (isinstance(self.workspace_gib, int | float) and math.isfinite(self.workspace_gib)) or (
            self.workspace_gib <= 0
        ):
            raise UsageError(f"--workspace must be a positive number of GiB, got {self.workspace_gib!r}")
        if isinstance(self.opt_level, bool) or not isinstance(self.opt_level, int) or not (
            0 <= self.opt_level <= MAX_OPT_LEVEL
        ):
            raise UsageError(f"--opt-level must be an integer from 0 to {MAX_OPT_LEVEL}, got {self.opt_level!r}")
        if self.hardware_compatibility is not None and self.hardware_compatibility not in HARDWARE_COMPATIBILITY:
            raise UsageError(
                f"--hardware-compatibility must be one of {', '.join(HARDWARE_COMPATIBILITY)}, "
                f"got {self.hardware_compatibility!r}"
            )
        if self.legacy_precision_flags and self.precision == "fp32":
            raise UsageError(
                "--legacy-precision-flags only applies to --precision fp16 or int8; an fp32 build needs no flags"
            )
        if self.timing_cache is not None and Path(self.timing_cache).is_dir():
            raise UsageError(f"--timing-cache must be a file path, got the directory {self.timing_cache}")
        product = self.product
        given = {
            "--timing-cache": self.timing_cache is not None,
            "--version-compatible": self.version_compatible,
            "--hardware-compatibility": self.hardware_compatibility is not None,
            "--legacy-precision-flags": self.legacy_precision_flags,
        }
        for option, reason in product.unsupported.items():
            if given.get(option):
                raise UsageError(f"{option} does not apply to --runtime {product.name}: {reason}")
        if self.compute_capabilities and product is not TENSORRT_RTX:
            raise UsageError(
                "--compute-capability only applies to --runtime tensorrt-rtx; TensorRT builds for the GPU it runs on "
                "(see --hardware-compatibility)"
            )
        unknown = [cc for cc in self.compute_capabilities if cc not in RTX_COMPUTE_CAPABILITIES]
        if unknown:
            raise UsageError(
                f"--compute-capability {','.join(unknown)} is not a TensorRT-RTX target: expected some of "
                f"{','.join(RTX_COMPUTE_CAPABILITIES)} (9.0 GPUs such as the H100 need full TensorRT)"
            )
        if len(set(self.compute_capabilities)) != len(self.compute_capabilities):
            raise UsageError(f"--compute-capability lists a value twice: {','.join(self.compute_capabilities)}")
        return self

    @property
    def workspace_bytes(self) -> int:
        """The workspace limit in bytes."""
        return int(self.workspace_gib * (1 << 30))

    def to_record(self) -> dict[str, Any]:
        """The options as JSON values, as written to an engine sidecar's ``details.build_options``."""
        return {
            "precision": self.precision,
            "batch": self.batch.as_dict(),
            "workspace_gib": self.workspace_gib,
            "opt_level": self.opt_level,
            "timing_cache": str(self.timing_cache) if self.timing_cache is not None else None,
            "version_compatible": self.version_compatible,
            "hardware_compatibility": self.hardware_compatibility,
            "legacy_precision_flags": self.legacy_precision_flags,
            "tf32": self.tf32,
            "runtime": self.runtime,
            "compute_capabilities": list(self.compute_capabilities),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> BuildConfig:
        """Inverse of :meth:`to_record`; missing keys take their defaults (older sidecars).

        Raises:
            SpecError: a value has the wrong type.
        """
        default = cls()
        try:
            cache = record.get("timing_cache")
            hw = record.get("hardware_compatibility")
            return cls(
                precision=str(record.get("precision", default.precision)),
                batch=BatchProfile.from_dict(record["batch"]) if "batch" in record else default.batch,
                workspace_gib=float(record.get("workspace_gib", default.workspace_gib)),
                opt_level=int(record.get("opt_level", default.opt_level)),
                timing_cache=Path(cache) if cache else None,
                version_compatible=bool(record.get("version_compatible", False)),
                hardware_compatibility=str(hw) if hw else None,
                legacy_precision_flags=bool(record.get("legacy_precision_flags", False)),
                tf32=bool(record.get("tf32", False)),
                runtime=str(record.get("runtime", default.runtime)),
                compute_capabilities=tuple(str(cc) for cc in record.get("compute_capabilities", ())),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise SpecError(f"build_options in the engine sidecar are malformed ({exc}): got {record!r}") from exc

    def command(self, model_dir: Path | str) -> str:
        """The ``sgjnd build`` command line that reproduces this build for ``model_dir`` (shell-quoted)."""
        args = ["sgjnd", "build", str(model_dir)]
        if self.runtime != TENSORRT.name:
            args += ["--runtime", self.runtime]
        if self.compute_capabilities:
            args += ["--compute-capability", ",".join(self.compute_capabilities)]
        args += [
            "--precision",
            self.precision,
            "--batch",
            str(self.batch),
            "--workspace",
            _format_number(self.workspace_gib),
            "--opt-level",
            str(self.opt_level),
        ]
        if self.timing_cache is not None:
            args += ["--timing-cache", str(self.timing_cache)]
        if self.version_compatible:
            args.append("--version-compatible")
        if self.hardware_compatibility is not None:
            args += ["--hardware-compatibility", self.hardware_compatibility]
        if self.legacy_precision_flags:
            args.append("--legacy-precision-flags")
        if self.tf32:
            args.append("--tf32")
        return shlex.join(args)


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# -- what an engine sidecar records ------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineRecord:
    """The engine-specific facts in an engine sidecar's ``artifact.details``.

    Attributes:
        tensorrt_version: the version of the product that built the engine (``10.13.0.35``; TensorRT-RTX
            ``1.7.1.116``); the product is ``build.runtime``.
        gpu_name: the name of the GPU that built it (empty for a TensorRT-RTX build without a GPU).
        compute_capability: its compute capability, ``major.minor`` (empty without a GPU).
        build: the build options; ``build.batch`` is the engine's profile.
        network: ``strongly-typed`` or ``legacy-weakly-typed``.
        onnx_file: the ONNX file the engine was built from.
        onnx_sha256: its sha256.
        calibration_sha256: hash of the calibration that set the int8 scales, when there was one.
        built_at: UTC time of the build, ISO 8601.
        build_seconds: wall time of the build.
        versions: library versions on the building machine (CUDA runtime and driver, cuda-python, ...).
        notes: facts a reader of the sidecar should know (what a legacy build did to the head, ...).
        target_compute_capabilities: TensorRT-RTX: the compute capabilities the engine was built for.
    """

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    build: BuildConfig
    network: str = "strongly-typed"
    onnx_file: str = ""
    onnx_sha256: str = ""
    calibration_sha256: str | None = None
    built_at: str = ""
    build_seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    target_compute_capabilities: tuple[str, ...] = ()

    @property
    def profile(self) -> BatchProfile:
        """The engine's batch profile."""
        return self.build.batch

    @property
    def product(self) -> str:
        """``tensorrt`` or ``tensorrt-rtx``: the product that built the engine and must run it."""
        return self.build.runtime

    def to_details(self) -> dict[str, Any]:
        """The record as the JSON ``details`` of an engine sidecar."""
        return {
            "product": self.product,
            "tensorrt_version": self.tensorrt_version,
            "target_compute_capabilities": list(self.target_compute_capabilities),
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
            "network": self.network,
            "profile": self.build.batch.as_dict(),
            "build_options": self.build.to_record(),
            "onnx_file": self.onnx_file,
            "onnx_sha256": self.onnx_sha256,
            "calibration_sha256": self.calibration_sha256,
            "built_at": self.built_at,
            "build_seconds": self.build_seconds,
            "versions": dict(self.versions),
            "notes": list(self.notes),
        }

    @classmethod
    def from_details(cls, details: Mapping[str, Any], *, source: str = "engine sidecar") -> EngineRecord:
        """Parse the ``details`` of an engine sidecar.

        Raises:
            SpecError: a required field is missing (the sidecar was not written by ``sgjnd build``).
        """
        required = ("tensorrt_version", "gpu_name", "compute_capability", "build_options")
        missing = [k for k in required if k not in details]
        if missing:
            raise SpecError(f"{source} lacks {', '.join(missing)}: it was not written by `sgjnd build`")
        build = BuildConfig.from_record(details["build_options"])
        if str(details.get("product", build.runtime)) != build.runtime:
            raise SpecError(f"{source}: product {details['product']!r} disagrees with build_options.runtime")
        if "profile" in details and BatchProfile.from_dict(details["profile"]) != build.batch:
            raise SpecError(f"{source}: profile {details['profile']} disagrees with build_options.batch")
        calibration = details.get("calibration_sha256")
        return cls(
            tensorrt_version=str(details["tensorrt_version"]),
            gpu_name=str(details["gpu_name"]),
            compute_capability=str(details["compute_capability"]),
            build=build,
            network=str(details.get("network", "strongly-typed")),
            onnx_file=str(details.get("onnx_file", "")),
            onnx_sha256=str(details.get("onnx_sha256", "")),
            calibration_sha256=str(calibration) if calibration else None,
            built_at=str(details.get("built_at", "")),
            build_seconds=float(details.get("build_seconds", 0.0)),
            versions={str(k): str(v) for k, v in dict(details.get("versions", {})).items()},
            notes=tuple(str(n) for n in details.get("notes", ())),
            target_compute_capabilities=tuple(str(c) for c in details.get("target_compute_capabilities", ())),
        )


# -- may this engine run here? -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Platform:
    """The running machine, as far as engine compatibility goes.

    Attributes:
        tensorrt_version: the running product's ``__version__``.
        gpu_name: the CUDA device name.
        compute_capability: ``major.minor``.
        product: the TensorRT product that would load the engine (``tensorrt`` or ``tensorrt-rtx``).
    """

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    product: str = "tensorrt"


@dataclass(frozen=True)
class Compatibility:
    """The verdict on running an engine on a platform: refusals in ``problems``, notes in ``warnings``."""

    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing forbids loading the engine."""
        return not self.problems


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.13.0.35"`` -> ``(10, 13, 0, 35)``; trailing non-numeric parts (``10.13.0.post1``) are dropped.

    Raises:
        SpecError: the text does not start with a number.
    """
    numbers: list[int] = []
    for part in str(text).strip().split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match.group()))
        if match.end() != len(part):
            break
    if not numbers:
        raise SpecError(f"cannot read a version number from {text!r}")
    return tuple(numbers)


def parse_compute_capability(text: str) -> tuple[int, int]:
    """``"8.6"`` -> ``(8, 6)``.

    Raises:
        SpecError: the text is not ``major.minor``.
    """
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", str(text))
    if not match:
        raise SpecError(f"compute capability must be 'major.minor' such as '8.6', got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _release(version: tuple[int, ...]) -> tuple[int, int, int]:
    padded = (*version, 0, 0, 0)
    return padded[0], padded[1], padded[2]


def check_compatibility(
    recorded: EngineRecord, running: Platform, *, allow_other_gpu_model: bool = False
) -> Compatibility:
    """Decide whether an engine built as ``recorded`` may be loaded on ``running``.

    Rules (TensorRT's own, made explicit so the refusal names the cause instead of failing in deserialisation):
    a plain engine needs the same TensorRT release (major.minor.patch); a version-compatible one needs the same
    major version and a release at least as new. A plain or ``same-cc`` engine needs the same compute capability;
    an ``ampere+`` one needs compute capability >= 8.0. A plain engine on another GPU model of the same compute
    capability is refused (TensorRT warns it may be slower or fail) unless ``allow_other_gpu_model``.

    Args:
        recorded: what the engine sidecar says about the build.
        running: this machine.
        allow_other_gpu_model: demote "another GPU model of the same compute capability" to a warning.
    """
    if recorded.product != running.product:
        return Compatibility((
            f"it is a {recorded.product} engine and this runtime is {running.product} (each product loads only its "
            "own engines)",
        ))
    if recorded.product == TENSORRT_RTX.name:
        return _check_rtx(recorded, running)
    problems: list[str] = []
    warnings: list[str] = []
    built = _release(parse_version(recorded.tensorrt_version))
    here = _release(parse_version(running.tensorrt_version))
    if recorded.build.version_compatible:
        if here[0] != built[0] or here < built:
            problems.append(
                f"it is a version-compatible engine built with TensorRT {recorded.tensorrt_version}, which runs on "
                f"TensorRT {built[0]}.x releases from {'.'.join(map(str, built))} on, but this machine has TensorRT "
                f"{running.tensorrt_version}"
            )
    elif here != built:
        problems.append(
            f"it was built with TensorRT {recorded.tensorrt_version} and this machine has TensorRT "
            f"{running.tensorrt_version} (an engine only loads in the TensorRT release that built it)"
        )

    built_cc = parse_compute_capability(recorded.compute_capability)
    here_cc = parse_compute_capability(running.compute_capability)
    level = recorded.build.hardware_compatibility
    if level == "ampere+":
        if here_cc < AMPERE_PLUS_MIN_CC:
            problems.append(
                f"it is an ampere+ engine, which needs compute capability 8.0 or higher, but this GPU "
                f"({running.gpu_name}) has {running.compute_capability}"
            )
    elif here_cc != built_cc:
        problems.append(
            f"it was built for compute capability {recorded.compute_capability} ({recorded.gpu_name}) and this GPU "
            f"({running.gpu_name}) has {running.compute_capability}"
        )
    elif level is None and recorded.gpu_name.strip() != running.gpu_name.strip():
        text = (
            f"it was built on {recorded.gpu_name} and this GPU is {running.gpu_name} (same compute capability "
            f"{running.compute_capability}); TensorRT warns that engines moved across GPU models may run slower or fail"
        )
        if allow_other_gpu_model:
            warnings.append(text)
        else:
            problems.append(text + " (pass allow_other_gpu_model=True to try anyway, or build with "
                            "--hardware-compatibility same-cc)")
    return Compatibility(tuple(problems), tuple(warnings))


def _check_rtx(recorded: EngineRecord, running: Platform) -> Compatibility:
    """TensorRT-RTX: the same release, and this GPU's compute capability among the engine's targets.

    The GPU model is not checked: TensorRT-RTX engines are portable across GPUs of the targeted compute capabilities
    and specialise their kernels on the device when they run. ``Runtime.get_engine_validity`` has the last word.
    """
    problems: list[str] = []
    if _release(parse_version(recorded.tensorrt_version)) != _release(parse_version(running.tensorrt_version)):
        problems.append(
            f"it was built with TensorRT-RTX {recorded.tensorrt_version} and this machine has TensorRT-RTX "
            f"{running.tensorrt_version}"
        )
    targets = recorded.target_compute_capabilities
    here = parse_compute_capability(running.compute_capability)
    if targets and here not in {parse_compute_capability(cc) for cc in targets}:
        problems.append(
            f"it was built for compute capabilities {', '.join(targets)} and this GPU ({running.gpu_name}) has "
            f"{running.compute_capability}"
            + (" (TensorRT-RTX does not support it: use full TensorRT)"
               if running.compute_capability not in RTX_COMPUTE_CAPABILITIES else "")
        )
    return Compatibility(tuple(problems))

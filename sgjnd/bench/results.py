"""The records of a benchmark run: one flat :class:`Measurement` per measurement, and the :class:`BenchRun` around them.

Rows are flat on purpose (timm ``benchmark.py`` style): every row has the same columns, so a run is one CSV table
and one JSON list, and two runs can be matched row by row (:meth:`Measurement.key`). Fields that do not apply to a
row's suite are None.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sgjnd.errors import UsageError
from sgjnd.fileio import read_json

RUN_FORMAT = 1
"""Version of the JSON layout of a run."""

Suite = Literal["latency", "e2e", "jpeg", "drift", "frame"]
Status = Literal["ok", "skipped", "oom", "error"]
SUITES: tuple[Suite, ...] = ("latency", "e2e", "jpeg", "drift", "frame")


@dataclass
class Measurement:
    """One row of a benchmark run.

    Attributes:
        suite: ``latency`` (one graph at one batch), ``e2e`` (one image through the predictor), ``drift`` (one
            output or one image's JND against the reference) or ``frame`` (sgemm peak, MAC count).
        target: the target's name (``ort-cpu/fp32``), or what a frame row measures (``numpy-sgemm``).
        status: ``ok``, ``skipped`` (not installed, graph absent, not supported), ``oom`` (out of memory: the rest of
            the series was not run) or ``error``.
        reason: why a row is not ``ok``, or a remark.

    Latency rows: ``*_ms`` are per call (one batch), warm-up excluded; ``per_patch_ms`` is the median call divided by
    the batch (robust to the spikes of a shared machine); ``throughput_per_s`` is batch / mean call (sustained
    rate); ``h2d_ms``/``compute_ms``/``d2h_ms`` only where the backend measures them itself. End-to-end rows: the
    predictor's per-stage times for one photo, and ``h2d_bytes``, the encoder input of the photo (what a GPU backend
    copies host to device); variant ``serial-jpeg``: the same with the JPEG trials not overlapped with inference.
    JPEG rows: one photo's trials for a full search, ``trial_ms`` per patch and QF. Drift rows: one output
    (``features``, ``q``, ``w``) or one photo's ``jnd_qf`` against the reference.
    """

    suite: Suite
    target: str
    backend: str = ""
    precision: str = ""
    device: str = ""
    status: Status = "ok"
    reason: str = ""
    # latency
    graph: str | None = None
    batch: int | None = None
    variant: str = ""
    n: int | None = None
    mean_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    std_ms: float | None = None
    per_patch_ms: float | None = None
    throughput_per_s: float | None = None
    h2d_ms: float | None = None
    compute_ms: float | None = None
    d2h_ms: float | None = None
    achieved_gflops: float | None = None
    peak_fraction: float | None = None
    # end to end
    image: str | None = None
    strategy: str | None = None
    patches: int | None = None
    encoder_passes: int | None = None
    jnd_qf: int | None = None
    recommended_qf: int | None = None
    decode_ms: float | None = None
    patches_ms: float | None = None
    jpeg_ms: float | None = None
    inference_ms: float | None = None
    search_ms: float | None = None
    report_ms: float | None = None
    total_ms: float | None = None
    h2d_bytes: int | None = None
    # jpeg
    trial_ms: float | None = None
    # drift
    output: str | None = None
    ref_jnd_qf: int | None = None
    qf_diff: int | None = None
    cosine: float | None = None
    max_abs: float | None = None
    mean_abs: float | None = None
    tolerance: str | None = None
    passed: bool | None = None
    # frame
    library: str | None = None
    size: int | None = None
    threads: int | None = None
    gflops: float | None = None
    gmac: float | None = None
    note: str = ""

    def key(self) -> tuple[Any, ...]:
        """What identifies the row across runs (suite, target, graph, batch, variant, image, strategy, output)."""
        return (self.suite, self.target, self.graph, self.batch, self.variant, self.image, self.strategy, self.output,
                self.library)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; non-finite floats become None."""
        return {k: _finite(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """Parse a row; unknown keys are ignored (rows written by a newer version), missing ones take defaults.

        Raises:
            UsageError: a required field (``suite``, ``target``) is missing.
        """
        if "suite" not in data or "target" not in data:
            raise UsageError(f"a benchmark row needs 'suite' and 'target', got keys {sorted(data)[:10]}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Measurement))
"""CSV columns, in order."""


def target_row(suite: Suite, target: Any, **fields: Any) -> Measurement:
    """A row of ``target`` (a :class:`sgjnd.bench.config.Target`): its name, backend, precision and device filled."""
    return Measurement(suite=suite, target=target.name, backend=target.backend, precision=target.precision,
                       device=target.device, **fields)


def skipped(suite: Suite, target: Any, reason: str, **fields: Any) -> Measurement:
    """A SKIPPED row of ``target`` (a :class:`sgjnd.bench.config.Target`) with ``reason``."""
    return target_row(suite, target, status="skipped", reason=reason, **fields)


@dataclass
class BenchRun:
    """A whole run: what was measured, where, with what, and the rows.

    Attributes:
        profile: the config's profile name.
        config: the config as plain data.
        model: model facts (name, weights statement, checkpoint sha256, patch size, MACs per patch).
        environment: machine and library facts (CPU model and flags, GPU, driver, versions, threads).
        rows: the measurements.
        notes: remarks for the report (untrained weights, caps, CPU without VNNI, ...).
        started: ISO time the run began.
        duration_s: wall time of the run.
        files: artifacts written (report, plots), relative to the output directory.
    """

    profile: str
    config: dict[str, Any]
    model: dict[str, Any]
    environment: dict[str, Any]
    rows: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: str = ""
    duration_s: float = 0.0
    files: dict[str, str] = field(default_factory=dict)

    def select(self, suite: Suite | None = None, **equal: Any) -> list[Measurement]:
        """Rows of ``suite`` whose fields equal ``equal`` (e.g. ``select("latency", graph="encoder")``)."""
        return [
            r for r in self.rows
            if (suite is None or r.suite == suite) and all(getattr(r, k) == v for k, v in equal.items())
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "format": RUN_FORMAT,
            "tool": "sgjnd bench",
            "profile": self.profile,
            "started": self.started,
            "duration_s": round(self.duration_s, 3),
            "model": self.model,
            "environment": self.environment,
            "notes": list(self.notes),
            "config": self.config,
            "files": dict(self.files),
            "rows": [r.to_dict() for r in self.rows],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchRun:
        """Parse a run written by :meth:`to_dict`.

        Raises:
            UsageError: not a run of a supported format.
        """
        if not isinstance(data, dict) or data.get("tool") != "sgjnd bench" or not isinstance(data.get("rows"), list):
            raise UsageError("not an sgjnd bench result: expected a JSON object with tool 'sgjnd bench' and rows")
        if data.get("format") != RUN_FORMAT:
            raise UsageError(f"bench result format {data.get('format')!r} is not supported: expected {RUN_FORMAT}")
        return cls(
            profile=str(data.get("profile", "")),
            config=dict(data.get("config", {})),
            model=dict(data.get("model", {})),
            environment=dict(data.get("environment", {})),
            rows=[Measurement.from_dict(r) for r in data["rows"]],
            notes=[str(n) for n in data.get("notes", [])],
            started=str(data.get("started", "")),
            duration_s=float(data.get("duration_s", 0.0)),
            files=dict(data.get("files", {})),
        )


def read_run(path: Path) -> BenchRun:
    """Read a ``bench.json`` written by ``sgjnd bench``.

    Raises:
        UsageError: the file is missing, not JSON, or not a bench result.
    """
    path = Path(path)
    data = read_json(path, missing=f"no bench result at {path}: give the bench.json of an earlier `sgjnd bench` run")
    try:
        return BenchRun.from_dict(data)
    except (UsageError, TypeError, ValueError) as exc:
        raise UsageError(f"{path}: {exc}") from exc


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

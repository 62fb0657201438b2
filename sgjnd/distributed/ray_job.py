"""Distributed scoring on Ray Data: the same job on a laptop (a local Ray instance) or on a multi-node GPU cluster.

The images are read with ``ray.data.read_binary_files(..., include_paths=True)``; ``map_batches`` runs
:class:`JNDScorer`, a stateful callable class, on a pool of actors that each load the model once (sized by
``num_cpus`` or ``num_gpus`` per actor); the driver streams the records into one results file (``.jsonl`` or
``.parquet``), written to a temporary file and renamed.

Records are those of ``sgjnd predict --out``: ``source``, ``path``, ``sha256`` and ``JNDResult.to_dict()``, or
``error``/``error_type``/``exit_code`` for a file that failed; a failing file never stops the job. The model is
shipped to the actors through Ray's object store by default (``ship_model``), so the workers need only sgjnd
installed, not the model files; its sidecar hashes are checked again where it is loaded.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sgjnd.errors import BackendError, ImageError, SgjndError, UsageError
from sgjnd.runtime.predictor import PredictConfig
from sgjnd.runtime.source import ModelSource, concrete_source, open_source

log = logging.getLogger(__name__)

OUTPUT_SUFFIXES: tuple[str, ...] = (".jsonl", ".parquet")
"""Results file formats, chosen by the suffix of ``out``."""

LOCAL = "local"
"""The address that starts a private Ray instance on this machine (as does None)."""

_SHIP_LIMIT = 4 << 30  # bytes: beyond this, put the model on shared storage instead


@dataclass(frozen=True)
class RayJobConfig:
    """How the job runs on Ray.

    Attributes:
        address: the cluster (``auto``: the one this machine belongs to, ``ray://HEAD:10001``, ``HOST:6379``);
            None or ``local`` starts a private local instance (reused when Ray is already initialised).
        num_cpus: CPUs reserved per actor; also the actor's intra-op threads.
        num_gpus: GPUs reserved per actor (e.g. 1, or 0.5 to pack two actors on a GPU); 0 for CPU actors.
        actors: size of the actor pool; None sizes it from the cluster: GPUs / num_gpus, or CPUs / num_cpus less
            one CPU kept for reading files.
        batch_size: images per ``map_batches`` call.
        ship_model: send the model's files to the actors through the object store; False loads it from the same
            path on every node (shared storage).
        local_cpus: CPUs of a private local instance; None uses all of this machine's.
    """

    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    actors: int | None = None
    batch_size: int = 4
    ship_model: bool = True
    local_cpus: int | None = None

    def __post_init__(self) -> None:
        if not self.num_cpus > 0:
            raise UsageError(f"CPUs per actor must be > 0, got {self.num_cpus!r}")
        if not self.num_gpus >= 0:
            raise UsageError(f"GPUs per actor must be >= 0, got {self.num_gpus!r}")
        if self.actors is not None and self.actors < 1:
            raise UsageError(f"actors must be at least 1 (or None to size from the cluster), got {self.actors}")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1 image, got {self.batch_size}")


@dataclass
class RaySummary:
    """What a run did."""

    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    out: str = ""
    actors: int = 0
    exit_codes: set[int] = field(default_factory=set)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed; the failures' exit code when they share one; 1 when they differ."""
        if not self.failed:
            return 0
        return next(iter(self.exit_codes)) if len(self.exit_codes) == 1 else 1

    def line(self) -> str:
        """``12 done, 1 failed in 4.2 s on 3 actors -> out``."""
        return f"{self.done} done, {self.failed} failed in {self.seconds:.1f} s on {self.actors} actors -> {self.out}"


# -- the actor --------------------------------------------------------------------------------------------------


def pack_model(source: ModelSource) -> dict[str, bytes]:
    """The files of ``source`` the backend needs (graphs or checkpoint with their sidecars), by file name.

    Raises:
        SpecError: the model directory or checkpoint is missing.
        UsageError: the files are larger than the object store should carry.
    """
    from sgjnd.runtime.modeldir import artifact_name, require_model_dir

    source = concrete_source(source)
    location = Path(str(source.location))
    if source.backend == "torch":
        if not location.is_file():
            raise UsageError(f"{location}: no such checkpoint; expected a .pt written by sgjnd (with its .json)")
        names = [location.name, location.name + ".json"]
        folder = location.parent
    else:
        folder = require_model_dir(location, rebuild_hint=f"sgjnd export CHECKPOINT -o {location}")
        precision = source.precision or "fp32"
        stems = [artifact_name(g, precision, ext) for g in ("encoder", "head") for ext in ("onnx", "engine")]
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and any(p.name.startswith(s) for s in stems))
    files = {name: (folder / name).read_bytes() for name in names if (folder / name).is_file()}
    size = sum(len(b) for b in files.values())
    if size > _SHIP_LIMIT:
        raise UsageError(
            f"the model's files are {size / 2**30:.1f} GiB, too large to ship through Ray's object store; put the "
            f"model on storage every node sees and run with ship_model=False (CLI: --ray-shared-model)"
        )
    return files


class JNDScorer:
    """The ``map_batches`` callable: loads the model once per actor, scores a batch of files per call.

    Args:
        source: the model; its ``location`` is used as is unless ``packed`` is given.
        predict: prediction settings.
        packed: the model's files (from :func:`pack_model`, or an ObjectRef to them), unpacked into a temporary
            folder on the actor's node.
        threads: intra-op threads of the backend.
    """

    def __init__(
        self, source: ModelSource, predict: PredictConfig, packed: Any = None, threads: int | None = None
    ) -> None:
        from sgjnd.runtime.predictor import JNDPredictor

        source = concrete_source(source)
        location = Path(str(source.location))
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if packed is not None:
            files = _resolve(packed)
            self._tmp = tempfile.TemporaryDirectory(prefix="sgjnd-model-")
            folder = Path(self._tmp.name)
            for name, data in files.items():
                (folder / name).write_bytes(data)
            location = folder / location.name if source.backend == "torch" else folder
        options = dict(source.options)
        if options.get("threads") is None and source.backend != "torch":
            options["threads"] = threads
        self._models = open_source(ModelSource(source.backend, location, source.precision, options)).__enter__()
        self.predictor = JNDPredictor(self._models, predict)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Score the files of ``batch`` (columns ``bytes`` and ``path``); one JSON record per file."""
        records = [self.score(bytes(data), str(path)) for data, path in zip(batch["bytes"], batch["path"], strict=True)]
        return {"record": np.array(records, dtype=object)}

    def score(self, data: bytes, path: str) -> str:
        """The JSON record of one file (a result, or the reason it failed)."""
        from sgjnd.fileio import sha256_bytes
        from sgjnd.jobs.results_log import json_safe
        from sgjnd.jobs.runner import INTERNAL_ERROR, name_source

        key = _key(path)
        base: dict[str, Any] = {"source": path, "path": key, "sha256": sha256_bytes(data)}
        try:
            record = {**base, **self.predictor.predict(data, source=path).to_dict()}
        except SgjndError as exc:
            exc = name_source(exc, Path(path))
            record = {**base, "error": str(exc), "error_type": type(exc).__name__, "exit_code": exc.exit_code}
        except Exception as exc:  # a bug must fail its file, not the job; it is recorded for a report
            log.exception("unexpected error on %s", path)
            record = {**base, "error": f"{type(exc).__name__}: {exc}", "error_type": INTERNAL_ERROR, "exit_code": 1}
        return json.dumps(json_safe(record), allow_nan=False)

    def __del__(self) -> None:
        models = getattr(self, "_models", None)
        if models is not None:
            models.__exit__(None, None, None)
        if getattr(self, "_tmp", None) is not None:
            self._tmp.cleanup()  # type: ignore[union-attr]


def _resolve(packed: Any) -> dict[str, bytes]:
    if isinstance(packed, dict):
        return packed
    import ray

    files: dict[str, bytes] = ray.get(packed)  # an ObjectRef nested in the constructor arguments
    return files


def require_ray() -> None:
    """Check that Ray Data and pyarrow are installed.

    Raises:
        UsageError: naming the extra that installs them.
    """
    try:
        importlib.import_module("pyarrow")
        importlib.import_module("ray.data")
    except ImportError as exc:
        raise UsageError(
            f"--ray needs Ray Data and pyarrow, which are not installed ({exc}). Install them with: "
            f"pip install 'sgjnd[ray]'"
        ) from exc


def _key(path: str) -> str:
    """The record's ``path``: absolute for local files (as ``sgjnd predict`` records it), the URI otherwise."""
    return path if "://" in path else os.path.abspath(path)


# -- the driver -------------------------------------------------------------------------------------------------


def _connect(job: RayJobConfig) -> bool:
    """Initialise Ray for ``job``; True when this call started it (and should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    if job.address in (None, LOCAL):
        ray.init(num_cpus=job.local_cpus, include_dashboard=False, configure_logging=False, log_to_driver=False)
    else:
        ray.init(address=job.address, configure_logging=False)
    return True


def pool_size(job: RayJobConfig, resources: Mapping[str, float]) -> int:
    """Actors for ``job`` on a cluster with ``resources`` (``ray.cluster_resources()``).

    Raises:
        UsageError: GPU actors were asked for on a cluster without GPUs.
    """
    if job.actors is not None:
        return job.actors
    if job.num_gpus > 0:
        gpus = resources.get("GPU", 0.0)
        if gpus < job.num_gpus:
            raise UsageError(
                f"{job.num_gpus} GPU(s) per actor asked for, but the Ray cluster has {gpus:g} GPUs; use --num-gpus 0 "
                f"for CPU actors or connect to a cluster with GPUs"
            )
        return max(1, int(gpus // job.num_gpus))
    cpus = resources.get("CPU", 1.0)
    return max(1, int((cpus - 1) // job.num_cpus))  # one CPU stays free for the read tasks


def _split_inputs(inputs: Sequence[Path | str], exclude: Sequence[Path]) -> tuple[list[str], list[str], list[str]]:
    """(local files to read, remote URIs, local files that are missing) from files, folders, lists and URIs."""
    from sgjnd.jobs.inputs import expand_inputs

    local_args = [Path(a) for a in inputs if "://" not in str(a)]
    uris = [str(a) for a in inputs if "://" in str(a)]
    files: list[str] = []
    missing: list[str] = []
    for item in expand_inputs(local_args, exclude=exclude):
        (files if item.path.is_file() else missing).append(str(item.path))
    return files, uris, missing


def predict_on_ray(
    inputs: Sequence[Path | str],
    out: Path,
    *,
    source: ModelSource,
    predict: PredictConfig | None = None,
    job: RayJobConfig | None = None,
) -> RaySummary:
    """Score every image that ``inputs`` name on Ray and write one record per file to ``out``.

    Args:
        inputs: image files, folders (searched recursively), ``.txt`` lists, and URIs Ray can read
            (``s3://bucket/prefix``, ``gs://...``; filtered by image suffix).
        out: the results file, ``.jsonl`` or ``.parquet``; must not exist yet.
        source: the model.
        predict: prediction settings; None uses the defaults.
        job: how to run on Ray; None starts a local instance.

    Returns:
        Counts and time.

    Raises:
        UsageError: bad output path or settings, or no image found.
        SgjndError: the model cannot be opened (checked on the driver before Ray starts) or an actor could not
            load it.
    """
    require_ray()
    import ray
    import ray.data

    from sgjnd.jobs.inputs import IMAGE_SUFFIXES

    job = job or RayJobConfig()
    predict = predict or PredictConfig()
    source = concrete_source(source)
    out = Path(out)
    _check_output(out)
    files, uris, missing = _split_inputs(inputs, exclude=[out])
    if not files and not uris and not missing:
        raise UsageError(f"no image files found in {', '.join(str(a) for a in inputs[:3])}")
    check_model(source)
    packed = pack_model(source) if job.ship_model else None
    start = time.perf_counter()
    started = _connect(job)
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    try:
        summary = RaySummary(out=str(out))
        summary.actors = pool_size(job, ray.cluster_resources())
        records: Iterable[str] = iter(())
        if files or uris:
            ctx.execution_options.preserve_order = True  # the same inputs give the same file
            ctx.enable_progress_bars = False
            extensions = sorted(
                {s.lstrip(".") for s in IMAGE_SUFFIXES} | {s.lstrip(".").upper() for s in IMAGE_SUFFIXES}
            )
            dataset = ray.data.read_binary_files(
                files + uris, include_paths=True, file_extensions=extensions if uris else None
            )
            threads = max(1, int(job.num_cpus))
            dataset = dataset.map_batches(
                JNDScorer,
                fn_constructor_args=(source, predict, ray.put(packed) if packed is not None else None, threads),
                batch_size=job.batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=summary.actors),
                num_cpus=job.num_cpus,
                num_gpus=job.num_gpus or None,
                udf_modifying_row_count=False,
            )
            records = (str(row["record"]) for row in dataset.iter_rows())
        for record in write_results(out, _chain(records, _missing_records(missing))):
            if "error" in record:
                summary.failed += 1
                summary.exit_codes.add(int(record.get("exit_code") or 1))
            else:
                summary.done += 1
    except ray.exceptions.RayError as exc:
        # An actor that cannot start (no GPU there, a model that fails its hash check) fails the whole job.
        cause = _sgjnd_cause(exc)
        if cause is not None:
            raise cause from exc
        raise BackendError(f"the Ray job failed: {type(exc).__name__}: {exc}") from exc
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
        if started:
            ray.shutdown()
    summary.seconds = time.perf_counter() - start
    return summary


def check_model(source: ModelSource) -> None:
    """Open (not load) the model on the driver, so that a wrong path or sidecar fails before Ray starts.

    Raises:
        SgjndError: the model's files are missing or their sidecars disagree.
    """
    open_source(source)


def _sgjnd_cause(exc: BaseException) -> SgjndError | None:
    """The sgjnd error behind a Ray error (Ray wraps what an actor raised), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, SgjndError):
            return current
        seen.add(id(current))
        nested = getattr(current, "cause", None)
        current = nested if isinstance(nested, BaseException) else current.__cause__
    return None


def _chain(*parts: Iterable[str]) -> Iterator[str]:
    for part in parts:
        yield from part


def _missing_records(paths: Iterable[str]) -> Iterator[str]:
    for path in paths:
        error = ImageError(f"{path}: no such file; expected the path of an image file")
        record = {
            "source": path, "path": _key(path), "sha256": None,
            "error": str(error), "error_type": type(error).__name__, "exit_code": error.exit_code,
        }  # fmt: skip
        yield json.dumps(record)


def _check_output(out: Path) -> None:
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UsageError(f"--out must end in {' or '.join(OUTPUT_SUFFIXES)} for a Ray run, got {out.name!r}")
    if out.exists():
        raise UsageError(
            f"{out} exists: Ray runs write a new results file and do not resume; move it away or choose another --out"
        )
    if not out.parent.is_dir():
        raise UsageError(f"the folder of --out, {out.parent}, does not exist; create it first")


# -- results files ----------------------------------------------------------------------------------------------

PARQUET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("source", "string"), ("path", "string"), ("sha256", "string"), ("status", "string"),
    ("jnd_qf", "int32"), ("recommended_qf", "int32"), ("width", "int32"), ("height", "int32"),
    ("psnr_db", "float64"), ("jpeg_bytes", "int64"), ("encoder_passes", "int64"), ("strategy", "string"),
    ("backend", "string"), ("weights", "string"), ("scores_json", "string"), ("record_json", "string"),
    ("error", "string"), ("error_type", "string"), ("exit_code", "int32"),
)  # fmt: skip
"""Columns of a ``.parquet`` results file: the scalar fields, ``scores_json`` (S per QF) and the whole record."""


def write_results(out: Path, records: Iterable[str], *, rows_per_group: int = 1024) -> Iterator[dict[str, Any]]:
    """Write JSON ``records`` to ``out`` (``.jsonl``: one per line; ``.parquet``: :data:`PARQUET_COLUMNS`).

    The file appears, complete, only when every record is written (temporary file, then rename). Each record is
    yielded back, parsed, once written.
    """
    from sgjnd.fileio import atomic_output

    tmp = atomic_output(out)
    try:
        if out.suffix.lower() == ".parquet":
            yield from _write_parquet(tmp, records, rows_per_group)
        else:
            with open(tmp, "w", encoding="utf-8") as fh:
                for text in records:
                    fh.write(text + "\n")
                    yield json.loads(text)
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _write_parquet(tmp: Path, records: Iterable[str], rows_per_group: int) -> Iterator[dict[str, Any]]:
    # pyarrow ships no type information: its modules are typed Any here.
    pa: Any = importlib.import_module("pyarrow")
    pq: Any = importlib.import_module("pyarrow.parquet")

    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in PARQUET_COLUMNS])
    rows: list[dict[str, Any]] = []
    with pq.ParquetWriter(str(tmp), schema) as writer:
        for text in records:
            record = json.loads(text)
            row = {name: record.get(name) for name, _ in PARQUET_COLUMNS}
            row["status"] = "failed" if "error" in record else "done"
            row["scores_json"] = json.dumps(record["scores"]) if "scores" in record else None
            row["record_json"] = text
            rows.append(row)
            yield record
            if len(rows) >= rows_per_group:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                rows.clear()
        if rows:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))


def read_results(path: Path) -> list[dict[str, Any]]:
    """The records of a results file written by :func:`write_results` (either format), in file order."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        pq: Any = importlib.import_module("pyarrow.parquet")

        return [json.loads(text) for text in pq.read_table(str(path), columns=["record_json"]).column(0).to_pylist()]
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# -- the CLI's side ---------------------------------------------------------------------------------------------


def add_ray_args(parser: Any) -> None:
    """The ``sgjnd predict`` options of a Ray run (``--ray [ADDRESS]`` and the actor sizing)."""
    defaults = RayJobConfig()
    group = parser.add_argument_group("distributed (Ray)")
    group.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL,
        default=None,
        metavar="ADDRESS",
        help="score on Ray Data and write --out (.parquet or .jsonl): a local instance, or the cluster at ADDRESS "
        "(auto, ray://HEAD:10001, HOST:6379)",
    )
    group.add_argument("--ray-cpus", type=float, default=defaults.num_cpus, help="CPUs (and threads) per actor")
    group.add_argument("--ray-gpus", type=float, default=defaults.num_gpus, help="GPUs per actor (0: CPU actors)")
    group.add_argument(
        "--ray-actors", type=int, default=defaults.actors, help="actors (default: from the cluster's CPUs or GPUs)"
    )
    group.add_argument("--ray-batch", type=int, default=defaults.batch_size, help="images per actor call")
    group.add_argument(
        "--ray-shared-model",
        action="store_true",
        help="load the model from its path on every node (shared storage) instead of shipping it to the actors",
    )


def split_ray_argument(value: str, images: Sequence[Path]) -> tuple[str, list[Path]]:
    """Tell ``--ray ADDRESS`` from ``--ray`` followed by an image argument that argparse took as the address.

    ``--ray`` takes an optional value, so ``sgjnd predict --ray photos/ --out r.parquet`` gives ``photos/`` as
    the address. A value that is ``auto``, ``local`` or contains ``:`` (``ray://HEAD:10001``, ``HOST:6379``) is an
    address; anything else is an input, and the run is local.

    Returns:
        (address, inputs).
    """
    if value in ("auto", LOCAL) or ":" in value:
        return value, list(images)
    return LOCAL, [Path(value), *images]


def ray_job_config_from_args(args: Any, address: str) -> RayJobConfig:
    """The RayJobConfig of ``sgjnd predict --ray`` (the Ray options are optional on ``args``)."""
    defaults = RayJobConfig()
    return RayJobConfig(
        address=address,
        num_cpus=getattr(args, "ray_cpus", defaults.num_cpus),
        num_gpus=getattr(args, "ray_gpus", defaults.num_gpus),
        actors=getattr(args, "ray_actors", None),
        batch_size=getattr(args, "ray_batch", defaults.batch_size),
        ship_model=not getattr(args, "ray_shared_model", False),
    )


__all__ = [
    "JNDScorer",
    "ModelSource",
    "RayJobConfig",
    "RaySummary",
    "add_ray_args",
    "pack_model",
    "pool_size",
    "predict_on_ray",
    "read_results",
    "require_ray",
    "split_ray_argument",
    "write_results",
]

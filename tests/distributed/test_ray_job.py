"""Distributed scoring: the Ray Data job gives the single-process results, file by file; its pieces on their own."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from sgjnd.distributed.ray_job import (
    JNDScorer,
    ModelSource,
    RayJobConfig,
    pack_model,
    pool_size,
    predict_on_ray,
    read_results,
    split_ray_argument,
    write_results,
)
from sgjnd.errors import UsageError
from sgjnd.runtime.backends.registry import open_model
from sgjnd.runtime.predictor import JNDPredictor, PredictConfig
from sgjnd.runtime.search import SearchConfig

PREDICT = PredictConfig(max_patches=2, search=SearchConfig(qfs=tuple(range(80, 96)), window=3))


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A small local Ray instance for this module (2 CPUs, no dashboard)."""
    ray = pytest.importorskip("ray", reason="distributed scoring needs the ray extra: pip install 'sgjnd[ray]'")
    pytest.importorskip("ray.data")
    pytest.importorskip("pyarrow")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_results_equal_the_single_process_run(
    ray_local: None, tiny_onnx_dir: Path, photos: list[Path], tmp_path: Path
) -> None:
    """Same JND QF, recommended QF and S(QF) per file; a missing file is a failed record, not a failed job."""
    out = tmp_path / "results.parquet"
    missing = tmp_path / "gone.jpg"
    summary = predict_on_ray(
        [*photos, missing],
        out,
        source=ModelSource("onnxruntime", tiny_onnx_dir, options={"threads": 1}),
        predict=PREDICT,
        job=RayJobConfig(actors=1, batch_size=2),
    )
    assert (summary.done, summary.failed, summary.exit_code) == (len(photos), 1, 3)
    records = {r["path"]: r for r in read_results(out)}
    assert records[str(missing)]["error_type"] == "ImageError"
    with open_model("onnxruntime", tiny_onnx_dir, threads=1) as models:
        predictor = JNDPredictor(models, PREDICT)
        for photo in photos:
            want = predictor.predict(photo.read_bytes(), source=str(photo)).to_dict()
            got = records[os.path.abspath(photo)]
            assert (got["jnd_qf"], got["recommended_qf"]) == (want["jnd_qf"], want["recommended_qf"]), photo
            assert got["scores"].keys() == want["scores"].keys()
            for qf, score in want["scores"].items():
                assert got["scores"][qf] == pytest.approx(score, abs=1e-5)
            assert got["source"] == str(photo) and len(got["sha256"]) == 64


def test_scorer_records_results_and_failures(tiny_onnx_dir: Path, photos: list[Path]) -> None:
    """The actor's class without Ray: a packed model, one record per file, a bad file recorded as failed."""
    source = ModelSource("onnxruntime", tiny_onnx_dir)
    scorer = JNDScorer(source, PREDICT, pack_model(source), threads=1)
    import numpy as np

    batch = {
        "bytes": np.array([photos[3].read_bytes(), b"not an image"], dtype=object),
        "path": np.array([str(photos[3]), "/data/bad.jpg"], dtype=object),
    }
    good, bad = (json.loads(r) for r in scorer(batch)["record"])
    assert good["path"] == os.path.abspath(photos[3]) and "scores" in good
    assert bad["error_type"] == "ImageError" and bad["error"].startswith("/data/bad.jpg")


def test_pack_model_takes_only_the_chosen_graphs(tiny_onnx_dir: Path) -> None:
    files = pack_model(ModelSource("onnxruntime", tiny_onnx_dir))
    assert sorted(files) == ["encoder.onnx", "encoder.onnx.json", "head.onnx", "head.onnx.json"]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_results_files_round_trip(tmp_path: Path, suffix: str) -> None:
    pytest.importorskip("pyarrow")
    records = [
        {"source": "a.jpg", "path": "/a.jpg", "sha256": "0" * 64, "jnd_qf": 41, "recommended_qf": 42,
         "scores": {"41": 0.4, "42": 0.6}, "width": 8, "height": 8},
        {"source": "b.jpg", "path": "/b.jpg", "sha256": None, "error": "gone", "error_type": "ImageError",
         "exit_code": 3},
    ]  # fmt: skip
    out = tmp_path / f"results{suffix}"
    written = list(write_results(out, (json.dumps(r) for r in records)))
    assert written == records
    assert read_results(out) == records
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_output_and_argument_checks(tmp_path: Path, tiny_onnx_dir: Path) -> None:
    source = ModelSource("onnxruntime", tiny_onnx_dir)
    with pytest.raises(UsageError, match=r"\.jsonl or \.parquet"):
        predict_on_ray([tmp_path], tmp_path / "results.csv", source=source)
    (tmp_path / "old.jsonl").write_text("")
    with pytest.raises(UsageError, match="exists"):
        predict_on_ray([tmp_path], tmp_path / "old.jsonl", source=source)
    assert split_ray_argument("auto", [Path("x")]) == ("auto", [Path("x")])
    assert split_ray_argument("ray://head:10001", []) == ("ray://head:10001", [])
    assert split_ray_argument("photos", [Path("more")]) == ("local", [Path("photos"), Path("more")])
    args = SimpleNamespace(ray_gpus=0.5)
    from sgjnd.distributed.ray_job import ray_job_config_from_args

    assert ray_job_config_from_args(args, "auto").num_gpus == 0.5


def test_pool_size() -> None:
    assert pool_size(RayJobConfig(), {"CPU": 2.0}) == 1
    assert pool_size(RayJobConfig(num_cpus=2), {"CPU": 33.0}) == 16
    assert pool_size(RayJobConfig(num_gpus=1), {"CPU": 64.0, "GPU": 8.0}) == 8
    assert pool_size(RayJobConfig(num_gpus=0.5, actors=3), {"GPU": 8.0}) == 3
    with pytest.raises(UsageError, match="has 0 GPUs"):
        pool_size(RayJobConfig(num_gpus=1), {"CPU": 8.0})


def predict_like_parser() -> argparse.ArgumentParser:
    """The arguments `sgjnd predict` has, plus the Ray options it gets from add_ray_args."""
    from sgjnd.commands._args import add_model_args, add_predict_args
    from sgjnd.distributed.ray_job import add_ray_args

    parser = argparse.ArgumentParser()
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--out", type=Path)
    add_model_args(parser)
    add_predict_args(parser)
    add_ray_args(parser)
    return parser


def test_cli_arguments_reach_the_job_and_are_checked_before_ray_starts(tmp_path: Path, tiny_onnx_dir: Path) -> None:
    from sgjnd.commands.predict import predict_on_ray_from_args

    parser = predict_like_parser()
    (tmp_path / "old.parquet").write_text("")
    model = ["--backend", "onnxruntime", "--model", str(tiny_onnx_dir)]
    # `--ray DIR1 DIR2`: argparse takes DIR1 as the address; the job takes it back as an input.
    args = parser.parse_args(["--ray", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "old.parquet"), *model])
    assert split_ray_argument(args.ray, args.images) == ("local", [tmp_path, tmp_path])
    with pytest.raises(UsageError, match="exists"):
        predict_on_ray_from_args(args)
    with pytest.raises(UsageError, match="needs --out"):
        predict_on_ray_from_args(parser.parse_args([str(tmp_path), "--ray", *model]))
    args = parser.parse_args([str(tmp_path), "--ray", "auto", "--ray-gpus", "1", "--ray-actors", "4", *model])
    from sgjnd.distributed.ray_job import ray_job_config_from_args

    job = ray_job_config_from_args(args, "auto")
    assert (job.address, job.num_gpus, job.actors, job.ship_model) == ("auto", 1.0, 4, True)


def test_model_problems_surface_as_sgjnd_errors(tmp_path: Path) -> None:
    from sgjnd.distributed.ray_job import _sgjnd_cause
    from sgjnd.errors import SpecError

    pytest.importorskip("ray")
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG")
    with pytest.raises(SpecError, match="does not exist"):  # checked on the driver, before Ray starts
        predict_on_ray([image], tmp_path / "r.jsonl", source=ModelSource("onnxruntime", tmp_path / "nowhere"))
    inner = SpecError("hash mismatch")
    wrapper = RuntimeError("actor died")
    wrapper.cause = inner  # type: ignore[attr-defined]  # as Ray's RayTaskError carries it
    outer = ValueError("task failed")
    outer.__cause__ = wrapper
    assert _sgjnd_cause(outer) is inner
    assert _sgjnd_cause(ValueError("plain")) is None

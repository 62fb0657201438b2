"""Profiles and JSON configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sgjnd.bench.config import (
    PROFILES,
    REFERENCE,
    BenchConfig,
    Target,
    config_from_dict,
    dump_config,
    load_config,
    profile_config,
)
from sgjnd.errors import UsageError

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_benchmark_json_files_equal_the_builtin_profiles(name):
    """benchmarks/<profile>.json is the profile's JSON form; regenerate with `sgjnd bench --profile X --dump-config`."""
    path = BENCHMARKS / f"{name}.json"
    assert load_config(path) == PROFILES[name], f"regenerate: sgjnd bench --profile {name} --dump-config > {path}"
    assert path.read_text() == dump_config(PROFILES[name])


def test_round_trip_and_partial_config(tmp_path):
    full = PROFILES["full"]
    assert config_from_dict(json.loads(dump_config(full))) == full
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"model": "sgjnd_tiny", "batch_sizes": [1, 2], "iters": 4}))
    config = load_config(path)
    assert config.batch_sizes == (1, 2) and config.iters == 4 and config.warmup == BenchConfig().warmup


def test_profiles_use_the_documented_models():
    assert profile_config("quick").model == "sgjnd_tiny"
    full = profile_config("full")
    assert full.model == "sgjnd_r50"
    assert full.batches_for(full.target("torch/fp32")) == (1, 8, 16, 32)  # CPU capped at 32
    assert full.batches_for(full.target("trt/fp16")) == (1, 8, 16, 32, 64)


def test_e2e_plan_runs_full_once():
    plan = PROFILES["full"].e2e_plan()
    assert [t.name for t, s in plan if s == "full"] == ["ort-cpu/fp32"]
    assert {t.name for t, s in plan if s == "coarse-to-fine"} == {t.name for t in PROFILES["full"].targets}


@pytest.mark.parametrize(
    "data, words",
    [
        ({"iterations": 3}, "unknown benchmark config field"),
        ({"batch_sizes": [8, 1]}, "ascending"),
        ({"targets": [{"name": "ort", "backend": "onnxruntime"}]}, REFERENCE),
        ({"e2e_strategies": {"fast": ["*"]}}, "unknown search strategy"),
        ({"e2e_strategies": {"full": ["nope"]}}, "unknown targets"),
        ({"targets": [{"name": REFERENCE, "backend": "torch", "gpu": True}]}, "unknown target field"),
    ],
)
def test_invalid_configs_say_what_is_wrong(data, words):
    with pytest.raises(UsageError, match=words):
        config_from_dict(data)


def test_unknown_profile_and_missing_file(tmp_path):
    with pytest.raises(UsageError, match="quick, full"):
        profile_config("medium")
    with pytest.raises(UsageError, match="no benchmark config"):
        load_config(tmp_path / "none.json")


def test_target_is_plain_data():
    t = Target("x/fp32", "onnxruntime", providers=("cpu",))
    assert t.device == "cpu" and t.precision == "fp32"

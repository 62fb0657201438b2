"""The calibration cache: every input is in the key, stale or damaged entries are never reused, and a memoised step
runs once per content."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from sgjnd.calibration.cache import CalibrationCache, cache_key, cached_step, key_parts, tool_versions
from sgjnd.errors import CalibrationError
from sgjnd.spec import JpegSettings, ModelSpec

SPEC = ModelSpec(name="sgjnd_tiny", patch_size=64, feature_dim=128)


def parts(**changes) -> dict:
    base = {
        "kind": "encoder-ranges",
        "graph_sha256": "a" * 64,
        "spec": SPEC,
        "data_sha256": "b" * 64,
        "settings": {"method": "entropy", "op_types": ["Conv"], "num_bins": 2048},
        "versions": {"onnxruntime": "1.32.0", "onnx": "1.23.2", "sgjnd": "0.1.0"},
    }
    base.update(changes)
    return key_parts(**base)


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "head-ranges"},
        {"graph_sha256": "c" * 64},
        {"spec": dataclasses.replace(SPEC, mean=(0.5, 0.5, 0.5))},
        {"spec": dataclasses.replace(SPEC, std=(0.5, 0.5, 0.5))},
        {"spec": dataclasses.replace(SPEC, channel_order="bgr")},
        {"spec": dataclasses.replace(SPEC, patch_size=96)},
        {"spec": dataclasses.replace(SPEC, jpeg=JpegSettings(subsampling="444"))},
        {"data_sha256": "d" * 64},
        {"settings": {"method": "minmax", "op_types": ["Conv"], "num_bins": 2048}},
        {"settings": {"method": "entropy", "op_types": ["Conv", "MatMul"], "num_bins": 2048}},
        {"settings": {"method": "entropy", "op_types": ["Conv"], "num_bins": 1024}},
        {"versions": {"onnxruntime": "1.33.0", "onnx": "1.23.2", "sgjnd": "0.1.0"}},
        {"versions": {"onnxruntime": "1.32.0", "onnx": "1.23.2", "sgjnd": "0.2.0"}},
    ],
)
def test_key_changes_when_any_input_changes(change: dict) -> None:
    assert cache_key(parts(**change)) != cache_key(parts())


def test_key_is_stable() -> None:
    assert cache_key(parts()) == cache_key(parts())
    assert "onnxruntime" in tool_versions() and "sgjnd" in tool_versions()


def test_reused_when_nothing_changes(tmp_path: Path) -> None:
    cache = CalibrationCache.for_model_dir(tmp_path)
    assert cache.get(parts(), ("ranges.json",)) is None
    stored = cache.put(parts(), {"ranges.json": b'{"x": 1}'})
    hit = cache.get(parts(), ("ranges.json",))
    assert hit == stored and hit["ranges.json"].read_bytes() == b'{"x": 1}'
    assert hit["ranges.json"].parent.parent == tmp_path / ".calibration-cache"
    assert cache.get(parts(data_sha256="e" * 64), ("ranges.json",)) is None


def test_damaged_entry_is_not_reused(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path)
    stored = cache.put(parts(), {"ranges.json": b"{}"})
    stored["ranges.json"].write_bytes(b'{"tampered": true}')
    assert cache.get(parts(), ("ranges.json",)) is None
    # A manifest that records other parts under this key (a collision or a hand edit) is a miss too.
    cache.put(parts(), {"ranges.json": b"{}"})
    manifest = cache.entry_dir(cache_key(parts())) / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["parts"]["data_sha256"] = "f" * 64
    manifest.write_text(json.dumps(doc))
    assert cache.get(parts(), ("ranges.json",)) is None
    # Storing again replaces the bad entry; no temporary folder is left behind.
    cache.put(parts(), {"ranges.json": b"{}"})
    assert cache.get(parts(), ("ranges.json",)) is not None
    assert [p.name for p in tmp_path.iterdir()] == [cache_key(parts())]


def test_cached_step_computes_once_per_content(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path / "cache")
    work = tmp_path / "work"
    work.mkdir()
    calls: list[Path] = []

    def step(out: Path) -> None:
        calls.append(out)
        out.write_bytes(b'{"ranges": 1}')

    first = cached_step(cache, "ranges.json", parts(), step, work=work)
    assert len(calls) == 1 and first.read_bytes() == b'{"ranges": 1}'
    assert first.parent == cache.entry_dir(cache_key(parts())) and cache.hits == {}
    again = cached_step(cache, "ranges.json", parts(), step, work=work)
    assert again == first and len(calls) == 1  # reused, not recomputed
    assert cache.hits == {"encoder-ranges": cache_key(parts())}
    cached_step(cache, "ranges.json", parts(data_sha256="e" * 64), step, work=work)
    assert len(calls) == 2  # other data: another key, computed again


def test_cached_step_without_a_cache_always_computes(tmp_path: Path) -> None:
    calls = 0

    def step(out: Path) -> None:
        nonlocal calls
        calls += 1
        out.write_bytes(b"{}")

    for _ in range(2):
        result = cached_step(None, "ranges.json", parts(), step, work=tmp_path)
        assert result.parent == tmp_path and result.read_bytes() == b"{}"
    assert calls == 2 and not (tmp_path / ".calibration-cache").exists()


def test_cached_step_refuses_a_step_that_wrote_nothing(tmp_path: Path) -> None:
    cache = CalibrationCache(tmp_path / "cache")
    with pytest.raises(CalibrationError, match="wrote no"):
        cached_step(cache, "ranges.json", parts(), lambda out: None, work=tmp_path)
    assert cache.get(parts(), ("ranges.json",)) is None

"""Golden outputs: the bundled photos through the demo checkpoint give the JNDs and S(QF) recorded in
tests/golden/demo_predictions.json, on the PyTorch reference and on ONNX Runtime FP32.

Any change to decoding, patches, JPEG trials, batching or the search that moves a prediction fails here. If the
change is intended, regenerate the file with ``python tests/golden/make_golden.py`` and say why in the commit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"
SCORE_ATOL = 1e-4  # float reductions differ across CPUs (AVX2/AVX-512) by ~1e-6; a real change moves S far more


def _golden() -> dict[str, Any]:
    return json.loads((GOLDEN_DIR / "demo_predictions.json").read_text())


def _check(backend: str, got: dict[str, dict[str, Any]]) -> None:
    want = _golden()[backend]
    assert sorted(got) == sorted(want)
    for photo, expected in want.items():
        actual = got[photo]
        assert (actual["jnd_qf"], actual["recommended_qf"]) == (expected["jnd_qf"], expected["recommended_qf"]), photo
        assert sorted(actual["scores"], key=int) == sorted(expected["scores"], key=int), f"{photo}: evaluated QFs"
        worst = max(abs(actual["scores"][q] - expected["scores"][q]) for q in expected["scores"])
        assert worst <= SCORE_ATOL, f"{photo}: S(QF) moved by {worst:.2e} on {backend}"


def _make_golden() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN_DIR / "make_golden.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_torch_reference_matches_golden() -> None:
    make_golden = _make_golden()
    _check("torch", make_golden.predictions("torch", make_golden.CHECKPOINT))


def test_onnxruntime_matches_golden(demo_onnx_dir: Path) -> None:
    _check("onnxruntime", _make_golden().predictions("onnxruntime", demo_onnx_dir))


def test_golden_settings_are_the_demo_ones() -> None:
    """The golden file records the settings it was made with; a stale file (settings changed) is caught here."""
    make_golden = _make_golden()
    assert _golden()["settings"] == make_golden.SETTINGS
    assert _golden()["checkpoint"] == make_golden.CHECKPOINT.name

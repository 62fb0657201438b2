"""The comparator: metrics on known arrays, tolerances and the smallest passing one, task-level bounds, targets,
and an end-to-end torch vs ONNX Runtime comparison on the tiny model (API and CLI)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sgjnd.compare.task import TaskBound, compare_jnd, task_bound_for
from sgjnd.compare.tensors import Tolerance, compare_outputs, cosine_similarity, tolerances_for
from sgjnd.errors import UsageError
from sgjnd.runtime.predictor import PredictConfig
from sgjnd.runtime.source import ModelSource

# -- metrics on known arrays -----------------------------------------------------------------------------------


def test_known_arrays_give_known_metrics() -> None:
    ref = {"x": np.array([1.0, 2.0, 3.0, 4.0], np.float32)}
    out = {"x": np.array([1.0, 2.0, 3.0, 5.0], np.float32)}
    (c,) = compare_outputs(ref, out, Tolerance(atol=1.0))
    assert c.name == "x" and c.shape == (4,)
    assert c.max_abs == 1.0
    assert c.mean_abs == 0.25
    assert c.max_rel == 0.25
    assert c.mean_rel == pytest.approx(0.0625)
    assert c.cosine == pytest.approx(34 / math.sqrt(30 * 39))  # dot 1+4+9+20, norms² 30 and 39
    assert c.passed and c.reason == ""


def test_cosine_is_per_sample_for_batched_outputs() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    out = np.array([[1.0, 0.0], [1.0, 1.0]])  # the second row turns by 45 degrees
    (c,) = compare_outputs({"f": ref}, {"f": out}, Tolerance(atol=math.inf, min_cosine=0.8))
    assert c.cosine == pytest.approx(math.sqrt(0.5))
    assert not c.passed and "cosine" in c.reason


def test_cosine_similarity_edge_cases() -> None:
    assert cosine_similarity(np.zeros(3), np.zeros(3)) == 1.0
    assert cosine_similarity(np.zeros(3), np.ones(3)) == 0.0
    assert cosine_similarity(np.ones(3), -np.ones(3)) == -1.0


def test_perturbed_output_fails_and_reports_the_smallest_passing_tolerance() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(8, 16)).astype(np.float32)
    out = ref.copy()
    out[3, 5] += 0.05
    tol = Tolerance(atol=1e-3, rtol=1e-3)
    (c,) = compare_outputs({"features": ref}, {"features": out}, tol)
    assert not c.passed
    assert "1/128 elements outside atol/rtol" in c.reason
    assert c.max_abs == pytest.approx(0.05, rel=1e-3)
    line = c.line()
    assert line.startswith("FAIL features") and "smallest passing" in line
    # The reported tolerances are the smallest that pass: exactly them passes, a little less does not.
    for passing, failing in (
        (Tolerance(atol=c.required_atol, rtol=tol.rtol), Tolerance(atol=c.required_atol * 0.99, rtol=tol.rtol)),
        (Tolerance(atol=tol.atol, rtol=c.required_rtol), Tolerance(atol=tol.atol, rtol=c.required_rtol * 0.99)),
    ):
        assert compare_outputs({"features": ref}, {"features": out}, passing)[0].passed
        assert not compare_outputs({"features": ref}, {"features": out}, failing)[0].passed


def test_atol_scaled_by_the_reference_maximum() -> None:
    ref = np.array([100.0, -200.0, 50.0])
    out = ref + np.array([0.0, 0.015, 0.0])
    assert not compare_outputs({"f": ref}, {"f": out}, Tolerance(atol=1e-4))[0].passed
    scaled = compare_outputs({"f": ref}, {"f": out}, Tolerance(atol=1e-4, atol_scale="ref_max"))[0]
    assert scaled.passed  # 0.015 <= 1e-4 * 200
    assert scaled.required_atol == pytest.approx(0.015 / 200)


def test_zero_reference_elements_give_infinite_relative_error() -> None:
    (c,) = compare_outputs({"q": np.array([0.0, 1.0])}, {"q": np.array([1e-6, 1.0])}, Tolerance(atol=1e-5))
    assert c.passed and c.max_rel == math.inf and c.mean_rel == 0.0
    assert c.required_rtol == 0.0  # atol alone covers it
    (c,) = compare_outputs({"q": np.array([0.0, 1.0])}, {"q": np.array([1e-3, 1.0])}, Tolerance(atol=1e-5))
    assert not c.passed and c.required_rtol == math.inf  # no rtol helps an element whose reference is 0


@pytest.mark.parametrize(
    ("out", "reason"),
    [
        ({}, "missing"),
        ({"x": np.zeros((2, 3))}, "shape (2, 3), expected (3,)"),
        ({"x": np.array([1.0, np.nan, 3.0])}, "1 non-finite"),
    ],
)
def test_broken_outputs_fail_with_a_reason(out: dict[str, np.ndarray], reason: str) -> None:
    (c,) = compare_outputs({"x": np.array([1.0, 2.0, 3.0])}, out, Tolerance(atol=1.0))
    assert not c.passed and reason in c.reason
    assert c.line().startswith("FAIL x")


def test_per_output_tolerances_with_fallback() -> None:
    ref = {"q": np.array([0.5]), "w": np.array([2.0])}
    out = {"q": np.array([0.6]), "w": np.array([2.5])}
    tol = {"q": Tolerance(atol=0.2), "": Tolerance(atol=0.1)}
    q, w = compare_outputs(ref, out, tol)
    assert q.passed and q.tolerance.atol == 0.2
    assert not w.passed and w.tolerance.atol == 0.1
    with pytest.raises(UsageError, match="fallback"):
        compare_outputs(ref, out, {"q": Tolerance(atol=1.0)})


@pytest.mark.parametrize(
    "kwargs",
    [{"atol": -1.0}, {"atol": 0.0, "rtol": -0.1}, {"atol": 0.0, "min_cosine": 1.5}, {"atol": 0.0, "atol_scale": "x"}],
)
def test_invalid_tolerances_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        Tolerance(**kwargs)  # type: ignore[arg-type]


def test_default_tolerances_get_looser_with_precision() -> None:
    fp32, fp16, int8 = (tolerances_for(p)["features"] for p in ("fp32", "fp16", "int8"))
    assert fp32.atol < fp16.atol < int8.atol
    assert fp32.min_cosine > fp16.min_cosine > int8.min_cosine
    assert tolerances_for("int8-ort") == tolerances_for("int8")
    assert task_bound_for("fp32").max_abs_qf <= task_bound_for("fp16").max_abs_qf <= task_bound_for("int8").max_abs_qf
    with pytest.raises(UsageError, match="fp64"):
        tolerances_for("fp64")


finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=finite))
def test_an_output_always_matches_itself(array: np.ndarray) -> None:
    (c,) = compare_outputs({"x": array}, {"x": array.copy()}, Tolerance(atol=0.0, min_cosine=1.0))
    assert c.passed and c.max_abs == 0.0 and c.required_atol == 0.0 and c.cosine == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float64, (4, 5), elements=finite),
    hnp.arrays(np.float64, (4, 5), elements=st.floats(-1, 1, allow_nan=False)),
    st.sampled_from(["abs", "ref_max"]),
)
def test_the_reported_atol_always_passes(ref: np.ndarray, noise: np.ndarray, scale: str) -> None:
    tol = Tolerance(atol=1e-6, rtol=1e-3, atol_scale=scale)  # type: ignore[arg-type]
    (c,) = compare_outputs({"x": ref}, {"x": ref + noise}, tol)
    fitted = Tolerance(atol=c.required_atol * (1 + 1e-9) + 1e-300, rtol=tol.rtol, atol_scale=tol.atol_scale)
    assert compare_outputs({"x": ref}, {"x": ref + noise}, fitted)[0].reason.count("elements outside") == 0


# -- task level ------------------------------------------------------------------------------------------------


def test_compare_jnd_summarises_differences() -> None:
    bound = TaskBound(max_abs_qf=2, min_within_1=0.5)
    t = compare_jnd(["a", "b", "c", "d"], [50, 60, 70, None], [50, 61, 73, 1], bound, floor=0)
    assert t.mean_abs_qf == pytest.approx((0 + 1 + 3 + 1) / 4)
    assert t.worst_qf == 3
    assert t.within_1 == 0.75
    assert not t.passed  # worst case 3 > 2
    assert t.line().startswith("FAIL")
    assert compare_jnd(["a"], [40], [41], bound).passed
    with pytest.raises(UsageError):
        compare_jnd(["a"], [1, 2], [1], bound)


# -- targets ---------------------------------------------------------------------------------------------------


def test_target_parsing() -> None:
    t = ModelSource.parse("torch:models/m.pt", device="cpu")
    assert (t.backend, t.location, t.precision, dict(t.options)) == ("torch", Path("models/m.pt"), None,
                                                                     {"device": "cpu"})
    assert t.label == "torch:models/m.pt:fp32"
    t = ModelSource.parse("onnxruntime:models/r50:int8-ort")
    assert (t.location, t.precision) == (Path("models/r50"), "int8-ort")
    assert ModelSource.parse("onnxruntime:a:b").location == Path("a:b")  # not a precision: part of the path
    for bad in ("torch", "torch:", ":x", "caffe:model"):
        with pytest.raises(UsageError):
            ModelSource.parse(bad)


# -- end to end on the tiny model ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(
    tiny_checkpoint: Path, tiny_onnx_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Path]:
    """The tiny checkpoint, its ONNX export, and the export of another seed (same spec, other weights)."""
    from sgjnd.export.onnx import onnx_from_checkpoint
    from sgjnd.model import create_model, save_checkpoint

    root = tmp_path_factory.mktemp("compare_seed1")
    other = root / "seed1.pt"
    save_checkpoint(create_model("sgjnd_tiny", seed=1), other, weights="UNTRAINED: seed 1")
    return tiny_checkpoint, tiny_onnx_dir, onnx_from_checkpoint(other, root / "onnx").out_dir


def _config() -> PredictConfig:
    from sgjnd.runtime.search import SearchConfig

    return PredictConfig(search=SearchConfig(strategy="coarse-to-fine"), max_patches=4)


def test_torch_and_onnxruntime_agree(tiny: tuple[Path, Path, Path], photos: list[Path]) -> None:
    from sgjnd.compare.task import run_comparison

    ckpt, onnx_dir, _ = tiny
    report = run_comparison(photos[:2], ModelSource.parse(f"torch:{ckpt}"),
                            [ModelSource.parse(f"onnxruntime:{onnx_dir}")], max_patches=2, predict_config=_config())
    assert report.passed, report.format()
    (t,) = report.targets
    assert [c.name for c in t.tensors["encoder"]] == ["features"]
    assert [c.name for c in t.tensors["head"]] == ["q", "w"]
    assert t.task is not None and t.task.worst_qf == 0
    assert len(report.reference_qf) == 2
    assert "all targets PASS" in report.format()
    json.dumps(report.to_dict())  # serialisable as is


def test_other_weights_fail_the_comparison(tiny: tuple[Path, Path, Path], photos: list[Path]) -> None:
    from sgjnd.compare.task import run_comparison

    ckpt, _, other = tiny
    report = run_comparison(photos[:1], ModelSource.parse(f"torch:{ckpt}"), [ModelSource.parse(f"onnxruntime:{other}")],
                            max_patches=2, task=False)
    assert not report.passed
    assert not report.targets[0].tensors["encoder"][0].passed
    assert report.targets[0].task is None
    assert "FAIL onnxruntime:" in report.format()


def test_compare_cli_exit_codes_and_json(tiny: tuple[Path, Path, Path], photos: list[Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from sgjnd.cli import main

    ckpt, onnx_dir, other = tiny
    common = [str(photos[1]), "--ref", f"torch:{ckpt}", "--patches", "2", "--max-patches", "2", "--qf", "30,70"]
    out = tmp_path / "report.json"
    assert main(["compare", *common, "--target", f"onnxruntime:{onnx_dir}:fp32", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PASS onnxruntime:" in text and "JND QF" in text
    data = json.loads(out.read_text())
    assert data["passed"] is True and data["targets"][0]["tensors"]["encoder"][0]["name"] == "features"
    assert main(["compare", *common, "--no-task", "--target", f"onnxruntime:{other}"]) == 1
    assert main(["compare", *common, "--qf", "0", "--target", f"onnxruntime:{onnx_dir}"]) == 2

"""Metrics on synthetic predictions with known values, and an end-to-end evaluation through the runtime."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from sgjnd.errors import UsageError
from sgjnd.train.evaluate import (
    EvalResult,
    ImageEval,
    compute_metrics,
    pair_counts,
    pearson,
    spearman,
    summary_markdown,
    write_report,
)


def test_known_mae_within_and_correlations() -> None:
    true = [20.0, 30.0, 40.0, 50.0]
    pred = [22.0, 27.0, 40.0, 60.0]  # errors +2, -3, 0, +10
    m = compute_metrics(true, pred, psnr_true=[30, 32, 34, 36], psnr_pred=[31, 31, 34, 39], pairs=(9, 12))
    assert m["n"] == 4 and m["mae_qf"] == pytest.approx(15 / 4) and m["bias_qf"] == pytest.approx(9 / 4)
    assert m["rmse_qf"] == pytest.approx(np.sqrt((4 + 9 + 0 + 100) / 4))
    assert (m["within_1"], m["within_3"], m["within_5"], m["within_10"]) == (0.25, 0.75, 0.75, 1.0)
    assert m["plcc"] == pytest.approx(np.corrcoef(true, pred)[0, 1]) and m["srcc"] == pytest.approx(1.0)
    assert m["dpsnr_db"] == pytest.approx((1 + 1 + 0 + 3) / 4) and m["pair_acc"] == 0.75


def test_exact_predictions_and_linear_relations() -> None:
    m = compute_metrics([10, 20, 30], [10, 20, 30])
    assert m["mae_qf"] == 0 and m["plcc"] == pytest.approx(1.0) and m["within_1"] == 1.0
    assert pearson([1, 2, 3], [5, 3, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)  # ties get average ranks
    assert spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)  # monotone, not linear
    assert np.isnan(pearson([1, 1, 1], [1, 2, 3])) and np.isnan(pearson([1], [1]))
    with pytest.raises(UsageError, match="equally long, non-empty"):
        compute_metrics([1, 2], [1])


def test_bootstrap_interval_and_the_constant_guess_beside_the_model() -> None:
    true = [20.0, 24.0, 28.0, 30.0, 36.0, 40.0]
    pred = [21.0, 24.0, 26.0, 31.0, 35.0, 43.0]  # |errors| 1, 0, 2, 1, 1, 3: MAE 1.33
    m = compute_metrics(true, pred, baseline=30)  # |30 - J| 10, 6, 2, 0, 6, 10: MAE 5.67
    assert m["mae_ci_low"] <= m["mae_qf"] <= m["mae_ci_high"] and 0 <= m["mae_ci_low"] < m["mae_ci_high"] <= 3
    assert m["baseline_jnd"] == 30 and m["baseline_mae_qf"] == pytest.approx(34 / 6)
    assert m["mae_vs_baseline"] == pytest.approx((8 / 6) / (34 / 6))
    assert m["mae_vs_baseline_ci_low"] < m["mae_vs_baseline"] < m["mae_vs_baseline_ci_high"] < 1
    assert compute_metrics(true, pred)["mae_ci_high"] == m["mae_ci_high"]  # seeded: the same images, the same
    assert "baseline_mae_qf" not in compute_metrics(true, pred)
    perfect_guess = compute_metrics([30.0, 30.0], [29.0, 31.0], baseline=30)
    assert perfect_guess["baseline_mae_qf"] == 0 and np.isnan(perfect_guess["mae_vs_baseline"])


def test_pair_counts_follow_the_label_convention() -> None:
    scores = {10: 0.1, 30: 0.4, 31: 0.6, 50: 0.9, 60: 0.3}
    assert pair_counts(scores, jnd=30) == (4, 5)  # QF 60 is invisible by the label but scored visible


def test_report_files_and_proxy_warning(tmp_path: Path) -> None:
    images = [ImageEval(f"im{i}", "g", 20.0 + i, 21.0 + 2 * i, 22, {10: 0.1, 40: 0.9}, 35.0, 35.5, 2, 2)
              for i in range(3)]
    metrics = compute_metrics([i.true_jnd for i in images], [i.pred_jnd for i in images],
                              psnr_true=[i.psnr_true for i in images], psnr_pred=[i.psnr_pred for i in images],
                              pairs=(6, 6))
    result = EvalResult(images, metrics, "PROXY LABELS from x", False, "sgjnd_tiny", "torch", "trained on y", "full")
    text = summary_markdown(result)
    assert "Proxy labels, not human data" in text and "| JND MAE (QF) | 2.00 (95 % interval" in text
    files = write_report(result, tmp_path)
    names = {f.name for f in files}
    assert {"per_image.csv", "summary.md", "metrics.json"} <= names
    assert (tmp_path / "per_image.csv").read_text().splitlines()[1].startswith("im0,g,20,21,1,22,")
    assert json.loads((tmp_path / "metrics.json").read_text())["human"] is False
    pytest.importorskip("matplotlib")
    assert (tmp_path / "pred_vs_true.png").stat().st_size > 0 and (tmp_path / "s_curves.png").stat().st_size > 0


def test_evaluate_a_checkpoint_through_the_runtime(proxy_csv: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from sgjnd.commands import evaluate
    from sgjnd.model import create_model, save_checkpoint

    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(create_model("sgjnd_tiny", seed=0), ckpt, weights="UNTRAINED: test")
    parser = argparse.ArgumentParser()
    evaluate.add_parser(parser.add_subparsers())
    out = tmp_path / "report"
    args = parser.parse_args(["evaluate", str(ckpt), str(proxy_csv), "-o", str(out), "--search", "bisect",
                              "--max-patches", "2", "--only", "coffee", "-q", "--no-plots"])
    assert args.run(args) == 0
    printed = capsys.readouterr()
    assert "MAE" in printed.out and "PROXY LABELS" in printed.err
    rows = (out / "per_image.csv").read_text().splitlines()
    assert len(rows) == 3 and {r.split(",")[0] for r in rows[1:]} == {"coffee__a", "coffee__b"}
    assert "UNTRAINED: test" in (out / "summary.md").read_text()
    assert "constant guess" not in printed.out  # nothing recorded, none given

    # the training labels' median, as `sgjnd train` records it, is scored beside the model
    save_checkpoint(create_model("sgjnd_tiny", seed=0), ckpt, weights="UNTRAINED: test",
                    details={"train_label_median_qf": 27.0})
    args = parser.parse_args(["evaluate", str(ckpt), str(proxy_csv), "-o", str(out), "--search", "bisect",
                              "--max-patches", "2", "--only", "coffee", "-q", "--no-plots"])
    assert args.run(args) == 0
    assert "the constant guess 27)" in capsys.readouterr().out
    assert "| constant guess 27: MAE (QF) |" in (out / "summary.md").read_text()
    args = parser.parse_args(["evaluate", str(ckpt), str(proxy_csv), "-o", str(out), "--baseline-jnd", "140"])
    with pytest.raises(UsageError, match=r"--baseline-jnd is a JPEG quality in 0\.\.100, got 140"):
        args.run(args)

"""The PNG plots exist and are valid images."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from sgjnd.bench.plots import plot_latency, plot_stages

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("plot", [plot_latency, plot_stages])
def test_plot_is_a_valid_png(plot, synthetic_run, tmp_path):
    import matplotlib.image

    path = plot(synthetic_run, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 300
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file


def test_plots_of_an_empty_run(synthetic_run, tmp_path):
    synthetic_run.rows = []
    for plot in (plot_latency, plot_stages):
        assert plot(synthetic_run, tmp_path / f"{plot.__name__}.png").stat().st_size > 0

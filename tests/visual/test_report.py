"""The visual report: what a view holds, that pages are self-contained and safe with hostile names, that a report
directory never overwrites a file sgjnd did not write, and the page as Chromium renders it (tests/browser.py)."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from browser import PAGE_CHECKS, chromium, console_errors, screenshot, wait_for

from sgjnd.cli import main
from sgjnd.errors import UsageError
from sgjnd.runtime.jpeg import JpegCodec
from sgjnd.runtime.predictor import JNDResult, PatchResult
from sgjnd.spec import JpegSettings
from sgjnd.visual.page import GENERATOR, REPORT_NAME, report_html
from sgjnd.visual.report import check_report_dir
from sgjnd.visual.views import ViewSettings, focus_patch, image_view

REMOTE = re.compile(r"""(src|href)\s*=\s*["']?https?:|url\(\s*["']?https?:""")


def result(jnd: int | None = 30, recommended: int | None = 31, source: str = "photo.png") -> JNDResult:
    patches = [PatchResult(0, 0, 0.2, 1.0), PatchResult(0, 64, 0.9, 3.0), PatchResult(64, 0, math.nan, math.nan)]
    return JNDResult(source=source, width=128, height=128, jnd_qf=jnd, recommended_qf=recommended,
                     strategy="full", scores={20: 0.1, 30: 0.4, 31: 0.6, 40: 0.9}, patches=patches, psnr_db=33.0,
                     jpeg_bytes=1000, encoder_passes=10, timings_ms={"total": 1.0}, backend="test backend",
                     weights="UNTRAINED", notes=("a note",))


def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)


SETTINGS = ViewSettings(patch_size=64)
CODEC = JpegCodec(JpegSettings())


def test_a_view_shows_the_original_the_recommendation_and_a_visible_quality_of_the_heaviest_patch() -> None:
    view = image_view(result(), photo(), CODEC, SETTINGS, source_bytes=5000)
    assert focus_patch(result()) == (64, 0) and view["focus"] == {"x": 64, "y": 0, "size": 64}
    assert [(v["label"], v["qf"]) for v in view["versions"]] == [
        ("original", None), ("recommended", 31), ("below the JND", 25)]
    original, recommended, below = view["versions"]
    assert original["bytes"] == 5000 and original["psnr_db"] is None
    assert recommended["bytes"] == len(CODEC.encode(photo(), 31)) and below["bytes"] < recommended["bytes"]
    assert recommended["psnr_db"] > below["psnr_db"] > 0
    assert all(v["zoom"]["width"] == v["zoom"]["height"] == 64 for v in view["versions"])
    assert all(v["zoom"]["src"].startswith("data:image/png;base64,") for v in view["versions"])  # lossless crops
    assert view["patches"][2] == {"x": 0, "y": 64, "q": None, "w": None}  # NaN never reaches the JSON
    json.dumps(view, allow_nan=False)


def test_edge_cases_of_the_recommendation() -> None:
    everything_visible = image_view(result(jnd=95, recommended=None), photo(), CODEC, SETTINGS)
    assert [v["label"] for v in everything_visible["versions"]] == ["original", "below the JND"]
    nothing_visible = image_view(result(jnd=None, recommended=1), photo(), CODEC, SETTINGS)
    assert [v["label"] for v in nothing_visible["versions"]] == ["original", "recommended"]


def test_a_page_is_self_contained_and_hostile_names_stay_text() -> None:
    name = '</script><script>alert(1)</script><img src=x onerror=alert(2)>.png'
    view = image_view(result(source=name), photo(), CODEC, SETTINGS)
    page = report_html([view], title="<b>title</b>", meta="m & m", summary=(["image"], [[name]]))
    assert GENERATOR in page and "Content-Security-Policy" in page and REMOTE.search(page) is None
    assert "<script>alert(1)" not in page and "<b>title</b>" not in page and "<img src=x" not in page
    data = page.split('id="sgjnd-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data)["views"][0]["title"] == name  # intact once parsed by the page's script


def test_a_report_directory_never_replaces_a_file_sgjnd_did_not_write(tmp_path: Path) -> None:
    foreign = tmp_path / "a" / REPORT_NAME
    foreign.parent.mkdir()
    foreign.write_text("<html>someone else's page</html>")
    with pytest.raises(UsageError, match="sgjnd did not write it: left as it is"):
        check_report_dir(foreign.parent)
    assert foreign.read_text() == "<html>someone else's page</html>"
    with pytest.raises(UsageError, match="is a regular file, not a folder; expected the --report directory"):
        check_report_dir(foreign)
    (tmp_path / "c" / REPORT_NAME).mkdir(parents=True)  # a folder where the page goes
    with pytest.raises(UsageError, match=r"holds report\.html, which this command writes"):
        check_report_dir(tmp_path / "c")
    own = tmp_path / "b" / REPORT_NAME
    own.parent.mkdir()
    own.write_text(report_html([], title="t", meta="m"))
    assert check_report_dir(own.parent) == own.parent  # our own report is replaced by the next run


def test_predict_refuses_a_foreign_report_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / REPORT_NAME).write_text("not ours")
    code = main(["predict", str(tmp_path / "missing.png"), "--backend", "onnxruntime", "--model", str(tmp_path),
                 "--report", str(tmp_path)])
    assert code == UsageError.exit_code and "sgjnd did not write it" in capsys.readouterr().err
    assert (tmp_path / REPORT_NAME).read_text() == "not ours"


@pytest.fixture(scope="module")
def predict_report(demo_onnx_dir: Path, photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sgjnd predict --report` on two bundled photos with the demo model (ONNX Runtime)."""
    folder = tmp_path_factory.mktemp("report")
    chosen = [p for p in photos if p.name in ("astronaut.png", "rocket.jpg")]
    code = main(["predict", *map(str, chosen), "--backend", "onnxruntime", "--model", str(demo_onnx_dir),
                 "--search", "coarse-to-fine", "--max-patches", "8", "--threads", "2", "--report", str(folder)])
    assert code == 0
    return folder / REPORT_NAME


def test_predict_writes_one_view_per_image(predict_report: Path) -> None:
    page = predict_report.read_text()
    data = json.loads(page.split('id="sgjnd-data">', 1)[1].split("</script>", 1)[0])
    assert [Path(v["title"]).name for v in data["views"]] == ["astronaut.png", "rocket.jpg"]
    for view in data["views"]:
        assert view["patch_size"] == 160 and len(view["patches"]) >= 4 and view["series"][0]["scores"]
        assert view["versions"][0]["label"] == "original" and len(view["versions"]) == 3


def test_the_report_renders_in_chromium(predict_report: Path, tmp_path: Path) -> None:
    with chromium(tmp_path / "profile") as driver:
        driver.get(predict_report.as_uri())
        assert wait_for(driver, "document.body.dataset.rendered", 60) == "2"
        wait_for(driver, "[...document.querySelectorAll('canvas.zoom')].every(c => c.dataset.drawn)", 30)
        checks = driver.execute_script(PAGE_CHECKS)
        assert len(checks["jnd"]) == 2 and all(j.startswith("JND QF") for j in checks["jnd"]), checks
        assert len(checks["curves"]) == 2 and min(checks["curves"]) >= 3, checks
        assert set(checks["canvases"]) == {"1"} and len(checks["canvases"]) == 10, checks  # (3 + 2) per image
        assert all(i["ok"] for i in checks["images"]) and checks["external"] == [], checks
        driver.find_element("css selector", ".toggle button:nth-child(2)").click()  # colour by w
        caption = driver.find_element("css selector", ".sgjnd-grid .caption").text
        assert "patch weight w" in caption
        assert console_errors(driver) == []
        driver.set_window_size(1400, int(driver.execute_script("return document.body.scrollHeight")) + 40)
        shutil.copy(screenshot(driver, "predict-report.png"), tmp_path / "shot.png")


def test_compare_report_puts_both_targets_on_one_plot(tiny_checkpoint: Path, tiny_onnx_dir: Path, photos: list[Path],
                                                      tmp_path: Path) -> None:
    chelsea = next(p for p in photos if p.name == "chelsea.png")
    code = main(["compare", str(chelsea), "--ref", f"torch:{tiny_checkpoint}", "--target",
                 f"onnxruntime:{tiny_onnx_dir}", "--report", str(tmp_path), "--max-patches", "2",
                 "--min-qf", "80", "--max-qf", "90"])
    assert code in (0, 1)  # the verdict is compare's business; the report is written either way
    page = (tmp_path / REPORT_NAME).read_text()
    data = json.loads(page.split('id="sgjnd-data">', 1)[1].split("</script>", 1)[0])
    series = data["views"][0]["series"]
    assert [s["label"].split(":")[0] for s in series] == ["torch", "onnxruntime"]
    assert "JND QF onnxruntime:" in page  # the table has a column per target

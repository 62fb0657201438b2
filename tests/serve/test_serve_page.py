"""The service's page and API docs in a real headless Chromium, against a real `sgjnd serve` on loopback.

The page is driven as a person would: without the token the refusal is shown; with it, a bundled photo is uploaded
and the JND view appears (curve, patch grid, zoomed versions, download link) with no console errors. Screenshots go
to test-artifacts/. /docs (Swagger UI) renders from the service's own assets, with nothing fetched from elsewhere.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import PAGE_CHECKS, chromium, console_errors, require_browser, screenshot, wait_for
from serve_helpers import TOKEN, require_serve, running_server

require_serve()

import httpx  # noqa: E402

REMOTE = re.compile(r"""(src|href)\s*=\s*["']?https?:|url\(\s*["']?https?:|fetch\(\s*["']https?:""")
"""A remote script, style, image or fetch in a page."""


@pytest.fixture(scope="module")
def server(demo_onnx_dir: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A real service over the demo model (trained: its JNDs fall inside the QF range), with a bearer token."""
    args = [
        str(demo_onnx_dir),
        "--backend",
        "onnxruntime",
        "--threads",
        "2",
        "--max-patches",
        "4",
        "--search",
        "coarse-to-fine",
        "--workers",
        "2",
    ]
    with running_server(args, token=TOKEN) as running:
        yield running


def test_page_and_docs_are_self_contained(server: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = server
    page = httpx.get(f"{url}/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert REMOTE.search(page.text) is None  # no script, style or image from elsewhere
    assert '"token_required":true' in page.text and '"patch_size":160' in page.text
    docs = httpx.get(f"{url}/docs", timeout=30)
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert REMOTE.search(docs.text) is None and "cdn." not in docs.text
    bundle = httpx.get(f"{url}/docs-assets/swagger-ui-bundle.js", timeout=30)
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    assert httpx.post(f"{url}/v1/jnd", content=b"x", timeout=30).status_code == 401  # the API still wants it


def test_a_photo_dropped_on_the_page_shows_its_jnd(
    server: tuple[str, subprocess.Popen[str]], photos: list[Path], tmp_path: Path
) -> None:
    require_browser()
    url, _ = server
    photo = next(p for p in photos if p.name == "chelsea.png")
    with chromium(tmp_path / "profile") as driver:
        driver.get(f"{url}/")
        assert driver.execute_script("return !document.getElementById('token-box').hidden")
        upload = driver.find_element("id", "file")
        driver.execute_script("arguments[0].hidden = false", upload)  # WebDriver types into visible inputs only

        upload.send_keys(str(photo))  # no token yet: the service refuses, the page says so
        wait_for(driver, "document.body.dataset.rendered === 'error'", 60)
        status = driver.find_element("id", "status")
        assert "unauthorized" in status.text and "error" in status.get_attribute("class"), status.text
        refused = console_errors(driver)
        assert all("401" in m for m in refused), refused  # the browser logs the refused fetch, nothing else

        driver.find_element("id", "token").send_keys(TOKEN)
        driver.execute_script("arguments[0].value = ''", upload)
        upload.send_keys(str(photo))
        wait_for(driver, "document.body.dataset.rendered === '1'", 180)
        wait_for(driver, "[...document.querySelectorAll('canvas.zoom')].every(c => c.dataset.drawn)", 30)
        checks = driver.execute_script(PAGE_CHECKS)
        assert checks["jnd"] and checks["jnd"][0].startswith("JND QF"), checks
        assert checks["curves"] and checks["curves"][0] >= 3, checks
        assert checks["cells"] == 2 and checks["external"] == [], checks  # 451x300: two 160 px cells
        assert len(checks["canvases"]) == 5 and set(checks["canvases"]) == {"1"}, checks  # 3 versions + slider pair
        labels = [e.text for e in driver.find_elements("css selector", ".sgjnd-versions figcaption")]
        assert [t.split(" ")[0] for t in labels] == ["original:", "recommended", "below"], labels
        assert all(i["ok"] for i in checks["images"]), checks
        link = driver.find_element("css selector", "a.download")
        assert link.get_attribute("download").startswith("chelsea.q") and link.get_attribute("href").startswith("blob:")
        assert "JND QF" in driver.find_element("id", "status").text
        assert console_errors(driver) == []
        driver.set_window_size(1400, int(driver.execute_script("return document.body.scrollHeight")) + 40)
        assert screenshot(driver, "service-page.png").stat().st_size > 10_000


def test_the_docs_page_renders_offline(server: tuple[str, subprocess.Popen[str]], tmp_path: Path) -> None:
    require_browser()
    url, _ = server
    with chromium(tmp_path / "profile") as driver:
        driver.get(f"{url}/docs")
        title = wait_for(driver, "document.querySelector('.swagger-ui .info .title')?.textContent", 60)
        assert "sgjnd" in title
        assert wait_for(driver, "document.querySelectorAll('.opblock').length", 30) >= 5  # the routes are listed
        assert console_errors(driver) == []

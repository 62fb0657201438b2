"""Headless Debian Chromium for page tests (plain helpers; imported by the tests that drive a browser).

Skips, with the reason, where selenium, ``/usr/bin/chromium`` or ``/usr/bin/chromedriver`` is missing (`.ci/run`
installs Debian's ``chromium`` and ``chromium-driver``). The browser is offline by construction: the flags turn off
every background connection, so a page that tried to load something from the network would fail its checks.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("SGJND_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SGJND_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)

ARTIFACTS = Path(os.environ.get("SGJND_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
"""Where screenshots go (kept after the run, for a person to look at)."""


def require_browser() -> None:
    """Skip the caller unless selenium, Chromium and ChromeDriver are all here."""
    pytest.importorskip("selenium", reason="the browser tests need selenium: pip install 'sgjnd[dev]'")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(path).is_file() or shutil.which(path)):
            pytest.skip(f"{path} is missing: install Debian's {package} (apt-get install chromium chromium-driver)")


@contextlib.contextmanager
def chromium(user_data: Path) -> Iterator[Any]:
    """A headless Chromium driven by ChromeDriver, with the browser console log kept."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={user_data}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[str]:
    """The console's SEVERE entries since the last call (reading them empties the log)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def screenshot(driver: Any, name: str) -> Path:
    """A full-page PNG of the current page in :data:`ARTIFACTS` (its path is returned and printed)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path = ARTIFACTS / name
    path.write_bytes(base64.b64decode(shot["data"]))
    print(f"screenshot: {path}")
    return path


def wait_for(driver: Any, script: str, timeout: float = 120.0) -> Any:
    """Wait until ``script`` (a JS expression) is truthy; return its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: d.execute_script(f"return {script}"))


PAGE_CHECKS = """
const out = {};
out.images = [...document.images].map(i => ({src: i.src.slice(0, 40), ok: i.complete && i.naturalWidth > 0}));
out.canvases = [...document.querySelectorAll("canvas.zoom")].map(c => c.dataset.drawn || "pending");
out.curves = [...document.querySelectorAll("svg.sgjnd-curve")].map(s => s.querySelectorAll("circle.point").length);
out.cells = document.querySelectorAll(".sgjnd-grid .cell").length;
out.jnd = [...document.querySelectorAll(".fact.jnd")].map(e => e.textContent);
out.external = [...document.querySelectorAll("script[src], link[href], img[src]")]
  .map(e => e.src || e.href).filter(u => /^https?:/.test(u) && !u.startsWith(location.origin));
return out;
"""
"""What a rendered view must show: every image loaded, every zoom drawn, curve points, grid cells, no remote URL."""

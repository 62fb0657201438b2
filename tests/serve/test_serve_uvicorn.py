"""`sgjnd serve` as a real uvicorn process on 127.0.0.1 with an ephemeral port, started and stopped by the test."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import STOP_TIMEOUT_S, TOKEN, require_serve, running_server

require_serve()

import httpx  # noqa: E402


@pytest.fixture(scope="module")
def server(tiny_onnx_dir: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The base URL of a running `sgjnd serve` (port chosen by the OS, read from uvicorn's log) and its process."""
    args = [
        str(tiny_onnx_dir), "--backend", "onnxruntime", "--threads", "1", "--max-patches", "2", "--min-qf", "85",
        "--max-qf", "90", "--workers", "2",
    ]  # fmt: skip
    with running_server(args, token=TOKEN) as running:
        yield running


def test_real_server_answers_and_stops_cleanly(server: tuple[str, subprocess.Popen[str]], jpeg_image: bytes) -> None:
    url, proc = server
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, timeout=60.0) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").json()["model"] == "sgjnd_tiny"
        assert http.post("/v1/jnd", content=jpeg_image).status_code == 401  # the token came from the environment
        ok = http.post("/v1/jnd", content=jpeg_image, headers=auth)
        assert ok.status_code == 200, ok.text
        assert set(ok.json()["scores"]) == {str(q) for q in range(85, 91)}
        bad = http.post("/v1/jnd", content=b"\x89PNG\r\n\x1a\nbroken", headers=auth)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_image"
        assert http.post("/v1/jnd", content=jpeg_image, headers=auth).status_code == 200  # still alive
        assert "openapi" in http.get("/openapi.json").json()
    proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    assert proc.wait(STOP_TIMEOUT_S) == 0
    assert time.monotonic() - start < STOP_TIMEOUT_S

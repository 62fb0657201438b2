"""`sgjnd serve` as a real uvicorn process on 127.0.0.1 with an ephemeral port, started and stopped by the test."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import TOKEN, require_serve

require_serve()

import httpx  # noqa: E402

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")

# `sgjnd serve` through the CLI when cli.COMMANDS lists it; through the subcommand module alone until then.
_RUNNER = """
import argparse, sys
from sgjnd import cli
if "serve" in cli.COMMANDS:
    sys.exit(cli.main(sys.argv[1:]))
from sgjnd.commands import serve
parser = argparse.ArgumentParser(prog="sgjnd")
serve.add_parser(parser.add_subparsers(dest="command"))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.run(args))
"""


@pytest.fixture(scope="module")
def server(tiny_onnx_dir: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The base URL of a running `sgjnd serve` (port chosen by the OS, read from uvicorn's log) and its process."""
    command = [
        sys.executable, "-c", _RUNNER, "serve", str(tiny_onnx_dir), "--backend", "onnxruntime", "--port", "0",
        "--threads", "1", "--max-patches", "2", "--min-qf", "85", "--max-qf", "90", "--workers", "2",
    ]  # fmt: skip
    env = {**os.environ, "SGJND_SERVE_TOKEN": TOKEN}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    found = threading.Event()
    port: list[int] = []

    def pump() -> None:  # keeps reading, so that the server never blocks on a full pipe
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            match = _LISTENING.search(line)
            if match and not port:
                port.append(int(match.group(1)))
                found.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        if not found.wait(START_TIMEOUT_S):
            pytest.fail(f"sgjnd serve did not start within {START_TIMEOUT_S} s:\n{''.join(lines)}")
        yield f"http://127.0.0.1:{port[0]}", proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        reader.join(STOP_TIMEOUT_S)


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

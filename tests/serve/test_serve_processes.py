"""`sgjnd serve --processes 2`: uvicorn's worker processes rebuild the config from the environment and run the same
connection guard (GuardedH11Protocol) as a single process: predictions, idle sockets that neither starve /healthz
nor stay open, slow request heads answered 408, and the connection counters in /metrics."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import TOKEN, address, metric_value, read_response, require_serve, running_server

require_serve()

import httpx  # noqa: E402

AUTH = {"Authorization": f"Bearer {TOKEN}"}
HEADER_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def server(tiny_onnx_dir: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    args = [
        str(tiny_onnx_dir), "--backend", "onnxruntime", "--threads", "1", "--max-patches", "2", "--min-qf", "85",
        "--max-qf", "90", "--processes", "2", "--header-timeout", str(HEADER_TIMEOUT_S), "--keep-alive", "1",
        "--max-connections", "4",
    ]  # fmt: skip
    with running_server(args, token=TOKEN) as running:
        yield running


def _ready(http: httpx.Client) -> bool:
    try:
        return http.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def test_two_processes_predict_and_guard_their_connections(
    server: tuple[str, subprocess.Popen[str]], jpeg_image: bytes
) -> None:
    url, _ = server
    with httpx.Client(base_url=url, timeout=20) as http:
        deadline = time.monotonic() + 30
        while not _ready(http):  # the workers start after the parent's log line, each loading its own model
            assert time.monotonic() < deadline, "the workers did not become ready"
            time.sleep(0.2)
        for _ in range(4):
            answer = http.post("/v1/jnd", content=jpeg_image, headers=AUTH)
            assert answer.status_code == 200 and "jnd_qf" in answer.json()
    idle = [socket.create_connection(address(url), timeout=5) for _ in range(24)]  # 3x the limits of both workers
    try:
        time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            for _ in range(6):
                start = time.monotonic()
                assert http.get("/healthz").json() == {"status": "ok"}
                assert time.monotonic() - start < 1.0
        with socket.create_connection(address(url), timeout=5) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
            status, headers, _ = read_response(slow, HEADER_TIMEOUT_S + 3)
            assert status == 408 and headers["x-error-code"] == "request_timeout"
        time.sleep(HEADER_TIMEOUT_S + 1.0)
        for sock in idle:  # every idle socket was closed without a word: evicted or timed out, in either worker
            assert read_response(sock, 2.0) == (0, {}, b"")
    finally:
        for sock in idle:
            sock.close()
    # /metrics is per worker process: whichever answers has counted connections of its own
    text = httpx.get(f"{url}/metrics", headers=AUTH, timeout=10).text
    assert metric_value(text, "sgjnd_connections_opened_total") >= 1

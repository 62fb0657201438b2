"""Connections against a real `sgjnd serve` on 127.0.0.1: idle and slow-header sockets are bounded in time, never
starve /healthz, uvicorn's own errors come in our JSON shape, and the event loop never waits on a body's parsing."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import TOKEN, address, metric_value, read_response, require_serve, running_server

require_serve()

import httpx  # noqa: E402

HEADER_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 6
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tiny_onnx_dir: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    args = [
        str(tiny_onnx_dir), "--backend", "onnxruntime", "--threads", "1", "--max-patches", "2", "--min-qf", "85",
        "--max-qf", "90", "--workers", "4", "--queue", "4", "--timeout", "10",
        "--header-timeout", str(HEADER_TIMEOUT_S), "--keep-alive", "1", "--max-connections", str(MAX_CONNECTIONS),
        "--max-body-bytes", str(16 << 20),
    ]  # fmt: skip
    with running_server(args, token=TOKEN) as running:
        yield running


def _connect(url: str) -> socket.socket:
    return socket.create_connection(address(url), timeout=5)


def _metrics(url: str) -> str:
    return httpx.get(f"{url}/metrics", headers=AUTH, timeout=10).text


def _json_error(status: int, headers: dict[str, str], body: bytes, want_status: int, code: str) -> None:
    assert status == want_status, (status, headers, body)
    assert headers["content-type"] == "application/json" and headers["x-error-code"] == code
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"]


def test_idle_connections_neither_starve_health_nor_stay(
    server: tuple[str, subprocess.Popen[str]], jpeg_image: bytes
) -> None:
    url, _ = server
    idle = [_connect(url) for _ in range(30)]  # 5× the connection limit, sending nothing
    try:
        time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=5) as http:
            for _ in range(5):
                start = time.monotonic()
                assert http.get("/healthz").json() == {"status": "ok"}
                assert time.monotonic() - start < 1.0
            assert http.post("/v1/jnd", content=jpeg_image, headers=AUTH).status_code == 200
        time.sleep(HEADER_TIMEOUT_S + 1.0)
        for sock in idle:  # every idle socket was closed without a word: evicted or timed out
            assert read_response(sock, 2.0) == (0, {}, b"")
    finally:
        for sock in idle:
            sock.close()
    text = _metrics(url)
    assert metric_value(text, 'sgjnd_connections_closed_total{reason="evicted"}') >= 20
    assert metric_value(text, 'sgjnd_connections_closed_total{reason="idle_timeout"}') >= 1
    assert metric_value(text, "sgjnd_connections_opened_total") >= 30


def test_a_slow_request_head_gets_408_at_the_header_timeout(server: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = server
    with _connect(url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        start = time.monotonic()
        sock.settimeout(0.2)
        received = b""
        while time.monotonic() - start < HEADER_TIMEOUT_S + 3 and not received:  # a byte every 0.2 s: not enough
            try:
                received = sock.recv(65536)
            except TimeoutError:
                sock.sendall(b"a")
        elapsed = time.monotonic() - start
        status, headers, body = read_response(sock, 2.0) if not received else (0, {}, b"")
        if received:
            head, _, body = received.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    _json_error(status, headers, body, 408, "request_timeout")
    assert HEADER_TIMEOUT_S - 0.1 <= elapsed < HEADER_TIMEOUT_S + 1.5
    assert metric_value(_metrics(url), 'sgjnd_connections_closed_total{reason="header_timeout"}') >= 1


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"THIS IS NOT HTTP\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000, 431, "headers_too_large"),
    ],
    ids=["garbage", "bad-content-length", "huge-head"],
)
def test_uvicorns_own_errors_are_json(
    server: tuple[str, subprocess.Popen[str]], raw: bytes, status: int, code: str
) -> None:
    url, _ = server
    with _connect(url) as sock:
        sock.sendall(raw)
        _json_error(*read_response(sock, 5.0), status, code)
    assert metric_value(_metrics(url), 'sgjnd_connections_closed_total{reason="bad_http"}') >= 1


def test_busy_connections_leave_room_for_health_checks_only(server: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = server
    busy = []
    try:
        for _ in range(MAX_CONNECTIONS):  # uploads in progress: admitted, not idle, not evictable
            sock = _connect(url)
            sock.sendall(
                f"POST /v1/jnd HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100000\r\n\r\n"
                "partial".encode()
            )
            busy.append(sock)
        time.sleep(0.3)
        with httpx.Client(base_url=url, timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            assert http.get("/healthz").json() == {"status": "ok"}
            assert http.get("/readyz").status_code == 200
            refused = http.post("/v1/jnd", content=b"x", headers=AUTH)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded"
        assert refused.headers["x-error-code"] == "overloaded" and refused.headers["retry-after"] == "1"
    finally:
        for sock in busy:
            sock.close()
    text = _metrics(url)
    assert metric_value(text, "sgjnd_connections_probe_only_total") >= 3


def _slow_header_jpeg(size: int) -> bytes:
    """A JPEG start and ``size`` bytes of empty APP0 segments: seconds of work for a header reader in Python."""
    return b"\xff\xd8" + b"\xff\xe0\x00\x02" * (size // 4)


def test_health_answers_while_large_bodies_are_parsed(server: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = server
    body = _slow_header_jpeg(4 << 20)
    boundary = "sgjndtest"
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'.encode()
        + body
        + f"\r\n--{boundary}--\r\n".encode()
    )
    statuses: list[int] = []

    def post(content: bytes, content_type: str) -> None:
        headers = {**AUTH, "Content-Type": content_type}
        statuses.append(httpx.post(f"{url}/v1/jnd", content=content, headers=headers, timeout=30).status_code)

    senders = [
        threading.Thread(target=post, args=(body, "image/jpeg")),
        threading.Thread(target=post, args=(body, "image/jpeg")),
        threading.Thread(target=post, args=(multipart, f"multipart/form-data; boundary={boundary}")),
    ]
    for sender in senders:
        sender.start()
    worst = 0.0
    probes = 0
    with httpx.Client(base_url=url, timeout=10) as http:
        while any(s.is_alive() for s in senders):
            start = time.monotonic()
            assert http.get("/healthz").status_code == 200
            worst = max(worst, time.monotonic() - start)
            probes += 1
            time.sleep(0.05)
    for sender in senders:
        sender.join()
    print(f"/healthz during 3 large-body parses: {probes} probes, worst {worst * 1000:.0f} ms; statuses {statuses}")
    assert len(statuses) == 3 and all(s in (413, 422, 504) for s in statuses), statuses
    assert probes >= 3 and worst < 1.0


class _Transport:
    """A stand-in for an asyncio transport: records what is written and whether it was closed."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_a_connection_beyond_the_limit_and_the_probe_slots_all_busy_is_refused_with_503() -> None:
    """The refusal path, unreachable from outside without racing health checks: ``max_connections`` connections in
    requests, then the probe-only ones (PROBE_CONNECTIONS), all in requests too; the next connection gets a JSON 503
    ``overloaded`` with Retry-After and is closed, and /metrics counts it."""
    import asyncio
    import types

    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from sgjnd.serve.config import PROBE_CONNECTIONS, ServeLimits
    from sgjnd.serve.metrics import Metrics
    from sgjnd.serve.protocol import STATE_KEY, GuardedH11Protocol

    async def app(scope: object, receive: object, send: object) -> None:  # never called: no request is made
        raise AssertionError("no request reaches the app")

    limits, metrics = ServeLimits(max_connections=2), Metrics()
    service = types.SimpleNamespace(config=types.SimpleNamespace(limits=limits), metrics=metrics)
    config, state, loop = Config(app=app, lifespan="off"), ServerState(), asyncio.new_event_loop()
    try:
        opened = []
        for _ in range(limits.max_connections + PROBE_CONNECTIONS):
            protocol = GuardedH11Protocol(config, state, {STATE_KEY: service}, _loop=loop)
            protocol.connection_made(_Transport())  # type: ignore[arg-type]
            protocol._in_request = True  # busy: an upload or a health check in progress, so never evicted
            opened.append(protocol)
        assert all(not p.transport.is_closing() for p in opened)
        assert metrics.connections_probe_only.value() == PROBE_CONNECTIONS
        late = GuardedH11Protocol(config, state, {STATE_KEY: service}, _loop=loop)
        transport = _Transport()
        late.connection_made(transport)  # type: ignore[arg-type]
        assert transport.closed and transport.written.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        head, _, body = transport.written.partition(b"\r\n\r\n")
        assert b"x-error-code: overloaded" in head.lower() and b"retry-after: 1" in head.lower()
        assert json.loads(body)["error"]["code"] == "overloaded"
        assert metrics.connections_closed.value(reason="refused") == 1
        assert all(not p.transport.is_closing() for p in opened)  # nobody busy was evicted for it
    finally:
        loop.close()

"""A loopback soak of a real `sgjnd serve`, bounded in time and count: idle connections, slow request heads,
oversized bodies and valid requests at once. /healthz keeps answering, the server's memory stays under its budget,
and every valid request gets its 200."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

from serve_helpers import TOKEN, address, metric_value, require_serve, rss_bytes, running_server

require_serve()

import httpx  # noqa: E402

SOAK_S = 15.0
"""How long the adversarial load runs."""

VALID_REQUESTS = 24
"""Valid requests sent during the soak (2 clients); each must get a 200."""

MAX_BODY = 1 << 20
RSS_BUDGET_BYTES = 256 << 20
"""Most the server's resident memory may grow over its idle level during the soak."""

HEALTH_BOUND_S = 1.0
"""Worst /healthz latency allowed during the soak."""


def test_soak(tiny_onnx_dir: Path, jpeg_image: bytes) -> None:
    args = [
        str(tiny_onnx_dir), "--backend", "onnxruntime", "--threads", "1", "--max-patches", "2", "--min-qf", "85",
        "--max-qf", "90", "--workers", "2", "--queue", "6", "--timeout", "20", "--header-timeout", "2",
        "--keep-alive", "2", "--max-connections", "24", "--max-body-bytes", str(MAX_BODY),
    ]  # fmt: skip
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with running_server(args, token=TOKEN) as (url, proc):
        host_port = address(url)
        with httpx.Client(base_url=url, timeout=30) as http:  # warm up: the first request loads lazy parts
            assert http.post("/v1/jnd", content=jpeg_image, headers=auth).status_code == 200
        idle_rss = rss_bytes(proc.pid)
        stop = threading.Event()
        end = time.monotonic() + SOAK_S
        counts = {"idle": 0, "slow": 0, "oversized": 0}
        rss: list[int] = []
        health: list[float] = []
        valid: list[int] = []
        valid_latency: list[float] = []
        errors: list[str] = []

        def idle() -> None:  # waves of sockets that send nothing
            while not stop.is_set():
                wave = []
                for _ in range(20):
                    try:
                        wave.append(socket.create_connection(host_port, timeout=5))
                        counts["idle"] += 1
                    except OSError:
                        pass
                stop.wait(1.0)
                for sock in wave:
                    sock.close()

        def slow() -> None:  # request heads trickled a byte every 0.5 s (slowloris)
            while not stop.is_set():
                socks = []
                for _ in range(10):
                    try:
                        sock = socket.create_connection(host_port, timeout=5)
                        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                        socks.append(sock)
                        counts["slow"] += 1
                    except OSError:
                        pass
                for _ in range(6):
                    if stop.wait(0.5):
                        break
                    for sock in socks:
                        with contextlib.suppress(OSError):
                            sock.sendall(b"X")
                for sock in socks:
                    sock.close()

        def oversized() -> None:  # declared and undeclared (chunked) bodies over the limit
            big = b"\xff\xd8" + b"\0" * (MAX_BODY + 10)
            with httpx.Client(base_url=url, timeout=30, headers=auth) as client:
                while not stop.is_set():
                    declared = client.post("/v1/jnd", content=big)
                    chunked = client.post("/v1/jnd", content=iter([big[: 1 << 19]] * 3))
                    for response in (declared, chunked):
                        if response.status_code != 413:
                            errors.append(f"oversized: {response.status_code} {response.text[:100]}")
                    counts["oversized"] += 2

        def valid_client(n: int) -> None:
            # No keep-alive: each request on a fresh connection, as a client behind the idle flood would do.
            with httpx.Client(
                base_url=url, timeout=30, headers=auth, limits=httpx.Limits(max_keepalive_connections=0)
            ) as client:
                for _ in range(n):
                    start = time.monotonic()
                    try:
                        response = client.post("/v1/jnd", content=jpeg_image)
                    except httpx.HTTPError as exc:
                        errors.append(f"valid: {type(exc).__name__}: {exc}")
                        continue
                    valid_latency.append(time.monotonic() - start)
                    valid.append(response.status_code)
                    if response.status_code != 200:
                        errors.append(f"valid: {response.status_code} {response.text[:200]}")
                    stop.wait(SOAK_S / n / 2)

        def watch() -> None:
            with httpx.Client(base_url=url, timeout=10) as client:
                while not stop.is_set():
                    rss.append(rss_bytes(proc.pid))
                    start = time.monotonic()
                    try:
                        ok = client.get("/healthz").status_code == 200
                    except httpx.HTTPError as exc:
                        errors.append(f"healthz: {type(exc).__name__}")
                        ok = False
                    health.append(time.monotonic() - start if ok else float("inf"))
                    stop.wait(0.1)

        attackers = [threading.Thread(target=f, daemon=True) for f in (idle, slow, oversized, watch)]
        clients = [threading.Thread(target=valid_client, args=(VALID_REQUESTS // 2,)) for _ in range(2)]
        for thread in attackers + clients:
            thread.start()
        for thread in clients:
            thread.join(SOAK_S + 60)
        while time.monotonic() < end:
            time.sleep(0.1)
        stop.set()
        for thread in attackers:
            thread.join(30)
        text = httpx.get(f"{url}/metrics", headers=auth, timeout=10).text
        assert proc.poll() is None, "the server died"

    health_sorted = sorted(health)
    peak = max(rss)
    print(
        f"\nsoak {SOAK_S:.0f} s: {counts['idle']} idle, {counts['slow']} slow-head connections, "
        f"{counts['oversized']} oversized bodies, {len(valid)} valid requests "
        f"(p50 {sorted(valid_latency)[len(valid_latency) // 2] * 1000:.0f} ms, max {max(valid_latency) * 1000:.0f} ms)"
        f"\n/healthz: {len(health)} probes, p50 {health_sorted[len(health) // 2] * 1000:.1f} ms, "
        f"max {health_sorted[-1] * 1000:.1f} ms"
        f"\nserver RSS: idle {idle_rss / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB "
        f"(+{(peak - idle_rss) / 2**20:.0f} MiB; budget +{RSS_BUDGET_BYTES / 2**20:.0f} MiB)"
        f"\nconnections closed: "
        + ", ".join(
            f"{reason} {metric_value(text, _closed(reason)):.0f}"
            for reason in ("idle_timeout", "header_timeout", "keep_alive_timeout", "evicted", "refused", "bad_http")
        )
    )
    assert not errors, errors[:10]
    assert valid == [200] * VALID_REQUESTS  # nothing valid lost
    assert health and health_sorted[-1] < HEALTH_BOUND_S
    assert peak - idle_rss < RSS_BUDGET_BYTES
    assert metric_value(text, _closed("header_timeout")) >= 1
    assert metric_value(text, _closed("evicted")) >= 1


def _closed(reason: str) -> str:
    return 'sgjnd_connections_closed_total{reason="' + reason + '"}'

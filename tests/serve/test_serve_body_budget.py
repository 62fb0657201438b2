"""The body budget: request bodies held in memory at once are bounded (--max-body-memory), queued requests wait with
their bodies unread, in arrival order, within their deadline; and a real service under it answers every request."""

from __future__ import annotations

import asyncio
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

from sgjnd.serve.config import ServeLimits  # noqa: E402
from sgjnd.serve.limits import BodyBudget  # noqa: E402

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_reservations_wait_in_order_and_oversize_ones_wait_for_an_empty_budget() -> None:
    async def scenario() -> list[str]:
        held: list[int] = []
        budget = BodyBudget(100, on_change=held.append)
        order: list[str] = []

        async def take(name: str, n: int) -> None:
            await budget.reserve(n)
            order.append(name)

        await budget.reserve(60)
        waiting = [asyncio.create_task(take("b", 50)), asyncio.create_task(take("c", 10)),
                   asyncio.create_task(take("huge", 500))]
        await asyncio.sleep(0)
        assert order == [] and budget.waiting == 3  # c would fit, but waits its turn behind b
        budget.release(60)
        await asyncio.sleep(0)
        assert order == ["b", "c"] and budget.held == 60
        budget.release(50)
        budget.release(10)
        await asyncio.wait_for(waiting[2], 1)
        assert order == ["b", "c", "huge"] and budget.held == 500  # larger than the budget: admitted alone
        budget.release(500)
        assert budget.held == 0 and held[-1] == 0
        return order

    asyncio.run(scenario())


def test_a_waiter_that_gives_up_leaves_nothing_behind_and_threads_may_release() -> None:
    async def scenario() -> None:
        budget = BodyBudget(10)
        await budget.reserve(10)
        quitter = asyncio.create_task(budget.reserve(5))
        await asyncio.sleep(0)
        quitter.cancel()  # its deadline passed, or the client left
        with pytest.raises(asyncio.CancelledError):
            await quitter
        assert budget.waiting == 0
        late = asyncio.create_task(budget.reserve(10))
        worker = threading.Thread(target=budget.release, args=(10,))  # released from a worker thread
        worker.start()
        worker.join()
        await asyncio.wait_for(late, 1)
        assert budget.held == 10

    asyncio.run(scenario())


def test_the_default_budget_is_one_body_per_worker() -> None:
    limits = ServeLimits(workers=4, max_body_bytes=1000)
    assert limits.body_memory == 4000 and ServeLimits(max_body_memory=123).body_memory == 123
    with pytest.raises(Exception, match="max_body_memory must be a positive number of bytes"):
        ServeLimits(max_body_memory=0)


@pytest.fixture(scope="module")
def server(tiny_onnx_dir: Path, jpeg_image: bytes) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    args = [
        str(tiny_onnx_dir), "--backend", "onnxruntime", "--threads", "1", "--max-patches", "2", "--min-qf", "85",
        "--max-qf", "90", "--workers", "4", "--queue", "8", "--timeout", "20",
        "--max-body-memory", str(len(jpeg_image) + 1000),  # one body at a time
    ]  # fmt: skip
    with running_server(args, token=TOKEN) as running:
        yield running


def test_a_request_waits_unread_while_another_body_holds_the_budget(
    server: tuple[str, subprocess.Popen[str]], jpeg_image: bytes
) -> None:
    url, _ = server
    head = (f"POST /v1/jnd HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(jpeg_image)}\r\n\r\n").encode()
    with socket.create_connection(address(url), timeout=10) as first:
        first.sendall(head + jpeg_image[:100])  # reserved its body's bytes; still uploading
        time.sleep(0.3)
        results: list[int] = []
        second = threading.Thread(
            target=lambda: results.append(httpx.post(f"{url}/v1/jnd", content=jpeg_image, headers=AUTH,
                                                     timeout=20).status_code)
        )
        second.start()
        time.sleep(0.5)
        text = httpx.get(f"{url}/metrics", headers=AUTH, timeout=5).text
        assert metric_value(text, "sgjnd_bodies_waiting") == 1  # the second waits for memory, body unread
        assert metric_value(text, "sgjnd_body_bytes_reserved") == len(jpeg_image)
        assert results == []
        first.sendall(jpeg_image[100:])
        status, _, _ = read_response(first, 15)
        assert status == 200
    second.join(20)
    assert results == [200]
    text = httpx.get(f"{url}/metrics", headers=AUTH, timeout=5).text
    assert metric_value(text, "sgjnd_bodies_waiting") == 0 and metric_value(text, "sgjnd_body_bytes_reserved") == 0

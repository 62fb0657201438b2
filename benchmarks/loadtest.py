"""Load test of ``sgjnd serve``: the same mix of valid and invalid requests with cross-request batching on and off.

    python benchmarks/loadtest.py                         # tiny untrained model (needs torch to make it), defaults
    python benchmarks/loadtest.py --model DIR --requests 400 --concurrency 32 --json report.json

For each mode (``batched``: ``--max-batch``/``--max-delay-ms``; ``off``: max batch 1) a fresh service is started in
this process on 127.0.0.1 with an ephemeral port, warmed up, and sent the same requests in the same order by
``--concurrency`` client tasks. Reported per mode: throughput, p50/p99 latency of the valid requests, the status
counts, and the batch-size distribution (rows per encoder run, read from ``/metrics``). The run fails (exit 1) on
any 5xx, any lost response (a transport error or a client timeout) or any status other than the expected one.

Bounded: at most ``--requests`` requests per mode and ``--duration`` seconds of sending per mode; only loopback
addresses are ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's sgjnd, when not installed

from sgjnd.runtime.predictor import PredictConfig
from sgjnd.runtime.search import SearchConfig
from sgjnd.serve.config import ServeConfig, ServeLimits
from sgjnd.serve.metrics import parse_histogram
from sgjnd.serve.server import is_loopback, uvicorn_options

TOKEN = "loadtest"
BODY_LIMIT = 1 << 20


@dataclass(frozen=True)
class Payload:
    """One kind of request and the status it must get."""

    kind: str
    body: bytes
    expect: int
    multipart: bool = False
    token: str = TOKEN


@dataclass(frozen=True)
class Mode:
    """A batching setting to measure."""

    name: str
    max_batch: int
    max_delay_ms: float


@dataclass
class ModeReport:
    """What one mode measured."""

    mode: str
    max_batch: int
    max_delay_ms: float
    sent: int = 0
    seconds: float = 0.0
    throughput_rps: float = 0.0
    valid_throughput_rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    server_errors: int = 0
    lost: int = 0
    unexpected: int = 0
    batch_sizes: dict[str, int] = field(default_factory=dict)
    mean_batch_size: float = 0.0
    mean_requests_per_batch: float = 0.0

    @property
    def ok(self) -> bool:
        """No 5xx, nothing lost, every status as expected."""
        return self.server_errors == 0 and self.lost == 0 and self.unexpected == 0


# -- requests ---------------------------------------------------------------------------------------------------


def make_payloads(photos: Sequence[Path], *, sizes: Sequence[int] = (96, 160, 224)) -> list[Payload]:
    """The request mix: three valid requests for each invalid one, the invalid kinds in turn.

    Valid: crops of the photographs at ``sizes`` as JPEG bodies and PNG multipart uploads. Invalid: garbage bytes
    (422), a PNG header declaring 40 000² pixels (413), a body over the limit (413), a wrong token (401).
    """
    valid: list[Payload] = []
    for i, photo in enumerate(photos):
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"cannot read {photo}")
        for size in sizes:
            h, w = image.shape[:2]
            side = min(size, h, w)
            top, left = (h - side) // 2, (w - side) // 2
            crop = np.ascontiguousarray(image[top : top + side, left : left + side])
            if (i + size) % 2:
                valid.append(Payload("jpeg", bytes(cv2.imencode(".jpg", crop)[1].tobytes()), 200))
            else:
                valid.append(Payload("png-multipart", bytes(cv2.imencode(".png", crop)[1].tobytes()), 200, True))
    invalid = [
        Payload("garbage", b"this is not an image " * 8, 422),
        Payload("bomb", _png_bomb(40_000, 40_000), 413),
        Payload("too-large", b"\0" * (BODY_LIMIT + 1024), 413),
        Payload("bad-token", valid[0].body, 401, token="wrong"),
    ]
    mix: list[Payload] = []
    for k in range(max(len(valid), len(invalid) * 3)):
        mix.append(valid[k % len(valid)])
        if k % 3 == 2:
            mix.append(invalid[(k // 3) % len(invalid)])
    return mix


def _png_bomb(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


async def _send(client: Any, payload: Payload) -> int:
    headers = {"Authorization": f"Bearer {payload.token}"}
    if payload.multipart:
        response = await client.post(
            "/v1/jnd", files={"file": ("image.png", payload.body, "image/png")}, headers=headers
        )
    else:
        response = await client.post("/v1/jnd", content=payload.body, headers=headers)
    await response.aread()
    return int(response.status_code)


async def drive(
    url: str, payloads: Sequence[Payload], *, requests: int, concurrency: int, duration_s: float, timeout_s: float
) -> tuple[list[tuple[Payload, int | None, float]], float]:
    """Send ``requests`` requests (payloads in turn) from ``concurrency`` tasks; stop issuing after ``duration_s``.

    Returns:
        (payload, status or None when lost, seconds) per request sent, and the wall time.
    """
    import httpx

    host = httpx.URL(url).host
    if not is_loopback(host):
        raise SystemExit(f"the load test only targets loopback addresses, got {host!r}")
    results: list[tuple[Payload, int | None, float]] = []
    counter = iter(range(requests))
    stop_at = time.monotonic() + duration_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as client:

        async def worker() -> None:
            for i in counter:
                if time.monotonic() >= stop_at:
                    return
                payload = payloads[i % len(payloads)]
                start = time.perf_counter()
                status: int | None
                try:
                    status = await _send(client, payload)
                except httpx.HTTPError:
                    status = None  # lost: no HTTP response
                results.append((payload, status, time.perf_counter() - start))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return results, time.perf_counter() - start


# -- the service ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def running_server(config: ServeConfig, *, start_timeout_s: float = 120.0) -> Iterator[str]:
    """A service for ``config`` on 127.0.0.1 with an ephemeral port, in a thread of this process; yields its URL."""
    import uvicorn

    from sgjnd.serve.app import create_app

    if not is_loopback("127.0.0.1"):  # pragma: no cover - a guard against edits of the line below
        raise SystemExit("loopback only")
    options = {**uvicorn_options(config, host="127.0.0.1", port=0), "log_level": "warning"}
    server = uvicorn.Server(uvicorn.Config(create_app(config), **options))
    thread = threading.Thread(target=server.run, name="loadtest-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SystemExit("the service did not start (see the log above)")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)


def _metrics(url: str) -> str:
    import httpx

    return httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).text


def _histogram_delta(before: str, after: str, name: str, graph: str) -> dict[float, int]:
    a = parse_histogram(after, name, {"graph": graph})
    b = parse_histogram(before, name, {"graph": graph})
    return {bound: count - b.get(bound, 0) for bound, count in a.items() if count - b.get(bound, 0)}


def _exact_mean(before: str, after: str, name: str, graph: str) -> float:
    def read(text: str, suffix: str) -> float:
        prefix = f'{name}_{suffix}{{graph="{graph}"}} '
        return next((float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)), 0.0)

    count = read(after, "count") - read(before, "count")
    return (read(after, "sum") - read(before, "sum")) / count if count else 0.0


def run_mode(
    model_dir: Path,
    mode: Mode,
    payloads: Sequence[Payload],
    *,
    predict: PredictConfig,
    requests: int,
    concurrency: int,
    duration_s: float,
    timeout_s: float,
    workers: int,
    threads: int | None,
) -> ModeReport:
    """Start a service in ``mode``, warm it up, send the load, and report."""
    config = ServeConfig(
        backend="onnxruntime",
        location=model_dir,
        backend_options={"threads": threads},
        predict=predict,
        max_batch=mode.max_batch,
        max_delay_ms=mode.max_delay_ms,
        limits=ServeLimits(max_body_bytes=BODY_LIMIT, workers=workers, queue=max(concurrency, 1) * 2, timeout_s=60),
        token=TOKEN,
    )
    report = ModeReport(mode.name, mode.max_batch, mode.max_delay_ms)
    valid = [p for p in payloads if p.expect == 200]
    with running_server(config) as url:
        asyncio.run(
            drive(url, valid, requests=min(4, requests), concurrency=2, duration_s=duration_s, timeout_s=timeout_s)
        )
        before = _metrics(url)
        results, seconds = asyncio.run(
            drive(url, payloads, requests=requests, concurrency=concurrency, duration_s=duration_s, timeout_s=timeout_s)
        )
        after = _metrics(url)
    latencies = [s * 1e3 for p, status, s in results if p.expect == 200 and status == 200]
    statuses = Counter("lost" if status is None else str(status) for _, status, _ in results)
    report.sent = len(results)
    report.seconds = round(seconds, 3)
    report.throughput_rps = round(len(results) / seconds, 2) if seconds else 0.0
    report.valid_throughput_rps = round(len(latencies) / seconds, 2) if seconds else 0.0
    if latencies:
        report.p50_ms = round(float(np.percentile(latencies, 50)), 1)
        report.p99_ms = round(float(np.percentile(latencies, 99)), 1)
    report.statuses = dict(sorted(statuses.items()))
    report.server_errors = sum(n for s, n in statuses.items() if s != "lost" and int(s) >= 500)
    report.lost = statuses.get("lost", 0)
    report.unexpected = sum(1 for p, status, _ in results if status is not None and status != p.expect)
    delta = _histogram_delta(before, after, "sgjnd_batch_size", "encoder")
    report.batch_sizes = {("inf" if b == float("inf") else f"<={int(b)}"): n for b, n in sorted(delta.items())}
    report.mean_batch_size = round(_exact_mean(before, after, "sgjnd_batch_size", "encoder"), 2)
    report.mean_requests_per_batch = round(_exact_mean(before, after, "sgjnd_batch_requests", "encoder"), 2)
    return report


# -- command line -----------------------------------------------------------------------------------------------


def _tiny_model(folder: Path) -> Path:
    from sgjnd.export.onnx import onnx_from_checkpoint
    from sgjnd.model import create_model, save_checkpoint

    checkpoint = folder / "tiny.pt"
    save_checkpoint(create_model("sgjnd_tiny", seed=0), checkpoint, weights="UNTRAINED: seed 0")
    return Path(onnx_from_checkpoint(checkpoint, folder / "model").out_dir)


def format_table(reports: Sequence[ModeReport]) -> str:
    """One row per mode."""
    head = (
        f"{'mode':<9} {'max batch':>9} {'sent':>5} {'req/s':>7} {'valid/s':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'mean batch':>10} {'req/batch':>9} {'5xx':>4} {'lost':>4}  statuses"
    )
    rows = [head, "-" * len(head)]
    for r in reports:
        rows.append(
            f"{r.mode:<9} {r.max_batch:>9} {r.sent:>5} {r.throughput_rps:>7.2f} {r.valid_throughput_rps:>7.2f} "
            f"{r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.mean_batch_size:>10.2f} {r.mean_requests_per_batch:>9.2f} "
            f"{r.server_errors:>4} {r.lost:>4}  {r.statuses}"
        )
        rows.append(f"{'':<9} batch sizes (rows per encoder run): {r.batch_sizes}")
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    """The load test's arguments."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", type=Path, help="ONNX model directory (default: make the tiny untrained model)")
    parser.add_argument("--requests", type=int, default=200, help="requests per mode")
    parser.add_argument("--concurrency", type=int, default=16, help="client tasks sending at once")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of sending per mode, at most")
    parser.add_argument("--timeout", type=float, default=60.0, help="client timeout per request, seconds")
    parser.add_argument("--max-batch", type=int, default=32, help="max batch of the batched mode")
    parser.add_argument("--max-delay-ms", type=float, default=5.0, help="max delay of the batched mode")
    parser.add_argument("--workers", type=int, default=16, help="service request threads")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--max-patches", type=int, default=8, help="patches per image")
    parser.add_argument("--min-qf", type=int, default=70, help="lowest candidate QF")
    parser.add_argument("--max-qf", type=int, default=95, help="highest candidate QF")
    parser.add_argument("--json", type=Path, help="also write the reports here as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run both modes; print the table; 0 when every mode had no 5xx, no lost response, no unexpected status."""
    args = build_parser().parse_args(argv)
    for name in ("requests", "concurrency"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be at least 1")
    from sgjnd.samples import sample_photos

    predict = PredictConfig(
        max_patches=args.max_patches, search=SearchConfig(qfs=tuple(range(args.min_qf, args.max_qf + 1)))
    )
    payloads = make_payloads(sample_photos())
    modes = [Mode("batched", args.max_batch, args.max_delay_ms), Mode("off", 1, 0.0)]
    with tempfile.TemporaryDirectory(prefix="sgjnd-loadtest-") as tmp:
        model_dir = args.model or _tiny_model(Path(tmp))
        reports = [
            run_mode(
                model_dir,
                mode,
                payloads,
                predict=predict,
                requests=args.requests,
                concurrency=args.concurrency,
                duration_s=args.duration,
                timeout_s=args.timeout,
                workers=args.workers,
                threads=args.threads,
            )
            for mode in modes
        ]
    print(format_table(reports))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in reports], indent=2) + "\n")
    failed = [r.mode for r in reports if not r.ok]
    if failed:
        print(f"FAILED: 5xx, lost or unexpected responses in {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

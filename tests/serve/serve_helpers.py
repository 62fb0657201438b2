"""Helpers shared by the service tests (plain functions; the fixtures are in conftest.py)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sgjnd.runtime.predictor import PredictConfig

TOKEN = "test-token"
"""The bearer token of the ``client`` fixture."""


def require_serve() -> None:
    """Skip the calling module when the serve extra is not installed."""
    pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'sgjnd[serve]'")
    pytest.importorskip("python_multipart", reason="the service needs the serve extra: pip install 'sgjnd[serve]'")


def make_config(model_dir: Path, predict: PredictConfig, **overrides: Any) -> Any:
    """A ServeConfig over the tiny ONNX model with small limits; ``overrides`` replace fields."""
    from sgjnd.serve.config import ServeConfig, ServeLimits

    limits = overrides.pop("limits", ServeLimits(max_body_bytes=1 << 20, workers=4, queue=4, timeout_s=30.0))
    fields: dict[str, Any] = {
        "backend": "onnxruntime",
        "location": model_dir,
        "backend_options": {"threads": 1},
        "predict": predict,
        "max_batch": 16,
        "max_delay_ms": 2.0,
        "limits": limits,
    }
    fields.update(overrides)
    return ServeConfig(**fields)


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


@contextlib.contextmanager
def running_server(args: list[str], *, token: str | None = None) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`sgjnd serve ARGS --port 0` as a real uvicorn process on 127.0.0.1: (base URL, process); stopped after.

    The port is chosen by the OS and read from uvicorn's log; the log is kept read so the server never blocks.
    """
    command = [sys.executable, "-c", _RUNNER, "serve", *args, "--port", "0"]
    env = {**os.environ, **({"SGJND_SERVE_TOKEN": token} if token else {})}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    found = threading.Event()
    port: list[int] = []

    def pump() -> None:
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


def address(url: str) -> tuple[str, int]:
    """(host, port) of a base URL ``http://HOST:PORT``."""
    host, _, port = url.removeprefix("http://").partition(":")
    return host, int(port)


def read_response(sock: Any, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP response from a raw socket until the server closes it: (status, lower-case headers, body).

    Status 0 when the server closed the connection without a response.
    """
    import time

    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        return 0, {}, b""
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (VmRSS from /proc), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def metric_value(text: str, sample: str) -> float:
    """The value of one sample line (name with labels, exactly as rendered) in a /metrics body; 0 when absent."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0

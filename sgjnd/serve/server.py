"""Run the service under uvicorn: one process by default, or several, each loading the model once."""

from __future__ import annotations

import ipaddress
import logging
import os

from sgjnd.errors import UsageError
from sgjnd.serve.config import ServeConfig

log = logging.getLogger(__name__)

HEADROOM_CONNECTIONS = 32
"""Connections uvicorn accepts beyond the admitted requests, so that probes and /metrics still get answers."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(config: ServeConfig, *, host: str = "127.0.0.1", port: int = 8000, processes: int = 1) -> None:
    """Serve ``config`` over HTTP until interrupted.

    Args:
        config: the model, batching and limits.
        host: the address to bind; anything but loopback exposes the service to the network.
        port: the TCP port (0: any free one).
        processes: uvicorn worker processes, each with its own copy of the model and its own batchers.

    Raises:
        UsageError: an invalid port or process count.
    """
    import uvicorn

    if not 0 <= port <= 65535:
        raise UsageError(f"port must be in 0..65535, got {port}")
    if processes < 1:
        raise UsageError(f"processes must be at least 1, got {processes}")
    if not is_loopback(host):
        log.warning(
            "binding %s: the service is reachable from the network%s",
            host,
            "" if config.token else " WITHOUT a token (set --token or SGJND_SERVE_TOKEN)",
        )
    limit = config.limits.workers + config.limits.queue + HEADROOM_CONNECTIONS
    common = {"host": host, "port": port, "limit_concurrency": limit, "timeout_keep_alive": 5, "log_level": "info"}
    if processes == 1:
        from sgjnd.serve.app import create_app

        uvicorn.run(create_app(config), **common)  # type: ignore[arg-type]
        return
    from sgjnd.serve.app import CONFIG_ENV

    # Worker processes are spawned: they rebuild the config from the environment and load their own model.
    os.environ[CONFIG_ENV] = config.to_json()
    uvicorn.run("sgjnd.serve.app:app_from_environment", factory=True, workers=processes, **common)  # type: ignore[arg-type]

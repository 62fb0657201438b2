"""Run the service under uvicorn: one process by default, or several, each loading the model once."""

from __future__ import annotations

import ipaddress
import logging
import os
from typing import Any

from sgjnd.errors import UsageError
from sgjnd.serve.config import ServeConfig

log = logging.getLogger(__name__)


def uvicorn_options(config: ServeConfig, *, host: str, port: int) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run``/``uvicorn.Config`` for ``config``.

    The HTTP protocol is :class:`~sgjnd.serve.protocol.GuardedH11Protocol` (whether or not httptools is installed):
    it bounds idle and slow-header connections, keeps health checks answered at the connection limit and writes
    uvicorn's own error responses in our JSON shape. uvicorn's ``limit_concurrency`` stays off (it counts idle
    connections); admission (``--workers + --queue``) and ``--max-connections`` bound the work and the sockets.
    """
    from sgjnd.serve.protocol import GuardedH11Protocol

    return {
        "host": host,
        "port": port,
        "http": GuardedH11Protocol,
        "timeout_keep_alive": max(1, round(config.limits.keep_alive_s)),  # the protocol applies the exact value
        "log_level": "info",
    }


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
    common = uvicorn_options(config, host=host, port=port)
    if processes == 1:
        from sgjnd.serve.app import create_app

        uvicorn.run(create_app(config), **common)
        return
    from sgjnd.serve.app import CONFIG_ENV

    # Worker processes are spawned: they rebuild the config from the environment and load their own model.
    os.environ[CONFIG_ENV] = config.to_json()
    uvicorn.run("sgjnd.serve.app:app_from_environment", factory=True, workers=processes, **common)

"""`sgjnd serve`: the HTTP service (JND as JSON, compression), with cross-request dynamic batching."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from sgjnd.commands._args import add_model_args, add_predict_args, predict_config_from_args

TOKEN_ENV = "SGJND_SERVE_TOKEN"
"""Environment variable holding the bearer token (safer than --token, which other users can see in `ps`)."""


def _defaults() -> tuple[Any, Any]:
    from sgjnd.serve.config import ServeConfig, ServeLimits

    return ServeConfig(backend="onnxruntime", location=Path()), ServeLimits()


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="serve JND prediction and compression over HTTP",
        description="Serve the model over HTTP: POST /v1/jnd (JSON result), POST /v1/compress (the JPEG), "
        "GET /healthz, /readyz, /metrics (Prometheus), /docs (OpenAPI). Inference calls of concurrent requests are "
        "merged into shared backend batches. Binds 127.0.0.1 unless --host says otherwise.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_args(parser, positional=True)
    add_predict_args(parser)
    config, limits = _defaults()
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    net.add_argument("--port", type=int, default=8000, help="TCP port")
    net.add_argument("--processes", type=int, default=1, help="worker processes, each loading the model once")
    net.add_argument(
        "--token", default=None, help=f"require 'Authorization: Bearer TOKEN'; when not given, ${TOKEN_ENV} if set"
    )
    batch = parser.add_argument_group("dynamic batching")
    batch.add_argument(
        "--max-batch", type=int, default=config.max_batch, help="rows per backend run across requests (1: off)"
    )
    batch.add_argument(
        "--max-delay-ms", type=float, default=config.max_delay_ms, help="longest wait for a batch to fill"
    )
    lim = parser.add_argument_group("limits")
    lim.add_argument("--max-body-bytes", type=int, default=limits.max_body_bytes, help="largest request body")
    lim.add_argument("--max-body-memory", type=int, default=limits.max_body_memory,
                     help="bytes of request bodies held in memory at once; a request beyond it waits, its body "
                     "unread, within its --timeout (default: --workers x --max-body-bytes)")
    lim.add_argument("--workers", type=int, default=limits.workers, help="threads running requests")
    lim.add_argument("--queue", type=int, default=limits.queue, help="requests waiting beyond --workers (then 503)")
    lim.add_argument("--timeout", type=float, default=limits.timeout_s, help="seconds per request (then 504)")
    lim.add_argument(
        "--header-timeout",
        type=float,
        default=limits.header_timeout_s,
        help="seconds for a connection to send a complete request head, from opening or its last response (then "
        "closed; 408 if part of a head came)",
    )
    lim.add_argument(
        "--keep-alive", type=float, default=limits.keep_alive_s, help="seconds an idle keep-alive connection stays"
    )
    lim.add_argument(
        "--max-connections",
        type=int,
        default=limits.max_connections,
        help="open connections; at the limit the one idle longest is closed for a new one, and when all are busy "
        "only /healthz and /readyz get a few more (then 503)",
    )
    parser.set_defaults(run=run)
    return parser


def serve_config_from_args(args: argparse.Namespace) -> Any:
    """The ServeConfig the arguments describe (the positional MODEL is the same as --model)."""
    from sgjnd.commands._args import announce, source_from_args
    from sgjnd.errors import UsageError
    from sgjnd.runtime.source import resolve_source
    from sgjnd.serve.config import ServeConfig, ServeLimits

    if args.model_arg is not None and (args.model is not None or args.weights is not None):
        raise UsageError("give the model once: as MODEL or as --model, not both")
    # Resolved once here, so that every worker process runs the same backend, precision and files.
    resolved = resolve_source(source_from_args(args))
    announce(resolved.line)
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    return ServeConfig(
        backend=resolved.backend,
        location=resolved.location,
        precision=resolved.precision,
        backend_options=dict(resolved.options),
        predict=predict_config_from_args(args),
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        limits=ServeLimits(
            max_body_bytes=args.max_body_bytes,
            max_body_memory=args.max_body_memory,
            workers=args.workers,
            queue=args.queue,
            timeout_s=args.timeout,
            header_timeout_s=args.header_timeout,
            keep_alive_s=args.keep_alive,
            max_connections=args.max_connections,
        ),
        token=token,
    )


def run(args: argparse.Namespace) -> int:
    from sgjnd.errors import UsageError
    from sgjnd.serve.server import serve

    config = serve_config_from_args(args)
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"sgjnd serve needs the serve extra ({exc}): pip install 'sgjnd[serve]'") from exc
    serve(config, host=args.host, port=args.port, processes=args.processes)
    return 0

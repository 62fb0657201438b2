"""The HTTP service: a FastAPI app factory over one model behind cross-request dynamic batching.

Routes: ``POST /v1/jnd`` (the JSON result), ``POST /v1/compress`` (the JPEG at the recommended quality, the result
in headers), ``GET /healthz``, ``GET /readyz``, ``GET /metrics`` (Prometheus text), ``GET /`` (a self-contained page:
drop a photo, see its JND view, download the JPEG; it calls the two ``/v1`` routes like any client), ``GET /docs``
(Swagger UI from local assets: nothing is fetched from a CDN) and ``/openapi.json``.

Connections are bounded before any request (:mod:`sgjnd.serve.protocol`: a deadline for each request head, a
connection limit that closes idle connections first and keeps health checks answered). A request passes, in order
and before any work: the bearer token, the declared body size, admission (requests in flight at most
``workers + queue``), the streamed body size, then the pixel count read from the image header. Only the body's
streaming runs on the event loop: multipart parsing, the header check and the work (decode, JPEG trials, inference
through the batcher) run on a bounded thread pool under the request's deadline. Every failure is a JSON error
``{"error": {"code", "message"}}`` with a stable code (and the same code in the ``X-Error-Code`` header);
nothing a request sends can stop the service.

The model is loaded once per process, when the app starts (uvicorn's lifespan); a model that cannot be loaded
stops the start with its error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sgjnd import __version__
from sgjnd.errors import SgjndError
from sgjnd.jobs.results_log import json_safe
from sgjnd.runtime.backends.base import ModelBackends
from sgjnd.runtime.predictor import JNDPredictor
from sgjnd.runtime.source import open_source
from sgjnd.serve.batcher import RequestTimeout, batched_models, request_deadline
from sgjnd.serve.config import ServeConfig
from sgjnd.serve.errors import ApiError, api_error, api_error_from
from sgjnd.serve.limits import (
    Admission,
    BodyBudget,
    check_bearer,
    check_content_length,
    check_pixels,
    image_from_body,
    limit_receive,
)
from sgjnd.serve.metrics import CONTENT_TYPE, Metrics
from sgjnd.serve.protocol import STATE_KEY
from sgjnd.serve.schemas import ERRORS, IMAGE_BODY, HealthResponse, JNDResponse, ReadyResponse
from sgjnd.visual.views import BELOW_STEPS

log = logging.getLogger(__name__)

ROUTES: tuple[str, ...] = ("/v1/jnd", "/v1/compress", "/healthz", "/readyz", "/metrics")
"""Routes counted under their own name in the metrics; any other path counts as ``other``."""

CONFIG_ENV = "SGJND_SERVE_CONFIG"
"""Environment variable through which ``sgjnd serve --processes N`` hands the config to uvicorn's workers."""

ERROR_HEADER = "X-Error-Code"


def error_response(err: ApiError) -> JSONResponse:
    """The JSON response of ``err``, with its code in ``X-Error-Code`` and its extra headers."""
    headers = {ERROR_HEADER: err.code, **dict(err.headers)}
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


class Service:
    """The model and the request machinery of one process (created by :func:`create_app`).

    Args:
        config: the service's configuration.
    """

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        limits = config.limits
        self.admission = Admission(limits.workers + limits.queue)
        self.bodies = BodyBudget(limits.body_memory, on_change=self.metrics.body_bytes_held.set)
        self.predictor: JNDPredictor | None = None
        self._stack = contextlib.ExitStack()
        self._executor: ThreadPoolExecutor | None = None
        self._models: ModelBackends | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the model, start the batchers and the thread pool.

        Raises:
            SgjndError: the model cannot be opened or loaded.
        """
        cfg = self.config
        try:
            models = self._stack.enter_context(
                open_source(cfg.source)
            )
            self._models = self._stack.enter_context(
                batched_models(
                    models,
                    max_batch=cfg.max_batch,
                    max_delay_ms=cfg.max_delay_ms,
                    observer=self.metrics.observe_batch,
                )
            )
            self.predictor = JNDPredictor(self._models, cfg.predict)
        except BaseException:
            self._stack.close()
            raise
        self._executor = ThreadPoolExecutor(max_workers=cfg.limits.workers, thread_name_prefix="sgjnd-request")
        self.metrics.ready.set(1)
        log.info("model %s loaded on %s", self._models.model.name, self._models.encoder.description)

    def stop(self) -> None:
        """Refuse new requests, let running ones finish, free the model."""
        self.metrics.ready.set(0)
        self.predictor = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._stack.close()
        self._models = None

    @property
    def ready(self) -> bool:
        """Whether the model is loaded and requests are taken."""
        return self.predictor is not None and self._executor is not None

    def page_settings(self) -> dict[str, Any]:
        """What the service page's script needs: limits, whether a token is required, the model's patch size."""
        models = self._models
        return {
            "token_required": self.config.token is not None,
            "max_body_bytes": self.config.limits.max_body_bytes,
            "max_pixels": self.config.predict.max_pixels,
            "patch_size": models.model.patch_size if models is not None else 0,
            "threshold": self.config.predict.search.threshold,
            "below_steps": BELOW_STEPS,
            "model": models.model.name if models is not None else "not loaded",
            "backend": models.encoder.description if models is not None else "not loaded",
        }

    def describe(self) -> dict[str, Any]:
        """The readiness report."""
        if self._models is None:
            raise api_error("not_ready", "the model is not loaded yet (or the service is stopping); retry shortly")
        return {
            "status": "ready",
            "model": self._models.model.name,
            "backend": self._models.encoder.description,
            "max_batch": self.config.max_batch,
            "max_delay_ms": self.config.max_delay_ms,
        }

    # -- requests --------------------------------------------------------------------------------------------
    async def run(self, request: Request, work: Callable[[bytes, str], Any]) -> Any:
        """Admit ``request``, read its image within the limits and run ``work(data, source)`` on the pool.

        Raises:
            ApiError: for every refusal and failure (mapped from sgjnd's errors).
        """
        executor = self._executor
        if executor is None or self.predictor is None:
            raise api_error("not_ready", "the model is not loaded yet (or the service is stopping); retry shortly")
        limits = self.config.limits
        deadline = time.monotonic() + limits.timeout_s
        self.admission.enter()
        self.metrics.in_flight.add(1)
        submitted = False
        reserved = 0
        try:
            # The body is read only once its bytes fit in the body budget; until then it stays unread at the client.
            declared = request.headers.get("content-length", "")
            wanted = int(declared) if declared.isdigit() else limits.max_body_bytes  # _Guard checked it is in range
            self.metrics.bodies_waiting.add(1)
            try:
                await _within(deadline, self.bodies.reserve(wanted), "waiting for memory to read the body into")
            finally:
                self.metrics.bodies_waiting.add(-1)
            reserved = wanted
            # Only the streaming of the body runs on the event loop; joining it, parsing a multipart form, reading
            # the image header and all the work run on the pool, so the loop (and /healthz) never waits on them.
            chunks = await _within(deadline, read_body(request), "reading the request body")
            content_type = request.headers.get("content-type", "")
            max_pixels = self.config.predict.max_pixels

            def job() -> Any:
                if time.monotonic() >= deadline:  # timed out while queued for a thread: do nothing
                    raise RequestTimeout("request deadline passed while waiting for a worker thread")
                data, source = image_from_body(content_type, b"".join(chunks))
                chunks.clear()
                check_pixels(data, max_pixels)
                with request_deadline(deadline):
                    return work(data, source)

            try:
                future = executor.submit(job)
            except RuntimeError as exc:  # the pool was shut down meanwhile: the service is stopping
                raise api_error("not_ready", "the service is stopping; retry on another instance") from exc
            future.add_done_callback(functools.partial(self._release, body_bytes=reserved))
            submitted = True
            return await _within(deadline, asyncio.wrap_future(future), "predicting")
        except ApiError:
            raise
        except ClientDisconnect as exc:  # nobody is left to answer; counted, not logged as a bug
            raise api_error("bad_request", "the client closed the connection before sending its whole body") from exc
        except SgjndError as exc:
            raise api_error_from(exc) from exc
        except Exception as exc:  # a bug must fail its request only; the service goes on
            log.exception("unexpected error while serving a request")
            raise api_error(
                "internal", f"unexpected {type(exc).__name__}: a bug in sgjnd; the service goes on. Please report it"
            ) from exc
        finally:
            if not submitted:
                self._release(None, body_bytes=reserved)

    def _release(self, _: Future[Any] | None, *, body_bytes: int) -> None:
        """The request's work has finished (or never started): its admission and its body's bytes are free."""
        if body_bytes:
            self.bodies.release(body_bytes)
        self.admission.leave()
        self.metrics.in_flight.add(-1)


async def _within(deadline: float, awaitable: Awaitable[Any], doing: str) -> Any:
    remaining = deadline - time.monotonic()
    try:
        return await asyncio.wait_for(awaitable, timeout=max(remaining, 0.0))
    except TimeoutError as exc:
        raise api_error(
            "timeout",
            f"the request took longer than the service's limit while {doing}; retry, or send a smaller "
            f"image (the limit is the service's --timeout)",
        ) from exc


async def read_body(request: Request) -> list[bytes]:
    """The body's chunks as they stream in (bounded by the body limit of :func:`limit_receive`), unjoined.

    This is all a request does on the event loop; :func:`image_from_body` parses the body on a worker thread.
    """
    return [chunk async for chunk in request.stream() if chunk]


class _Guard:
    """Outermost ASGI layer: metrics for every request, then the bearer token and body-size checks."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        route = path if path in ROUTES else "other"
        start = time.perf_counter()
        status, code = 500, None

        async def tracked(message: Message) -> None:
            nonlocal status, code
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for key, value in message.get("headers", ()):
                    if key.decode("latin-1").lower() == ERROR_HEADER.lower():
                        code = value.decode("latin-1")
            await send(message)

        try:
            headers = _headers(scope)
            if path.startswith("/v1/") or path == "/metrics":
                check_bearer(headers.get("authorization"), self.service.config.token)
            if path.startswith("/v1/"):
                check_content_length(headers, self.service.config.limits.max_body_bytes)
                receive = limit_receive(receive, self.service.config.limits.max_body_bytes)
            await self.app(scope, receive, tracked)
        except ApiError as err:
            await error_response(err)(scope, receive, tracked)
        finally:
            if code is None and status >= 400:
                code = "internal" if status >= 500 else "bad_request"
            self.service.metrics.observe_request(route, status, time.perf_counter() - start, code)


def _headers(scope: Scope) -> Mapping[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}


def create_app(config: ServeConfig) -> FastAPI:
    """The service as an ASGI app; the model loads when the app starts (``with TestClient(app)``, uvicorn).

    Args:
        config: model, batching and limits.

    Returns:
        The FastAPI app; its :class:`Service` is ``app.state.service``.
    """
    service = Service(config)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await asyncio.to_thread(service.start)
        try:
            yield {STATE_KEY: service}  # uvicorn hands this state to each connection (sgjnd.serve.protocol)
        finally:
            await asyncio.to_thread(service.stop)

    app = FastAPI(
        title="sgjnd",
        version=__version__,
        description="JND prediction and content-aware JPEG compression with SG-JND.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own pages load their scripts from a CDN: blank on an offline box
        redoc_url=None,
    )
    app.state.service = service
    _add_error_handlers(app)
    _add_pages(app, service)

    @app.post("/v1/jnd", response_model=JNDResponse, responses=ERRORS, openapi_extra=IMAGE_BODY)
    async def jnd(request: Request) -> JSONResponse:
        """Predict the JND and the recommended JPEG quality of one image."""

        def work(data: bytes, source: str) -> dict[str, Any]:
            # Strict JSON: a non-finite float (a patch never scored) becomes null instead of failing the response.
            return json_safe(_predictor(service).predict(data, source=source).to_dict())

        return JSONResponse(await service.run(request, work))

    @app.post(
        "/v1/compress",
        response_class=Response,
        responses={
            200: {
                "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
                "description": "the JPEG; the prediction is in the X-SGJND-* headers",
            },
            **ERRORS,
        },
        openapi_extra=IMAGE_BODY,
    )
    async def compress(
        request: Request,
        margin: int = Query(0, ge=-99, le=99, description="QF steps added to the recommended QF"),
        keep_metadata: bool = Query(True, description="copy EXIF (orientation reset) and the ICC profile"),
    ) -> Response:
        """Compress one image as a JPEG at its recommended quality (metadata kept); the result is in headers."""
        from sgjnd.compress import CompressConfig, compress_image

        settings = CompressConfig(margin=margin, keep_metadata=keep_metadata)

        def work(data: bytes, source: str) -> tuple[bytes, dict[str, Any]]:
            out, result = compress_image(
                _predictor(service), data, source=source, output=Path("<response>"), config=settings
            )
            return out, json_safe(result.to_dict())

        jpeg, result = await service.run(request, work)
        headers = {
            "X-SGJND-QF": str(result["qf"]),
            "X-SGJND-JND-QF": _header_value(result["jnd_qf"]),
            "X-SGJND-Recommended-QF": _header_value(result["recommended_qf"]),
            "X-SGJND-PSNR-dB": _header_value(result["psnr_db"]),
            # ASCII JSON on one line: safe in a header whatever the notes say.
            "X-SGJND-Result": json.dumps(result, ensure_ascii=True, separators=(",", ":")),
        }
        return Response(jpeg, media_type="image/jpeg", headers=headers)

    @app.get("/healthz", response_model=HealthResponse)
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=ReadyResponse, responses={503: ERRORS[503]})
    async def readyz() -> dict[str, Any]:
        """Readiness: the model is loaded and requests are taken."""
        return service.describe()

    @app.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}, 401: ERRORS[401]})
    async def metrics() -> Response:
        """Prometheus metrics: requests by route and status, errors by code, latency, batch sizes."""
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    # Wraps routing and the handlers above, so it sees (and counts) every response they send.
    app.add_middleware(_Guard, service=service)
    return app


DOCS_ASSETS = "/docs-assets"
"""Where the Swagger UI files (from the ``fastapi-offline`` package) are served."""


def _add_pages(app: FastAPI, service: Service) -> None:
    """``GET /``: the JND page; ``GET /docs``: Swagger UI on local assets. Both are public; the API calls they make
    carry the token the user enters, and every limit of the API applies to them."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    from sgjnd.visual.page import service_page

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(service_page(service.page_settings()))

    assets = _swagger_assets()
    if assets is None:
        log.warning("fastapi-offline is not installed: /docs is off (pip install 'sgjnd[serve]'); /openapi.json works")
        return
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )


def _swagger_assets() -> Path | None:
    """The folder of Swagger UI's files shipped by ``fastapi-offline`` (MIT), or None when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _predictor(service: Service) -> JNDPredictor:
    predictor = service.predictor
    if predictor is None:
        raise api_error("not_ready", "the service is stopping; retry on another instance")
    return predictor


def _header_value(value: Any) -> str:
    return "" if value is None else str(value)


_STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def on_api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors())
        return error_response(api_error("bad_request", f"invalid request parameters: {problems}"))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal")
        err = ApiError(exc.status_code, code, str(exc.detail), tuple((exc.headers or {}).items()))
        return error_response(err)

    @app.exception_handler(Exception)
    async def on_bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        return error_response(
            api_error("internal", f"unexpected {type(exc).__name__}: a bug in sgjnd; the service goes on. Report it")
        )


def app_from_environment() -> FastAPI:
    """The app of ``sgjnd serve --processes N``: each uvicorn worker rebuilds the config from :data:`CONFIG_ENV`.

    Raises:
        SgjndError: the variable is missing (this factory is only for ``sgjnd serve``).
    """
    text = os.environ.get(CONFIG_ENV)
    if not text:
        from sgjnd.errors import UsageError

        raise UsageError(f"{CONFIG_ENV} is not set: start the service with `sgjnd serve`, which sets it")
    return create_app(ServeConfig.from_json(text))

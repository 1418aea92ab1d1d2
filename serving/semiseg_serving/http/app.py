"""The FastAPI app: routes, their OpenAPI description, JSON errors everywhere, start-up and hot reload.

=====================  ======  =====================================================================
path                   method  answer
=====================  ======  =====================================================================
/v1/segment            POST    the mask of an image (see segment_endpoint.py)
/v1/model              GET     name, version (content hash), provider and the metadata embedded at export
/healthz               GET     200 while the process is alive
/readyz                GET     200 once the model is loaded and warmed up, 503 (with the reason) before
/metrics               GET     Prometheus text exposition (see metrics.py)
/admin/reload          POST    reload the model file in place; loopback clients only (403 otherwise)
/openapi.json          GET     the OpenAPI 3 description of every route, request, answer and error
/docs                  GET     interactive API docs (Swagger UI; the browser loads its script from a CDN)
=====================  ======  =====================================================================

FastAPI, because it sits on the Starlette/uvicorn stack the service already ran on (the handlers, the batcher and the
limits stay as they were) and writes the OpenAPI document from the routes and the pydantic models in schemas.py.
The handlers read the body and the query themselves (size limit, slow-client timeout, header-only size check before
decoding, the service's own error codes), so ``/v1/segment``'s body and query are described by hand in
``SEGMENT_BODY`` and ``SEGMENT_QUERY``.

Hot reload also happens on SIGHUP when the app was made with ``install_sighup=True`` (``serve`` does this).
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
from importlib.metadata import PackageNotFoundError, version
from typing import Any, AsyncIterator, Dict, List, Optional, Union

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import ModelFileError
from .api_error import ApiError, error_response
from .config import ServiceConfig
from .metrics import CONTENT_TYPE
from .middleware import RequestMetrics
from .model_holder import ModelHolder
from .schemas import ErrorBody, Health, ModelInfo, Ready, ReloadResult, SegmentJSON
from .segment_endpoint import MASK_ENCODINGS, segment
from .state import ServiceState
from .store_follow import current_model, follow_store

log = logging.getLogger(__name__)


def package_version() -> str:
    """The installed semiseg-sdk version (the API's version in the OpenAPI document)."""
    try:
        return version("semiseg-sdk")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


def _state(request: Request) -> ServiceState:
    return request.app.state.service


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    model = _state(request).require_model()
    return JSONResponse({"ready": True, "model": model.identity()})


async def model_info(request: Request) -> Response:
    state = _state(request)
    model = state.require_model()
    extra = {"store_version": state.served_version} if state.served_version is not None else {}
    window = state.config.window_for(model.segmenter.metadata.scored_tile)
    return JSONResponse({**model.describe(), **extra, "window": window, "service": state.config.to_dict()})


async def metrics(request: Request) -> Response:
    state = _state(request)
    current = state.holder.current
    text = state.metrics.render(current.prometheus_labels() if current else {}, current is not None)
    return Response(text, media_type=CONTENT_TYPE)


def is_loopback(host: Optional[str]) -> bool:
    """True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback); False for anything else, unix sockets included."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


async def run_reload(state: ServiceState) -> dict:
    """Reload in a worker thread (serially, see ModelHolder) and count the result."""
    result = await anyio.to_thread.run_sync(state.holder.reload)
    state.metrics.observe_reload(result["ok"])
    return result


async def admin_reload(request: Request) -> Response:
    client = request.client.host if request.client else None
    if not is_loopback(client):
        raise ApiError(403, "forbidden", f"/admin/reload only answers loopback clients (this one is {client})")
    result = await run_reload(_state(request))
    if not result["ok"]:
        message = f"reload failed: {result['error']}; " + (
            "the previous model keeps serving" if result["model"] else "no model is serving")
        return JSONResponse({"error": {"code": "reload_failed", "message": message}, "model": result["model"]},
                            status_code=500, headers={"X-Error-Code": "reload_failed"})
    return JSONResponse({"reloaded": True, "model": result["model"], "previous": result["previous"]})


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    message = f"no route {request.url.path}" if exc.status_code == 404 else str(exc.detail)
    return error_response(exc.status_code, code, message, dict(exc.headers or {}))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s: %s: %s", request.url.path, type(exc).__name__, exc)
    return error_response(500, "internal", f"unexpected server error ({type(exc).__name__}); see the server log")


def _install_sighup(state: ServiceState) -> bool:
    """Reload on SIGHUP (main thread, POSIX only); False when the platform or thread does not allow it."""
    if not hasattr(signal, "SIGHUP"):
        return False
    loop = asyncio.get_running_loop()

    def on_hup() -> None:
        log.info("SIGHUP: reloading %s", state.holder.path)
        task = loop.create_task(run_reload(state))
        state.background.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(state.background.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        log.warning("SIGHUP reload not installed (%s); use POST /admin/reload", exc)
        return False
    return True


def create_app(model: Union[str, os.PathLike, ModelHolder, None] = None, config: Optional[ServiceConfig] = None,
               install_sighup: bool = False, store: Union[str, os.PathLike, None] = None,
               follow_interval_s: float = 2.0) -> FastAPI:
    """The ASGI app serving ``model`` (an ONNX path, loaded in the background at start-up, or a ModelHolder), or the
    current version of the continual model ``store``, followed as it is promoted or rolled back.

    Run it with any ASGI server, e.g. ``uvicorn.run(create_app("model.onnx"), host="127.0.0.1", port=8080)``.
    """
    config = config or ServiceConfig()
    version = None
    if store is not None:
        version, path = current_model(store)
        model = str(path)
    if model is None:
        raise ModelFileError("create_app: give a model (.onnx) or a store")
    holder = model if isinstance(model, ModelHolder) else ModelHolder(os.fspath(model), config)
    state = ServiceState(holder, config)
    state.served_version = version

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.limiter = CapacityLimiter(max(2, os.cpu_count() or 2))
        await state.batcher.start()
        if holder.current is None:
            holder.load_in_background()
        hup = install_sighup and _install_sighup(state)
        follower = asyncio.create_task(follow_store(state, store, version, follow_interval_s)) if store is not None else None
        try:
            yield
        finally:
            if follower is not None:
                follower.cancel()
            if hup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await state.batcher.stop()

    app = FastAPI(
        title="semiseg-serving", version=package_version(), lifespan=lifespan,
        description="Semantic segmentation over HTTP: an image in, its class-id mask out (palette PNG or JSON).",
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _internal_error},
    )
    app.add_api_route("/v1/segment", segment, methods=["POST"], summary="Segment one image", response_class=Response,
                      responses=SEGMENT_RESPONSES, openapi_extra={"requestBody": SEGMENT_BODY, "parameters": SEGMENT_QUERY})
    app.add_api_route("/v1/model", model_info, methods=["GET"], summary="The model being served",
                      response_model=ModelInfo, responses=errors(503))
    app.add_api_route("/healthz", healthz, methods=["GET"], summary="Liveness", response_model=Health)
    app.add_api_route("/readyz", readyz, methods=["GET"], summary="Readiness (model loaded and warmed up)",
                      response_model=Ready, responses=errors(503))
    app.add_api_route("/metrics", metrics, methods=["GET"], summary="Prometheus metrics", response_class=Response,
                      responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
                                       "description": "Prometheus text exposition"}})
    app.add_api_route("/admin/reload", admin_reload, methods=["POST"], summary="Reload the model file (loopback only)",
                      response_model=ReloadResult, responses=errors(403, 500))
    endpoints = [r.path for r in app.routes]
    app.add_middleware(RequestMetrics, metrics=state.metrics, endpoints=endpoints)
    app.state.service = state
    return app


def errors(*statuses: int) -> Dict[Union[int, str], Dict[str, Any]]:
    """OpenAPI ``responses`` entries for refusals with these statuses (all share the error body)."""
    return {s: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[s]} for s in statuses}


ERROR_DESCRIPTIONS = {
    400: "bad request: empty_body, bad_multipart, bad_image, bad_format, bad_request", 403: "forbidden",
    406: "not_acceptable: Accept allows neither image/png nor application/json", 408: "body_timeout",
    413: "body_too_large, too_many_pixels or memory_limit", 415: "unsupported_media",
    500: "internal or reload_failed", 503: "not_ready or overloaded (with Retry-After)", 504: "timeout",
}
SEGMENT_BODY: Dict[str, Any] = {
    "required": True,
    "description": "The image: raw PNG/JPEG bytes, or a multipart form with the image in the field `image`.",
    "content": {
        **{media: {"schema": {"type": "string", "format": "binary"}}
           for media in ("image/png", "image/jpeg", "application/octet-stream")},
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                           "properties": {"image": {"type": "string", "format": "binary"}}}},
    },
}
SEGMENT_QUERY: List[Dict[str, Any]] = [
    {"name": "format", "in": "query", "required": False, "schema": {"type": "string", "enum": ["png", "json"]},
     "description": "the answer's format; without it the Accept header decides, and png when it allows both"},
    {"name": "mask_encoding", "in": "query", "required": False,
     "schema": {"type": "string", "enum": list(MASK_ENCODINGS), "default": MASK_ENCODINGS[0]},
     "description": "the JSON mask's encoding: runs of the row-major mask, or one COCO RLE per class present"},
]
SEGMENT_RESPONSES: Dict[Union[int, str], Dict[str, Any]] = {
    200: {"description": "The mask: an indexed PNG (pixel = class id, palette = class colours; headers X-Model-Name, "
                         "X-Model-Version, X-Mean-Confidence, X-Latency-Ms, X-Batch-Size) or the JSON answer.",
          "model": SegmentJSON, "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
    **errors(400, 406, 408, 413, 415, 500, 503, 504),
}

"""Running the service: ``serve`` (the CLI entry, blocks) and ``start_in_thread`` (tests, notebooks, benchmarks)."""
from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import uvicorn

from ..errors import ModelFileError
from ..sliding_window import check_tile_flag
from .app import create_app
from .config import ServiceConfig

log = logging.getLogger(__name__)


def serve(model: Optional[str] = None, host: str = "127.0.0.1", port: int = 8080, max_batch: int = 8, max_wait_ms: float = 5.0,
          max_body_mb: float = 20.0, max_pixels: int = 40_000_000, request_timeout_s: float = 30.0,
          max_in_flight: int = 64, providers: str = "auto", threads: Optional[int] = None,
          log_level: str = "info", body_timeout_s: float = 10.0, max_receiving: int = 256,
          memory_budget_mb: int = 1024, store: Optional[str] = None, tile: Optional[int] = None) -> None:
    """Serve ``model`` (a semiseg ONNX export) over HTTP until interrupted (Ctrl+C / SIGTERM).

    Endpoints: ``POST /v1/segment``, ``GET /v1/model``, ``/healthz``, ``/readyz``, ``/metrics``,
    ``POST /admin/reload`` (loopback only); ``kill -HUP <pid>`` also reloads the model file in place.

    Args:
        model: the ``.onnx`` file; replace it (``mv new.onnx model.onnx``) and reload to deploy a new model.
        store: instead of ``model``, a continual model store: its current version is served, and a promote or
            rollback (``current.json`` changing) is picked up within two seconds without a restart.
        host / port: where to listen; keep 127.0.0.1 behind a reverse proxy, ``0.0.0.0`` to listen on all.
        max_batch / max_wait_ms: dynamic batching (``max_batch=1`` turns it off).
        max_body_mb / max_pixels / request_timeout_s / max_in_flight: limits (413 / 413 / 504 / 503).
        body_timeout_s / max_receiving: a body must arrive within ``body_timeout_s`` (408); at most
            ``max_receiving`` bodies arrive at once (503). A slow upload never holds one of the ``max_in_flight``.
        memory_budget_mb: working memory for requests being served (each needs its pixels x the model's measured
            bytes per pixel; images over 1024x1024 pixels run tile by tile); an image that alone needs more gets 413.
        tile: images larger than ``tile`` px on a side are predicted by sliding ``tile``-px windows, as
            ``semiseg infer --tile``; by default the window the model's run was scored on (its training crop unless
            it chose another), so answers repeat ``infer``'s masks; 0 predicts whole images.
        providers: onnxruntime providers, ``"auto"`` = TensorRT > CUDA > CPU.
        threads: onnxruntime intra-op threads (None: one per core).
        log_level: uvicorn's log level.
    """
    if (model is None) == (store is None):
        raise ModelFileError("serve: give either a model file (.onnx) or --store DIR (a continual model store)")
    if model is not None and not Path(model).is_file():
        raise ModelFileError(f"{model}: model file not found")
    check_tile_flag(tile)
    config = ServiceConfig(max_batch=int(max_batch), max_wait_ms=float(max_wait_ms),
                           max_body_bytes=int(float(max_body_mb) * 2**20), max_pixels=int(max_pixels),
                           request_timeout_s=float(request_timeout_s), max_in_flight=int(max_in_flight),
                           body_timeout_s=float(body_timeout_s), max_receiving=int(max_receiving),
                           memory_budget_mb=int(memory_budget_mb), window=tile,
                           providers=str(providers), intra_op_threads=threads)
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(model, config, install_sighup=True, store=store)
    # proxy_headers: a reverse proxy on loopback passes the real client address, so /admin/reload stays local.
    uvicorn.run(app, host=host, port=int(port), log_level=log_level, proxy_headers=True,
                forwarded_allow_ips="127.0.0.1", timeout_graceful_shutdown=int(request_timeout_s) + 1)


@dataclass
class RunningService:
    """A service started by :func:`start_in_thread`; ``stop()`` ends it (waits for requests in flight)."""

    server: uvicorn.Server
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout_s)

    def __enter__(self) -> "RunningService":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, startup_timeout_s: float = 30.0,
                    **uvicorn_options: Any) -> RunningService:
    """Serve an ASGI ``app`` from a background thread; ``port=0`` picks a free port (see ``.port``).

    Returns once the server accepts connections (the model may still be loading: poll ``/readyz``).
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    options = {"log_level": "warning", "proxy_headers": True, "forwarded_allow_ips": "127.0.0.1",
               **uvicorn_options}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="semiseg-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            raise RuntimeError(f"the HTTP service did not start on {host}:{sock.getsockname()[1]}")
        time.sleep(0.01)
    return RunningService(server, thread, host, sock.getsockname()[1])

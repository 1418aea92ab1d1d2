"""ASGI middleware around every request: count requests, errors and latency for /metrics."""
from __future__ import annotations

import time
from typing import Any, Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api_error import ERROR_HEADER
from .metrics import Metrics


class RequestMetrics:
    """Per-request metrics (endpoint label = a known route path or ``other``; error code from ``X-Error-Code``)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, endpoints: Iterable[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = frozenset(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope.get("path", "")
        endpoint = path if path in self.endpoints else "other"
        seen: dict = {"status": 500, "code": None}

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for key, value in message.get("headers", []):
                    if key.decode("latin-1").lower() == ERROR_HEADER.lower():
                        seen["code"] = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            status: Any = seen["status"]
            self.metrics.observe_request(endpoint, status, time.perf_counter() - start)
            if status >= 400:
                self.metrics.observe_error(endpoint, seen["code"] or ("internal" if status >= 500 else "http_error"))

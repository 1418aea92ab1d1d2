"""ASGI middleware around every request: refuse traversal-looking paths, count requests, errors and latency."""
from __future__ import annotations

import time
from typing import Any, Iterable, List, Optional
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api_error import ERROR_HEADER, error_response
from .metrics import Metrics

MAX_DECODE_ROUNDS = 4  # undo %-encoding this many times (catches %252e%252e and deeper nesting)


def unsafe_path_reason(path: str, raw_path: Optional[bytes] = None) -> Optional[str]:
    """Why a request path is refused (``..`` segment, backslash, NUL), in any %-decoding of it; None if fine.

    The service has no route that reads files, but such paths are refused before routing so that no future
    route, proxy or log viewer ever sees them.
    """
    forms: List[str] = [path]
    text = raw_path.decode("latin-1") if raw_path else path
    for _ in range(MAX_DECODE_ROUNDS):
        forms.append(text)
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    forms.append(text)
    for form in forms:
        if "\x00" in form:
            return "the path contains a NUL byte"
        if "\\" in form:
            return "the path contains a backslash"
        if ".." in form.split("/"):
            return "the path contains a '..' segment"
    return None


class ServiceMiddleware:
    """Path guard + per-request metrics (endpoint label = a known route path or ``other``)."""

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
            reason = unsafe_path_reason(path, scope.get("raw_path"))
            if reason is not None:
                await error_response(400, "bad_path", f"refused: {reason}")(scope, receive, observed_send)
            else:
                await self.app(scope, receive, observed_send)
        finally:
            status: Any = seen["status"]
            self.metrics.observe_request(endpoint, status, time.perf_counter() - start)
            if status >= 400:
                self.metrics.observe_error(endpoint, seen["code"] or ("internal" if status >= 500 else "http_error"))

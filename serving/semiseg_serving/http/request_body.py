"""Reading a request body under a size limit and a deadline, and finding the image bytes in it.

Raw bodies (``image/png``, ``image/jpeg``, ``application/octet-stream``) are the image itself; a
``multipart/form-data`` body carries it in the field ``image`` (parsed by :mod:`.multipart_form` with
python-multipart). Anything else is refused with 415 before the body is read.
"""
from __future__ import annotations

import asyncio
from typing import List

from starlette.requests import Request

from .api_error import ApiError
from .multipart_form import form_field

RAW_TYPES = ("image/png", "image/jpeg", "image/jpg", "application/octet-stream")
MULTIPART = "multipart/form-data"


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower case ('' when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def check_content_type(request: Request) -> None:
    """415 unless the Content-Type is one the segment endpoint reads."""
    kind = media_type(request)
    if kind not in RAW_TYPES and kind != MULTIPART:
        shown = kind or "none"
        raise ApiError(415, "unsupported_media", f"Content-Type {shown!r} is not accepted: send the image as "
                       f"{', '.join(RAW_TYPES[:2] + RAW_TYPES[3:])} or {MULTIPART} with a field 'image'")


async def _drain(request: Request, budget: int) -> None:
    """Read and drop up to ``budget`` more bytes, so the connection is not reset before the client reads our 413."""
    async for chunk in request.stream():
        budget -= len(chunk)
        if budget < 0:
            return


async def read_body(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The whole body; 413 ``body_too_large`` over ``max_bytes``, 408 ``body_timeout`` after ``timeout_s``."""
    declared = request.headers.get("content-length")
    too_large = ApiError(413, "body_too_large", f"request body is over the limit of {max_bytes} bytes")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "bad_request", f"Content-Length {declared!r} is not a number")
        if int(declared) > max_bytes:
            if int(declared) <= 2 * max_bytes:
                try:
                    await asyncio.wait_for(_drain(request, max_bytes), timeout_s)
                except asyncio.TimeoutError:
                    pass
            raise too_large

    async def collect() -> bytes:
        chunks: List[bytes] = []
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_bytes:
                await _drain(request, max_bytes)
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(collect(), timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(408, "body_timeout", f"the request body did not arrive within {timeout_s:g} s") from None


async def image_bytes(request: Request, body: bytes) -> bytes:
    """The image bytes of a body already read: the body itself, or the multipart field ``image``."""
    if not body:
        raise ApiError(400, "empty_body", "the request body is empty: send PNG or JPEG bytes")
    if media_type(request) != MULTIPART:
        return body
    data = await form_field(body, request.headers, "image")
    if not data:
        raise ApiError(400, "empty_body", "the multipart field 'image' is empty")
    return data

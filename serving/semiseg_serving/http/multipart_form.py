"""One field of a ``multipart/form-data`` body already held in memory, parsed by Starlette's form parser
(python-multipart underneath, as ``request.form()`` does), after the service has read the body under its size and
time limits."""
from __future__ import annotations

from typing import AsyncIterator

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from .api_error import ApiError


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_multipart", f"multipart body: {message}")


async def form_field(body: bytes, headers: Headers, name: str) -> bytes:
    """The content of the form field ``name``; 400 ``bad_multipart`` when the body is malformed, truncated or lacks it."""

    async def stream() -> AsyncIterator[bytes]:
        yield body

    parser = MultiPartParser(headers, stream(), max_files=8, max_fields=32, max_part_size=max(len(body), 1))
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise _bad(exc.message) from None
    try:
        value = form.get(name)
        if value is None:
            names = ", ".join(sorted(set(form.keys()))) or "none"
            raise _bad(f"no complete field {name!r} (fields: {names}; a body cut short loses its last field)")
        return await value.read() if isinstance(value, UploadFile) else value.encode()
    finally:
        await form.close()

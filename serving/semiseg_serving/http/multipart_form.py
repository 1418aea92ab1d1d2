"""A small ``multipart/form-data`` reader (RFC 7578) for bodies already held in memory.

Starlette's own form parser needs the ``python-multipart`` package; the service reads one field of a body
that is at most ``max_body_bytes`` long, which a few ``bytes.find`` calls do exactly (part contents are
returned byte for byte, CR/LF inside them included). Header parameters are parsed by the standard library.
"""
from __future__ import annotations

from email.message import Message
from typing import Optional

from .api_error import ApiError


def header_param(name: str, value: str, param: str) -> Optional[str]:
    """Parameter ``param`` of a header value such as ``form-data; name="image"`` (quotes handled)."""
    msg = Message()
    msg[name] = value
    found = msg.get_param(param, header=name)
    return None if found is None else str(found if isinstance(found, str) else found[2])


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_multipart", f"multipart body: {message}")


def form_field(body: bytes, content_type: str, name: str) -> bytes:
    """The content of the form field ``name``; 400 ``bad_multipart`` when the body is malformed or lacks it."""
    boundary = header_param("content-type", content_type, "boundary")
    if not boundary:
        raise _bad("the Content-Type has no boundary parameter")
    delimiter = b"--" + boundary.encode("latin-1")
    pos = body.find(delimiter)
    if pos < 0:
        raise _bad("the boundary does not occur in the body")
    names = []
    while True:
        pos += len(delimiter)
        if body[pos:pos + 2] == b"--":
            break  # the close delimiter
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            raise _bad("a delimiter line is not terminated by CRLF")
        start = line_end + 2
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise _bad("a part is not closed by a boundary (truncated body?)")
        part = body[start:end]
        if part.startswith(b"\r\n"):
            head, content = b"", part[2:]
        else:
            head, sep, content = part.partition(b"\r\n\r\n")
            if not sep:
                raise _bad("a part has no blank line after its headers")
        field = None
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                field = header_param("content-disposition", value.strip(), "name")
        if field == name:
            return content
        names.append(field)
        pos = end + 2
    raise _bad(f"no field {name!r} (fields: {', '.join(str(n) for n in names) or 'none'})")

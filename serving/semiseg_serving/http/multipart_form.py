"""One field of a ``multipart/form-data`` body already held in memory, parsed by python-multipart (Starlette's own
form parser), after the service has read the body under its size and time limits."""
from __future__ import annotations

from typing import Dict, List, Optional

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from .api_error import ApiError


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_multipart", f"multipart body: {message}")


def form_field(body: bytes, content_type: str, name: str) -> bytes:
    """The content of the form field ``name``; 400 ``bad_multipart`` when the body is malformed or lacks it."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise _bad("the Content-Type has no boundary parameter")
    parts: List[Dict[str, object]] = []
    header: Dict[str, bytes] = {}

    def on_part_begin() -> None:
        parts.append({"headers": {}, "data": bytearray()})

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"] += data[start:end]  # type: ignore[operator]

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] = header.get("field", b"") + data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] = header.get("value", b"") + data[start:end]

    def on_header_end() -> None:
        parts[-1]["headers"][header.get("field", b"").lower()] = header.get("value", b"")  # type: ignore[index]
        header.clear()

    parser = MultipartParser(boundary, {"on_part_begin": on_part_begin, "on_part_data": on_part_data,
                                        "on_header_field": on_header_field, "on_header_value": on_header_value,
                                        "on_header_end": on_header_end})
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise _bad(str(exc).splitlines()[0]) from None
    if parser.state != MultipartState.END:
        raise _bad("the body ends before its closing boundary (truncated?)")
    names: List[Optional[str]] = []
    for part in parts:
        disposition = part["headers"].get(b"content-disposition", b"")  # type: ignore[union-attr]
        field = parse_options_header(disposition)[1].get(b"name")
        field_name = field.decode("utf-8", "replace") if field is not None else None
        if field_name == name:
            return bytes(part["data"])  # type: ignore[arg-type]
        names.append(field_name)
    raise _bad(f"no field {name!r} (fields: {', '.join(str(n) for n in names) or 'none'})")

"""Refusals the service answers with: an HTTP status and a JSON body ``{"error": {"code", "message"}}``.

Codes (stable, for clients to branch on):

==================  ======  =================================================================
code                status  meaning
==================  ======  =================================================================
empty_body          400     the request had no image bytes
bad_multipart       400     a multipart body without a well-formed ``image`` field
bad_image           400     bytes that are not a decodable PNG/JPEG (malformed, truncated)
bad_format          400     ``?format=`` other than ``png`` or ``json``
forbidden           403     an admin endpoint called from a non-loopback client
not_found           404     no such path
method_not_allowed  405     wrong HTTP method for the path
not_acceptable      406     the ``Accept`` header allows neither image/png nor application/json
body_timeout        408     the body did not arrive within the request timeout
body_too_large      413     the body is over the size limit
too_many_pixels     413     the image is over the pixel limit (checked from its header, before decoding)
unsupported_media   415     a Content-Type other than image/png, image/jpeg, application/octet-stream,
                            multipart/form-data
internal            500     an unexpected server error (details in the server log)
reload_failed       500     a hot reload could not load the new model; the old model keeps serving
not_ready           503     the model is not loaded / warmed up yet
overloaded          503     too many requests in flight; retry after ``Retry-After`` seconds
timeout             504     the request took longer than the request timeout
==================  ======  =================================================================
"""
from __future__ import annotations

from typing import Dict, Optional

from starlette.responses import JSONResponse

ERROR_HEADER = "X-Error-Code"


class ApiError(Exception):
    """An HTTP refusal; raised anywhere in a handler, turned into a JSON error response by the app."""

    def __init__(self, status: int, code: str, message: str, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        """The JSON error response for this refusal."""
        return error_response(self.status, self.code, self.message, self.headers)


def error_response(status: int, code: str, message: str, headers: Optional[Dict[str, str]] = None) -> JSONResponse:
    """``{"error": {"code": code, "message": message}}`` with ``status`` (and the code in ``X-Error-Code``)."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers={**(headers or {}), ERROR_HEADER: code})

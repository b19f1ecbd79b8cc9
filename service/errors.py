"""One place that turns every error into an HTTP status and a stable JSON body.

Body: ``{"error": {"code": str, "message": str, "field": str | null}}``. Library code raises
:class:`circuits._errors.QldmError` subclasses; this module maps their ``code`` to a status:

=====================  ======  ==========================================================
code                   status  when
=====================  ======  ==========================================================
validation_error       422     a body or parameter fails validation (unknown field, shape)
invalid_spec           422     the circuit, inputs, weights or noise levels are invalid
unknown_backend        422     no backend has this name
backend_limit          400     too many qubits, shots or samples for the backend
unauthorized           401     missing or wrong API key
not_found              404     unknown id, or another tenant's
not_finished           409     the job has no result yet (queued or running)
cancelled              409     the job was cancelled: it has no result
idempotency_conflict   409     an ``Idempotency-Key`` reused with a different body
run_closed             409     the run takes no more jobs
payload_too_large      413     the body is larger than ``max_body_bytes``
unsupported_media_type 415     neither JSON nor ``application/x-npz``
backend_error          502     the backend failed (a failed job's result)
internal_error         500     a bug; the message says nothing about it
=====================  ======  ==========================================================
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from circuits._errors import QldmError

__all__ = [
    "STATUS_BY_CODE",
    "HeaderError",
    "UnauthorizedError",
    "UnsupportedMediaTypeError",
    "error_body",
    "install_error_handlers",
    "status_for",
]

log = logging.getLogger("qldm.service")

STATUS_BY_CODE: dict[str, int] = {
    "validation_error": 422,
    "invalid_spec": 422,
    "unknown_backend": 422,
    "backend_limit": 400,
    "bad_request": 400,
    "unauthorized": 401,
    "not_found": 404,
    "method_not_allowed": 405,
    "not_acceptable": 406,
    "not_finished": 409,
    "cancelled": 409,
    "idempotency_conflict": 409,
    "run_closed": 409,
    "conflict": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "backend_error": 502,
    "internal_error": 500,
    "unavailable": 503,
}

_CODE_BY_HTTP_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "unavailable",
}


class UnauthorizedError(QldmError, PermissionError):
    """No API key, or one the server does not know."""

    code = "unauthorized"


class HeaderError(QldmError, ValueError):
    """A request header with a value the route does not take (422, ``field``: the header)."""

    code = "validation_error"


class UnsupportedMediaTypeError(QldmError, ValueError):
    """A body in a media type the route does not read."""

    code = "unsupported_media_type"


def status_for(exc: QldmError) -> int:
    """The HTTP status of a qldm error (by its ``code``; unknown codes by its base type)."""
    status = STATUS_BY_CODE.get(exc.code)
    if status is not None:
        return status
    if isinstance(exc, LookupError):
        return 404
    if isinstance(exc, ValueError):
        return 422
    return 500


def error_body(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    """``{"error": {"code", "message", "field", **extra}}``."""
    return {"error": {"code": code, "message": message, "field": field, **extra}}


def _headers(status: int) -> dict[str, str] | None:
    return {"WWW-Authenticate": "Bearer"} if status == 401 else None


async def _qldm_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QldmError)  # registered for QldmError only
    status = status_for(exc)
    if status >= 500:
        log.warning("%s %s failed: %s", request.method, request.url.path, exc.code)
    return JSONResponse(
        error_body(exc.code, exc.message, exc.field), status_code=status, headers=_headers(status)
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # registered for it only
    errors = exc.errors()
    first = errors[0] if errors else {}
    where = ("body", "query", "path", "header")
    loc = [str(part) for part in first.get("loc", ()) if part not in where]
    message = str(first.get("msg", "invalid request"))
    return JSONResponse(
        error_body("validation_error", message, ".".join(loc) or None), status_code=422
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # registered for it only
    code = _CODE_BY_HTTP_STATUS.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    headers = dict(exc.headers or {}) | (_headers(exc.status_code) or {})
    field = "body" if exc.status_code == 413 else None
    return JSONResponse(
        error_body(code, message, field), status_code=exc.status_code, headers=headers or None
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path)
    return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the body above."""
    app.add_exception_handler(QldmError, _qldm_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

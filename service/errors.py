"""One place that turns every error into an HTTP status and a stable JSON body.

Body: ``{"error": {"code": str, "message": str, "field": str | null}}``. Library code raises
:class:`qldm.errors.QldmError` subclasses; their ``code`` maps to a status through the one table
:data:`qldm.errors.ERRORS`, which the client reads too.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from qldm.errors import QldmError, TooManyJobsError, status_for

__all__ = ["error_body", "install_error_handlers"]

log = logging.getLogger("qldm.service")

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
    headers = _headers(status)
    if isinstance(exc, TooManyJobsError):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return JSONResponse(
        error_body(exc.code, exc.message, exc.field), status_code=status, headers=headers
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
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    field = "body" if exc.status_code == 413 else None
    return JSONResponse(
        error_body(code, message, field), status_code=exc.status_code, headers=headers or None
    )


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at this path (Starlette's own 405 names only the first
    route's, so ``/v1/jobs/{id}`` answered ``Allow: GET`` though it takes ``DELETE`` too)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path)
    return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the body above."""
    app.add_exception_handler(QldmError, _qldm_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

"""The one place where coffer errors become HTTP statuses."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from coffer.domain.errors import (
    AccessDenied,
    CofferError,
    Conflict,
    Contention,
    DecryptionFailed,
    Gone,
    InvalidInput,
    InvalidQuery,
    NotFound,
    RateLimited,
    RotationFailed,
    Sealed,
    TooLarge,
    Unauthenticated,
    Unavailable,
)
from coffer.storage.database import DATABASE_UNAVAILABLE

_log = logging.getLogger("coffer.api")

_STATUS: tuple[tuple[type[CofferError], int], ...] = (
    (TooLarge, 413),
    (InvalidQuery, 422),
    (InvalidInput, 400),
    (Unauthenticated, 401),
    (AccessDenied, 403),
    (Gone, 410),
    (NotFound, 404),
    (Conflict, 409),
    (RateLimited, 429),
    (Contention, 503),
    (Sealed, 503),
    (Unavailable, 503),
    (DecryptionFailed, 500),
    (RotationFailed, 502),
)


def status_for(error: CofferError) -> int:
    """Returns the HTTP status for an error family (500 for anything unlisted)."""
    for family, status in _STATUS:
        if isinstance(error, family):
            return status
    return 500


def error_response(error: CofferError) -> JSONResponse:
    """Returns ``{"error": {...}}`` with the family's status."""
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthenticated) else None
    if isinstance(error, RateLimited):
        headers = {"Retry-After": str(error.retry_after)}
    return JSONResponse({"error": error.to_dict()}, status_code=status_for(error), headers=headers)


def _field_of(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return error_response(InvalidInput("request body is not valid JSON", field="body"))
    field = _field_of(tuple(first.get("loc", ("body",))))
    # Only the location and the rule: pydantic's "input" may hold a secret value.
    message = f"{field}: {first.get('msg', 'invalid value')}"
    return error_response(InvalidInput(message, field=field))


def _coffer_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CofferError)
    return error_response(exc)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    """Routing errors (no such route, wrong method) in the same shape as every other error."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = "no such API route" if exc.status_code == 404 else str(exc.detail)
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


UNAVAILABLE_MESSAGE = "the database is unreachable; nothing was changed; try again shortly"


def unavailable_response() -> JSONResponse:
    """503 for a request the database could not serve (down, restarting, out of
    connections); it tells the client to retry, and names nothing about the database."""
    return JSONResponse(
        {"error": Unavailable(UNAVAILABLE_MESSAGE).to_dict()},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def _database_down(_request: Request, exc: Exception) -> JSONResponse:
    # The driver's message can name hosts and users: the log gets the type only.
    _log.warning("database unavailable: %s", type(exc).__name__)
    return unavailable_response()


def install_error_handlers(app: FastAPI) -> None:
    """Registers the handlers that turn errors into JSON responses."""
    app.add_exception_handler(CofferError, _coffer_error)
    for family in DATABASE_UNAVAILABLE:
        app.add_exception_handler(family, _database_down)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

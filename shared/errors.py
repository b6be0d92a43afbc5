"""Typed service errors and the one handler that renders them as RFC 9457 problem+json.

Domain code raises a `ServiceError` subclass; routes never build error responses themselves. Unknown exceptions
become a 500 that leaks nothing but the correlation id. A value the database refuses as data (a number beyond its
column, text it cannot hold) is the caller's input getting past validation: a 422, logged so the schema gets fixed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import context

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class ServiceError(Exception):
    status: int = 500
    code: str = "internal-error"
    title: str = "Internal error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra

    def headers(self) -> dict[str, str]:
        return {}


class Refused(Exception):
    """A refusal whose transaction still commits: what the route wrote while refusing (the audit row, the answer
    stored under a request number, the refused notification's record) is the point of the request, so the request
    session (`shared.db.DbSession`) commits before re-raising this, where a `ServiceError` rolls back. The answer
    is `answer`: a `ServiceError` rendered as problem+json, or a response of its own (a provider's format)."""

    def __init__(self, answer: ServiceError | Response) -> None:
        super().__init__(answer.detail if isinstance(answer, ServiceError) else f"refused: {answer.status_code}")
        self.answer = answer


class BadRequest(ServiceError):
    status, code, title = 400, "bad-request", "Bad request"


class ValidationFailed(ServiceError):
    status, code, title = 422, "validation-failed", "The request is not valid"


class ValueNotStorable(ValidationFailed):
    code, title = "value-not-storable", "A value is outside what the service can store"


class Unauthorized(ServiceError):
    status, code, title = 401, "unauthorized", "Authentication required"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class Forbidden(ServiceError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFound(ServiceError):
    status, code, title = 404, "not-found", "Not found"


class Conflict(ServiceError):
    status, code, title = 409, "conflict", "Conflict with the current state"


class PayloadTooLarge(ServiceError):
    status, code, title = 413, "payload-too-large", "Request body too large"


class TooManyRequests(ServiceError):
    status, code, title = 429, "rate-limited", "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UpstreamUnavailable(ServiceError):
    status, code, title = 503, "upstream-unavailable", "A service behind the gateway is unavailable"


class DatabaseUnavailable(ServiceError):
    """The database connection was lost or refused (a restart, a failover): not the request's fault, so a 503 the
    client retries (with its idempotency key), not a 500."""

    status, code, title = 503, "database-unavailable", "The database is unavailable; retry shortly"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class DatabaseBusy(ServiceError):
    """Every database connection of the service stayed busy for the pool's timeout: the service is overloaded, not
    the request at fault, so a 503 the client retries (with its idempotency key), not a 500."""

    status, code, title = 503, "database-busy", "Every database connection is busy; retry shortly"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class UpstreamTimeout(ServiceError):
    status, code, title = 504, "upstream-timeout", "A service behind the gateway did not answer in time"


def problem_body(error: ServiceError, instance: str | None = None) -> dict[str, Any]:
    """The problem+json document of an error, for answers that are stored and replayed (idempotent requests)."""
    body: dict[str, Any] = {
        "type": f"/problems/{error.code}",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }
    if instance is not None:
        body["instance"] = instance
    body.update(error.extra)
    return body


def problem_response(
    request: Request | None,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": f"/problems/{code}", "title": title, "status": status, "detail": detail}
    if request is not None:
        body["instance"] = request.url.path
    cid = context.correlation_id.get()
    if cid:
        body["correlation_id"] = cid
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def render(request: Request | None, error: ServiceError) -> JSONResponse:
    return problem_response(
        request,
        status=error.status,
        code=error.code,
        title=error.title,
        detail=error.detail,
        extra=error.extra,
        headers=error.headers(),
    )


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return render(request, exc)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return render(request, exc.answer) if isinstance(exc.answer, ServiceError) else exc.answer


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
    return problem_response(
        request,
        status=422,
        code=ValidationFailed.code,
        title=ValidationFailed.title,
        detail=f"{len(errors)} field(s) failed validation",
        extra={"errors": errors},
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, f"http-{exc.status_code}")
    return problem_response(
        request,
        status=exc.status_code,
        code=code,
        title=str(exc.detail),
        detail=str(exc.detail),
        headers=dict(exc.headers or {}),
    )


# A value refused as data: by the server (SQLSTATE class 22) or by the driver before sending (its own DataError, a
# ValueError, which asyncpg does not export under another name).
_DATA_ERRORS = (asyncpg.DataError, asyncpg.exceptions._base.DataError)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """A statement's error, through SQLAlchemy (`DBAPIError`) or straight from the driver (the hot paths that run on
    asyncpg itself)."""
    if not _is_data_error(exc):
        return await _unhandled(request, exc)
    log.warning(
        "input refused by the database", extra={"error": str(getattr(exc, "orig", exc)), "path": request.url.path}
    )
    return render(request, ValueNotStorable())


def _is_data_error(exc: BaseException) -> bool:
    """Whether the database (or its driver, before sending) refused a value as data: SQLSTATE class 22."""
    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        if isinstance(seen, _DATA_ERRORS):
            return True
        visited.add(id(seen))
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return False


# A connection gone or refused, as the driver or the socket says it.
_LOST = (asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError, asyncpg.CannotConnectNowError,
         asyncpg.ConnectionDoesNotExistError, ConnectionError)  # fmt: skip


def _is_connection_lost(exc: BaseException) -> bool:
    """Whether the statement failed because the connection went away or could not be made (class 08, an admin
    shutdown or a server still starting, class 57P, a refused socket: the pool re-raises that one unwrapped) rather
    than because of the statement."""
    if getattr(exc, "connection_invalidated", False):
        return True
    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        if isinstance(seen, _LOST):
            return True
        visited.add(id(seen))
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return False


class Tally:
    """Counts the occurrences of something logged and says which of them to log: the first, then at most one every
    `seconds`, its line carrying how many occurred since the line before (itself included)."""

    def __init__(self, seconds: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.monotonic = monotonic  # tests move it
        self._unlogged = 0
        self._logged_at: float | None = None

    def count(self) -> int | None:
        """Counts one occurrence; returns how many occurred since the last line when this one is to be logged, else
        None."""
        self._unlogged += 1
        now = self.monotonic()
        if self._logged_at is not None and now - self._logged_at < self.seconds:
            return None
        counted, self._unlogged, self._logged_at = self._unlogged, 0, now
        return counted


# The requests answered database-busy: one line every ten seconds at most (per process), where a line each had flooded
# the log through a long peak.
BUSY_LINE_SECONDS = 10.0
busy_answers = Tally(BUSY_LINE_SECONDS)


async def _pool_exhausted(request: Request, exc: Exception) -> JSONResponse:
    answered = busy_answers.count()
    if answered is not None:
        log.warning(
            "no database connection came free in time",
            extra={"error": str(exc), "path": request.url.path, "busy_answers": answered},
        )
    return render(request, DatabaseBusy())


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    if _is_connection_lost(exc):
        log.warning("database unavailable", extra={"error": str(exc), "path": request.url.path})
        return render(request, DatabaseUnavailable())
    log.exception("unhandled error", exc_info=exc)
    return problem_response(
        request, status=500, code=ServiceError.code, title=ServiceError.title, detail="Internal error"
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    # Raised unwrapped (the pool re-raises a refused socket as is; the hot paths' statements on the driver raise
    # asyncpg's own): answered here, not by the catch-all below, which Starlette raises again to the server once it
    # has answered, so every request of a database restart logged a traceback at error.
    for lost in _LOST:
        app.add_exception_handler(lost, _unhandled)
    for data_error in _DATA_ERRORS:
        app.add_exception_handler(data_error, _database_error)
    app.add_exception_handler(PoolTimeoutError, _pool_exhausted)
    app.add_exception_handler(Exception, _unhandled)

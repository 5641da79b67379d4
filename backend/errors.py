"""Turn failures into JSON `{"detail": ...}` answers that leak nothing (no SQL, no driver text)."""

import logging
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.db import DatabaseUnavailable

log = logging.getLogger("backend.errors")

RETRY_AFTER_SECONDS = 5
DATABASE_UNAVAILABLE = "Database unavailable, please retry shortly"
OUTAGE_LOG_INTERVAL_SECONDS = 10.0


@dataclass
class _Window:
    started: float
    refused: int


class OutageLog:
    """One log line per distinct cause per interval, not one per refused request.

    An outage refuses every request; a line each would bury the cause. The first request of each
    interval logs the cause (reason, SQLSTATE, error class, its request id) and how many requests
    the same cause refused since the previous line.
    """

    def __init__(self, interval: float = OUTAGE_LOG_INTERVAL_SECONDS) -> None:
        self.interval = interval
        self._windows: dict[tuple[str, str | None, str], _Window] = {}

    def refused(self, exc: DatabaseUnavailable, request_id: str) -> None:
        key = (exc.reason, exc.sqlstate, exc.error)
        now = time.monotonic()
        window = self._windows.get(key)
        if window is not None and now - window.started < self.interval:
            window.refused += 1
            return
        since = window.refused if window is not None else 0
        self._windows[key] = _Window(now, 1)
        log.error(
            "database unavailable: %s sqlstate=%s error=%s request_id=%s refused_since_last_line=%d",
            exc.cause,
            exc.sqlstate or "-",
            exc.error or "-",
            request_id,
            since,
        )


def unavailable_response(detail: str = DATABASE_UNAVAILABLE) -> JSONResponse:
    return JSONResponse(
        {"detail": detail},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DatabaseUnavailable)
    request.app.state.outage_log.refused(exc, getattr(request.state, "request_id", "-"))
    return unavailable_response()


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 minus the echoed input (it may be huge, private, or not even encodable), with
    one entry per problem at a clean `loc`.

    Every input is flat (a body object, path and query values), so a location is at most
    `[where, field]`: pydantic's deeper parts are validator names (`function-after[...]`,
    union member tags) that mean nothing to a client, and a union reports one error per member.
    """
    assert isinstance(exc, RequestValidationError)
    errors: dict[tuple[Any, ...], dict[str, Any]] = {}
    for error in exc.errors():
        loc = tuple(error["loc"][:2])
        if loc not in errors:
            errors[loc] = {"loc": list(loc), "msg": error["msg"], "type": error["type"]}
    return JSONResponse({"detail": list(errors.values())}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _http_error(request: Request, exc: Exception) -> Response:
    """HTTP errors as FastAPI answers them, except undecodable JSON, which is a 422 like any other.

    Python's parser raises RecursionError on deep nesting and a plain ValueError on integers past its
    digit limit; FastAPI only maps JSONDecodeError to 422 and answers those with a 400 whose cause
    is the parser's error. Catching it here costs nothing on requests that parse.
    """
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == status.HTTP_400_BAD_REQUEST and isinstance(exc.__cause__, RecursionError | ValueError):
        reason = "too deeply nested" if isinstance(exc.__cause__, RecursionError) else "number out of range"
        errors = [{"loc": ["body"], "msg": f"JSON decode error: {reason}", "type": "json_invalid"}]
        return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.state.outage_log = OutageLog()
    app.add_exception_handler(DatabaseUnavailable, _database_unavailable)

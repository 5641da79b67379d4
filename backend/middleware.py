"""The edge of every request: a request id, size limits, API headers, a last-resort 500, the access log.

One pure-ASGI layer instead of several, because each middleware layer costs on every request.
"""

import logging
import random
import re
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.logs import bind_request_id, describe, filter_query, reset_request_id

if TYPE_CHECKING:
    from backend.metrics import Metrics

log = logging.getLogger("backend.errors")
access_log = logging.getLogger("backend.access")

_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_random = random.Random()  # not used for anything secret
_API_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store"))


CONTENT_TOO_LARGE = "Request body too large"
HEADERS_TOO_LARGE = "Request headers too large"
# uvicorn's httptools parser accepts headers of any size; this is the server's limit. It sits
# above the oversized tokens we still answer with a proper 401 (a 10,000-claim token is ~190 KB).
MAX_HEADER_BYTES = 256 * 1024


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: "Metrics | None" = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = perf_counter()
        header_bytes, request_id, declared = _inspect(scope["headers"])
        scope.setdefault("state", {})["request_id"] = request_id
        context = bind_request_id(request_id)
        added = [(b"x-request-id", request_id.encode()), *(_API_HEADERS if scope["path"].startswith("/api/") else ())]
        status: int | None = None

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        try:
            if header_bytes > MAX_HEADER_BYTES:
                await _json(scope, receive, send_with_headers, 431, HEADERS_TOO_LARGE)
            elif declared is not None and declared > self.max_body_bytes:
                # Refuse before reading a byte of it.
                await _json(scope, receive, send_with_headers, 413, CONTENT_TOO_LARGE)
            else:
                await self._call_app(scope, receive, send_with_headers, lambda: status is not None)
        finally:
            seconds = perf_counter() - started_at
            if access_log.isEnabledFor(logging.INFO):
                _log_access(scope, status, seconds)
            if self.metrics is not None:
                self.metrics.observe(scope, status, seconds)
            reset_request_id(context)

    async def _call_app(self, scope: Scope, receive: Receive, send: Send, started: Callable[[], bool]) -> None:
        received = 0

        async def receive_with_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # Chunked or lying bodies: stop at the chunk that crosses the limit.
                    raise HTTPException(413, CONTENT_TOO_LARGE)
            return message

        try:
            await self.app(scope, receive_with_limit, send)
        except Exception as exc:
            # The traceback goes to the log (frames only: see backend.logs), never to the client.
            log.error("unhandled %s on %s %s", describe(exc), scope["method"], scope["path"], exc_info=exc)
            if started():
                raise
            await _json(scope, receive, send, 500, "Internal server error")


def _log_access(scope: Scope, status: int | None, seconds: float) -> None:
    """One line per request, written by the service (uvicorn's access log is off: see backend.logs)."""
    path = scope["path"]
    if query := scope["query_string"]:
        path = f"{path}?{filter_query(query.decode('latin-1'))}"
    client = scope.get("client")
    fields = {
        "method": scope["method"],
        "path": path,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "client": client[0] if client else None,
        "user_id": scope["state"].get("user_id"),
    }
    access_log.info(
        "%s %s %s %.1fms client=%s user=%s",
        fields["method"],
        path,
        "-" if status is None else status,
        fields["duration_ms"],
        fields["client"] or "-",
        fields["user_id"] or "-",
        extra=fields,
    )


async def _json(scope: Scope, receive: Receive, send: Send, status_code: int, detail: str) -> None:
    await JSONResponse({"detail": detail}, status_code=status_code)(scope, receive, send)


def _inspect(headers: list[tuple[bytes, bytes]]) -> tuple[int, str, int | None]:
    """One pass over the request headers: their total size, the request id, the declared length."""
    size = 0
    request_id: str | None = None
    content_length: int | None = None
    for name, value in headers:
        size += len(name) + len(value)
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _VALID_REQUEST_ID.fullmatch(candidate):
                request_id = candidate
        elif name == b"content-length" and value.isdigit():
            content_length = int(value)
    # Request ids need to be unique, not secret: a 128-bit random number without uuid4's urandom call.
    return size, request_id or f"{_random.getrandbits(128):032x}", content_length

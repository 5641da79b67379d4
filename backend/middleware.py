"""The edge of every request: a request id, size limits, API headers, a last-resort 500.

One pure-ASGI layer instead of three, because each middleware layer costs on every request.
"""

import logging
import random
import re
import traceback

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.errors import describe

log = logging.getLogger("backend.errors")

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_random = random.Random()  # not used for anything secret
_API_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


CONTENT_TOO_LARGE = "Request body too large"
HEADERS_TOO_LARGE = "Request headers too large"
# uvicorn's httptools parser accepts headers of any size; this is the server's limit. It sits
# above the oversized tokens we still answer with a proper 401 (a 10,000-claim token is ~190 KB).
MAX_HEADER_BYTES = 256 * 1024


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        is_api = scope["path"].startswith("/api/")
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                if is_api:
                    headers.update(_API_HEADERS)
            await send(message)

        if sum(len(name) + len(value) for name, value in scope["headers"]) > MAX_HEADER_BYTES:
            await _json(scope, receive, send_with_headers, 431, HEADERS_TOO_LARGE)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            # Refuse before reading a byte of it.
            await _json(scope, receive, send_with_headers, 413, CONTENT_TOO_LARGE)
            return
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
            await self.app(scope, receive_with_limit, send_with_headers)
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f" at {frame.filename}:{frame.lineno}" if frame else ""
            log.error(
                "unhandled %s on %s %s%s request_id=%s",
                describe(exc),
                scope["method"],
                scope["path"],
                where,
                request_id,
            )
            if started:
                raise
            await _json(scope, receive, send_with_headers, 500, "Internal server error")


async def _json(scope: Scope, receive: Receive, send: Send, status_code: int, detail: str) -> None:
    await JSONResponse({"detail": detail}, status_code=status_code)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    return int(value) if value is not None and value.isdigit() else None


def _request_id(scope: Scope) -> str:
    candidate = Headers(scope=scope).get(REQUEST_ID_HEADER)
    if candidate is not None and _VALID_REQUEST_ID.fullmatch(candidate):
        return candidate
    # Request ids need to be unique, not secret: a 128-bit random number without uuid4's urandom call.
    return f"{_random.getrandbits(128):032x}"

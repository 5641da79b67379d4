"""The edge of every request: a request id, size limits, API headers, a last-resort 500.

One pure-ASGI layer instead of three, because each middleware layer costs on every request.
"""

import logging
import random
import re
import traceback

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.errors import describe

log = logging.getLogger("backend.errors")

_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_random = random.Random()  # not used for anything secret
_API_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store"))


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
        header_bytes, request_id, declared = _inspect(scope["headers"])
        scope.setdefault("state", {})["request_id"] = request_id
        added = [(b"x-request-id", request_id.encode()), *(_API_HEADERS if scope["path"].startswith("/api/") else ())]
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        if header_bytes > MAX_HEADER_BYTES:
            await _json(scope, receive, send_with_headers, 431, HEADERS_TOO_LARGE)
            return
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

"""Security events: one structured log line per refused request, never with a credential in it."""

import logging

from fastapi import Request

log = logging.getLogger("backend.security")


def security_event(request: Request, event: str, reason: str) -> None:
    client = request.client.host if request.client else "-"
    log.warning(
        "%s reason=%r method=%s path=%s client=%s request_id=%s",
        event,
        reason,
        request.method,
        request.url.path,
        client,
        getattr(request.state, "request_id", "-"),
        extra={
            "event": event,
            "reason": reason,
            "path": request.url.path,
            "client": client,
        },
    )

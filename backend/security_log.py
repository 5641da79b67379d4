"""Security events: one structured log line per refused request, never with a credential in it."""

import logging

from fastapi import Request

log = logging.getLogger("backend.security")


def security_event(request: Request, event: str, reason: str) -> None:
    """Log a refusal once; `reason` comes from our own checks, never from the token's contents."""
    fields = {
        "event": event,
        "reason": reason,
        "method": request.method,
        "path": request.url.path,
        "client": request.client.host if request.client else "-",
        "request_id": getattr(request.state, "request_id", "-"),
    }
    log.warning(" ".join(f"{key}={value!r}" for key, value in fields.items()), extra=fields)

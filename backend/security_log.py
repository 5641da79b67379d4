"""Security events: one structured log line per refused request, never with a credential in it."""

import logging

from fastapi import Request

log = logging.getLogger("backend.security")


def security_event(request: Request, event: str, reason: str) -> None:
    """Log a refusal once; `reason` comes from our own checks, never from the token's contents.

    Values are written with `repr` in the message (and as fields in JSON), so a path or reason
    cannot start a log line of its own; the request id comes with every record (backend.logs).
    """
    fields = {
        "event": event,
        "reason": reason,
        "method": request.method,
        "path": request.scope["path"],  # as received (request.url drops tabs and newlines)
        "client": request.client.host if request.client else "-",
    }
    log.warning(" ".join(f"{key}={value!r}" for key, value in fields.items()), extra=fields)

"""The answers the OpenAPI documents beyond each route's own: what the edge and the bearer check add.

Kept apart from `errors.py` (which turns failures into answers) and `docs.py` (which serves /docs
and adds examples, and imports the routes): the routes and `main.py` import these tables, so they
must not sit in a module that imports the routes.
"""

from typing import Any

from backend.models import ErrorDetail

Responses = dict[int | str, dict[str, Any]]


def documented(description: str, **headers: str) -> dict[str, Any]:
    """One error answer for FastAPI's `responses=`: an `ErrorDetail` body and its headers."""
    response: dict[str, Any] = {"model": ErrorDetail, "description": description}
    if headers:
        response["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
        }
    return response


# Answers any route can give before or around its own work (the edge middleware and the database).
EDGE_RESPONSES: Responses = {
    413: documented("Request body over the limit (64 KiB)"),
    431: documented("Request headers over the limit (256 KiB)"),
    503: documented("Database unavailable", **{"Retry-After": "Seconds to wait before retrying"}),
}
AUTH_RESPONSES: Responses = {
    401: documented(
        "Missing or invalid bearer token", **{"WWW-Authenticate": 'Bearer, or Bearer error="invalid_token"'}
    ),
    403: documented("The path's user is not the token's user"),
}

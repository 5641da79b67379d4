"""An APIRoute whose JSON parsing turns every undecodable body into a 422, never a 400 or a 500.

Python's parser raises RecursionError on deep nesting and a plain ValueError on integers beyond its
digit limit; FastAPI only maps JSONDecodeError to 422, so we re-raise those as one.
"""

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class JSONBodyRequest(Request):
    async def json(self) -> Any:
        try:
            return await super().json()
        except json.JSONDecodeError:
            raise
        except (RecursionError, ValueError) as exc:
            reason = "too deeply nested" if isinstance(exc, RecursionError) else "number out of range"
            raise json.JSONDecodeError(reason, "", 0) from None


class JSONBodyRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(JSONBodyRequest(request.scope, request.receive))

        return handle

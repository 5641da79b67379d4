"""Method handling the router leaves out: HEAD on GET routes, and a 405 whose `Allow` is complete.

FastAPI registers one route per method, so for a path with GET, PUT and DELETE the router answers a
POST with the `Allow` of whichever route it tried first (`Allow: GET`), and FastAPI routes do not
answer HEAD at all (a load balancer's HEAD /health was 405). One extra route per path, after all the
others, fixes both without touching the hot path: the router only reaches it when no route of that
path takes the method.
"""

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

# What routing added to the scope while choosing this route; HEAD is routed afresh as GET.
_ROUTING_KEYS = frozenset({"path_params", "endpoint", "route", "fastapi"})


class OtherMethods(Route):
    """Every method no route of `path` takes: HEAD is answered as GET, anything else is a 405."""

    def __init__(self, path: str, methods: set[str], router: ASGIApp) -> None:
        self.has_get = "GET" in methods
        self.allow = ", ".join(sorted(methods | {"HEAD"} if self.has_get else methods))
        self.router = router
        super().__init__(path, endpoint=self._not_allowed, include_in_schema=False)
        self.methods = None  # matches any method (Starlette defaults function endpoints to GET)

    async def _not_allowed(self) -> None:  # pragma: no cover (handle() never calls the endpoint)
        raise HTTPException(405)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD" and self.has_get:
            # The GET route answers (authentication and all); the server then sends only the
            # headers, as HEAD requires (uvicorn drops the body and keeps Content-Length).
            get_scope = {key: value for key, value in scope.items() if key not in _ROUTING_KEYS}
            get_scope["method"] = "GET"
            await self.router(get_scope, receive, send)
            return
        raise HTTPException(405, headers={"Allow": self.allow})


def complete_methods(app: FastAPI) -> None:
    """Add an `OtherMethods` route for each API path, after all others (call once all are added)."""
    methods: dict[str, set[str]] = {}
    for context in iter_route_contexts(app.router.routes):
        if isinstance(context.original_route, APIRoute) and context.path is not None:
            methods.setdefault(context.path, set()).update(context.methods or ())
    app.router.routes.extend(OtherMethods(path, verbs, app.router) for path, verbs in methods.items())

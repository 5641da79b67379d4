"""Real HTTP servers inside the test's event loop: the app under uvicorn, and a JWKS endpoint."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp


@asynccontextmanager
async def running_server(app: ASGIApp, **config: Any) -> AsyncIterator[uvicorn.Server]:
    """Run `app` under uvicorn on a free loopback port; stops (gracefully) on exit."""
    options: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "log_level": "warning", "lifespan": "off", **config}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        await task


def base_url(server: uvicorn.Server) -> str:
    return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


@asynccontextmanager
async def serve(app: ASGIApp, **config: Any) -> AsyncIterator[str]:
    """Run `app` on a free loopback port for the duration; yields its base URL."""
    async with running_server(app, **config) as server:
        yield base_url(server)


@dataclass
class JWKSServer:
    """Serves whatever keys the test puts in `keys`, and counts how often it was asked."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    fetches: int = 0
    failing: bool = False
    url: str = ""

    async def _jwks(self, request: Request) -> Response:
        self.fetches += 1
        if self.failing:
            return Response("unavailable", status_code=503)
        return JSONResponse({"keys": self.keys})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/auth/jwks", self._jwks)])


@asynccontextmanager
async def jwks_server() -> AsyncIterator[JWKSServer]:
    state = JWKSServer()
    async with serve(state.app()) as url:
        state.url = url
        yield state

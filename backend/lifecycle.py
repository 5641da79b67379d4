"""Startup, readiness and healing: when this instance may take traffic, and what it says when not.

Development fails fast: a database that cannot be used ends the start with one line naming the
setting and the cause. Production starts degraded instead (503 with `Retry-After`, `/ready` 503),
logs the cause once with a hint, and heals in the background without a restart.
"""

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend import migrate
from backend.config import Settings
from backend.db import Database, DatabaseUnavailable, wait_for_database
from backend.errors import DATABASE_UNAVAILABLE, unavailable_response
from backend.logs import log_startup_summary

log = logging.getLogger("backend")

HEAL_MAX_DELAY_SECONDS = 10.0


class StartupAbort(SystemExit):
    """Development cannot start; the message is the one line the operator sees."""


def _abort(app: FastAPI, settings: Settings, problem: DatabaseUnavailable, suffix: str = "") -> StartupAbort:
    line = f"todo-api: {settings.database_setting}: {problem.cause}{suffix}"
    app.state.startup_abort = line
    return StartupAbort(line)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Wait (bounded) for the database; in development bring its schema up to date.

    uvicorn lets in-flight requests finish before this exits.
    """
    settings: Settings = app.state.settings
    database: Database = app.state.database
    log_startup_summary(settings)
    problem = await wait_for_database(database, timeout_seconds=settings.db_startup_timeout_seconds)
    healer: asyncio.Task[None] | None = None
    if settings.environment == "development":
        if problem is not None:
            waited = f" (still unavailable after {settings.db_startup_timeout_seconds:g} s)"
            raise _abort(app, settings, problem, "" if problem.permanent else waited)
        try:
            await migrate.upgrade_database(settings)
        except DatabaseUnavailable as unavailable:
            raise _abort(app, settings, unavailable) from unavailable
        await database.check_schema()
    else:
        if problem is None:
            problem = await database.readiness(within=settings.db_connect_timeout_seconds)
        if problem is not None:
            log.error("Starting without the database (requests and /ready answer 503): %s", problem.cause)
            healer = asyncio.create_task(_heal(database, settings, problem))
    # Everything built so far (models, schemas, routes) lives for the whole process: move it out of
    # the collector's reach, so collections under load walk only per-request garbage, and collect
    # the young generation less often (requests allocate many short-lived objects); see
    # specs/decisions.md.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    try:
        yield
    finally:
        if healer is not None:
            healer.cancel()
            with suppress(asyncio.CancelledError):
                await healer
        await database.close()
        log.info("Shut down: database pool closed")


async def _heal(database: Database, settings: Settings, problem: DatabaseUnavailable) -> None:
    """Check again with growing pauses until the database serves; log only when the cause changes."""
    delay = 1.0
    cause = problem.cause
    while True:
        await asyncio.sleep(delay)
        current = await database.readiness(within=settings.db_connect_timeout_seconds)
        if current is None:
            log.info("Database available again: serving")
            return
        if current.cause != cause:
            cause = current.cause
            log.error("Database still unavailable: %s", cause)
        delay = min(delay * 2, HEAL_MAX_DELAY_SECONDS)


async def ready(request: Request) -> JSONResponse:
    """200 when the database answers (and its schema is what this code needs), else 503, within 2 s."""
    problem = await request.app.state.database.readiness()
    if problem is not None:
        request.app.state.outage_log.refused(problem, getattr(request.state, "request_id", "-"))
        return unavailable_response(problem.reason if problem.schema else DATABASE_UNAVAILABLE)
    return JSONResponse({"status": "ready"})


class StartupFailureMessage:
    """Turns an aborted start into its one line instead of a traceback.

    Starlette reports a failed lifespan to the server with the formatted traceback, which uvicorn
    logs; for a `StartupAbort` the message becomes the abort's own line.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_line(message: Message) -> None:
            line = getattr(scope["app"].state, "startup_abort", None)
            if message["type"] == "lifespan.startup.failed" and line:
                message = {**message, "message": line}
            await send(message)

        await self.app(scope, receive, send_line)

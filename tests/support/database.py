"""Raw PostgreSQL access for tests, through the service's own connection configuration (backend.db)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.engine import make_url

from backend.database_url import parse_database_url
from backend.db import DatabaseUnavailable, connect
from backend.migrate import upgrade_database
from tests.support.api import make_settings


async def pg_connect(url: str) -> asyncpg.Connection:
    """A raw asyncpg connection to `url`."""
    return await connect(parse_database_url(url))


async def execute(url: str, *statements: str) -> None:
    """Run each statement on its own connection's simple query protocol (PgBouncer's console speaks no other)."""
    connection = await pg_connect(url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def run_sql(url: str, *statements: str) -> None:
    """`execute` from synchronous code, on a thread of its own (so also under a running event loop)."""
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, execute(url, *statements)).result()


async def reachable(url: str) -> bool:
    """True when a connection to `url` opens."""
    try:
        await execute(url)
    except DatabaseUnavailable:
        return False
    return True


def with_database(url: str, database: str) -> str:
    """`url` pointing at another database of the same server."""
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def shown(url: str) -> str:
    """`url` fit for a message: password hidden."""
    return make_url(url).render_as_string(hide_password=True)


@asynccontextmanager
async def fresh_database(url: str, name: str | None = None, *, migrated: bool = False) -> AsyncIterator[str]:
    """CREATE DATABASE `name` (default: a new one) on the server of `url`; its URL; DROP ... WITH (FORCE) after."""
    name = name or f"todo_test_{uuid.uuid4().hex[:12]}"
    await execute(url, f'CREATE DATABASE "{name}"')
    try:
        if migrated:
            await upgrade_database(make_settings(with_database(url, name)))
        yield with_database(url, name)
    finally:
        await execute(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

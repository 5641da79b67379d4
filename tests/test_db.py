"""The database boundary on a real server: connection settings, retries, the fair wait, statement names."""

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text

from backend import db
from backend.database_url import parse_database_url
from backend.db import (
    DatabaseUnavailable,
    PostgresDatabase,
    SqliteDatabase,
    create_migration_engine,
    open_database,
    wait_for_database,
)
from backend.migrate import upgrade_database
from tests.support.api import make_settings
from tests.support.database import fresh_database, pg_connect, with_database

pytestmark = pytest.mark.anyio


async def test_postgres_pool_settings_reach_the_server(postgres_url: str) -> None:
    database = open_database(make_settings(postgres_url, db_pool_size=3, db_max_overflow=1))
    assert isinstance(database, PostgresDatabase)
    name = await database.fetchrow(text("SELECT current_setting('application_name') AS name"), {}, idempotent=True)
    assert name == {"name": "todo-api"}
    # Autocommit: a write is visible to another connection at once.
    await database.fetch(text("CREATE TABLE IF NOT EXISTS autocommit_probe (x int)"), {}, idempotent=False)
    other = await pg_connect(postgres_url)
    assert await other.fetchval("SELECT to_regclass('autocommit_probe') IS NOT NULL") is True
    await other.execute("DROP TABLE autocommit_probe")
    await other.close()
    # The pool never holds more than pool size + overflow connections.
    await asyncio.gather(*(database.fetch(text("SELECT pg_sleep(0.05)"), {}, idempotent=True) for _ in range(12)))
    assert database.pool_stats() == {"open": 4, "in_use": 0, "max": 4, "waiting": 0}
    await database.close()


async def test_prepared_statements_carry_a_process_unique_name(postgres_url: str) -> None:
    """One connection: everything it prepared is named with this process's random prefix."""
    database = open_database(make_settings(postgres_url, db_pool_size=1, db_max_overflow=0))
    query = text("SELECT count(*) AS n FROM pg_class WHERE relname = :name")
    for _ in range(3):
        assert await database.fetchrow(query, {"name": "pg_class"}, idempotent=True) == {"n": 1}
    rows = await database.fetch(text("SELECT name, statement FROM pg_prepared_statements"), {}, idempotent=True)
    names = {row["name"] for row in rows if "relname" in row["statement"]}
    assert len(names) == 1
    assert db._PROCESS_PREFIX in names.pop()
    assert isinstance(database, PostgresDatabase)
    assert database.prepared_statements is True
    await database.close()


async def test_prepared_statements_can_be_pinned_off(postgres_url: str) -> None:
    database = open_database(
        make_settings(postgres_url, db_pool_size=1, db_max_overflow=0, db_prepared_statements="OFF")
    )
    await database.fetch(text("SELECT 1"), {}, idempotent=True)
    rows = await database.fetch(text("SELECT name FROM pg_prepared_statements"), {}, idempotent=True)
    assert rows == []
    await database.close()


async def _kill_todo_api_connections(url: str, after: float = 0.3) -> None:
    await asyncio.sleep(after)
    admin = await pg_connect(url)
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'todo-api' AND datname = current_database() AND pid <> pg_backend_pid()"
    )
    await admin.close()


async def test_a_read_cut_off_mid_statement_is_retried_once(postgres_url: str) -> None:
    database = open_database(make_settings(postgres_url))
    killer = asyncio.create_task(_kill_todo_api_connections(postgres_url))
    row = await database.fetchrow(text("SELECT pg_sleep(1) IS NULL AS slept"), {}, idempotent=True)
    await killer
    assert row == {"slept": False}
    await database.close()


async def test_a_write_cut_off_mid_statement_is_not_retried_and_is_a_503(postgres_url: str) -> None:
    database = open_database(make_settings(postgres_url))
    killer = asyncio.create_task(_kill_todo_api_connections(postgres_url))
    with pytest.raises(DatabaseUnavailable) as caught:
        await database.fetch(text("SELECT pg_sleep(1)"), {}, idempotent=False)
    await killer
    assert caught.value.reason == "the connection was lost"
    assert not caught.value.permanent
    await database.close()


async def test_a_bug_in_sql_is_not_an_outage(postgres_url: str) -> None:
    database = open_database(make_settings(postgres_url))
    for bug, state in (("SELECT no_such_column FROM pg_class", "42703"), ("SELECT 1/0", "22012")):
        with pytest.raises(asyncpg.PostgresError) as caught:
            await database.fetch(text(bug), {}, idempotent=True)
        assert caught.value.sqlstate == state
    await database.close()


async def test_waits_for_a_connection_are_first_come_first_served(postgres_url: str) -> None:
    """A pool of 2 and 50 slow reads: they finish in the order they asked, two at a time.

    asyncpg's own hand-off lets a late caller take a released connection before a woken waiter;
    the fair gate must not. Order, not timing, is asserted.
    """
    database = open_database(make_settings(postgres_url, db_pool_size=2, db_max_overflow=0))
    await database.fetch(text("SELECT 1"), {}, idempotent=True)
    finished: list[int] = []

    async def read(index: int) -> None:
        await database.fetch(text("SELECT pg_sleep(0.02)"), {}, idempotent=True)
        finished.append(index)

    started = time.monotonic()
    await asyncio.gather(*(read(index) for index in range(50)))
    elapsed = time.monotonic() - started
    overtaken = [index for position, index in enumerate(finished) if abs(position - index) > 1]
    assert overtaken == []
    assert elapsed < 30
    await database.close()


async def test_the_wait_for_a_connection_is_bounded_and_a_503(postgres_url: str) -> None:
    database = open_database(
        make_settings(postgres_url, db_pool_size=1, db_max_overflow=0, db_pool_timeout_seconds=0.2)
    )
    holder = asyncio.create_task(database.fetch(text("SELECT pg_sleep(1.5)"), {}, idempotent=True))
    await asyncio.sleep(0.3)
    assert database.pool_stats()["in_use"] == 1
    with pytest.raises(DatabaseUnavailable, match=r"no pooled connection free within 0\.2 s"):
        await database.fetch(text("SELECT 1"), {}, idempotent=True)
    # /ready has its own, short bound even while the pool is exhausted.
    started = time.monotonic()
    problem = await database.readiness(within=0.5)
    assert problem is not None
    assert time.monotonic() - started < 1.5
    await holder
    assert await database.readiness() is None
    await database.close()


async def test_default_database_is_embedded_sqlite(caplog: pytest.LogCaptureFixture) -> None:
    database = open_database(make_settings(None))
    assert isinstance(database, SqliteDatabase)
    assert database.engine.dialect.name == "sqlite"
    assert "embedded SQLite" in caplog.text
    assert await database.fetchrow(text("SELECT 1 AS one"), {}, idempotent=True) == {"one": 1}
    await database.close()


async def test_wait_for_database_backs_off_on_transient_problems(caplog: pytest.LogCaptureFixture) -> None:
    database = open_database(make_settings("postgresql://nobody@127.0.0.1:9/none", db_connect_timeout_seconds=1))
    started = time.monotonic()
    problem = await wait_for_database(database, timeout_seconds=0.6, first_delay=0.2)
    assert problem is not None
    assert problem.reason == "connection refused by 127.0.0.1:9"
    assert not problem.permanent
    assert time.monotonic() - started < 3
    assert len([r for r in caplog.records if "retrying in" in r.getMessage()]) >= 2
    await database.close()


async def test_wait_for_database_stops_at_once_on_permanent_problems(postgres_url: str) -> None:
    missing = with_database(postgres_url, f"missing_{uuid.uuid4().hex[:8]}")
    database = open_database(make_settings(missing))
    started = time.monotonic()
    problem = await wait_for_database(database, timeout_seconds=30)
    assert problem is not None
    assert problem.permanent
    assert problem.sqlstate == "3D000"
    assert problem.hint == "create the database or fix its name"
    assert time.monotonic() - started < 5
    await database.close()


async def test_wait_for_database_returns_when_it_answers(postgres_url: str) -> None:
    database = open_database(make_settings(postgres_url))
    assert await wait_for_database(database, timeout_seconds=5) is None
    await database.close()


async def test_migration_engine_is_pooler_safe(pgbouncer_url: str) -> None:
    """Through PgBouncer in transaction mode: no named statement may outlive its transaction."""
    engine = create_migration_engine(make_settings(pgbouncer_url))
    for _ in range(5):
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT count(*) FROM pg_class WHERE relname = :n"), {"n": "x"}) == 0
    await engine.dispose()


@pytest.fixture
async def scratch_database(postgres_url: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_url) as url:
        yield url


async def test_socket_directory_and_options_are_honoured_by_the_app_and_by_migrate(scratch_database: str) -> None:
    """`?host=<socket dir>` and `options=-c search_path=...`: the same server, database and schema for both."""
    admin = await pg_connect(scratch_database)
    socket_dir = (await admin.fetchval("SHOW unix_socket_directories")).split(",")[0].strip()
    port = await admin.fetchval("SHOW port")
    await admin.execute("CREATE SCHEMA tenant")
    target = parse_database_url(scratch_database)
    url = (
        f"postgresql://{target.user or 'postgres'}@/{target.database}?host={socket_dir}&port={port}"
        "&options=-c%20search_path%3Dtenant&application_name=todo-api"
    )
    settings = make_settings(url)
    await upgrade_database(settings)
    assert (
        await admin.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'tenant' AND tablename = 'task'") == 1
    )
    assert await admin.fetchval("SELECT to_regclass('public.task')") is None
    database = open_database(settings)
    row = await database.fetchrow(
        text("SELECT current_schema() AS schema, inet_server_addr() IS NULL AS over_socket"), {}, idempotent=True
    )
    assert row == {"schema": "tenant", "over_socket": True}
    await database.close()
    await admin.close()


async def test_a_lost_prepared_statement_switches_to_unnamed_statements(
    pgbouncer_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PgBouncer 1.18 in transaction mode cannot keep prepared statements: one warning, no failure."""
    database = open_database(make_settings(pgbouncer_url, db_pool_size=4, db_max_overflow=0))
    assert isinstance(database, PostgresDatabase)
    queries = [text(f"SELECT {n} AS n, pg_sleep(0.001) IS NULL AS slept") for n in range(8)]
    for _ in range(4):
        results = await asyncio.gather(*(database.fetchrow(q, {}, idempotent=False) for q in queries))
        assert [row["n"] if row else None for row in results] == list(range(8))
    assert database.prepared_statements is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "prepared statement" in r.getMessage()]
    assert len(warnings) == 1
    assert "DB_PREPARED_STATEMENTS" in warnings[0].getMessage()
    await database.close()


async def test_a_server_that_never_answers_is_a_transient_timeout() -> None:
    """A listener that accepts and stays silent (a black-holed host): the connect timeout, then 503."""
    silent: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    database = open_database(make_settings(f"postgresql://u@127.0.0.1:{port}/db", db_connect_timeout_seconds=0.5))
    with pytest.raises(DatabaseUnavailable) as caught:
        await database.fetch(text("SELECT 1"), {}, idempotent=True)
    assert caught.value.reason == f"no answer from 127.0.0.1:{port} in time"
    assert not caught.value.permanent
    await database.close()
    for writer in silent:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize(
    ("error", "reason", "permanent"),
    [
        (
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            "the host name of h:5432 does not resolve",
            True,
        ),
        (asyncpg.exceptions.ClientConfigurationError("bad"), "the connection settings are not usable", True),
        (OSError("network unreachable"), "could not connect to h:5432", False),
    ],
)
def test_connect_failures_are_classified(error: Exception, reason: str, permanent: bool) -> None:
    """What a connect error means (errors a test machine cannot produce on demand: DNS, client config)."""
    problem = db.connect_failure(error, parse_database_url("postgresql://u@h:5432/d"))
    assert (problem.reason, problem.permanent) == (reason, permanent)
    assert problem.error == type(error).__name__

"""Database URL normalisation (Neon's console strings and friends) and engine options."""

import asyncio
import ssl
import time

import asyncpg
import pytest
from sqlalchemy import text

from backend.db import (
    AsyncpgDatabase,
    EngineDatabase,
    create_engine,
    default_sqlite_url,
    open_database,
    parse_database_url,
    ssl_for,
    wait_for_database,
)
from tests.conftest import make_settings, pg_connect

NEON = (
    "postgresql://neondb_owner:npg_Ab1Cd2@ep-cool-name-a1b2c3d4-pooler.us-east-2.aws.neon.tech/neondb"
    "?sslmode=require&channel_binding=require"
)


def test_neon_console_string_is_made_asyncpg_safe() -> None:
    target = parse_database_url(NEON)
    assert target.url.drivername == "postgresql+asyncpg"
    assert target.url.host == "ep-cool-name-a1b2c3d4-pooler.us-east-2.aws.neon.tech"
    assert target.url.username == "neondb_owner"
    assert target.url.password == "npg_Ab1Cd2"
    assert dict(target.url.query) == {}
    tls = target.connect_args["ssl"]
    assert isinstance(tls, ssl.SSLContext)
    assert tls.verify_mode == ssl.CERT_NONE
    assert "npg_Ab1Cd2" not in target.masked


@pytest.mark.parametrize(
    "raw",
    [
        "postgres://u:p@host:5433/db",
        "postgresql://u:p@host:5433/db",
        "postgresql+asyncpg://u:p@host:5433/db",
        "postgresql+psycopg2://u:p@host:5433/db",
    ],
)
def test_postgres_schemes_become_asyncpg(raw: str) -> None:
    target = parse_database_url(raw)
    assert target.url.render_as_string(hide_password=False) == "postgresql+asyncpg://u:p@host:5433/db"
    assert target.connect_args == {}
    assert not target.is_sqlite


def test_password_with_special_characters_survives() -> None:
    target = parse_database_url("postgresql://user:p%40ss%2Fw%3Ard%23@host/db?sslmode=disable")
    assert target.url.password == "p@ss/w:rd#"
    assert target.connect_args == {"ssl": False}
    assert "p@ss" not in target.masked
    assert "p%40ss" not in target.masked


def test_other_query_parameters_are_kept() -> None:
    target = parse_database_url("postgresql://h/db?sslmode=prefer&options=-c%20search_path%3Dapp&gssencmode=disable")
    assert dict(target.url.query) == {"options": "-c search_path=app"}
    assert target.connect_args == {"ssl": "prefer"}


@pytest.mark.parametrize(
    ("mode", "verify", "hostname"),
    [
        ("require", ssl.CERT_NONE, False),
        ("verify-ca", ssl.CERT_REQUIRED, False),
        ("verify-full", ssl.CERT_REQUIRED, True),
    ],
)
def test_sslmode_becomes_an_ssl_context(mode: str, verify: ssl.VerifyMode, hostname: bool) -> None:
    context = ssl_for(mode)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == verify
    assert context.check_hostname is hostname


def test_sslmode_edge_cases() -> None:
    assert ssl_for(None) is None
    assert ssl_for("disable") is False
    assert ssl_for("allow") == "allow"
    with pytest.raises(ValueError, match="sslmode"):
        ssl_for("sometimes")


def test_sqlite_and_default() -> None:
    assert parse_database_url(None).url.render_as_string() == default_sqlite_url()
    assert parse_database_url("").is_sqlite
    assert parse_database_url("sqlite:///tmp/x.db").url.drivername == "sqlite+aiosqlite"


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database scheme"):
        parse_database_url("mysql://u@h/db")


@pytest.mark.anyio
async def test_postgres_pool_settings_reach_the_server(postgres_url: str) -> None:
    database = open_database(make_settings(postgres_url, db_pool_size=3, db_max_overflow=1))
    assert isinstance(database, AsyncpgDatabase)
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
    assert database._pool is not None
    assert database._pool.get_size() == 4
    await database.close()


async def _kill_todo_api_connections(url: str) -> None:
    await asyncio.sleep(0.3)
    admin = await pg_connect(url)
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'todo-api' AND datname = current_database() AND pid <> pg_backend_pid()"
    )
    await admin.close()


@pytest.mark.anyio
async def test_a_read_cut_off_mid_statement_is_retried_once(postgres_url: str) -> None:
    database = open_database(make_settings(postgres_url))
    killer = asyncio.create_task(_kill_todo_api_connections(postgres_url))
    row = await database.fetchrow(text("SELECT pg_sleep(1) IS NULL AS slept"), {}, idempotent=True)
    await killer
    assert row == {"slept": False}
    await database.close()


@pytest.mark.anyio
async def test_a_write_cut_off_mid_statement_is_not_retried(postgres_url: str) -> None:
    database = open_database(make_settings(postgres_url))
    killer = asyncio.create_task(_kill_todo_api_connections(postgres_url))
    with pytest.raises((asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.AdminShutdownError)):
        await database.fetch(text("SELECT pg_sleep(1)"), {}, idempotent=False)
    await killer
    await database.close()


@pytest.mark.anyio
async def test_default_database_is_embedded_sqlite(caplog: pytest.LogCaptureFixture) -> None:
    database = open_database(make_settings(None))
    assert isinstance(database, EngineDatabase)
    assert database.engine.dialect.name == "sqlite"
    assert "embedded SQLite" in caplog.text
    assert await database.fetchrow(text("SELECT 1 AS one"), {}, idempotent=True) == {"one": 1}
    await database.close()


@pytest.mark.anyio
async def test_wait_for_database_backs_off_then_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    database = open_database(make_settings("postgresql://nobody@127.0.0.1:9/none", db_connect_timeout_seconds=1))
    started = time.monotonic()
    assert await wait_for_database(database, timeout_seconds=0.6, first_delay=0.2) is False
    assert time.monotonic() - started < 3
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) >= 2
    assert "still unreachable" in caplog.text
    await database.close()


@pytest.mark.anyio
async def test_wait_for_database_returns_when_it_answers(postgres_url: str) -> None:
    database = open_database(make_settings(postgres_url))
    assert await wait_for_database(database, timeout_seconds=5) is True
    await database.close()


@pytest.mark.anyio
async def test_migration_engine_is_pooler_safe(postgres_url: str) -> None:
    engine = create_engine(make_settings(postgres_url))
    async with engine.connect() as connection:
        assert await connection.scalar(text("SELECT 1")) == 1
    await engine.dispose()

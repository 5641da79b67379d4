"""Async engine and per-request connection: PostgreSQL (Neon) through asyncpg, or embedded SQLite."""

import abc
import asyncio
import logging
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy import Executable, event, text
from sqlalchemy.dialects.postgresql import asyncpg as postgresql_asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from backend.config import DATA_DIR, Settings
from backend.errors import describe

log = logging.getLogger("backend.db")

APPLICATION_NAME = "todo-api"
_POSTGRES_SCHEMES = {
    "postgres",
    "postgresql",
    "postgresql+asyncpg",
    "postgresql+psycopg2",
    "postgresql+psycopg",
}
# libpq parameters that asyncpg.connect() would reject; sslmode and sslrootcert are translated.
_LIBPQ_ONLY = {
    "channel_binding",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "gssencmode",
}


@dataclass(frozen=True)
class DatabaseTarget:
    """A URL SQLAlchemy can use as is, plus the driver arguments it cannot carry."""

    url: URL
    connect_args: dict[str, Any] = field(default_factory=dict)

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def masked(self) -> str:
        return self.url.render_as_string(hide_password=True)


def default_sqlite_url() -> str:
    return f"sqlite+aiosqlite:///{DATA_DIR / 'todo.sqlite3'}"


def ssl_for(sslmode: str | None, rootcert: str | None = None) -> ssl.SSLContext | str | bool | None:
    """Translate libpq's sslmode into asyncpg's `ssl` argument."""
    if sslmode is None:
        return None
    if sslmode == "disable":
        return False
    if sslmode in {"allow", "prefer"}:
        return sslmode
    if sslmode == "require":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if sslmode in {"verify-ca", "verify-full"}:
        context = ssl.create_default_context(cafile=rootcert)
        context.check_hostname = sslmode == "verify-full"
        return context
    raise ValueError(f"unsupported sslmode {sslmode!r}")


def parse_database_url(raw: str | None) -> DatabaseTarget:
    """Accept Neon's console string, postgres:// and friends, or SQLite; return what the driver needs."""
    if not raw:
        return DatabaseTarget(make_url(default_sqlite_url()))
    url = make_url(raw.strip())
    scheme = url.drivername
    if scheme.startswith("sqlite"):
        return DatabaseTarget(url.set(drivername="sqlite+aiosqlite"))
    if scheme not in _POSTGRES_SCHEMES:
        raise ValueError(f"unsupported database scheme {scheme!r}")
    query = dict(url.query)
    sslmode = _single(query.get("sslmode"))
    rootcert = _single(query.get("sslrootcert"))
    connect_args: dict[str, Any] = {}
    tls = ssl_for(sslmode, rootcert)
    if tls is not None:
        connect_args["ssl"] = tls
    kept = {key: value for key, value in query.items() if key not in _LIBPQ_ONLY}
    return DatabaseTarget(url.set(drivername="postgresql+asyncpg", query=kept), connect_args=connect_args)


def _single(value: str | tuple[str, ...] | None) -> str | None:
    if isinstance(value, tuple):
        return value[-1] if value else None
    return value


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def create_engine(settings: Settings) -> AsyncEngine:
    """A SQLAlchemy engine: the SQLite database, and Alembic's connection on either backend.

    On PostgreSQL it only ever runs migrations, once per start or deploy, so it pools nothing.
    """
    target = _target(settings)
    if target.is_sqlite:
        engine = create_async_engine(target.url, isolation_level="AUTOCOMMIT", connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    connect_args = {
        **_asyncpg_connect_args(settings, target),
        # SQLAlchemy's documented settings for PgBouncer in transaction mode.
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unique_statement_name,
    }
    return create_async_engine(target.url, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args=connect_args)


def _target(settings: Settings) -> DatabaseTarget:
    raw = settings.database_url.get_secret_value() if settings.database_url else None
    target = parse_database_url(raw)
    if raw is None:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
    return target


def _asyncpg_connect_args(settings: Settings, target: DatabaseTarget) -> dict[str, Any]:
    return {
        **target.connect_args,
        "timeout": settings.db_connect_timeout_seconds,
        "command_timeout": settings.db_command_timeout_seconds,
        "server_settings": {"application_name": APPLICATION_NAME},
        # No named prepared statements that outlive a transaction: PgBouncer in transaction mode
        # (Neon's pooler) would hand them to another server connection.
        "statement_cache_size": settings.db_statement_cache_size,
    }


Record = Mapping[str, Any]


class Database(abc.ABC):
    """Runs one prebuilt statement per call on a pooled connection, autocommitted.

    Every endpoint is a single statement, so there is no session or transaction to carry around:
    `fetch` borrows a connection for exactly that statement.
    """

    @abc.abstractmethod
    async def fetch(self, statement: Executable, params: Mapping[str, Any], *, idempotent: bool) -> list[Record]:
        """Rows of `statement`; `idempotent` statements are retried once on a dropped connection."""

    async def fetchrow(self, statement: Executable, params: Mapping[str, Any], *, idempotent: bool) -> Record | None:
        rows = await self.fetch(statement, params, idempotent=idempotent)
        return rows[0] if rows else None

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise unless the database answers."""

    @abc.abstractmethod
    async def close(self) -> None: ...


class EngineDatabase(Database):
    """Through SQLAlchemy: the embedded SQLite default (and any SQLAlchemy engine)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def fetch(self, statement: Executable, params: Mapping[str, Any], *, idempotent: bool) -> list[Record]:
        async with self.engine.connect() as connection:
            result = await connection.execute(statement, dict(params))
            return [dict(row) for row in result.mappings()] if result.returns_rows else []

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


# Errors that mean the statement never ran or its connection died: safe to retry a read.
_DROPPED = (asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.AdminShutdownError)


class AsyncpgDatabase(Database):
    """PostgreSQL straight through an asyncpg pool: the hot path.

    Statements are still the SQLModel table's SQLAlchemy Core statements, compiled once to SQL text
    for asyncpg; what this skips is SQLAlchemy's per-call machinery, the pre-ping round trip (the
    pool replaces connections the server closed when they are acquired) and asyncpg's reset query
    on release (we never leave session state behind).
    """

    def __init__(self, settings: Settings, target: DatabaseTarget) -> None:
        url = target.url
        self._pool_options: dict[str, Any] = {
            "host": url.host,
            "port": url.port,
            "user": url.username,
            "password": url.password,
            "database": url.database,
            "min_size": 0,
            "max_size": settings.db_pool_size + settings.db_max_overflow,
            "max_inactive_connection_lifetime": settings.db_pool_recycle_seconds,
            "reset": _keep_session,
            **_asyncpg_connect_args(settings, target),
        }
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._acquire_timeout = settings.db_pool_timeout_seconds
        self._dialect = postgresql_asyncpg.dialect()  # type: ignore[no-untyped-call]
        self._compiled: dict[Executable, tuple[str, tuple[str, ...]]] = {}

    async def _ready_pool(self) -> asyncpg.Pool:
        """Created on first use, inside the serving event loop; opens no connection (min_size=0)."""
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(**self._pool_options)
        return self._pool

    def _compile(self, statement: Executable) -> tuple[str, tuple[str, ...]]:
        compiled = self._compiled.get(statement)
        if compiled is None:
            result = statement.compile(dialect=self._dialect)  # type: ignore[attr-defined]
            compiled = (result.string, tuple(result.positiontup or ()))
            self._compiled[statement] = compiled
        return compiled

    async def fetch(self, statement: Executable, params: Mapping[str, Any], *, idempotent: bool) -> list[Record]:
        sql, names = self._compile(statement)
        args = [params[name] for name in names]
        pool = await self._ready_pool()
        for attempt in (1, 2):
            try:
                async with pool.acquire(timeout=self._acquire_timeout) as connection:
                    return [dict(record) for record in await connection.fetch(sql, *args)]
            except _DROPPED:
                if attempt == 2 or not idempotent:
                    raise
                log.info("Connection dropped during a read; retrying once on a fresh connection")
        raise AssertionError("unreachable")  # pragma: no cover

    async def ping(self) -> None:
        pool = await self._ready_pool()
        async with pool.acquire(timeout=self._acquire_timeout) as connection:
            await connection.fetchval("SELECT 1")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Replaces asyncpg's reset query on release: nothing here sets session state to undo."""


def open_database(settings: Settings) -> Database:
    """The database the app talks to, announced once in the log (password masked)."""
    target = _target(settings)
    if settings.database_url is None:
        log.warning("No NEON_DATABASE_URL/DATABASE_URL set: using embedded SQLite at %s", target.masked)
    else:
        log.info("Database: %s", target.masked)
    if target.is_sqlite:
        return EngineDatabase(create_engine(settings))
    return AsyncpgDatabase(settings, target)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


async def wait_for_database(database: Database, *, timeout_seconds: float, first_delay: float = 0.5) -> bool:
    """Retry `SELECT 1` with doubling delays (max 5 s) until it answers or the time is up.

    A cold Neon compute or a database restarting under a deploy is normal; crashing on the first
    refused connection would turn it into a crash loop.
    """
    deadline = time.monotonic() + timeout_seconds
    delay = first_delay
    attempt = 1
    while True:
        try:
            await database.ping()
            return True
        except Exception as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.error("Database still unreachable after %d attempts (%s)", attempt, describe(exc))
                return False
            log.warning(
                "Database unreachable (attempt %d, %s); retrying in %.1f s",
                attempt,
                describe(exc),
                min(delay, remaining),
            )
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 5.0)
            attempt += 1

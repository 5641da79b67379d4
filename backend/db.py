"""Async engine and per-request connection: PostgreSQL (Neon) through asyncpg, or embedded SQLite."""

import asyncio
import logging
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

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
    """One engine per process; every endpoint is a single statement, so connections autocommit."""
    raw = settings.database_url.get_secret_value() if settings.database_url else None
    target = parse_database_url(raw)
    if raw is None:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        log.warning("No NEON_DATABASE_URL/DATABASE_URL set: using embedded SQLite at %s", target.masked)
    else:
        log.info("Database: %s", target.masked)
    if target.is_sqlite:
        engine = create_async_engine(target.url, isolation_level="AUTOCOMMIT", connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    connect_args = {
        **target.connect_args,
        "timeout": settings.db_connect_timeout_seconds,
        "command_timeout": settings.db_command_timeout_seconds,
        "server_settings": {"application_name": APPLICATION_NAME},
        # PgBouncer in transaction mode (Neon's pooler): no named statements that outlive a transaction.
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unique_statement_name,
    }
    return create_async_engine(
        target.url,
        isolation_level="AUTOCOMMIT",
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=settings.db_pool_recycle_seconds,
        pool_pre_ping=True,
        connect_args=connect_args,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


async def wait_for_database(engine: AsyncEngine, *, timeout_seconds: float, first_delay: float = 0.5) -> bool:
    """Retry `SELECT 1` with doubling delays (max 5 s) until it answers or the time is up.

    A cold Neon compute or a database restarting under a deploy is normal; crashing on the first
    refused connection would turn it into a crash loop.
    """
    deadline = time.monotonic() + timeout_seconds
    delay = first_delay
    attempt = 1
    while True:
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
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

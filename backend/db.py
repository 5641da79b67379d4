"""The database boundary: the only module that knows the driver.

It turns the parsed `DatabaseURL` into driver arguments (for the serving pool, Alembic, the tests
and the benchmark alike), runs one prebuilt statement per call, and turns every driver failure that
means "the database cannot serve now" into `DatabaseUnavailable` (by phase and SQLSTATE class).
Anything else it lets through: above this module, an exception that is not `DatabaseUnavailable`
is a bug and answers 500.
"""

import abc
import asyncio
import contextlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import Executable, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import asyncpg as postgresql_asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from backend.config import Settings
from backend.database_url import DatabaseURL

log = logging.getLogger("backend.db")

Record = Mapping[str, Any]
READY_TIMEOUT_SECONDS = 2.0
_SCHEMA_RECHECK_SECONDS = 1.0


class DatabaseUnavailable(Exception):
    """The database cannot serve this request now: a 503 with `Retry-After`, never a 500.

    `reason` is short and safe to log (no SQL, parameters, password or driver message);
    `permanent` marks configuration problems that waiting will not fix (a wrong password, a
    missing database, a certificate that does not verify), with a `hint` that says what to do.
    """

    def __init__(
        self,
        reason: str,
        *,
        sqlstate: str | None = None,
        error: str = "",
        permanent: bool = False,
        hint: str = "",
        schema: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sqlstate = sqlstate
        self.error = error
        self.permanent = permanent
        self.hint = hint
        self.schema = schema

    @property
    def cause(self) -> str:
        """The reason with its hint, for one operator-facing line."""
        return f"{self.reason} ({self.hint})" if self.hint else self.reason


@dataclass(frozen=True)
class SchemaRequirement:
    """The Alembic revision this code needs, and every revision it knows (to tell behind from ahead)."""

    head: str
    known: frozenset[str]

    def problem(self, current: str | None) -> str | None:
        """Why the database's schema cannot serve this code, or None when it can."""
        if current == self.head or (current is not None and current not in self.known):
            return None  # at head, or migrated by a newer release (its migrations are additive)
        return (
            f"database schema is at {current or 'none'}, this version needs {self.head}: run python -m backend migrate"
        )


# --- connection arguments --------------------------------------------------------------------


def ssl_context(url: DatabaseURL) -> ssl.SSLContext | str | bool | None:
    """libpq's sslmode/sslrootcert/sslcert/sslkey as asyncpg's `ssl` argument.

    As in libpq, `require` with an explicit `sslrootcert` verifies the chain (like verify-ca).
    """
    mode = url.sslmode
    if mode is None:
        return None
    if mode == "disable":
        return False
    if mode in {"allow", "prefer"}:
        return mode
    verify = mode in {"verify-ca", "verify-full"} or url.sslrootcert is not None
    if verify:
        cafile = None if url.sslrootcert in {None, "system"} else url.sslrootcert
        context = ssl.create_default_context(cafile=cafile)
        context.check_hostname = mode == "verify-full"
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if url.sslcert and url.sslkey:
        context.load_cert_chain(url.sslcert, url.sslkey)
    return context


def connect_args(url: DatabaseURL, *, timeout: float = 15.0, command_timeout: float | None = None) -> dict[str, Any]:
    """The one translation of a PostgreSQL URL into `asyncpg.connect()` arguments."""
    args: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.user,
        "password": url.password,
        "database": url.database,
        "timeout": url.connect_timeout or timeout,
        "command_timeout": command_timeout,
        "server_settings": {"application_name": url.application_name, **dict(url.server_settings)},
        # No cached (named) statements on plain connections; the serving pool turns the cache on
        # with process-unique names (`_Connection`), so they are safe behind a pooler.
        "statement_cache_size": 0,
    }
    tls = ssl_context(url)
    if tls is not None:
        args["ssl"] = tls
    if url.target_session_attrs is not None:
        args["target_session_attrs"] = url.target_session_attrs
    # channel_binding is accepted as Neon prints it: asyncpg authenticates with SCRAM-SHA-256 but
    # does not bind the channel, so TLS verification (sslmode/sslrootcert) is what guards the server.
    return args


async def connect(url: DatabaseURL, *, connect_timeout: float = 15.0) -> asyncpg.Connection:
    """A plain driver connection (tests, benchmark, tools); failures come back as DatabaseUnavailable."""
    try:
        return await asyncpg.connect(**connect_args(url, timeout=connect_timeout))
    except Exception as exc:
        raise connect_failure(exc, url) from exc


# --- what a failure means ----------------------------------------------------------------------

_PERMANENT_STATES = {
    "28P01": ("password authentication failed for user {user}", "check the password"),
    "28000": ("user {user} was refused (no such role, or not allowed to connect)", "check the user name"),
    "3D000": ('database "{database}" does not exist on {host}', "create the database or fix its name"),
}
_TRANSIENT_STATES = {
    "55000": 'database "{database}" does not allow connections now',
    "57P03": "the database system is starting up",
    "53300": "too many connections",
    "53100": "the database server is out of disk space",
}
# SQLSTATE classes (and single states) that mean "not now" rather than "bug" while executing.
_UNAVAILABLE_CLASSES = {"08", "53", "57", "58"}
_UNAVAILABLE_STATES = {"25006", "55P03", "40001", "40P01"}
_SCHEMA_STATES = {"42P01", "42703"}  # undefined table / column: only "not now" if the schema is behind
_LOST = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    ConnectionError,
)
_PREPARED_GONE = {"26000", "42P05"}  # prepared statement does not exist / already exists


def connect_failure(exc: BaseException, url: DatabaseURL) -> DatabaseUnavailable:
    """Whatever happened while opening a connection: permanent or transient, with a reason."""
    if isinstance(exc, DatabaseUnavailable):
        return exc
    names = {"user": url.user or "(default)", "database": url.database or url.user or "postgres"}
    names["host"] = url.host_display
    error = type(exc).__name__
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate
        if state in _PERMANENT_STATES:
            reason, hint = _PERMANENT_STATES[state]
            return DatabaseUnavailable(reason.format(**names), sqlstate=state, error=error, permanent=True, hint=hint)
        reason = _TRANSIENT_STATES.get(state, f"the server refused the connection (SQLSTATE {state})")
        return DatabaseUnavailable(reason.format(**names), sqlstate=state, error=error)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return DatabaseUnavailable(
            f"the TLS certificate of {names['host']} did not verify",
            error=error,
            permanent=True,
            hint="set sslrootcert to the server's CA, or use sslmode=require",
        )
    if isinstance(exc, socket.gaierror):
        return DatabaseUnavailable(
            f"the host name of {names['host']} does not resolve", error=error, permanent=True, hint="check the host"
        )
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        return DatabaseUnavailable("the connection settings are not usable", error=error, permanent=True)
    if isinstance(exc, ConnectionRefusedError):
        return DatabaseUnavailable(f"connection refused by {names['host']}", error=error)
    if isinstance(exc, TimeoutError):
        return DatabaseUnavailable(f"no answer from {names['host']} in time", error=error)
    return DatabaseUnavailable(f"could not connect to {names['host']}", error=error)


def _execute_failure(exc: BaseException) -> DatabaseUnavailable | None:
    """The "not now" errors of a statement that did run; None for everything that is a bug."""
    error = type(exc).__name__
    if isinstance(exc, TimeoutError):
        return DatabaseUnavailable("the statement timed out (command timeout)", error=error)
    if isinstance(exc, _LOST):
        return DatabaseUnavailable("the connection was lost", sqlstate=getattr(exc, "sqlstate", None), error=error)
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        if state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_STATES:
            return DatabaseUnavailable(
                f"the database could not serve the statement (SQLSTATE {state})", sqlstate=state, error=error
            )
    return None


# --- the database -------------------------------------------------------------------------------


class Database(abc.ABC):
    """Runs one prebuilt statement per call, autocommitted, and knows whether it can serve.

    Every endpoint is a single statement, so there is no session or transaction to carry around:
    `fetch` borrows a connection for exactly that statement.
    """

    def __init__(self, url: DatabaseURL, schema: SchemaRequirement | None) -> None:
        self.url = url
        self._schema = schema
        self._schema_ok = schema is None
        self._schema_checked_at = -_SCHEMA_RECHECK_SECONDS
        self._schema_problem: str | None = None

    @abc.abstractmethod
    async def fetch(self, statement: Executable, params: Mapping[str, Any], *, idempotent: bool) -> list[Record]:
        """Rows of `statement`; `idempotent` statements are retried once on a lost connection."""

    async def fetchrow(self, statement: Executable, params: Mapping[str, Any], *, idempotent: bool) -> Record | None:
        rows = await self.fetch(statement, params, idempotent=idempotent)
        return rows[0] if rows else None

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise DatabaseUnavailable unless the database answers `SELECT 1`."""

    @abc.abstractmethod
    async def schema_revision(self) -> str | None:
        """The database's Alembic revision, None when it was never migrated."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    def pool_stats(self) -> dict[str, int]:
        """Connections in use, open and allowed, and requests waiting for one (metrics)."""
        return {}

    async def check_schema(self) -> str | None:
        """Compare the schema with what this code needs; remember and return the problem, if any."""
        if self._schema is None:
            return None
        problem = self._schema.problem(await self.schema_revision())
        self._schema_ok = problem is None
        self._schema_problem = problem
        self._schema_checked_at = time.monotonic()
        return problem

    async def readiness(self, within: float = READY_TIMEOUT_SECONDS) -> DatabaseUnavailable | None:
        """None when this instance can serve, else why not; answers within `within` seconds.

        The schema is compared again only while it was not known to be right.
        """
        try:
            async with asyncio.timeout(within):
                if self._schema_ok:
                    await self.ping()
                elif problem := await self.check_schema():
                    return DatabaseUnavailable(problem, schema=True)
        except DatabaseUnavailable as exc:
            return exc
        except TimeoutError:
            return DatabaseUnavailable(f"the database did not answer within {within:g} s", error="TimeoutError")
        return None

    async def _schema_failure(self, exc: BaseException, sqlstate: str | None) -> DatabaseUnavailable | None:
        """An undefined table or column is an outage while the schema is behind, and a bug otherwise."""
        if self._schema is None:
            return None
        # Known good until now: look at once. Known behind: look again at most once a second.
        if self._schema_problem is None or time.monotonic() - self._schema_checked_at >= _SCHEMA_RECHECK_SECONDS:
            with contextlib.suppress(DatabaseUnavailable):
                await self.check_schema()
        if self._schema_problem is None:
            return None
        return DatabaseUnavailable(self._schema_problem, sqlstate=sqlstate, error=type(exc).__name__, schema=True)


# A prefix no other process shares, so a statement name can never mean another process's statement
# on a pooler's shared server connection: the only possible failures are "does not exist" and
# "already exists", both raised before anything runs.
_PROCESS_PREFIX = os.urandom(6).hex()
STATEMENT_CACHE_SIZE = 256  # far more than the statements crud can build


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """asyncpg's connection, naming its cached prepared statements uniquely across processes.

    asyncpg names them `__asyncpg_stmt_<n>__` from a per-process counter, so behind a pooler two
    processes' statements could share a name and a Bind could run another process's statement.
    (`_get_unique_id` is asyncpg's one naming hook; tests/test_db.py checks the names it produces.)
    """

    def _get_unique_id(self, prefix: str) -> str:
        return str(super()._get_unique_id(f"{prefix}_{_PROCESS_PREFIX}"))


class PostgresDatabase(Database):
    """PostgreSQL straight through an asyncpg pool: the hot path.

    Statements are the SQLModel table's SQLAlchemy Core statements, compiled once to SQL text for
    asyncpg. Waiting for a connection is first come, first served (a FIFO semaphore in front of the
    pool, whose own hand-off is not fair). Statements are prepared once per connection under
    process-unique names (asyncpg's statement cache), so each request is one Bind/Execute round
    trip; behind a pooler that cannot keep prepared statements (PgBouncer < 1.21 in transaction
    mode) the first failure switches to a pool of unnamed statements and the request is sent again.
    """

    def __init__(self, settings: Settings, url: DatabaseURL, schema: SchemaRequirement | None = None) -> None:
        super().__init__(url, schema)
        self._max_size = settings.db_pool_size + settings.db_max_overflow
        self._pool_options: dict[str, Any] = {
            **connect_args(
                url, timeout=settings.db_connect_timeout_seconds, command_timeout=settings.db_command_timeout_seconds
            ),
            "min_size": 0,
            "max_size": self._max_size,
            "max_inactive_connection_lifetime": settings.db_pool_recycle_seconds,
            "reset": _keep_session,
            "connection_class": _Connection,
        }
        self._pool: asyncpg.Pool | None = None
        self._retired: set[asyncio.Task[None]] = set()
        self._gate: asyncio.Semaphore | None = None
        self._waiting = 0
        self._pool_lock = asyncio.Lock()
        self._wait_timeout = settings.db_pool_timeout_seconds
        self.prepared_statements = settings.db_prepared_statements != "off"
        self._pinned = settings.db_prepared_statements != "auto"
        self._dialect = postgresql_asyncpg.dialect()  # type: ignore[no-untyped-call]
        self._compiled: dict[Executable, tuple[str, tuple[str, ...]]] = {}

    async def _ready_pool(self) -> asyncpg.Pool:
        """Created on first use, inside the serving event loop; opens no connection (min_size=0)."""
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    cache = STATEMENT_CACHE_SIZE if self.prepared_statements else 0
                    self._pool = await asyncpg.create_pool(**{**self._pool_options, "statement_cache_size": cache})
                    log.debug("Pool created: up to %d connections to %s", self._max_size, self.url.display)
        return self._pool

    def _fair_gate(self) -> asyncio.Semaphore:
        """At most max_size holders at once; asyncio's semaphore serves waiters in arrival order."""
        if self._gate is None:
            self._gate = asyncio.Semaphore(self._max_size)
        return self._gate

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
        return await self._run(sql, args, idempotent=idempotent)

    async def _run(self, sql: str, args: list[Any], *, idempotent: bool, schema_guard: bool = True) -> list[Record]:
        """One statement on a pooled connection, waiting first come, first served for the connection."""
        gate = self._fair_gate()
        retried_lost = retried_unprepared = False
        while True:
            if gate.locked():
                await self._wait_for_turn(gate)
            else:
                await gate.acquire()  # a free permit and no one queued: taken without suspending
            try:
                pool = await self._ready_pool()
                try:
                    connection = await pool.acquire()
                except Exception as exc:
                    if pool is not self._pool:
                        continue  # retired by the prepared-statement fallback while we waited: use the new one
                    raise connect_failure(exc, self.url) from exc
                try:
                    return [dict(record) for record in await connection.fetch(sql, *args)]
                finally:
                    await pool.release(connection)
            except DatabaseUnavailable:
                raise
            except Exception as exc:
                state = getattr(exc, "sqlstate", None)
                if state in _PREPARED_GONE and not self._pinned and not retried_unprepared:
                    # Raised by Parse/Bind, before the statement ran: sending it again is safe, even a write.
                    self._stop_preparing()
                    retried_unprepared = True
                    continue
                if isinstance(exc, _LOST):
                    # One connection lost usually means all of them (a restart, a suspended compute):
                    # every pooled connection is replaced before its next use, as a pre-ping would.
                    await pool.expire_connections()
                if isinstance(exc, _LOST) and idempotent and not retried_lost:
                    # A write is never sent again here: it may have reached the server and committed
                    # before the connection died, and running it twice is worse than a 503.
                    log.info(
                        "Connection lost during a read (%s); retrying once on a fresh connection", type(exc).__name__
                    )
                    retried_lost = True
                    continue
                failure = _execute_failure(exc)
                if failure is None and schema_guard and state in _SCHEMA_STATES:
                    failure = await self._schema_failure(exc, state)
                if failure is None:
                    raise
                raise failure from exc
            finally:
                gate.release()

    async def _wait_for_turn(self, gate: asyncio.Semaphore) -> None:
        """Queue behind earlier waiters for at most DB_POOL_TIMEOUT_SECONDS."""
        self._waiting += 1
        try:
            async with asyncio.timeout(self._wait_timeout):
                await gate.acquire()
        except TimeoutError:
            raise DatabaseUnavailable(
                f"no pooled connection free within {self._wait_timeout:g} s", error="PoolTimeout"
            ) from None
        finally:
            self._waiting -= 1

    def _stop_preparing(self) -> None:
        """Replace the pool with one that prepares nothing; the old one closes as its connections return."""
        if not self.prepared_statements:
            return
        self.prepared_statements = False
        if self._pool is not None:
            retiring = asyncio.create_task(self._pool.close())
            self._retired.add(retiring)
            retiring.add_done_callback(self._retired.discard)
            self._pool = None
        log.warning(
            "A server connection did not have this process's prepared statement (a pooler without "
            "prepared-statement support, e.g. PgBouncer < 1.21 in transaction mode): using unnamed "
            "statements from now on. DB_PREPARED_STATEMENTS=off starts that way; =on refuses the fallback."
        )

    async def ping(self) -> None:
        await self._run("SELECT 1", [], idempotent=True)

    async def schema_revision(self) -> str | None:
        try:
            rows = await self._run("SELECT version_num FROM alembic_version", [], idempotent=True, schema_guard=False)
        except asyncpg.exceptions.UndefinedTableError:
            return None
        return str(rows[0]["version_num"]) if rows else None

    def pool_stats(self) -> dict[str, int]:
        open_connections = self._pool.get_size() if self._pool is not None else 0
        idle = self._pool.get_idle_size() if self._pool is not None else 0
        return {
            "open": open_connections,
            "in_use": open_connections - idle,
            "max": self._max_size,
            "waiting": self._waiting,
        }

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
            log.debug("Pool closed")
        await asyncio.gather(*self._retired)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Replaces asyncpg's reset query on release: nothing here sets session state to undo."""


# SQLite result codes that mean "not now" (another writer, a read-only or full disk).
_SQLITE_UNAVAILABLE = {
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_READONLY",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
}


class SqliteDatabase(Database):
    """The embedded SQLite default, through SQLAlchemy, under the same error rules."""

    def __init__(self, url: DatabaseURL, schema: SchemaRequirement | None = None) -> None:
        super().__init__(url, schema)
        self.engine = create_sqlite_engine(url)

    async def fetch(self, statement: Executable, params: Mapping[str, Any], *, idempotent: bool) -> list[Record]:
        return await self._run(statement, params)

    async def _run(
        self, statement: Executable, params: Mapping[str, Any], *, schema_guard: bool = True
    ) -> list[Record]:
        try:
            async with self.engine.connect() as connection:
                result = await connection.execute(statement, dict(params))
                return [dict(row) for row in result.mappings()] if result.returns_rows else []
        except sa_exc.DBAPIError as exc:
            original = exc.orig
            name = getattr(original, "sqlite_errorname", "")
            if name in _SQLITE_UNAVAILABLE or exc.connection_invalidated:
                raise DatabaseUnavailable(
                    f"the SQLite database could not serve ({name})", error=type(original).__name__
                ) from exc
            if schema_guard and str(original).startswith(("no such table", "no such column")):
                failure = await self._schema_failure(exc, None)
                if failure is not None:
                    raise failure from exc
            raise

    async def ping(self) -> None:
        await self._run(text("SELECT 1"), {})

    async def schema_revision(self) -> str | None:
        try:
            rows = await self._run(text("SELECT version_num FROM alembic_version"), {}, schema_guard=False)
        except sa_exc.OperationalError:
            return None
        return str(rows[0]["version_num"]) if rows else None

    async def close(self) -> None:
        await self.engine.dispose()


def create_sqlite_engine(url: DatabaseURL) -> AsyncEngine:
    assert url.sqlite_path is not None
    Path(url.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{url.sqlite_path}", isolation_level="AUTOCOMMIT", connect_args={"timeout": 30}
    )
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_migration_engine(settings: Settings) -> AsyncEngine:
    """The SQLAlchemy engine Alembic runs on: the same connection arguments as the serving pool.

    It only ever runs migrations, once per start or deploy, so it pools nothing; it prepares no named
    statements, so it also works through PgBouncer in transaction mode.
    """
    url = settings.database
    if url.is_sqlite:
        return create_sqlite_engine(url)
    arguments = connect_args(url, timeout=settings.db_connect_timeout_seconds)

    async def open_connection() -> asyncpg.Connection:
        try:
            return await asyncpg.connect(**arguments)
        except Exception as exc:
            raise connect_failure(exc, url) from exc

    def creator() -> Any:
        return engine.sync_engine.dialect.dbapi.connect(  # type: ignore[union-attr]
            async_creator_fn=open_connection,
            prepared_statement_cache_size=0,
            prepared_statement_name_func=lambda: f"todo_{os.urandom(8).hex()}",
        )

    engine = create_async_engine("postgresql+asyncpg://", poolclass=NullPool, creator=creator)
    return engine


def open_database(settings: Settings, schema: SchemaRequirement | None = None) -> Database:
    """The database the app serves from, announced once in the log (never with its password)."""
    url = settings.database
    if url.is_sqlite:
        if settings.database_url is None:
            log.warning("No NEON_DATABASE_URL/DATABASE_URL set: using embedded SQLite at %s", url.sqlite_path)
        return SqliteDatabase(url, schema)
    log.info("Database: %s", url.display)
    return PostgresDatabase(settings, url, schema)


def unwrap_unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """The DatabaseUnavailable behind `exc` (SQLAlchemy wraps what our connect function raises)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DatabaseUnavailable):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def wait_for_database(
    database: Database,
    *,
    timeout_seconds: float,
    first_delay: float = 0.5,
    on_retry: Callable[[DatabaseUnavailable, int, float], None] | None = None,
) -> DatabaseUnavailable | None:
    """Retry `SELECT 1` with doubling delays (max 5 s) until it answers, the time is up, or the
    problem is permanent (waiting will not fix a wrong password). Returns the last problem, if any.

    A cold Neon compute or a database restarting under a deploy is normal; crashing on the first
    refused connection would turn it into a crash loop.
    """
    deadline = time.monotonic() + timeout_seconds
    delay = first_delay
    attempt = 1
    while True:
        try:
            await database.ping()
            return None
        except DatabaseUnavailable as exc:
            remaining = deadline - time.monotonic()
            if exc.permanent or remaining <= 0:
                return exc
            wait = min(delay, remaining)
            log.warning("Database unavailable (attempt %d, %s); retrying in %.1f s", attempt, exc.cause, wait)
            if on_retry is not None:
                on_retry(exc, attempt, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, 5.0)
            attempt += 1

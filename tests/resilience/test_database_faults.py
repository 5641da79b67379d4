"""Real database faults, as an operator meets them: every one is a 503 with `Retry-After` that heals.

Each case drives all six task endpoints and `/ready` through the fault, checks the one log line
that names the cause, fixes the fault without restarting the service, and checks that every
acknowledged write is stored and no refused write was applied.
"""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from backend.main import create_app
from backend.migrate import upgrade_database
from tests.support.api import ENDPOINTS, bearer, make_settings
from tests.support.database import execute, fresh_database, pg_connect, with_database
from tests.support.pgcluster import PgCluster
from tests.tokens import hs256

pytestmark = pytest.mark.anyio

TIMEOUT = 2.0
UNAVAILABLE = {"detail": "Database unavailable, please retry shortly"}
TASK_ENDPOINTS = [endpoint.name for endpoint in ENDPOINTS]
ALL_503 = dict.fromkeys((*TASK_ENDPOINTS, "ready"), 503)


@dataclass
class Api:
    """One user's view of the service, keeping count of the writes it acknowledged."""

    http: httpx.AsyncClient
    user: str
    stored: int = 0

    @property
    def base(self) -> str:
        return f"/api/{self.user}/tasks"

    async def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        response = await self.http.request(method, path, json=body, headers=bearer(hs256(self.user)))
        if response.status_code == 503:
            assert response.headers["Retry-After"].isdigit()
        if method == "POST" and response.status_code == 201:
            self.stored += 1
        if method == "DELETE" and response.status_code == 204:
            self.stored -= 1
        return response

    async def create(self) -> int:
        response = await self.request("POST", self.base, {"title": "seed"})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    async def every_endpoint(self, task_id: int) -> dict[str, int]:
        """Status of each task endpoint (delete last, so the others still find the task) and /ready."""
        calls = {e.name: (e.method, e.path(self.user, task_id), e.body) for e in ENDPOINTS}
        calls["ready"] = ("GET", "/ready", None)
        statuses = {}
        for name, (method, path, body) in calls.items():
            response = await self.request(method, path, body)
            if response.status_code == 503 and name != "ready":
                assert response.json() == UNAVAILABLE
            statuses[name] = response.status_code
        return statuses

    async def healthy(self) -> None:
        """Recovered without a restart: every endpoint does its job again."""
        task_id = await self.create()
        assert await self.every_endpoint(task_id) == {**{e.name: e.ok for e in ENDPOINTS}, "ready": 200}

    async def nothing_lost(self, url: str) -> None:
        connection = await pg_connect(url)
        try:
            count = await connection.fetchval("SELECT count(*) FROM task WHERE user_id = $1", self.user)
        finally:
            await connection.close()
        assert count == self.stored
        listed = await self.request("GET", self.base)
        assert listed.headers["X-Total-Count"] == str(self.stored)


@asynccontextmanager
async def serving(url: str, **overrides: Any) -> AsyncIterator[tuple[FastAPI, Api]]:
    settings = make_settings(
        url,
        db_connect_timeout_seconds=TIMEOUT,
        db_command_timeout_seconds=TIMEOUT * 2,
        db_pool_timeout_seconds=TIMEOUT,
        db_startup_timeout_seconds=0.5,
        **overrides,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield app, Api(http, f"user-{uuid.uuid4().hex}")


def logged(caplog: pytest.LogCaptureFixture, reason: str, sqlstate: str) -> list[str]:
    """The outage lines for `reason`: cause, SQLSTATE and error class, never more than one per cause here."""
    lines = [
        record.getMessage()
        for record in caplog.records
        if record.name == "backend.errors" and record.getMessage().startswith(f"database unavailable: {reason}")
    ]
    assert lines, caplog.text
    assert all(f"sqlstate={sqlstate}" in line and "request_id=" in line for line in lines)
    assert len(lines) == 1, lines  # quiet: one line per distinct cause per 10 s
    return lines


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[str]:
    """A database of its own, migrated, dropped afterwards."""
    async with fresh_database(postgres_url, migrated=True) as url:
        yield url


async def _admin(url: str, *statements: str) -> None:
    await execute(with_database(url, "postgres"), *statements)


def _terminate(name: str) -> str:
    """Ends every other session on `name` (a name this module made up), so new settings apply."""
    query = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()"
    return query.format(name)


async def test_a_database_that_refuses_connections(database: str, caplog: pytest.LogCaptureFixture) -> None:
    name = database.rsplit("/", 1)[1]
    async with serving(database) as (_, api):
        task_id = await api.create()
        await _admin(database, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false', _terminate(name))
        await asyncio.sleep(0.2)
        assert await api.every_endpoint(task_id) == ALL_503
        logged(caplog, f'database "{name}" does not allow connections now', "55000")
        await _admin(database, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await api.healthy()
        await api.nothing_lost(database)


async def test_a_missing_database_heals_once_created_and_migrated(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"todo_missing_{uuid.uuid4().hex[:10]}"
    url = with_database(postgres_url, name)
    async with serving(url, environment="production") as (_, api):
        assert await api.every_endpoint(1) == ALL_503
        assert f'database "{name}" does not exist on' in caplog.text
        assert "create the database or fix its name" in caplog.text
        logged(caplog, f'database "{name}" does not exist', "3D000")
        async with fresh_database(postgres_url, name, migrated=True):
            await api.healthy()
            await api.nothing_lost(url)


async def test_an_unknown_role_heals_once_created(database: str, caplog: pytest.LogCaptureFixture) -> None:
    role = f"ghost_{uuid.uuid4().hex[:8]}"
    url = database.replace("postgresql://postgres@", f"postgresql://{role}@")
    assert url != database
    async with serving(url, environment="production") as (app, api):
        assert await api.every_endpoint(1) == ALL_503
        logged(caplog, f"user {role} was refused", "28000")
        await _admin(database, f'CREATE ROLE "{role}" LOGIN SUPERUSER')
        try:
            await api.healthy()
            await api.nothing_lost(database)
            await app.state.database.close()
        finally:
            await _admin(database, _terminate(database.rsplit("/", 1)[1]), f'DROP ROLE "{role}"')


@pytest.fixture
def password_cluster() -> Iterator[PgCluster]:
    with PgCluster(password_auth=True) as server:
        server.execute("ALTER ROLE postgres PASSWORD 'right-password'")
        server.create_database("todo")
        yield server


async def test_a_wrong_password_heals_once_the_password_matches(
    password_cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    right = password_cluster.url("todo").replace("postgres@", "postgres:right-password@")
    wrong = password_cluster.url("todo").replace("postgres@", "postgres:wrong-password@")
    await upgrade_database(make_settings(right))
    async with serving(wrong, environment="production") as (_, api):
        assert await api.every_endpoint(1) == ALL_503
        logged(caplog, "password authentication failed for user postgres", "28P01")
        assert "wrong-password" not in caplog.text
        assert "check the password" in caplog.text
        await anyio.to_thread.run_sync(password_cluster.execute, "ALTER ROLE postgres PASSWORD 'wrong-password'")
        await api.healthy()
        await api.nothing_lost(wrong)


async def test_a_read_only_database_refuses_writes_and_serves_reads(
    database: str, caplog: pytest.LogCaptureFixture
) -> None:
    name = database.rsplit("/", 1)[1]
    async with serving(database) as (_, api):
        task_id = await api.create()
        await _admin(database, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on', _terminate(name))
        await asyncio.sleep(0.2)
        assert await api.every_endpoint(task_id) == {
            "list": 200,
            "create": 503,
            "get": 200,
            "update": 503,
            "toggle": 503,
            "delete": 503,
            "ready": 200,
        }
        logged(caplog, "the database could not serve the statement (SQLSTATE 25006)", "25006")
        await _admin(database, f'ALTER DATABASE "{name}" RESET default_transaction_read_only', _terminate(name))
        await asyncio.sleep(0.2)
        await api.healthy()
        await api.nothing_lost(database)


@asynccontextmanager
async def table_locked(url: str) -> AsyncIterator[None]:
    holder = await pg_connect(url)
    transaction = holder.transaction()
    await transaction.start()
    await holder.execute("LOCK TABLE task IN ACCESS EXCLUSIVE MODE")
    try:
        yield
    finally:
        await transaction.rollback()
        await holder.close()


@pytest.mark.parametrize(
    ("setting", "sqlstate"),
    [("lock_timeout%3D200ms", "55P03"), ("statement_timeout%3D300ms", "57014")],
)
async def test_a_held_lock_past_a_timeout(
    database: str, setting: str, sqlstate: str, caplog: pytest.LogCaptureFixture
) -> None:
    """`options=-c ...` from the URL reaches the pool's connections, and the timeout is a 503."""
    async with serving(f"{database}?options=-c%20{setting}") as (_, api):
        task_id = await api.create()
        async with table_locked(database):
            assert await api.every_endpoint(task_id) == {**ALL_503, "ready": 200}
        logged(caplog, f"the database could not serve the statement (SQLSTATE {sqlstate})", sqlstate)
        await api.healthy()
        await api.nothing_lost(database)


async def test_killed_connections_during_a_read_load_cost_no_read(
    database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """pg_terminate_backend on every connection of the service, busy or idle, in the middle of each
    of 20 waves of 20 reads (as a restart or Neon's suspend would): each read cut off is retried once
    on a fresh connection, and every one of the 400 answers 200.
    """
    name = database.rsplit("/", 1)[1]
    admin = await pg_connect(with_database(database, "postgres"))
    async with serving(database, db_pool_size=4, db_max_overflow=0) as (_, api):
        task_id = await api.create()

        async def kill_busy_connections() -> int:
            await asyncio.sleep(0.002)
            killed = await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND application_name = 'todo-api'",
                name,
            )
            return len(killed)

        statuses: list[int] = []
        kills = 0
        for _ in range(20):
            killing = asyncio.create_task(kill_busy_connections())
            wave = await asyncio.gather(
                *(api.request("GET", api.base) for _ in range(10)),
                *(api.request("GET", f"{api.base}/{task_id}") for _ in range(10)),
            )
            kills += await killing
            statuses += [response.status_code for response in wave]
        assert statuses == [200] * 400
        assert kills > 0
        assert "Connection lost during a read" in caplog.text  # the retry really ran
        await api.healthy()
        await api.nothing_lost(database)
    await admin.close()


async def test_an_unmigrated_production_database_is_not_ready_until_migrated(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with fresh_database(postgres_url) as url, serving(url, environment="production") as (_, api):
        schema_line = [r for r in caplog.records if "database schema is at none, this version needs" in r.getMessage()]
        assert len(schema_line) == 1
        assert schema_line[0].levelno == logging.ERROR
        assert "run python -m backend migrate" in schema_line[0].getMessage()
        ready = await api.request("GET", "/ready")
        assert ready.status_code == 503
        assert ready.json()["detail"].startswith("database schema is at none, this version needs ")
        assert await api.every_endpoint(1) == ALL_503
        await upgrade_database(make_settings(url))
        # Nothing restarts: /ready compares the schema again while it is not ready.
        assert (await api.request("GET", "/ready")).status_code == 200
        await api.healthy()
        await api.nothing_lost(url)


async def test_a_schema_behind_is_noticed_by_the_endpoints_too(database: str) -> None:
    """Migrated away under a running instance: the endpoints say 503, not 500, until it is back."""
    async with serving(database, environment="production") as (_, api):
        task_id = await api.create()
        connection = await pg_connect(database)
        try:
            revision = await connection.fetchval("SELECT version_num FROM alembic_version")
            await connection.execute("ALTER TABLE task RENAME TO task_elsewhere")
            await connection.execute("DELETE FROM alembic_version")
            statuses = await api.every_endpoint(task_id)
            assert {name: statuses[name] for name in TASK_ENDPOINTS} == dict.fromkeys(TASK_ENDPOINTS, 503)
            await connection.execute("ALTER TABLE task_elsewhere RENAME TO task")
            await connection.execute("INSERT INTO alembic_version VALUES ($1)", revision)
        finally:
            await connection.close()
        await api.healthy()
        await api.nothing_lost(database)


async def test_an_unmigrated_production_sqlite_file_is_not_ready_until_migrated(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    async with serving(url, environment="production") as (_, api):
        assert await api.every_endpoint(1) == ALL_503
        await upgrade_database(make_settings(url))
        assert (await api.request("GET", "/ready")).status_code == 200
        await api.healthy()


async def test_outage_lines_are_one_per_cause_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving("postgresql://nobody@127.0.0.1:9/none", environment="production") as (app, api):
        for _ in range(5):
            assert (await api.request("GET", api.base)).status_code == 503
        app.state.outage_log.interval = 0.0
        assert (await api.request("GET", api.base)).status_code == 503
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("database unavailable:")]
    assert len(lines) == 2
    assert lines[0].endswith("refused_since_last_line=0")
    assert lines[1].endswith("refused_since_last_line=5")
    assert all("ConnectionRefusedError" in line and "nobody" not in line.split("request_id")[1] for line in lines)


def test_asyncpg_is_imported_by_the_boundary_only() -> None:
    """No module outside backend/db.py knows the driver."""
    from pathlib import Path

    import backend

    root = Path(backend.__file__).parent
    importers = sorted(
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "import asyncpg" in path.read_text() or "from asyncpg" in path.read_text()
    )
    assert importers == ["db.py"]
    assert asyncpg.__name__ == "asyncpg"

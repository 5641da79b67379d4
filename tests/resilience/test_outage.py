"""The database goes away under a running service (a real cluster stopped and started, and killed
connections, as Neon's suspend does): 503 + Retry-After while away, service resumes by itself, no
acknowledged write is lost."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
from fastapi import FastAPI

from backend.main import create_app
from backend.migrate import upgrade_database
from tests.support.api import ENDPOINTS, bearer, make_settings
from tests.support.database import pg_connect
from tests.support.pgcluster import PgCluster
from tests.tokens import hs256

pytestmark = pytest.mark.anyio

TIMEOUT = 2.0


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    # The helper's speed settings acknowledge commits before WAL is written; "no acknowledged write
    # is lost" needs PostgreSQL's default durability back (fsync stays off: a process crash, not an
    # OS crash, is what we simulate).
    with PgCluster(settings={"synchronous_commit": "on"}) as server:
        yield server


@pytest.fixture
async def app_on_cluster(cluster: PgCluster) -> AsyncIterator[FastAPI]:
    url = await anyio.to_thread.run_sync(cluster.create_database, "todo")
    app = create_app(
        make_settings(
            url,
            db_connect_timeout_seconds=TIMEOUT,
            db_command_timeout_seconds=TIMEOUT,
            db_pool_timeout_seconds=TIMEOUT,
        )
    )
    async with app.router.lifespan_context(app):
        yield app


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_outage_answers_503_then_recovers_without_losing_writes(
    app_on_cluster: FastAPI, cluster: PgCluster, mode: str
) -> None:
    user = f"user-{uuid.uuid4().hex}"
    headers = bearer(hs256(user))
    base = f"/api/{user}/tasks"
    acknowledged = 0
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_on_cluster), base_url="http://t") as http:
        for i in range(10):
            response = await http.post(base, json={"title": f"before {i}"}, headers=headers)
            assert response.status_code == 201
            acknowledged += 1
        task_id = response.json()["id"]

        await anyio.to_thread.run_sync(lambda: cluster.stop(mode))  # type: ignore[arg-type]
        calls = [(e.method, e.path(user, task_id), e.body) for e in ENDPOINTS] + [("GET", "/ready", None)]
        for method, url, body in calls:
            started = time.monotonic()
            response = await http.request(method, url, json=body, headers=headers)
            elapsed = time.monotonic() - started
            assert response.status_code == 503, (method, url, response.text)
            assert response.headers["Retry-After"].isdigit()
            assert response.json() == {"detail": "Database unavailable, please retry shortly"}
            assert elapsed < TIMEOUT * 2 + 1

        await anyio.to_thread.run_sync(cluster.start)
        for i in range(10):
            response = await http.post(base, json={"title": f"after {i}"}, headers=headers)
            assert response.status_code == 201, response.text
            acknowledged += 1
        listing = await http.get(base, headers=headers)
        assert (await http.get("/ready")).status_code == 200
    assert listing.status_code == 200
    assert listing.headers["X-Total-Count"] == str(acknowledged)
    connection = await pg_connect(cluster.url("todo"))
    stored = await connection.fetchval("SELECT count(*) FROM task WHERE user_id = $1", user)
    await connection.close()
    assert stored == acknowledged


async def test_terminated_connections_cost_no_visible_error(postgres_url: str) -> None:
    """pg_terminate_backend on every connection of the service (what Neon's suspend does)."""
    app = create_app(make_settings(postgres_url))
    user = f"user-{uuid.uuid4().hex}"
    headers = bearer(hs256(user))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        warm = await asyncio.gather(*(http.get(f"/api/{user}/tasks", headers=headers) for _ in range(8)))
        assert {r.status_code for r in warm} == {200}
        admin = await pg_connect(postgres_url)
        pids = await admin.fetch(
            "SELECT pid FROM pg_stat_activity "
            "WHERE application_name = 'todo-api' AND datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert pids
        await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", [r["pid"] for r in pids])
        # Termination is asynchronous; Neon suspends idle computes, so its connections are long gone
        # by the next request. Wait until these are, too.
        for _ in range(100):
            alive = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", [r["pid"] for r in pids]
            )
            if alive == 0:
                break
            await asyncio.sleep(0.05)
        await admin.close()
        assert alive == 0
        after = await asyncio.gather(
            *(http.post(f"/api/{user}/tasks", json={"title": "after kill"}, headers=headers) for _ in range(8))
        )
        assert [r.status_code for r in after] == [201] * 8
        assert (await http.get(f"/api/{user}/tasks", headers=headers)).headers["X-Total-Count"] == "8"


async def test_production_started_without_its_database_heals_in_the_background(
    cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Started while the server is down: 503s, then the server comes back and, with no request and no
    restart, the background check finds it and the instance serves."""
    url = await anyio.to_thread.run_sync(cluster.create_database, "todo")
    await upgrade_database(make_settings(url))
    await anyio.to_thread.run_sync(lambda: cluster.stop("fast"))
    settings = make_settings(
        url, environment="production", db_startup_timeout_seconds=0.2, db_connect_timeout_seconds=TIMEOUT
    )
    app = create_app(settings)
    user = f"user-{uuid.uuid4().hex}"
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        assert (await http.get("/ready")).status_code == 503
        assert "Starting without the database (requests and /ready answer 503): connection refused" in caplog.text
        await anyio.to_thread.run_sync(cluster.start)
        for _ in range(150):
            if "Database available again: serving" in caplog.text:
                break
            await asyncio.sleep(0.1)
        assert "Database available again: serving" in caplog.text
        assert (await http.get("/ready")).status_code == 200
        created = await http.post(f"/api/{user}/tasks", json={"title": "after"}, headers=bearer(hs256(user)))
        assert created.status_code == 201

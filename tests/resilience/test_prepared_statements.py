"""Prepared statements behind a pooler that cannot keep them: two service processes, one server connection.

PgBouncer 1.18 in transaction mode hands each transaction whichever server connection is free, so
a statement one process prepared can meet another process's Bind. With asyncpg's default names
(`__asyncpg_stmt_1__` in every process) that Bind could run the other process's statement; with
process-unique names the only failure is "does not exist", before anything runs, and the service
switches to unnamed statements and sends the request again. Here: no request fails, no wrong
statement ever runs, and each process says so once.
"""

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.support._proc import free_port, port_open, stop_process, wait_until
from tests.support.api import bearer
from tests.support.database import fresh_database, pg_connect
from tests.support.pgbouncer import PgBouncer
from tests.tokens import TEST_SECRET, hs256

pytestmark = pytest.mark.anyio

REQUESTS_PER_PROCESS = 240
CONCURRENCY = 12


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_url, migrated=True) as url:
        yield url


def _bouncer(database: str, server_connections: int) -> PgBouncer:
    return PgBouncer(database, pool_size=server_connections)


def _start_service(project_root: Path, url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(log.parent),
        "BETTER_AUTH_SECRET": TEST_SECRET,
        "DATABASE_URL": url,
        "DB_POOL_SIZE": "4",
        "DB_MAX_OVERFLOW": "0",
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
            [sys.executable, "-m", "uvicorn", "backend.main:app", "--port", str(port), "--no-access-log"],
            cwd=project_root,
            env=environment,
            stdout=sink,
            stderr=sink,
        )
    assert wait_until(lambda: port_open("127.0.0.1", port) or process.poll() is not None, timeout=60)
    assert process.poll() is None, log.read_text()
    return process, f"http://127.0.0.1:{port}"


async def _reader(base: str, user: str, task_ids: list[int]) -> list[tuple[str, int]]:
    """Lists and gets only: if another process's write ever ran with these parameters, it would show."""
    async with httpx.AsyncClient(base_url=base, headers=bearer(hs256(user)), timeout=30) as http:

        async def one(index: int) -> tuple[str, int]:
            if index % 2:
                response = await http.get(f"/api/{user}/tasks")
                assert response.headers.get("X-Total-Count") in {None, str(len(task_ids))}
                return "list", response.status_code
            task_id = task_ids[index % len(task_ids)]
            response = await http.get(f"/api/{user}/tasks/{task_id}")
            assert response.status_code != 200 or response.json()["title"] == f"keep {task_id}"
            return "get", response.status_code

        return await _bounded(one)


async def _writer(base: str, user: str) -> tuple[list[tuple[str, int]], int]:
    """Deletes first (the same parameters as the reader's gets: an id and an owner), then every kind of write."""
    async with httpx.AsyncClient(base_url=base, headers=bearer(hs256(user)), timeout=30) as http:
        stored = 0

        async def one(index: int) -> tuple[str, int]:
            nonlocal stored
            if index < REQUESTS_PER_PROCESS // 4:
                return "delete", (await http.delete(f"/api/{user}/tasks/{10**9 + index}")).status_code
            created = await http.post(f"/api/{user}/tasks", json={"title": f"write {index}"})
            if created.status_code != 201:
                return "create", created.status_code
            stored += 1
            task = f"/api/{user}/tasks/{created.json()['id']}"
            step = ("update", (await http.put(task, json={"title": f"renamed {index}"})).status_code)
            if step[1] == 200 and index % 3 == 0:
                step = ("toggle", (await http.patch(f"{task}/complete")).status_code)
            if step[1] == 200 and index % 2 == 0:
                step = ("delete", (await http.delete(task)).status_code)
                stored -= step[1] == 204
            return step

        return await _bounded(one), stored


async def _bounded(call: object) -> list[tuple[str, int]]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def run(index: int) -> tuple[str, int]:
        async with gate:
            return await call(index)  # type: ignore[operator, no-any-return]

    return list(await asyncio.gather(*(run(index) for index in range(REQUESTS_PER_PROCESS))))


@pytest.mark.parametrize("server_connections", [1, 3])
async def test_two_processes_behind_pgbouncer_never_run_a_wrong_statement(
    project_root: Path, tmp_path: Path, database: str, server_connections: int
) -> None:
    """One server connection: both processes' statements live on it side by side, under distinct names.
    Three: a Bind meets a server connection without its statement, and the service falls back."""
    reader_user, writer_user = f"reader-{uuid.uuid4().hex}", f"writer-{uuid.uuid4().hex}"
    seed = await pg_connect(database)
    task_ids = [
        await seed.fetchval(
            "INSERT INTO task (user_id, title, completed, created_at, updated_at) "
            "VALUES ($1, 'pending', false, now(), now()) RETURNING id",
            reader_user,
        )
        for _ in range(5)
    ]
    await seed.executemany("UPDATE task SET title = 'keep ' || id WHERE id = $1", [(i,) for i in task_ids])
    with ExitStack() as stack:
        url = stack.enter_context(_bouncer(database, server_connections)).url()
        services = []
        for name in ("a", "b"):
            process, base = _start_service(project_root, url, tmp_path / f"{name}.log")
            stack.callback(stop_process, process, signal.SIGINT, 15)
            services.append(base)
        reads, (writes, stored) = await asyncio.gather(
            _reader(services[0], reader_user, task_ids), _writer(services[1], writer_user)
        )
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("a", "b")}

    assert {status for _, status in reads} == {200}, reads
    expected = {("update", 200), ("toggle", 200), ("delete", 204), ("delete", 404)}
    assert {(kind, status) for kind, status in writes} <= expected, writes
    rows = await seed.fetch("SELECT id, title, completed FROM task WHERE user_id = $1 ORDER BY id", reader_user)
    assert [(row["id"], row["title"], row["completed"]) for row in rows] == [(i, f"keep {i}", False) for i in task_ids]
    assert await seed.fetchval("SELECT count(*) FROM task WHERE user_id = $1", writer_user) == stored
    await seed.close()
    for log in logs.values():
        assert "Traceback" not in log
        assert log.count("did not have this process's prepared statement") <= 1
    if server_connections > 1:  # a Bind met a server connection without its statement, and it was fine
        assert any("did not have this process's prepared statement" in log for log in logs.values())

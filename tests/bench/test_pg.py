"""The benchmark's PostgreSQL: its own cluster, never a restart of anyone else's, and only loopback
servers when pointed at one (bench/pg.py)."""

import asyncio
from typing import Any

import pytest

from backend.db import DatabaseUnavailable
from bench.pg import (
    PERFORMANCE_SETTINGS,
    PGSS,
    POSTGRES_DEFAULTS,
    SYSTEM_URL,
    BenchError,
    PrivateCluster,
    _system_settings,
    connect,
    database_urls,
)
from tests.support.tools import missing_tool, pg_bin_dir


async def _system_started() -> Any:
    """When the system cluster last started (None if it does not answer): a restart would move it."""
    try:
        connection = await connect(SYSTEM_URL)
    except DatabaseUnavailable:  # no system cluster is a valid machine for this test
        return None
    try:
        return await connection.fetchval("SELECT pg_postmaster_start_time()")
    finally:
        await connection.close()


async def _inspect(url: str) -> tuple[dict[str, str], int]:
    """The private cluster's settings (base units, as pg_settings has them) and the calls that
    pg_stat_statements counted for five runs of one statement."""
    connection = await connect(url)
    try:
        rows = await connection.fetch(
            "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
            [*PERFORMANCE_SETTINGS, "shared_preload_libraries"],
        )
        await connection.execute(f"CREATE EXTENSION IF NOT EXISTS {PGSS}")
        await connection.execute(f"SELECT {PGSS}_reset()")
        for number in range(5):
            await connection.fetchval("SELECT $1::int AS bench_probe", number)
        calls = await connection.fetchval(
            f"SELECT coalesce(sum(calls), 0) FROM {PGSS} WHERE query = 'SELECT $1::int AS bench_probe'"  # noqa: S608
        )
    finally:
        await connection.close()
    return {str(row["name"]): str(row["setting"]) for row in rows}, int(calls)


def test_private_cluster_counts_statements_with_the_system_settings_and_restarts_nothing() -> None:
    bin_dir = pg_bin_dir()
    if bin_dir is None or next(bin_dir.parent.rglob(f"{PGSS}.so"), None) is None:
        missing_tool("PostgreSQL server binaries with pg_stat_statements", "apt-get install postgresql")
    system_before = asyncio.run(_system_started())
    expected = asyncio.run(_system_settings())
    private = PrivateCluster.start()
    try:
        base_dir = private.server.base_dir
        assert private.pgss
        settings, calls = asyncio.run(_inspect(private.url))
        described = asyncio.run(private.describe())
    finally:
        private.stop()
    assert not base_dir.exists()
    assert settings["shared_preload_libraries"] == PGSS
    assert calls == 5
    if expected is None:  # no system cluster on this machine: PostgreSQL's defaults, not PgCluster's fast ones
        assert settings["fsync"] == POSTGRES_DEFAULTS["fsync"]
        assert settings["synchronous_commit"] == POSTGRES_DEFAULTS["synchronous_commit"]
    else:
        assert {name: settings[name] for name in expected} == expected
        assert asyncio.run(_system_started()) == system_before
    assert "fsync=" in described
    assert "synchronous_commit=" in described
    assert "shared_preload_libraries=pg_stat_statements" in described


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        pytest.param("postgresql://u:hunter2@db.example.com/x", "only drives a loopback", id="remote"),
        pytest.param("postgresql://u:hunter2@127.0.0.1:99999/x", "port", id="bad-port"),
        pytest.param("mysql://u:hunter2@127.0.0.1/x", "unsupported scheme", id="scheme"),
        pytest.param("sqlite:///tmp/x.sqlite3", "needs PostgreSQL", id="sqlite"),
    ],
)
def test_database_url_refusals_name_the_problem_and_echo_no_password(url: str, reason: str) -> None:
    with pytest.raises(BenchError) as refused:
        database_urls(url, "todo_bench")
    assert reason in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_database_urls_keep_the_server_and_its_parameters() -> None:
    urls = database_urls("postgresql://u:p%40ss@127.0.0.1:6543/postgres?sslmode=disable&application_name=b", "b1")
    assert urls.bench == "postgresql://u:p%40ss@127.0.0.1:6543/b1?sslmode=disable&application_name=b"
    assert urls.admin == "postgresql://u:p%40ss@127.0.0.1:6543/postgres?sslmode=disable&application_name=b"
    assert (urls.host, urls.port, urls.name) == ("127.0.0.1", 6543, "b1")
    with pytest.raises(BenchError, match=r"\[A-Za-z0-9_\]"):
        database_urls("postgresql://127.0.0.1/postgres", "todo; DROP")

"""The network mode's delay proxy: it must add the round-trip time it claims and count round trips
exactly, or the benchmark's "round trips per request" would be a guess."""

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from backend.database_url import parse_database_url
from backend.db import connect_args
from bench.proxy import Counters, DelayProxy, read_stats

RTT_MS = 5.0


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[DelayProxy]:
    url = make_url(postgres_url)
    delay_proxy = DelayProxy(url.host or "127.0.0.1", url.port or 5432, RTT_MS)
    await delay_proxy.listen("app")
    yield delay_proxy
    await delay_proxy.close()


async def _connect(port: int, postgres_url: str, cache: int = 100) -> asyncpg.Connection:
    """The session database through the proxy, with the service's connection arguments; sslmode=prefer
    sends an SSLRequest first, which the proxy must answer itself. `cache`: asyncpg's statement cache."""
    through_proxy = replace(parse_database_url(postgres_url), host="127.0.0.1", port=port, sslmode="prefer")
    return await asyncpg.connect(**{**connect_args(through_proxy), "statement_cache_size": cache})


async def _round_trips(proxy: DelayProxy, connection: asyncpg.Connection, queries: int) -> tuple[Counters, float]:
    before = Counters(**proxy.stats()["app"])
    started = time.monotonic()
    for number in range(queries):
        assert await connection.fetchval("SELECT $1::int + 1", number) == number + 1
    elapsed = time.monotonic() - started
    after = Counters(**proxy.stats()["app"])
    return (
        Counters(
            connections=after.connections - before.connections,
            round_trips=after.round_trips - before.round_trips,
            answered_messages=after.answered_messages - before.answered_messages,
            delayed_chunks=after.delayed_chunks - before.delayed_chunks,
            delay_seconds=after.delay_seconds - before.delay_seconds,
        ),
        elapsed,
    )


@pytest.mark.parametrize(
    ("cache", "per_query"),
    [
        # Parse/Describe/Flush, then Bind/Execute/Sync: two answered bursts and two answered messages.
        pytest.param(0, 2, id="unprepared"),
        # Bind/Execute/Sync only, once the statement is prepared on the connection.
        pytest.param(100, 1, id="prepared"),
    ],
)
@pytest.mark.anyio
async def test_round_trips_are_counted_exactly(
    proxy: DelayProxy, postgres_url: str, cache: int, per_query: int
) -> None:
    connection = await _connect(proxy.ports["app"], postgres_url, cache)
    try:
        await connection.fetchval("SELECT $1::int + 1", 0)  # prepared once when the cache is on
        counted, elapsed = await _round_trips(proxy, connection, 10)
    finally:
        await connection.close()
    assert counted.round_trips == 10 * per_query
    assert counted.answered_messages == 10 * per_query
    assert elapsed >= 10 * per_query * RTT_MS / 1000
    assert counted.delay_seconds / counted.delayed_chunks >= RTT_MS / 1000 * 0.98


@pytest.mark.anyio
async def test_each_listener_counts_its_own_connections(proxy: DelayProxy, postgres_url: str) -> None:
    await proxy.listen("other")
    connection = await _connect(proxy.ports["app"], postgres_url)
    await connection.close()
    stats = proxy.stats()
    assert stats["app"]["connections"] == 1
    assert stats["app"]["round_trips"] >= 1  # the startup exchange
    assert stats["other"] == {
        "connections": 0,
        "round_trips": 0,
        "answered_messages": 0,
        "delayed_chunks": 0,
        "delay_seconds": 0.0,
    }


@pytest.mark.anyio
async def test_control_port_reports_counters(postgres_url: str) -> None:
    """The runner reads a proxy process's counters through its control port."""
    url = make_url(postgres_url)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.proxy",
        "--upstream",
        f"{url.host or '127.0.0.1'}:{url.port or 5432}",
        "--listen",
        "app",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        ports = json.loads(await asyncio.wait_for(process.stdout.readline(), timeout=30))
        connection = await _connect(ports["listen"]["app"], postgres_url)
        await connection.fetchval("SELECT 1")
        await connection.close()
        stats = await read_stats(ports["control"])
        assert stats["app"]["connections"] == 1
        assert stats["app"]["answered_messages"] >= 1
    finally:
        process.terminate()
        await process.wait()

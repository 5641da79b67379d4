"""The network mode's delay proxy: it must add the round-trip time it claims and count round trips
exactly, or the benchmark's "round trips per request" would be a guess."""

import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bench.proxy import Counters, DelayProxy, read_stats

RTT_MS = 5.0


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[DelayProxy]:
    url = make_url(postgres_url)
    delay_proxy = DelayProxy(url.host or "127.0.0.1", url.port or 5432, RTT_MS)
    await delay_proxy.listen("app")
    yield delay_proxy
    await delay_proxy.close()


async def _connect(proxy: DelayProxy, postgres_url: str, cache: int) -> asyncpg.Connection:
    url = make_url(postgres_url)
    # ssl="prefer" sends an SSLRequest first, which the proxy must answer itself.
    return await asyncpg.connect(
        host="127.0.0.1",
        port=proxy.ports["app"],
        user=url.username,
        database=url.database,
        statement_cache_size=cache,
        ssl="prefer",
    )


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


@pytest.mark.anyio
async def test_unprepared_statements_cost_two_round_trips(proxy: DelayProxy, postgres_url: str) -> None:
    connection = await _connect(proxy, postgres_url, cache=0)
    try:
        counted, elapsed = await _round_trips(proxy, connection, 10)
    finally:
        await connection.close()
    # Parse/Describe/Flush, then Bind/Execute/Sync: two answered bursts and two answered messages.
    assert counted.round_trips == 20
    assert counted.answered_messages == 20
    assert elapsed >= 20 * RTT_MS / 1000
    assert counted.delay_seconds / counted.delayed_chunks >= RTT_MS / 1000 * 0.98


@pytest.mark.anyio
async def test_cached_statements_cost_one_round_trip(proxy: DelayProxy, postgres_url: str) -> None:
    connection = await _connect(proxy, postgres_url, cache=100)
    try:
        await connection.fetchval("SELECT $1::int + 1", 0)  # prepared once
        counted, elapsed = await _round_trips(proxy, connection, 10)
    finally:
        await connection.close()
    assert counted.round_trips == 10
    assert counted.answered_messages == 10
    assert elapsed >= 10 * RTT_MS / 1000


@pytest.mark.anyio
async def test_each_listener_counts_its_own_connections(proxy: DelayProxy, postgres_url: str) -> None:
    await proxy.listen("other")
    connection = await _connect(proxy, postgres_url, cache=100)
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
    import asyncio
    import json
    import sys

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
        connection = await asyncpg.connect(
            host="127.0.0.1", port=ports["listen"]["app"], user=url.username, database=url.database
        )
        await connection.fetchval("SELECT 1")
        await connection.close()
        stats = await read_stats(ports["control"])
        assert stats["app"]["connections"] == 1
        assert stats["app"]["answered_messages"] >= 1
    finally:
        process.terminate()
        await process.wait()

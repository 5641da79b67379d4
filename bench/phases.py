"""The phases of one run and the state they share: the scenario matrix (every scenario at every
concurrency, service beside limit), list and create scaling, and 1 versus 2 workers. The network
mode is in bench/network.py; the order they run in is in bench/run.py.
"""

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import report, schema, seed
from bench.load import Result, brief, run_wrk, shape
from bench.pg import Cluster, Counts, DatabaseUrls, StatementCounter
from bench.processes import CpuMeter, Cpus, Server

SCENARIOS = ("list", "get", "create", "update", "toggle", "delete", "mixed")
# Headroom over the fastest rate measured when seeding tasks for the delete scenario.
DELETE_POOL_MARGIN = 2.0
DELETE_POOL_GUESS_RPS = 4000.0
# Above this many rows, a reload between targets costs more than the drift it would remove.
RELOAD_LIMIT = 200_000
Probe = Callable[[], Awaitable[dict[str, float]]]


@dataclass(frozen=True)
class Plan:
    """How much to measure: the full run and the smoke run differ only in these numbers."""

    mode: str
    duration: int
    warmup: int
    connections: tuple[int, ...]
    list_sizes: tuple[int, ...] = (20, 200, 2000)
    scaling_duration: int = 3
    create_rows: tuple[int, ...] = (10_000, 1_000_000)
    workers: tuple[int, ...] = (1, 2)
    workers_duration: int = 6
    workers_connections: tuple[int, ...] = (50, 200)
    network_scenarios: tuple[str, ...] = ("list", "get", "create", "update", "toggle", "delete")
    network_connections: tuple[int, ...] = (1, 10)
    network_duration: int = 4
    rtt_ms: float = 2.0
    # Runs disturbed by other processes (see CpuMeter) that may be repeated, in all.
    retries: int = 4
    # Without pg_stat_statements, counting waits ~1 s per run for PostgreSQL to publish its counters;
    # a smoke run does that for these scenarios only (None: every scenario).
    counted: tuple[str, ...] | None = None


FULL = Plan("full", duration=8, warmup=2, connections=(50, 200))
# Every phase once, as briefly as proves it works: under a minute even on a busy machine.
SMOKE = Plan(
    "smoke",
    duration=1,
    connections=(50,),
    list_sizes=(2000,),
    scaling_duration=1,
    create_rows=(10_000, 50_000),
    workers=(2,),
    workers_duration=1,
    workers_connections=(50,),
    network_scenarios=("get",),
    network_connections=(1,),
    network_duration=1,
    warmup=0,
    retries=0,
    counted=("mixed",),
)


@dataclass
class Bench:
    """State shared by the phases of one run."""

    plan: Plan
    cpus: Cpus
    urls: DatabaseUrls
    out: Path
    secret: str
    users: int
    tasks_per_user: int
    limit_pool: int
    access_log: bool
    service_env: dict[str, str]
    notes: list[str] = field(default_factory=list)
    runs: list[Result] = field(default_factory=list)
    contract: dict[str, list[Result]] = field(default_factory=dict)
    scaling: Result = field(default_factory=dict)
    network: Result = field(default_factory=dict)
    peak_rps: dict[int, float] = field(default_factory=dict)
    retries_left: int = 0
    admin: Any = None
    counter: StatementCounter | None = None
    cluster: Cluster | None = None
    helper_pids: list[int] = field(default_factory=list)  # e.g. the delay proxy: ours, not "other"
    meter: CpuMeter = field(default_factory=lambda: CpuMeter([]))
    started: float = field(default_factory=time.monotonic)

    @property
    def work(self) -> Path:
        return self.out / "work"

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:5.0f}s] {message}", flush=True)

    # ----- data -------------------------------------------------------------------------------

    def user_ids(self) -> list[str]:
        return seed.user_ids(self.users)

    def dataset(self, delete_per_user: int = 0) -> seed.Dataset:
        """The standard table: users x tasks, the list-scaling users, and optionally delete fodder."""
        groups: dict[str, tuple[list[str], int]] = {
            f"scale-{size}": ([f"scale-user-{size}"], size) for size in self.plan.list_sizes
        }
        if delete_per_user:
            groups["delete"] = (self.user_ids(), delete_per_user)
        return seed.build(self.user_ids(), self.tasks_per_user, extra_groups=groups)

    def scenario_data(self, scenario: str, connections: int, duration: int) -> tuple[seed.Dataset, Path]:
        """The table and tokens file a scenario starts from (deletes get their own pool of tasks)."""
        if scenario == "delete":
            dataset = self.dataset(self.delete_pool(connections, duration))
            return dataset, self.tokens("delete", dataset.ids["delete"])
        dataset = self.dataset()
        return dataset, self.tokens("base", dataset.ids["base"])

    async def reset(self, dataset: seed.Dataset) -> None:
        await seed.load(self.admin, dataset)
        await self.admin.execute("CHECKPOINT")  # so no checkpoint of the reset lands inside a run

    def tokens(self, name: str, owned: dict[str, list[int]]) -> Path:
        path = self.work / f"tokens-{name}.tsv"
        seed.write_tokens(path, self.secret, owned)
        return path

    def delete_pool(self, connections: int, duration: int) -> int:
        """Tasks per user to seed for deletion. A delete costs about what a get costs, so the pool is
        sized from the fastest scenario either target managed so far at this concurrency."""
        rate = self.peak_rps.get(connections, DELETE_POOL_GUESS_RPS)
        wanted = math.ceil(DELETE_POOL_MARGIN * rate * duration / self.users)
        return min(max(wanted, 20), 500)

    # ----- servers ----------------------------------------------------------------------------

    def server(
        self, target: str, workers: int, cpus: frozenset[int] | None, database_url: str | None = None, tag: str = ""
    ) -> Server:
        """`target` as a uvicorn process on the bench database (or on `database_url`, e.g. a proxy).

        The service runs with its shipped defaults: every DB_* variable of the runner's own
        environment is dropped, and only `--service-env` adds any back.
        """
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH" and not key.startswith("DB_")}
        url = database_url or self.urls.bench
        env.update(DATABASE_URL=url, BETTER_AUTH_SECRET=self.secret)
        if target == "service":
            # NEON_DATABASE_URL wins over DATABASE_URL in the service's settings (and may sit in
            # backend/.env): pin both to the bench database so no request ever leaves the machine.
            env.update(NEON_DATABASE_URL=url, ENVIRONMENT="production", **self.service_env)
            app = "backend.main:app"
        else:
            env.update(LIMIT_POOL_SIZE=str(max(self.limit_pool // workers, 1)))
            app = "bench.limit_app:app"
        log_path = self.work / "logs" / f"{target}-{workers}w{tag}.log"
        return Server(target, app, env, workers, cpus, log_path, self.access_log)

    # ----- measuring --------------------------------------------------------------------------

    async def measure(
        self,
        server: Server,
        scenario: str,
        connections: int,
        duration: int,
        tokens: Path,
        *,
        load_cpus: frozenset[int] | None = None,
        record: bool = True,
        count: bool = True,
        probe: Probe | None = None,
    ) -> Result:
        """One wrk run with peak RSS sampling, and statement counting around the recorded ones.

        `probe` reads counters of something else (the delay proxy's); their growth during the run,
        once the server is idle again, lands in the result as "probe".
        """
        assert self.counter is not None
        plan = self.plan
        count = count and record and (self.counter.pgss or plan.counted is None or scenario in plan.counted)
        if count:
            await self.counter.start()
        peak = server.rss_mib()
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, server.rss_mib())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), timeout=0.25)

        sampler = asyncio.create_task(sample())
        probed = await probe() if probe else {}
        self.meter.start(self._our_pids(server))
        threads = 1 if self.cpus.pinned and load_cpus is not None and len(load_cpus) == 1 else 2
        ticks, wall = server.cpu_ticks(), time.monotonic()
        try:
            data = await run_wrk(
                self.cpus.prefix(load_cpus), threads, scenario, server.url, tokens, connections, duration
            )
            # Near 100% of one core: the server is the bottleneck; well below: the database or wrk is.
            server_cpu = 100 * (server.cpu_ticks() - ticks) / self.meter.hz / (time.monotonic() - wall)
        finally:
            done.set()
            await sampler
            await server.quiesce()
        other_cpu = self.meter.stop(self._our_pids(server)) if self.cluster else None
        counts = await self.counter.stop() if count else Counts(None, None, [])
        result = shape(server.target, server.workers, scenario, connections, data, counts)
        if probe:
            result["probe"] = {key: value - probed[key] for key, value in (await probe()).items()}
        result.update(
            rss_mib=peak,
            pinned=self.cpus.pinned and load_cpus == self.cpus.load,
            other_cpu_pct=other_cpu,
            server_cpu_pct=server_cpu,
        )
        if record:
            self.log(
                f"{server.target:7} {scenario:6} c={connections:<3} {result['rps']:9,.0f} req/s  "
                f"p50 {result['p50_ms']:7.2f}  p99 {result['p99_ms']:7.2f} ms  non-2xx {result['non2xx']}  "
                f"errors {result['errors']}  stmts/req {_fmt(result['statements_per_request'])}  "
                f"RSS {peak:.0f} MiB  server CPU {server_cpu:.0f}%  other CPU {_fmt(other_cpu, 0)}%"
                + ("  DELETE POOL RAN OUT" if result["exhausted"] else "")
            )
        return result

    def _our_pids(self, server: Server) -> list[int]:
        cluster = self.cluster.bench_processes(self.urls.name) if self.cluster else []
        return server.pids() + cluster + self.helper_pids

    async def undisturbed(
        self,
        dataset: seed.Dataset,
        server: Server,
        scenario: str,
        connections: int,
        duration: int,
        tokens: Path,
        probe: Probe | None = None,
    ) -> Result:
        """A reset and a recorded run, repeated while other processes used more than
        report.DISTURBED_PCT of the machine (at most `plan.retries` times in the whole benchmark, to
        stay inside its time budget)."""
        while True:
            await self.reset(dataset)
            result = await self.measure(
                server, scenario, connections, duration, tokens, load_cpus=self.cpus.load, probe=probe
            )
            if (result["other_cpu_pct"] or 0.0) <= report.DISTURBED_PCT or self.retries_left <= 0:
                return result
            self.retries_left -= 1
            self.log(f"  other processes used {result['other_cpu_pct']:.0f}% of the machine: run again")

    # ----- phases -----------------------------------------------------------------------------

    async def matrix(self, servers: list[Server]) -> None:
        """Every scenario at every concurrency; service and limit alternate going first."""
        for connections in self.plan.connections:
            for index, scenario in enumerate(SCENARIOS):
                for server in servers if index % 2 == 0 else servers[::-1]:
                    dataset, tokens = self.scenario_data(scenario, connections, self.plan.duration)

                    result = await self.undisturbed(dataset, server, scenario, connections, self.plan.duration, tokens)
                    self.peak_rps[connections] = max(self.peak_rps.get(connections, 0.0), result["rps"])
                    self.runs.append(result)

    async def _one_connection(self, server: Server, scenario: str, tokens: Path, key: str, value: int) -> Result:
        """A scaling point: `scenario` at 1 connection (no queueing), labelled `key`=`value`."""
        result = await self.measure(
            server, scenario, 1, self.plan.scaling_duration, tokens, load_cpus=self.cpus.load, record=False
        )
        latency = f"p50 {result['p50_ms']:.2f}  p99 {result['p99_ms']:.2f} ms"
        self.log(f"{server.target:7} {scenario:6} {key}={value:<9,} {latency}")
        return {**brief(result), key: value}

    async def list_scaling(self, servers: list[Server]) -> None:
        """Latency of one user's list as that user's task count grows (1 connection, no queueing),
        and the plan PostgreSQL chose for the service's own list statement."""
        dataset = self.dataset()
        await self.reset(dataset)
        rows: list[Result] = []
        for server in servers:
            for size in self.plan.list_sizes:
                tokens = self.tokens(f"scale-{size}", dataset.ids[f"scale-{size}"])
                rows.append(await self._one_connection(server, "list", tokens, "tasks", size))
        self.scaling["list_by_size"] = rows
        explain: dict[str, list[str]] = {}
        for size in self.plan.list_sizes:
            sql, args = schema.service_list_statement(f"scale-user-{size}")
            self.scaling["list_sql"] = sql
            plan = await self.admin.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
            explain[str(size)] = [str(row[0]) for row in plan]
        self.scaling["explain"] = explain

    async def create_scaling(self, servers: list[Server]) -> None:
        """Create latency with a small and a large table (1 connection): index depth and WAL cost."""
        small = seed.build(self.user_ids(), max(1, self.plan.create_rows[0] // self.users))
        tokens = self.tokens("create", small.ids["base"])
        rows: list[Result] = []
        for table_rows in self.plan.create_rows:
            for position, server in enumerate(servers):
                if position == 0 or table_rows <= RELOAD_LIMIT:
                    started = time.monotonic()
                    await self.reset(small)
                    if await seed.fill(self.admin, table_rows):
                        await self.admin.execute("CHECKPOINT")
                        self.log(f"filled the table to {table_rows:,} rows in {time.monotonic() - started:.1f}s")
                count = int(await self.admin.fetchval(f"SELECT count(*) FROM {schema.TABLE_NAME}"))  # noqa: S608
                rows.append(await self._one_connection(server, "create", tokens, "table_rows", count))
        self.scaling["create_by_rows"] = rows

    async def workers(self, target: str) -> None:
        """The same target with 1 and 2 uvicorn workers, everything unpinned (whole machine)."""
        dataset = self.dataset()
        tokens = self.tokens("base", dataset.ids["base"])
        rows: list[Result] = []
        servers = [self.server(target, count, None, tag="-workers") for count in self.plan.workers]
        try:
            # Started together to save time; the one not being measured sits idle.
            await asyncio.gather(*(server.start(self.cpus) for server in servers))
            for server in servers:
                if self.plan.warmup:
                    await self.reset(dataset)
                    await self.measure(
                        server, "mixed", max(self.plan.workers_connections), self.plan.warmup, tokens, record=False
                    )
                for connections in self.plan.workers_connections:
                    await self.reset(dataset)
                    result = await self.measure(
                        server, "mixed", connections, self.plan.workers_duration, tokens, record=False
                    )
                    rows.append({**brief(result), "workers": server.workers, "rss_mib": result["rss_mib"]})
                    self.log(
                        f"{target:7} mixed  workers={server.workers} c={connections:<3} {result['rps']:9,.0f} req/s  "
                        f"p99 {result['p99_ms']:.2f} ms  RSS {result['rss_mib']:.0f} MiB"
                    )
        finally:
            await asyncio.gather(*(server.stop() for server in servers))
        self.scaling["workers"] = rows


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"

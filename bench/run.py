"""One command for the whole benchmark: `python -m bench.run` (full, < 10 min) or `--smoke` (< 1 min).

It creates a fresh bench database, applies the schema (the service's own migrations when the service
exists), seeds it, starts the service and the limit app (1 uvicorn worker each, pinned to one core
while wrk and PostgreSQL get the other), checks both against the API contract, then drives every
scenario with wrk at each concurrency, resetting the table before every run so all runs start from
the same data. Results land in bench/results/ (results.md, results.json, chart.png).
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import report, seed
from bench.limit_app import SQL_LIST
from bench.pg import (
    BenchError,
    Cluster,
    Counts,
    DatabaseUrls,
    PgssSetup,
    StatementCounter,
    database_urls,
    drop_database,
    enable_pgss,
    recreate_database,
    restore_pgss,
)

REPO = Path(__file__).resolve().parent.parent
WRK_DIR = Path(__file__).resolve().parent / "wrk"
SCENARIOS = ("list", "get", "create", "update", "toggle", "delete", "mixed")
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Headroom over the fastest rate measured when seeding tasks for the delete scenario.
DELETE_POOL_MARGIN = 2.0
DELETE_POOL_GUESS_RPS = 4000.0
# Above this many rows, a reload between targets costs more than the drift it would remove.
RELOAD_LIMIT = 200_000

Result = dict[str, Any]


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
    pg_restart: bool = True
    # Runs disturbed by other processes (see CpuMeter) that may be repeated, in all.
    retries: int = 4
    # Without pg_stat_statements, counting waits ~1 s per run for PostgreSQL to publish its counters;
    # a smoke run does that for these scenarios only (None: every scenario).
    counted: tuple[str, ...] | None = None


FULL = Plan("full", duration=8, warmup=2, connections=(50, 200))
SMOKE = Plan(
    "smoke",
    duration=1,
    connections=(50,),
    list_sizes=(20, 2000),
    scaling_duration=1,
    create_rows=(10_000, 50_000),
    workers_duration=1,
    workers_connections=(50,),
    warmup=0,
    pg_restart=False,
    retries=0,
    counted=("mixed",),
)


@dataclass(frozen=True)
class Cpus:
    """Where things run. Pinned: servers on one core, wrk + PostgreSQL + this runner on another."""

    pinned: bool
    why: str
    server: frozenset[int]
    load: frozenset[int]
    every: frozenset[int]

    @classmethod
    def plan(cls, wanted: bool) -> "Cpus":
        every = frozenset(os.sched_getaffinity(0))
        ordered = sorted(every)
        if not wanted:
            return cls(False, "pinning disabled with --no-pin", every, every, every)
        if len(ordered) < 2:
            return cls(False, f"only {len(ordered)} CPU available", every, every, every)
        if shutil.which("taskset") is None:
            return cls(False, "taskset is not installed (util-linux)", every, every, every)
        server, load = frozenset({ordered[0]}), frozenset({ordered[1]})
        return cls(
            True,
            f"servers on CPU {ordered[0]}; wrk, PostgreSQL and the runner on CPU {ordered[1]}",
            server,
            load,
            every,
        )

    def prefix(self, cpus: frozenset[int] | None) -> list[str]:
        """`taskset -c LIST` for a child process; with pinning active, "None" means every CPU,
        because children would otherwise inherit the runner's own single core."""
        if not self.pinned:
            return []
        return [shutil.which("taskset") or "taskset", "-c", ",".join(map(str, sorted(cpus or self.every)))]


def wrk_command(
    wrk: str, scenario: str, base_url: str, tokens: Path, connections: int, duration: int, threads: int
) -> list[str]:
    """wrk driving one scenario script with a tokens file (see bench/wrk/common.lua)."""
    script = str(WRK_DIR / f"{scenario}.lua")
    options = [f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", script]
    return [wrk, *options, base_url, "--", str(tokens), str(threads)]


def wrk_result(stdout: str) -> Result | None:
    """The `BENCHJSON {...}` line the scenario scripts print when wrk is done."""
    for line in stdout.splitlines():
        if line.startswith("BENCHJSON "):
            data: Result = json.loads(line.removeprefix("BENCHJSON "))
            return data
    return None


# The service as it should be configured on a direct connection (the limit app's situation): the
# asyncpg statement cache on (asyncpg's own default) and a pool of 30: enough for 50 concurrent
# requests, and with the limit app's 50 still under PostgreSQL's default max_connections of 100.
DIRECT_CONNECTION_ENV = {"DB_STATEMENT_CACHE_SIZE": "100", "DB_POOL_SIZE": "25", "DB_MAX_OVERFLOW": "5"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tree(root: int) -> list[int]:
    """A process and all its descendants (uvicorn's workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def _tree_rss_mib(root: int) -> float:
    total_kib = 0
    for pid in _tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


def _jiffies(pid: int) -> int:
    """CPU time (utime + stime) a process has used, in clock ticks; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def _busy_jiffies() -> int:
    """Machine-wide non-idle CPU time from /proc/stat (user, nice, system, irq, softirq, steal)."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return values[0] + values[1] + values[2] + values[5] + values[6] + values[7]


def _own_seconds() -> float:
    """CPU used by the runner and its reaped children (wrk), in seconds."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class CpuMeter:
    """How much of the machine something *other* than the benchmark used during a run.

    The machine is shared (a developer's test suite, another server...), and such load silently
    halves a result; this makes it visible. Ours = servers + wrk + runner + the bench database's
    PostgreSQL processes; everything else busy is "other".
    """

    pids: list[int]
    hz: int = field(default_factory=lambda: os.sysconf("SC_CLK_TCK"))
    _start: tuple[float, int, int, float] = (0.0, 0, 0, 0.0)

    def start(self, pids: list[int]) -> None:
        self.pids = pids
        self._start = (time.monotonic(), _busy_jiffies(), sum(map(_jiffies, pids)), _own_seconds())

    def stop(self, pids: list[int]) -> float:
        """Percent of all CPUs' time used by other processes since `start`; `pids` may add processes
        of ours that started meanwhile (e.g. a pool's new connection), counted in full."""
        wall, busy, ours, own = self._start
        elapsed = time.monotonic() - wall
        now_ours = sum(map(_jiffies, set(self.pids) | set(pids)))
        other = (_busy_jiffies() - busy) - (now_ours - ours) - (_own_seconds() - own) * self.hz
        return max(0.0, 100.0 * other / (elapsed * self.hz * (os.cpu_count() or 1)))


@dataclass
class Server:
    """One uvicorn process (and its workers) serving `app` on a loopback port."""

    target: str
    app: str
    env: dict[str, str]
    workers: int
    cpus: frozenset[int] | None
    log_path: Path
    access_log: bool = False
    port: int = 0
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            "--workers",
            str(self.workers),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        return command if self.access_log else [*command, "--no-access-log"]

    async def start(self, cpus: Cpus) -> None:
        self.port = _free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *cpus.prefix(self.cpus),
                *self.command(),
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        await self._wait_ready()

    async def _wait_ready(self, within: float = 60.0) -> None:
        """Poll (bounded) until an unauthenticated list answers 401: routing and auth are up."""
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process is None or self.process.returncode is not None:
                    break
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/api/ready-probe/tasks")).status_code == 401:
                        return
                await asyncio.sleep(0.2)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        await self.stop()
        raise BenchError(f"{self.target} did not start (no 401 from {self.url}); log tail:\n{tail}")

    def rss_mib(self) -> float:
        return _tree_rss_mib(self.process.pid) if self.process else 0.0

    def pids(self) -> list[int]:
        return _tree(self.process.pid) if self.process else []

    def cpu_ticks(self) -> int:
        return sum(map(_jiffies, self.pids()))

    async def quiesce(self, within: float = 30.0) -> None:
        """Wait (bounded) until the server stops burning CPU: when wrk stops, requests it had queued
        are still being served, and a reset under them would race their INSERTs and DELETEs."""
        deadline = time.monotonic() + within
        before = self.cpu_ticks()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            now = self.cpu_ticks()
            if now - before <= 1:
                return
            before = now

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL to the process group this runner created for it."""
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


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
    peak_rps: dict[int, float] = field(default_factory=dict)
    retries_left: int = 0
    admin: Any = None
    counter: StatementCounter | None = None
    cluster: Cluster | None = None
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

    async def reset(self, dataset: seed.Dataset) -> None:
        await seed.load(self.admin, dataset)
        await self.admin.execute("CHECKPOINT")  # so no checkpoint of the reset lands inside a run

    def tokens(self, name: str, owned: dict[str, list[int]]) -> Path:
        path = self.work / f"tokens-{name}.tsv"
        seed.write_tokens(path, self.secret, owned)
        return path

    # ----- servers ----------------------------------------------------------------------------

    def server(self, target: str, workers: int, cpus: frozenset[int] | None) -> Server:
        env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH"}}
        env.update(DATABASE_URL=self.urls.bench, BETTER_AUTH_SECRET=self.secret)
        if target == "service":
            # NEON_DATABASE_URL wins over DATABASE_URL in the service's settings (and may sit in
            # backend/.env): pin both to the bench database so no request ever leaves the machine.
            env.update(NEON_DATABASE_URL=self.urls.bench, ENVIRONMENT="production", **self.service_env)
            app = "backend.main:app"
        else:
            env.update(LIMIT_POOL_SIZE=str(max(self.limit_pool // workers, 1)))
            app = "bench.limit_app:app"
        log_path = self.work / "logs" / f"{target}-{workers}w.log"
        return Server(target, app, env, workers, cpus, log_path, self.access_log)

    # ----- measuring --------------------------------------------------------------------------

    async def wrk(
        self,
        port: int,
        scenario: str,
        connections: int,
        duration: int,
        tokens: Path,
        threads: int,
        cpus: frozenset[int] | None,
    ) -> Result:
        wrk = shutil.which("wrk")
        if wrk is None:
            raise BenchError("wrk is not installed: apt-get install -y wrk")
        threads = max(1, min(threads, connections))
        command = [
            *self.cpus.prefix(cpus),
            *wrk_command(wrk, scenario, f"http://127.0.0.1:{port}", tokens, connections, duration, threads),
        ]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=duration + 60)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise BenchError(f"wrk {scenario} did not finish within {duration + 60}s") from None
        data = wrk_result(stdout.decode(errors="replace"))
        if data is not None:
            return data
        raise BenchError(f"wrk {scenario} printed no result: {stderr.decode(errors='replace')[-1000:]}")

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
    ) -> Result:
        """One wrk run with peak RSS sampling, and statement counting around the recorded ones."""
        assert self.counter is not None
        count = record and (self.counter.pgss or self.plan.counted is None or scenario in self.plan.counted)
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
        self.meter.start(self._our_pids(server))
        threads = 1 if self.cpus.pinned and load_cpus is not None and len(load_cpus) == 1 else 2
        ticks, wall = server.cpu_ticks(), time.monotonic()
        try:
            data = await self.wrk(server.port, scenario, connections, duration, tokens, threads, load_cpus)
            # Near 100% of one core: the server is the bottleneck; well below: the database or wrk is.
            server_cpu = 100 * (server.cpu_ticks() - ticks) / self.meter.hz / (time.monotonic() - wall)
        finally:
            done.set()
            await sampler
            await server.quiesce()
        other_cpu = self.meter.stop(self._our_pids(server)) if self.cluster else None
        counts = await self.counter.stop() if count else Counts(None, None, [])
        result = _result(server, scenario, connections, data, peak, counts)
        result["pinned"] = self.cpus.pinned and load_cpus == self.cpus.load
        result["other_cpu_pct"] = other_cpu
        result["server_cpu_pct"] = server_cpu
        if record:
            self.log(
                f"{server.target:7} {scenario:6} c={connections:<3} {result['rps']:9,.0f} req/s  "
                f"p50 {result['p50_ms']:7.2f}  p99 {result['p99_ms']:7.2f} ms  non-2xx {result['non2xx']}  "
                f"errors {result['errors']}  stmts/req {_fmt(result['statements_per_request'])}  "
                f"RSS {result['rss_mib']:.0f} MiB  server CPU {server_cpu:.0f}%  other CPU {_fmt(other_cpu, 0)}%"
                + ("  DELETE POOL RAN OUT" if result["exhausted"] else "")
            )
        return result

    def _our_pids(self, server: Server) -> list[int]:
        return server.pids() + (self.cluster.bench_processes(self.urls.name) if self.cluster else [])

    def delete_pool(self, connections: int) -> int:
        """Tasks per user to seed for deletion. A delete costs about what a get costs, so the pool is
        sized from the fastest scenario either target managed so far at this concurrency."""
        rate = self.peak_rps.get(connections, DELETE_POOL_GUESS_RPS)
        wanted = math.ceil(DELETE_POOL_MARGIN * rate * self.plan.duration / self.users)
        return min(max(wanted, 20), 500)

    # ----- phases -----------------------------------------------------------------------------

    async def matrix(self, servers: list[Server]) -> None:
        base = self.dataset()
        tokens = self.tokens("base", base.ids["base"])
        for connections in self.plan.connections:
            for index, scenario in enumerate(SCENARIOS):
                order = servers if index % 2 == 0 else servers[::-1]  # alternate who goes first
                for server in order:
                    dataset, run_tokens = base, tokens
                    if scenario == "delete":
                        dataset = self.dataset(self.delete_pool(connections))
                        run_tokens = self.tokens("delete", dataset.ids["delete"])
                    while True:
                        await self.reset(dataset)
                        result = await self.measure(
                            server, scenario, connections, self.plan.duration, run_tokens, load_cpus=self.cpus.load
                        )
                        if (result["other_cpu_pct"] or 0.0) <= report.DISTURBED_PCT or self.retries_left <= 0:
                            break
                        self.retries_left -= 1
                        self.log(f"  other processes used {result['other_cpu_pct']:.0f}% of the machine: run again")
                    self.peak_rps[connections] = max(self.peak_rps.get(connections, 0.0), result["rps"])
                    self.runs.append(result)

    async def list_scaling(self, servers: list[Server]) -> None:
        """Latency of one user's list as that user's task count grows (1 connection, no queueing)."""
        dataset = self.dataset()
        await self.reset(dataset)
        rows: list[Result] = []
        for server in servers:
            for size in self.plan.list_sizes:
                tokens = self.tokens(f"scale-{size}", dataset.ids[f"scale-{size}"])
                result = await self.measure(
                    server, "list", 1, self.plan.scaling_duration, tokens, load_cpus=self.cpus.load, record=False
                )
                rows.append({**_brief(result), "tasks": size})
                self.log(
                    f"{server.target:7} list   tasks={size:<5} p50 {result['p50_ms']:.2f}  "
                    f"p99 {result['p99_ms']:.2f} ms"
                )
        self.scaling["list_by_size"] = rows
        explain: dict[str, list[str]] = {}
        for size in self.plan.list_sizes:
            plan = await self.admin.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {SQL_LIST}", f"scale-user-{size}", 1000)
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
                    added = await seed.fill(self.admin, table_rows)
                    if added:
                        await self.admin.execute("CHECKPOINT")
                        self.log(f"filled the table to {table_rows:,} rows in {time.monotonic() - started:.1f}s")
                count = int(await self.admin.fetchval("SELECT count(*) FROM task"))
                result = await self.measure(
                    server, "create", 1, self.plan.scaling_duration, tokens, load_cpus=self.cpus.load, record=False
                )
                rows.append({**_brief(result), "table_rows": count})
                self.log(
                    f"{server.target:7} create rows={count:<9,} p50 {result['p50_ms']:.2f}  "
                    f"p99 {result['p99_ms']:.2f} ms"
                )
        self.scaling["create_by_rows"] = rows

    async def workers(self, target: str) -> None:
        """The same target with 1 and 2 uvicorn workers, everything unpinned (whole machine)."""
        dataset = self.dataset()
        tokens = self.tokens("base", dataset.ids["base"])
        rows: list[Result] = []
        servers = [self.server(target, count, None) for count in self.plan.workers]
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
                    rows.append({**_brief(result), "workers": server.workers, "rss_mib": result["rss_mib"]})
                    self.log(
                        f"{target:7} mixed  workers={server.workers} c={connections:<3} {result['rps']:9,.0f} req/s  "
                        f"p99 {result['p99_ms']:.2f} ms  RSS {result['rss_mib']:.0f} MiB"
                    )
        finally:
            await asyncio.gather(*(server.stop() for server in servers))
        self.scaling["workers"] = rows


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _result(server: Server, scenario: str, connections: int, data: Result, rss: float, counts: Counts) -> Result:
    seconds = max(data["duration_us"], 1) / 1e6
    requests = int(data["requests"])
    latency = data["latency_us"]
    errors = data["errors"]
    per = max(requests, 1)
    return {
        "target": server.target,
        "workers": server.workers,
        "scenario": scenario,
        "connections": connections,
        "duration_s": round(seconds, 2),
        "requests": requests,
        "rps": requests / seconds,
        "mean_ms": latency["mean"] / 1000,
        "p50_ms": latency["p50"] / 1000,
        "p90_ms": latency["p90"] / 1000,
        "p95_ms": latency["p95"] / 1000,
        "p99_ms": latency["p99"] / 1000,
        "max_ms": latency["max"] / 1000,
        "errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        "error_detail": {key: errors[key] for key in ("connect", "read", "write", "timeout")},
        "non2xx": int(data["non2xx"]),
        "statuses": data["statuses"],
        "exhausted": int(data["exhausted"]),
        "rss_mib": rss,
        # wrk stops with one request outstanding per connection, which the server still executes.
        "statements_per_request": None if counts.statements is None else counts.statements / (per + connections),
        "transactions_per_request": None if counts.transactions is None else counts.transactions / (per + connections),
        "top_statements": counts.top,
    }


_BRIEF_KEYS = (
    *("target", "scenario", "connections", "requests", "rps"),
    *("p50_ms", "p95_ms", "p99_ms", "non2xx", "errors", "server_cpu_pct", "other_cpu_pct"),
)


def _brief(result: Result) -> Result:
    return {key: result[key] for key in _BRIEF_KEYS}


# ----- contract check -----------------------------------------------------------------------------

_TASK_KEYS = {"id", "user_id", "title", "description", "completed", "created_at", "updated_at"}


def _utc(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.utcoffset() == timedelta(0) else None


async def contract_check(base_url: str, user: str, token: str, other_user: str, expected_total: int) -> list[Result]:
    """A short, bounded walk through the six routes that proves a target speaks the contract
    before any load is put on it (a fast wrong answer would otherwise look like a win)."""
    checks: list[Result] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        checks.append({"check": name, "ok": bool(ok), "detail": "" if ok else detail})

    auth = {"Authorization": f"Bearer {token}"}
    base = f"/api/{user}/tasks"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        try:
            response = await client.get(base)
            check("401 without a token", response.status_code == 401, f"got {response.status_code}")
            response = await client.get(f"/api/{other_user}/tasks", headers=auth)
            check("403 for another user's path", response.status_code == 403, f"got {response.status_code}")
            response = await client.get(base, headers=auth)
            body = response.json()
            check("list: 200", response.status_code == 200, f"got {response.status_code}")
            check(
                "list: X-Total-Count",
                response.headers.get("x-total-count") == str(expected_total),
                f"got {response.headers.get('x-total-count')!r}, want {expected_total}",
            )
            check(
                "list: all of the user's tasks",
                isinstance(body, list) and len(body) == expected_total,
                f"got {len(body) if isinstance(body, list) else type(body).__name__}",
            )
            keys = [(item["created_at"], item["id"]) for item in body] if isinstance(body, list) else []
            check("list: newest first", keys == sorted(keys, reverse=True), "not ordered by created_at, id DESC")
            check(
                "list: task fields", bool(body) and set(body[0]) == _TASK_KEYS, f"got {sorted(body[0]) if body else []}"
            )

            response = await client.post(
                base, headers=auth, json={"title": "Contract", "description": None, "completed": False}
            )
            created = response.json()
            check("create: 201", response.status_code == 201, f"got {response.status_code}: {response.text[:200]}")
            task_id = created.get("id")
            check(
                "create: Location",
                response.headers.get("location") == f"{base}/{task_id}",
                f"got {response.headers.get('location')!r}",
            )
            check(
                "create: body",
                created.get("title") == "Contract"
                and created.get("user_id") == user
                and created.get("completed") is False
                and created.get("description") is None,
                str(created)[:200],
            )
            check(
                "create: UTC ISO 8601 timestamps",
                bool(_utc(created.get("created_at"))),
                f"got {created.get('created_at')!r}",
            )

            response = await client.get(f"{base}/{task_id}", headers=auth)
            check(
                "get: 200 and the same task",
                response.status_code == 200 and response.json() == created,
                f"got {response.status_code}",
            )
            response = await client.get(f"{base}/999999999", headers=auth)
            check(
                "get: 404 Task not found",
                response.status_code == 404 and response.json() == {"detail": "Task not found"},
                f"got {response.status_code} {response.text[:100]}",
            )

            await asyncio.sleep(0.01)  # so updated_at must visibly move
            response = await client.put(f"{base}/{task_id}", headers=auth, json={"title": "Renamed"})
            updated = response.json()
            before, after = _utc(created.get("updated_at")), _utc(updated.get("updated_at"))
            check(
                "update: 200, partial",
                response.status_code == 200 and updated.get("title") == "Renamed" and updated.get("completed") is False,
                f"got {response.status_code} {str(updated)[:200]}",
            )
            check(
                "update: updated_at bumps",
                bool(before and after and after > before),
                f"{created.get('updated_at')} -> {updated.get('updated_at')}",
            )

            response = await client.patch(f"{base}/{task_id}/complete", headers=auth)
            check(
                "toggle: flips completed",
                response.status_code == 200 and response.json().get("completed") is True,
                f"got {response.status_code} {response.text[:200]}",
            )

            response = await client.delete(f"{base}/{task_id}", headers=auth)
            check("delete: 204", response.status_code == 204, f"got {response.status_code}")
            response = await client.get(f"{base}/{task_id}", headers=auth)
            check("delete: then 404", response.status_code == 404, f"got {response.status_code}")
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
            check("no exception", False, f"{type(exc).__name__}: {exc}")
    return checks


# ----- orchestration ------------------------------------------------------------------------------


def service_present() -> bool:
    return (REPO / "backend" / "main.py").is_file()


async def apply_schema(bench: Bench, use_service: bool) -> str:
    """The service's own migrations when it has them, so the bench table is the production one."""
    if use_service and (REPO / "backend" / "__main__.py").is_file():
        env = bench.server("service", 1, None).env
        process = await asyncio.create_subprocess_exec(
            *bench.cpus.prefix(bench.cpus.load),
            sys.executable,
            "-m",
            "backend",
            "migrate",
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=180)
        if process.returncode != 0:
            raise BenchError(f"python -m backend migrate failed:\n{output.decode(errors='replace')[-2000:]}")
        return "schema from the service's migrations (python -m backend migrate)"
    connection = await asyncpg.connect(bench.urls.bench)
    try:
        await seed.create_schema(connection)
    finally:
        await connection.close()
    return "schema from the DDL in bench/seed.py (no service migrations found)"


async def execute(bench: Bench, targets: list[str], scaling: bool) -> None:
    plan, cpus, urls = bench.plan, bench.cpus, bench.urls
    bench.log(f"{plan.mode} run; pinning: {'yes' if cpus.pinned else 'no'} ({cpus.why})")
    await recreate_database(urls)
    cluster = Cluster.find(urls.port) if urls.host in {"127.0.0.1", "localhost", "::1"} else None
    bench.cluster = cluster
    pgss = PgssSetup(False, "not set up")
    servers: list[Server] = []
    try:
        pgss = await enable_pgss(urls, cluster, plan.pg_restart, cpus.prefix(None))
        if pgss.restarted:
            bench.log(f"PostgreSQL RESTARTED to preload pg_stat_statements: {pgss.how}")
        bench.notes.append(
            "Statements per request: pg_stat_statements (" + pgss.how + ")"
            if pgss.available
            else "Statements per request unavailable (" + pgss.how + "); transactions per request come from "
            "pg_stat_database xact_commit + xact_rollback instead"
        )
        if cpus.pinned:
            if cluster is None:
                bench.notes.append("PostgreSQL not pinned: no local pg_ctlcluster-managed cluster found")
            else:
                try:
                    moved = cluster.pin(cpus.load)
                    bench.notes.append(
                        f"PostgreSQL pinned to CPU {min(cpus.load)} ({moved} processes; "
                        "new backends inherit it); restored at the end"
                    )
                except PermissionError:
                    bench.notes.append("PostgreSQL not pinned: no permission to set its CPU affinity")
        bench.notes.append(await apply_schema(bench, "service" in targets))

        bench.admin = await asyncpg.connect(urls.bench)
        bench.counter = StatementCounter(bench.admin, pgss.available)
        dataset = bench.dataset()
        await bench.reset(dataset)
        tokens = bench.tokens("base", dataset.ids["base"])
        bench.notes.append(
            f"Data: {bench.users:,} users x {bench.tasks_per_user} tasks (+ {sum(plan.list_sizes):,} tasks of the "
            "list-scaling users), reset (TRUNCATE + COPY + VACUUM ANALYZE + CHECKPOINT) before every run"
        )

        servers.extend(bench.server(target, 1, cpus.server if cpus.pinned else None) for target in targets)
        await asyncio.gather(*(server.start(cpus) for server in servers))
        for server in servers:
            bench.log(f"{server.target} up on {server.url}: {' '.join(server.command()[1:])}")
        users = bench.user_ids()
        owner_token = seed.mint_token(bench.secret, users[0])
        for server in servers:
            await bench.reset(dataset)
            bench.contract[server.target] = await contract_check(
                server.url, users[0], owner_token, users[1], bench.tasks_per_user
            )
            failures = [check["check"] for check in bench.contract[server.target] if not check["ok"]]
            bench.log(f"{server.target} contract: " + ("ok" if not failures else "FAILED " + ", ".join(failures)))
            if plan.warmup:
                await bench.reset(dataset)
                await bench.measure(
                    server, "mixed", max(plan.connections), plan.warmup, tokens, load_cpus=cpus.load, record=False
                )

        await bench.matrix(servers)
        if scaling:
            await bench.list_scaling(servers)
            await bench.create_scaling(servers)
        await asyncio.gather(*(server.stop() for server in servers))
        servers.clear()
        if scaling and plan.workers:
            if cluster is not None and cluster.pinned:
                cluster.unpin(set(cpus.every))
            await bench.workers("service" if "service" in targets else "limit")
    finally:
        await asyncio.gather(*(server.stop() for server in servers))
        if bench.admin is not None:
            await bench.admin.close()
        if cluster is not None and cluster.pinned:
            cluster.unpin(set(cpus.every))
        if pgss.restarted:
            bench.log("restoring shared_preload_libraries and restarting PostgreSQL again")
            await restore_pgss(urls, pgss, cluster, cpus.prefix(None))
            bench.notes.append("PostgreSQL was restarted twice (to preload pg_stat_statements and to undo it)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="a few seconds per scenario, only proves it works")
    parser.add_argument("--targets", default="service,limit", help="comma-separated: service, limit")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("TEST_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="server and credentials to use (default: $TEST_DATABASE_URL or local postgres)",
    )
    parser.add_argument("--bench-db", default="todo_bench", help="database to (re)create for the run")
    parser.add_argument("--keep-db", action="store_true", help="leave the bench database in place afterwards")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results, smoke: bench/results/smoke)")
    parser.add_argument("--duration", type=int, help="seconds per measured run (default 8, smoke 1)")
    parser.add_argument("--connections", help="comma-separated wrk connection counts (default 50,200; smoke 50)")
    parser.add_argument("--users", type=int, default=seed.DEFAULT_USERS)
    parser.add_argument("--tasks", type=int, default=seed.DEFAULT_TASKS_PER_USER, help="tasks per user")
    parser.add_argument("--limit-pool", type=int, default=50, help="the limit app's asyncpg pool size")
    parser.add_argument("--no-scaling", action="store_true", help="skip list/create/worker scaling figures")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers, wrk and PostgreSQL to cores")
    restart = parser.add_mutually_exclusive_group()
    restart.add_argument(
        "--pg-restart",
        dest="pg_restart",
        action="store_true",
        default=None,
        help="allow ALTER SYSTEM + restart to preload pg_stat_statements (default: full runs)",
    )
    restart.add_argument(
        "--no-pg-restart",
        dest="pg_restart",
        action="store_false",
        help="never restart PostgreSQL; count transactions instead (default: smoke runs)",
    )
    parser.add_argument("--access-log", action="store_true", help="keep uvicorn's access log on (off by default)")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the service, e.g. DB_POOL_SIZE=20 (repeatable)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    if args.duration:
        plan = replace(plan, duration=args.duration)
    if args.connections:
        plan = replace(plan, connections=tuple(int(item) for item in args.connections.split(",")))
    if args.pg_restart is not None:
        plan = replace(plan, pg_restart=args.pg_restart)
    out: Path = args.out or (REPO / "bench" / "results" / ("smoke" if args.smoke else ""))
    targets = [item.strip() for item in args.targets.split(",") if item.strip()]
    notes: list[str] = []
    if "service" in targets and not service_present():
        targets.remove("service")
        notes.append("Service skipped: backend/main.py does not exist yet")
    unknown = set(targets) - {"service", "limit"}
    if unknown or not targets:
        print(f"bench: targets must be service and/or limit, got {args.targets!r}", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    try:
        urls = database_urls(args.database_url, args.bench_db)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    cpus = Cpus.plan(not args.no_pin)
    previous_affinity = os.sched_getaffinity(0)
    if cpus.pinned:
        os.sched_setaffinity(0, cpus.load)
    bench = Bench(
        plan=plan,
        cpus=cpus,
        urls=urls,
        out=out,
        secret="bench-" + secrets.token_urlsafe(32),
        users=args.users,
        tasks_per_user=args.tasks,
        limit_pool=args.limit_pool,
        access_log=args.access_log,
        service_env={**DIRECT_CONNECTION_ENV, **dict(item.split("=", 1) for item in args.service_env)},
        notes=notes,
        retries_left=plan.retries,
    )
    bench.notes.insert(0, f"CPU pinning: {'yes' if cpus.pinned else 'no'} ({cpus.why})")
    started = datetime.now(UTC)
    failure: BaseException | None = None
    try:
        asyncio.run(execute(bench, targets, scaling=not args.no_scaling))
    except (BenchError, OSError, asyncpg.PostgresError) as exc:
        failure = exc
        print(f"bench: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        os.sched_setaffinity(0, previous_affinity)
        if not args.keep_db:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                asyncio.run(drop_database(urls))
    elapsed = time.monotonic() - bench.started
    bench.notes += [
        f"Each target: `uvicorn APP --workers 1 --host 127.0.0.1 --port P"
        f"{'' if args.access_log else ' --no-access-log'}`; the limit app's pool: {args.limit_pool} connections",
        "Service settings (a direct connection, like the limit app's): "
        + ", ".join(f"{key}={value}" for key, value in sorted(bench.service_env.items()))
        + ". The shipped default DB_STATEMENT_CACHE_SIZE=0 is for PgBouncer < 1.21 in transaction mode;"
        " measure it with --service-env DB_STATEMENT_CACHE_SIZE=0",
        f"wrk {1 if cpus.pinned else 2} thread(s), latency from wrk (no coordinated-omission correction)",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}",
    ]
    broken = [f"{r['target']} {r['scenario']} c={r['connections']}" for r in bench.runs if r["errors"] or r["non2xx"]]
    broken += [
        f"{target} contract: {check['check']}"
        for target, checks in bench.contract.items()
        for check in checks
        if not check["ok"]
    ]
    if failure is None and broken:
        # A failed contract check, or requests that failed or answered non-2xx, mean the service (or
        # the harness) is broken: the run fails, so CI's smoke run proves the benchmark still works.
        failure = BenchError(f"contract failures, errors or non-2xx responses in: {', '.join(broken)}")
    if failure is not None:
        bench.notes.append(f"RUN FAILED: {type(failure).__name__}: {failure}")
    results: Result = {
        "meta": {
            "mode": plan.mode,
            "started": started.isoformat(timespec="seconds"),
            "elapsed_s": elapsed,
            "duration_s": plan.duration,
            "connections": list(plan.connections),
            "targets": targets,
            "pinned": cpus.pinned,
            "notes": bench.notes,
        },
        "contract": bench.contract,
        "runs": bench.runs,
        "scaling": bench.scaling,
    }
    report.write(results, out)
    print(f"bench: {plan.mode} run took {elapsed:.0f}s; results in {out}/results.md")
    return 1 if failure is not None else 0


if __name__ == "__main__":
    sys.exit(main())

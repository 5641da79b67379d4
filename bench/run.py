"""One command for the whole benchmark: `python -m bench.run` (full, < 12 min) or `--smoke` (< 1 min).

It creates a fresh bench database with the service's own migrations, seeds it, starts the service
(with its shipped settings) and the limit app (1 uvicorn worker each, pinned to one core while wrk
and PostgreSQL get the other), checks both against the API contract, drives every scenario with wrk
at each concurrency, measures list/create scaling, then the network mode (a delay proxy between
each app and PostgreSQL) and 1 versus 2 workers. Every run starts from the same data. Results land
in bench/results/ (results.md, results.json, chart.png).

Where things are: phases.py (the runs), network.py + proxy.py (network mode), processes.py
(servers, pinning, CPU accounting), load.py (wrk), contract.py, pg.py, seed.py, report.py, chart.py.
"""

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import shutil
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from dotenv import dotenv_values

from backend.config import Settings
from backend.db import DatabaseUnavailable
from bench import report, seed
from bench.contract import contract_check
from bench.load import Result
from bench.network import network
from bench.pg import (
    BenchError,
    Cluster,
    PrivateCluster,
    StatementCounter,
    connect,
    database_urls,
    drop_database,
    enable_pgss,
    recreate_database,
)
from bench.phases import FULL, SMOKE, Bench
from bench.processes import REPO, Cpus, Server


def shipped_settings() -> dict[str, object]:
    """The service's database settings as it ships them (read from its Settings, not restated)."""
    return {name.upper(): info.default for name, info in Settings.model_fields.items() if name.startswith("db_")}


def settings_note(service_env: dict[str, str]) -> str:
    """What the report says about the service's settings: shipped defaults, or a labelled tuned run."""
    shipped = ", ".join(f"{key}={value}" for key, value in shipped_settings().items())
    dotenv = REPO / "backend" / ".env"
    overridden = (
        sorted(key for key in dotenv_values(dotenv) if key.upper().startswith("DB_")) if dotenv.is_file() else []
    )
    if service_env:
        tuned = ", ".join(f"{key}={value}" for key, value in sorted(service_env.items()))
        return f"**TUNED run, not the shipped defaults**: service settings {tuned} (on top of the shipped {shipped})"
    if overridden:
        return f"**backend/.env sets {', '.join(overridden)}: not the shipped defaults** ({shipped})"
    return f"Service settings: the shipped defaults, no DB_* overrides ({shipped})"


async def apply_schema(bench: Bench) -> str:
    """The service's own migrations, so the bench table is the production one."""
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


async def execute(
    bench: Bench, targets: list[str], scaling: bool, network_mode: bool, private: PrivateCluster | None
) -> None:
    """Every phase in order; whatever happens, servers stop and a given PostgreSQL is left as found."""
    plan, cpus, urls = bench.plan, bench.cpus, bench.urls
    bench.log(f"{plan.mode} run; pinning: {'yes' if cpus.pinned else 'no'} ({cpus.why})")
    if private is not None:
        bench.notes.append(await private.describe())
        bench.log(f"private PostgreSQL cluster on port {urls.port}")
    await recreate_database(urls)
    if private is not None:
        cluster: Cluster | None = private.cluster()
    else:
        cluster = Cluster.find(urls.port) if urls.host in {"127.0.0.1", "localhost", "::1"} else None
    bench.cluster = cluster
    servers: list[Server] = []
    try:
        pgss = await enable_pgss(urls)
        bench.notes.append(
            "Statements per request: pg_stat_statements (" + pgss.how + ")"
            if pgss.available
            else "Statements per request unavailable (" + pgss.how + "); transactions per request come from "
            "pg_stat_database xact_commit + xact_rollback instead"
        )
        if cpus.pinned:
            if cluster is None:
                bench.notes.append("PostgreSQL not pinned: not the private cluster, nor a local pg_ctlcluster one")
            else:
                try:
                    moved = cluster.pin(cpus.load)
                    bench.notes.append(
                        f"PostgreSQL pinned to CPU {min(cpus.load)} ({moved} processes; "
                        "new backends inherit it); restored at the end"
                    )
                except PermissionError:
                    bench.notes.append("PostgreSQL not pinned: no permission to set its CPU affinity")
        bench.notes.append(await apply_schema(bench))

        bench.admin = await connect(urls.bench)
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
        if network_mode and plan.network_scenarios and urls.host.startswith("/"):
            bench.notes.append("Network mode skipped: the delay proxy needs PostgreSQL on TCP, not a socket")
        elif network_mode and plan.network_scenarios:
            await network(bench, targets)
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="a few seconds per scenario, only proves it works")
    parser.add_argument("--targets", default="service,limit", help="comma-separated: service, limit")
    parser.add_argument(
        "--database-url",
        help="a loopback server and credentials to use instead of a private cluster (statements per request "
        "only if it already preloads pg_stat_statements)",
    )
    parser.add_argument("--bench-db", default="todo_bench", help="database to (re)create for the run")
    parser.add_argument(
        "--keep-db", action="store_true", help="with --database-url: leave the bench database in place afterwards"
    )
    parser.add_argument("--out", type=Path, help="results folder (default bench/results, smoke: bench/results/smoke)")
    parser.add_argument("--duration", type=int, help="seconds per measured run (default 8, smoke 1)")
    parser.add_argument("--connections", help="comma-separated wrk connection counts (default 50,200; smoke 50)")
    parser.add_argument("--users", type=int, default=seed.DEFAULT_USERS)
    parser.add_argument("--tasks", type=int, default=seed.DEFAULT_TASKS_PER_USER, help="tasks per user")
    parser.add_argument("--limit-pool", type=int, default=50, help="the limit app's asyncpg pool size")
    parser.add_argument("--no-scaling", action="store_true", help="skip list/create/worker scaling figures")
    parser.add_argument("--no-network", action="store_true", help="skip the network mode (delay proxy)")
    parser.add_argument("--rtt-ms", type=float, help="round-trip time the network mode adds (default 2)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers, wrk and PostgreSQL to cores")
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
    if args.rtt_ms is not None:
        plan = replace(plan, rtt_ms=args.rtt_ms)
    out: Path = args.out or (REPO / "bench" / "results" / ("smoke" if args.smoke else ""))
    targets = [item.strip() for item in args.targets.split(",") if item.strip()]
    notes: list[str] = []
    unknown = set(targets) - {"service", "limit"}
    if unknown or not targets:
        print(f"bench: targets must be service and/or limit, got {args.targets!r}", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    cpus = Cpus.plan(not args.no_pin)
    previous_affinity = os.sched_getaffinity(0)
    if cpus.pinned:
        os.sched_setaffinity(0, cpus.load)  # a private postmaster, and every backend, inherits the load core
    private: PrivateCluster | None = None
    try:
        if args.database_url is not None:
            urls = database_urls(args.database_url, args.bench_db)
        else:
            print("bench: starting a private PostgreSQL cluster (pg_stat_statements preloaded)", flush=True)
            private = PrivateCluster.start()
            urls = database_urls(private.url, args.bench_db)
    except (BenchError, DatabaseUnavailable) as exc:
        os.sched_setaffinity(0, previous_affinity)
        if private is not None:
            private.stop()
        print(f"bench: {exc}", file=sys.stderr)
        return 2
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
        service_env=dict(item.split("=", 1) for item in args.service_env),
        notes=notes,
        retries_left=plan.retries,
    )
    bench.notes.insert(0, f"CPU pinning: {'yes' if cpus.pinned else 'no'} ({cpus.why})")
    started = datetime.now(UTC)
    failure: BaseException | None = None
    try:
        asyncio.run(execute(bench, targets, not args.no_scaling, not args.no_network, private))
    except (BenchError, OSError, asyncpg.PostgresError, DatabaseUnavailable) as exc:
        failure = exc
        print(f"bench: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        os.sched_setaffinity(0, previous_affinity)
        if private is not None:
            private.stop()  # the whole cluster goes, bench database included
        elif not args.keep_db:
            with contextlib.suppress(OSError, asyncpg.PostgresError, DatabaseUnavailable):
                asyncio.run(drop_database(urls))
    elapsed = time.monotonic() - bench.started
    bench.notes += [
        f"Each target: `uvicorn APP --workers 1 --host 127.0.0.1 --port P"
        f"{'' if args.access_log else ' --no-access-log'}`; the limit app's pool: {args.limit_pool} connections",
        settings_note(bench.service_env),
        f"wrk {1 if cpus.pinned else 2} thread(s), latency from wrk (no coordinated-omission correction)",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}",
    ]
    network_runs = bench.network.get("runs", [])
    broken = [
        f"{r['target']} {r['scenario']} c={r['connections']}{' (network)' if r in network_runs else ''}"
        for r in [*bench.runs, *network_runs]
        if r["errors"] or r["non2xx"]
    ]
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
            "settings": "tuned" if bench.service_env else "shipped defaults",
            "service_env": bench.service_env,
            "notes": bench.notes,
        },
        "contract": bench.contract,
        "runs": bench.runs,
        "scaling": bench.scaling,
        "network": bench.network,
    }
    report.write(results, out)
    print(f"bench: {plan.mode} run took {elapsed:.0f}s; results in {out}/results.md")
    return 1 if failure is not None else 0


if __name__ == "__main__":
    sys.exit(main())

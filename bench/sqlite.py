"""The embedded SQLite default under the same wrk scenarios: `python -m bench.sqlite` (about 1 min).

SQLite runs through the same `crud` statements as PostgreSQL (via SQLAlchemy instead of asyncpg);
this records what that costs, next to the PostgreSQL figures in bench/results/results.md. It seeds
through the API itself (there is no COPY into SQLite), so every row is made the way a user makes it.
The server, pinning and wrk are the PostgreSQL runner's own (bench/processes.py, bench/load.py).
"""

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
from pathlib import Path

import httpx

from bench.load import run_wrk, shape
from bench.pg import Counts
from bench.processes import REPO, Cpus, Server
from bench.seed import mint_token, write_tokens

SCENARIOS = ("list", "get", "create", "update", "toggle", "mixed")


async def _seed(base_url: str, secret: str, users: int, tasks: int) -> dict[str, list[int]]:
    owned: dict[str, list[int]] = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for index in range(users):
            user = f"sqlite-{index}"
            headers = {"Authorization": f"Bearer {mint_token(secret, user)}"}
            created = [
                await http.post(f"/api/{user}/tasks", json={"title": f"task {n}"}, headers=headers)
                for n in range(tasks)
            ]
            owned[user] = [response.json()["id"] for response in created]
    return owned


async def _run(args: argparse.Namespace, directory: Path) -> list[str]:
    secret = secrets.token_urlsafe(32)
    database = f"sqlite+aiosqlite:///{directory}/bench.sqlite3"
    env = {
        **{key: value for key, value in os.environ.items() if key != "PYTHONPATH" and not key.startswith("DB_")},
        "DATABASE_URL": database,
        "NEON_DATABASE_URL": database,
        "BETTER_AUTH_SECRET": secret,
        "ENVIRONMENT": "development",  # applies the migrations at startup
        "LOG_LEVEL": "WARNING",
    }
    cpus = Cpus.plan(True)
    server = Server("service", "backend.main:app", env, 1, cpus.server, directory / "service.log")
    await server.start(cpus)
    try:
        tokens = directory / "tokens.tsv"
        write_tokens(tokens, secret, await _seed(server.url, secret, args.users, args.tasks))
        rows = []
        for scenario in SCENARIOS:
            data = await run_wrk(
                cpus.prefix(cpus.load), 1, scenario, server.url, tokens, args.connections, args.duration
            )
            result = shape("service", 1, scenario, args.connections, data, Counts(None, None, []))
            rows.append(
                f"| {scenario} | {args.connections} | {result['rps']:,.0f} | {result['p50_ms']:.1f} "
                f"| {result['p99_ms']:.1f} | {result['non2xx']} |"
            )
            print(rows[-1], flush=True)
        return rows
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "sqlite.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        rows = asyncio.run(_run(args, Path(directory)))
    args.out.write_text(
        "# The embedded SQLite default\n\n"
        f"`python -m bench.sqlite`: the service on its SQLite default (1 uvicorn worker, pinned to CPU 0; wrk on\n"
        f"CPU 1), {args.users} users x {args.tasks} tasks seeded through the API, {args.duration} s per scenario,\n"
        "same wrk scripts as the PostgreSQL benchmark. SQLite serialises writes, so write scenarios queue on\n"
        "its single writer; it is the zero-infrastructure default for development, not a production target.\n\n"
        "| scenario | conns | req/s | p50 ms | p99 ms | non-2xx |\n|---|---:|---:|---:|---:|---:|\n"
        + "\n".join(rows)
        + "\n"
    )
    print(f"bench.sqlite: results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

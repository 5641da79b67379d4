"""The embedded SQLite default under the same wrk scenarios: `python -m bench.sqlite` (about 1 min).

SQLite runs through the same `crud` statements as PostgreSQL (via SQLAlchemy instead of asyncpg);
this records what that costs, next to the PostgreSQL figures in bench/results/results.md. It seeds
through the API itself (there is no COPY into SQLite), so every row is made the way a user makes it.
"""

import argparse
import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.load import wrk_command, wrk_result
from bench.seed import mint_token, write_tokens

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("list", "get", "create", "update", "toggle", "mixed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pinned(argv: list[str], cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if os.cpu_count() and os.cpu_count() >= 2 else argv  # type: ignore[operator]


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


def _wrk(scenario: str, base_url: str, tokens: Path, connections: int, duration: int) -> dict[str, object]:
    argv = wrk_command("wrk", scenario, base_url, tokens, connections, duration, threads=1)
    output = subprocess.run(_pinned(argv, 1), capture_output=True, text=True, timeout=duration + 60, check=True)  # noqa: S603
    data = wrk_result(output.stdout)
    if data is None:
        raise RuntimeError(f"wrk {scenario} printed no result: {output.stderr[-1000:]}")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sqlite.md")
    args = parser.parse_args(argv)

    secret = secrets.token_urlsafe(32)
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as directory:
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite+aiosqlite:///{directory}/bench.sqlite3",
            "NEON_DATABASE_URL": f"sqlite+aiosqlite:///{directory}/bench.sqlite3",
            "BETTER_AUTH_SECRET": secret,
            "ENVIRONMENT": "development",  # applies the migrations at startup
            "LOG_LEVEL": "WARNING",
        }
        server_argv = [sys.executable, "-m", "uvicorn", "backend.main:app", "--port", str(port), "--no-access-log"]
        server = subprocess.Popen(_pinned(server_argv, 0), cwd=ROOT, env=env)  # noqa: S603
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base_url}/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            owned = asyncio.run(_seed(base_url, secret, args.users, args.tasks))
            tokens = Path(directory) / "tokens.tsv"
            write_tokens(tokens, secret, owned)
            rows = []
            for scenario in SCENARIOS:
                result = _wrk(scenario, base_url, tokens, args.connections, args.duration)
                latency = result["latency_us"]
                assert isinstance(latency, dict)
                requests = int(str(result["requests"]))
                seconds = int(str(result["duration_us"])) / 1e6
                rows.append(
                    f"| {scenario} | {args.connections} | {requests / seconds:,.0f} | {latency['p50'] / 1000:.1f} "
                    f"| {latency['p99'] / 1000:.1f} | {result['non2xx']} |"
                )
                print(rows[-1], flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
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

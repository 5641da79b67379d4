"""The load: wrk driving one scenario script (bench/wrk/), and its output shaped into one result row.

Shared by the PostgreSQL runner and bench/sqlite.py, so both read wrk the same way.
"""

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from bench.pg import BenchError, Counts

WRK_DIR = Path(__file__).resolve().parent / "wrk"
Result = dict[str, Any]


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


async def run_wrk(
    prefix: list[str], threads: int, scenario: str, url: str, tokens: Path, connections: int, duration: int
) -> Result:
    """One wrk run (`prefix` pins it); its parsed BENCHJSON line."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed: apt-get install -y wrk")
    threads = max(1, min(threads, connections))
    command = [*prefix, *wrk_command(wrk, scenario, url, tokens, connections, duration, threads)]
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


def shape(target: str, workers: int, scenario: str, connections: int, data: Result, counts: Counts) -> Result:
    """One result row from wrk's numbers and the database's counters."""
    seconds = max(data["duration_us"], 1) / 1e6
    requests = int(data["requests"])
    latency = data["latency_us"]
    errors = data["errors"]
    # wrk stops with one request outstanding per connection, which the server still executes.
    served = max(requests, 1) + connections
    return {
        "target": target,
        "workers": workers,
        "scenario": scenario,
        "connections": connections,
        "duration_s": round(seconds, 2),
        "requests": requests,
        "served": served,
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
        "statements_per_request": None if counts.statements is None else counts.statements / served,
        "transactions_per_request": None if counts.transactions is None else counts.transactions / served,
        "top_statements": counts.top,
    }


_BRIEF_KEYS = (
    *("target", "scenario", "connections", "requests", "rps"),
    *("p50_ms", "p95_ms", "p99_ms", "non2xx", "errors", "server_cpu_pct", "other_cpu_pct"),
)


def brief(result: Result) -> Result:
    """The columns the scaling tables show."""
    return {key: result[key] for key in _BRIEF_KEYS}

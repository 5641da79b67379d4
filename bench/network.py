"""Network mode: both apps reach PostgreSQL through bench/proxy.py, which adds a round-trip time
(default 2 ms, about Neon in region) and counts the round trips each request makes.

On loopback a second round trip per request costs next to nothing; here it costs `rtt` per request,
which is what users see on a real network. Runs at 1 connection (pure latency) and 10 (a little
concurrency), every scenario but mixed, service beside limit, each app with its own listener.
"""

import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from bench.load import Result
from bench.pg import BenchError
from bench.phases import Bench, Probe
from bench.processes import REPO, Cpus, Server
from bench.proxy import read_stats


@dataclass
class ProxyProcess:
    """`python -m bench.proxy` on the load generator's core, one named listener per app."""

    upstream: str
    names: list[str]
    rtt_ms: float
    process: asyncio.subprocess.Process | None = None
    ports: dict[str, int] = field(default_factory=dict)
    control: int = 0

    async def start(self, cpus: Cpus) -> None:
        listeners = [argument for name in self.names for argument in ("--listen", name)]
        self.process = await asyncio.create_subprocess_exec(
            *cpus.prefix(cpus.load),
            sys.executable,
            "-m",
            "bench.proxy",
            "--upstream",
            self.upstream,
            "--rtt-ms",
            str(self.rtt_ms),
            *listeners,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        try:
            ready = json.loads(await asyncio.wait_for(self.process.stdout.readline(), timeout=30))
        except (TimeoutError, ValueError):
            await self.stop()
            raise BenchError("the delay proxy did not start") from None
        self.ports, self.control = ready["listen"], ready["control"]

    def url(self, name: str, direct_url: str) -> str:
        """`direct_url` through the listener `name`, in plain text (the proxy reads the stream)."""
        parts = urlsplit(direct_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.ports[name]}" if userinfo else f"127.0.0.1:{self.ports[name]}"
        query = [item for item in parts.query.split("&") if item and not item.startswith("sslmode=")]
        return urlunsplit((parts.scheme, netloc, parts.path, "&".join([*query, "sslmode=disable"]), ""))

    def probe(self, name: str) -> Probe:
        async def read() -> dict[str, float]:
            return {key: float(value) for key, value in (await read_stats(self.control))[name].items()}

        return read

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), timeout=10)
        if process.returncode is None:
            process.kill()
            await process.wait()


def _network_row(result: Result, rtt_ms: float) -> Result:
    counted = result.pop("probe")
    served = result["served"]
    chunks = counted["delayed_chunks"] or 1
    return {
        **{key: result[key] for key in ("target", "scenario", "connections", "requests", "rps")},
        **{key: result[key] for key in ("p50_ms", "p95_ms", "p99_ms", "errors", "non2xx", "statuses")},
        **{key: result[key] for key in ("server_cpu_pct", "other_cpu_pct")},
        "rtt_ms": rtt_ms,
        "round_trips_per_request": counted["round_trips"] / served,
        "answered_messages_per_request": counted["answered_messages"] / served,
        "added_delay_ms": 1000 * counted["delay_seconds"] / chunks,
        "connections_opened": int(counted["connections"]),
    }


async def network(bench: Bench, targets: list[str]) -> None:
    """The network-mode runs; results in `bench.network`."""
    plan, cpus = bench.plan, bench.cpus
    proxy = ProxyProcess(f"{bench.urls.host}:{bench.urls.port}", targets, plan.rtt_ms)
    servers: list[Server] = []
    try:
        await proxy.start(cpus)
        bench.helper_pids = [proxy.pid]
        servers = [
            bench.server(
                target, 1, cpus.server if cpus.pinned else None, proxy.url(target, bench.urls.bench), tag="-network"
            )
            for target in targets
        ]
        await asyncio.gather(*(server.start(cpus) for server in servers))
        bench.log(f"network mode: {plan.rtt_ms:g} ms added per round trip by bench/proxy.py (listeners {proxy.ports})")
        widest = max(plan.network_connections)
        if plan.warmup:
            # Every scenario once on every pooled connection, so prepared statements are in place.
            for server in servers:
                for scenario in plan.network_scenarios:
                    dataset, tokens = bench.scenario_data(scenario, widest, 1)
                    await bench.reset(dataset)
                    await bench.measure(server, scenario, widest, 1, tokens, load_cpus=cpus.load, record=False)
        rows: list[Result] = []
        for connections in plan.network_connections:
            for index, scenario in enumerate(plan.network_scenarios):
                for server in servers if index % 2 == 0 else servers[::-1]:
                    dataset, tokens = bench.scenario_data(scenario, connections, plan.network_duration)
                    probe = proxy.probe(server.target)
                    result = await bench.undisturbed(
                        dataset, server, scenario, connections, plan.network_duration, tokens, probe
                    )
                    row = _network_row(result, plan.rtt_ms)
                    rows.append(row)
                    bench.log(
                        f"{server.target:7} {scenario:6} c={connections:<3} network: p50 {row['p50_ms']:6.2f}  "
                        f"p99 {row['p99_ms']:6.2f} ms  round trips/req {row['round_trips_per_request']:.2f}  "
                        f"added delay {row['added_delay_ms']:.2f} ms"
                    )
        bench.network = {"rtt_ms": plan.rtt_ms, "runs": rows}
    finally:
        await asyncio.gather(*(server.stop() for server in servers))
        await proxy.stop()
        bench.helper_pids = []

"""Processes and CPU accounting: where things run (pinning), the uvicorn servers under test, and how
much CPU they, and everything else on this shared machine, used during a run (from /proc).
"""

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.pg import BenchError

REPO = Path(__file__).resolve().parent.parent


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tree(root: int) -> list[int]:
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


def tree_rss_mib(root: int) -> float:
    total_kib = 0
    for pid in tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


def jiffies(pid: int) -> int:
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
        self._start = (time.monotonic(), _busy_jiffies(), sum(map(jiffies, pids)), _own_seconds())

    def stop(self, pids: list[int]) -> float:
        """Percent of all CPUs' time used by other processes since `start`; `pids` may add processes
        of ours that started meanwhile (e.g. a pool's new connection), counted in full."""
        wall, busy, ours, own = self._start
        elapsed = time.monotonic() - wall
        now_ours = sum(map(jiffies, set(self.pids) | set(pids)))
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
        self.port = free_port()
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
        return tree_rss_mib(self.process.pid) if self.process else 0.0

    def pids(self) -> list[int]:
        return tree(self.process.pid) if self.process else []

    def cpu_ticks(self) -> int:
        return sum(map(jiffies, self.pids()))

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

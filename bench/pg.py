"""PostgreSQL side of the benchmark: the bench database, CPU pinning, and counting statements.

Everything here touches only the bench database, except two things the runner reports whenever it
does them: pinning the local cluster's processes to a core, and (when the runner is allowed to)
preloading pg_stat_statements with ALTER SYSTEM plus a cluster restart, undone the same way.
"""

import asyncio
import os
import shutil
import subprocess
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
PGSS = "pg_stat_statements"


class BenchError(Exception):
    """The benchmark cannot go on; the message says what to fix."""


@dataclass(frozen=True)
class DatabaseUrls:
    """The bench database's URL (handed to both apps) and the maintenance database's (for admin)."""

    bench: str
    admin: str
    name: str
    host: str
    port: int


def database_urls(base_url: str, bench_name: str) -> DatabaseUrls:
    """Reuse the server and credentials of `base_url` but point at `bench_name`; loopback only."""
    parts = urlsplit(base_url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in {"postgres", "postgresql"}:
        raise BenchError(f"not a PostgreSQL URL: scheme {parts.scheme!r}")
    host = parts.hostname or "localhost"
    if host not in LOOPBACK_HOSTS and not host.startswith("127.") and not host.startswith("/"):
        raise BenchError(f"the benchmark only drives a loopback PostgreSQL, not {host!r}")
    if not bench_name.replace("_", "").isalnum():
        raise BenchError(f"bench database name must be [A-Za-z0-9_]: {bench_name!r}")
    # asyncpg understands libpq URLs except for a few client-only options (sslmode is fine on loopback).
    query = "&".join(item for item in parts.query.split("&") if item and not item.startswith("channel_binding"))

    def with_db(name: str) -> str:
        return urlunsplit(("postgresql", parts.netloc, "/" + quote(name), query, ""))

    return DatabaseUrls(with_db(bench_name), with_db("postgres"), bench_name, host, parts.port or 5432)


async def recreate_database(urls: DatabaseUrls) -> None:
    """Drop (only) the bench database if a previous run left it, and create it empty."""
    admin = await asyncpg.connect(urls.admin)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{urls.name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{urls.name}"')
    finally:
        await admin.close()


async def drop_database(urls: DatabaseUrls) -> None:
    admin = await asyncpg.connect(urls.admin)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{urls.name}" WITH (FORCE)')
    finally:
        await admin.close()


async def wait_ready(url: str, within: float = 60.0) -> None:
    """Wait (bounded) until PostgreSQL accepts connections again, e.g. after a restart."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            connection = await asyncpg.connect(url, timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            if asyncio.get_running_loop().time() > deadline:
                raise BenchError(f"PostgreSQL did not come back within {within:.0f}s") from None
            await asyncio.sleep(0.25)
            continue
        await connection.close()
        return


@dataclass
class Cluster:
    """The local Debian cluster serving the bench database, when there is one we may manage."""

    version: str
    name: str
    port: int
    data_directory: Path
    pinned: dict[int, set[int]] = field(default_factory=dict)

    @classmethod
    def find(cls, port: int) -> "Cluster | None":
        """The pg_lsclusters row for `port`, or None (not Debian, not local, not running)."""
        tool = shutil.which("pg_lsclusters")
        if tool is None:
            return None
        listing = subprocess.run([tool, "--no-header"], capture_output=True, text=True, check=False)  # noqa: S603
        for line in listing.stdout.splitlines():
            columns = line.split()
            if len(columns) >= 6 and columns[2] == str(port) and columns[3].startswith("online"):
                return cls(columns[0], columns[1], port, Path(columns[5]))
        return None

    def postmaster_pid(self) -> int:
        return int((self.data_directory / "postmaster.pid").read_text().split()[0])

    def processes(self) -> list[int]:
        """The postmaster and its children (backends inherit the postmaster's affinity when forked)."""
        parent = self.postmaster_pid()
        pids = [parent]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Field 4 (ppid) follows the parenthesised command name, which may itself hold spaces.
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                pids.append(int(entry.name))
        return pids

    def bench_processes(self, database: str) -> list[int]:
        """The postmaster, its auxiliary processes and the backends of `database`: the PostgreSQL
        work that belongs to the benchmark (backends of other databases are someone else's)."""
        mine = []
        for pid in self.processes():
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            client_backend = "(" in title or "[local]" in title
            if not client_backend or f" {database} " in title:
                mine.append(pid)
        return mine

    def pin(self, cpus: AbstractSet[int]) -> int:
        """Move the cluster to `cpus`, remembering each process's old affinity; returns how many moved."""
        moved = 0
        for pid in self.processes():
            try:
                self.pinned.setdefault(pid, os.sched_getaffinity(pid))
                os.sched_setaffinity(pid, cpus)
                moved += 1
            except OSError:
                continue  # a backend that just exited
        return moved

    def unpin(self, all_cpus: set[int]) -> None:
        """Give every cluster process its old affinity back (processes forked since get all CPUs)."""
        for pid in self.processes():
            try:
                os.sched_setaffinity(pid, self.pinned.get(pid, all_cpus))
            except OSError:
                continue
        self.pinned.clear()

    async def restart(self, cpu_prefix: list[str]) -> None:
        """`pg_ctlcluster --skip-systemctl-redirect V NAME restart`, launched on `cpu_prefix`'s CPUs
        so the new postmaster does not inherit the runner's own pinning."""
        tool = shutil.which("pg_ctlcluster")
        if tool is None:
            raise BenchError("pg_ctlcluster is not installed")
        process = await asyncio.create_subprocess_exec(
            *cpu_prefix,
            tool,
            "--skip-systemctl-redirect",
            self.version,
            self.name,
            "restart",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        if process.returncode != 0:
            raise BenchError(f"pg_ctlcluster restart failed: {output.decode(errors='replace').strip()}")
        self.pinned.clear()


@dataclass
class PgssSetup:
    """How statements are counted, and what was changed on the cluster to count them."""

    available: bool
    how: str
    restarted: bool = False
    previous: str | None = None  # shared_preload_libraries as ALTER SYSTEM had it, to restore
    previous_from_auto_conf: bool = False


async def _preload_state(admin: Any) -> tuple[str, bool]:
    row = await admin.fetchrow(
        "SELECT setting, coalesce(sourcefile, '') LIKE '%postgresql.auto.conf' AS auto "
        "FROM pg_settings WHERE name = 'shared_preload_libraries'"
    )
    return str(row["setting"]), bool(row["auto"])


async def enable_pgss(
    urls: DatabaseUrls, cluster: Cluster | None, allow_restart: bool, cpu_prefix: list[str]
) -> PgssSetup:
    """Make pg_stat_statements usable in the bench database, restarting the cluster only if allowed."""
    admin = await asyncpg.connect(urls.admin)
    try:
        available = await admin.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = $1", PGSS)
        setting, from_auto = await _preload_state(admin)
    finally:
        await admin.close()
    if not available:
        return PgssSetup(False, "pg_stat_statements is not installed on this server")
    loaded = PGSS in [item.strip() for item in setting.split(",")]
    setup = PgssSetup(True, "already in shared_preload_libraries")
    if not loaded:
        if not allow_restart:
            return PgssSetup(False, "not preloaded, and a restart was not allowed (--pg-restart)")
        if cluster is None:
            return PgssSetup(False, "not preloaded, and no local pg_ctlcluster-managed cluster to restart")
        wanted = ", ".join(item for item in [*setting.split(","), PGSS] if item.strip())
        admin = await asyncpg.connect(urls.admin)
        try:
            await admin.execute(f"ALTER SYSTEM SET shared_preload_libraries = '{wanted}'")
        finally:
            await admin.close()
        await cluster.restart(cpu_prefix)
        await wait_ready(urls.admin)
        setup = PgssSetup(
            True,
            f"ALTER SYSTEM SET shared_preload_libraries = '{wanted}' + restart of cluster "
            f"{cluster.version}/{cluster.name} (undone at the end of the run)",
            restarted=True,
            previous=setting,
            previous_from_auto_conf=from_auto,
        )
    bench = await asyncpg.connect(urls.bench)
    try:
        await bench.execute(f"CREATE EXTENSION IF NOT EXISTS {PGSS}")
    finally:
        await bench.close()
    return setup


async def restore_pgss(urls: DatabaseUrls, setup: PgssSetup, cluster: Cluster | None, cpu_prefix: list[str]) -> None:
    """Undo `enable_pgss`'s ALTER SYSTEM and restart, leaving the cluster as the run found it."""
    if not setup.restarted or cluster is None:
        return
    admin = await asyncpg.connect(urls.admin)
    try:
        if setup.previous_from_auto_conf and setup.previous is not None:
            await admin.execute(f"ALTER SYSTEM SET shared_preload_libraries = '{setup.previous}'")
        else:
            await admin.execute("ALTER SYSTEM RESET shared_preload_libraries")
    finally:
        await admin.close()
    await cluster.restart(cpu_prefix)
    await wait_ready(urls.admin)


@dataclass
class Counts:
    """Database work done during one measured run."""

    statements: int | None
    transactions: int | None
    top: list[tuple[int, str]]


class StatementCounter:
    """Counts the bench database's statements around a run with pg_stat_statements (exact, at once),
    or else its transactions from pg_stat_database, which backends publish only after up to a second
    of idleness, hence the wait. The runner's own queries are excluded where they can be told apart."""

    def __init__(self, connection: Any, pgss: bool) -> None:
        self.connection = connection
        self.pgss = pgss
        self._xacts = 0

    async def _transactions(self) -> int:
        await self.connection.execute("SELECT pg_stat_clear_snapshot()")
        value = await self.connection.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(value)

    async def start(self) -> None:
        if self.pgss:
            await self.connection.execute(f"SELECT {PGSS}_reset()")
        else:
            self._xacts = await self._transactions()

    async def stop(self) -> Counts:
        if not self.pgss:
            await asyncio.sleep(1.2)
            transactions = await self._transactions() - self._xacts - 2  # minus this counter's own two
            return Counts(None, max(transactions, 0), [])
        rows = await self.connection.fetch(
            "SELECT calls, query FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
            "WHERE datname = current_database()) AND query NOT LIKE '%pg_stat%' ORDER BY calls DESC"
        )
        statements = sum(int(row["calls"]) for row in rows)
        top = [(int(row["calls"]), " ".join(str(row["query"]).split())[:160]) for row in rows[:6]]
        return Counts(statements, None, top)

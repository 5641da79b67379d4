"""PostgreSQL side of the benchmark: a private cluster to run on, the bench database, CPU pinning,
and counting statements.

A run starts its own throwaway cluster (tests/support/pgcluster.py) with pg_stat_statements preloaded
and the system cluster's performance settings, so nobody's PostgreSQL is ever stopped, restarted or
reconfigured for a measurement. `--database-url` points the run at another server instead; there,
beyond the bench database, it only pins a local cluster's processes to a core (restored at the end).
Every connection gets its arguments from backend.db (issue 9: one connection configuration).
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

from backend import db
from backend.database_url import parse_database_url
from tests.support.pgcluster import PgCluster
from tests.support.tools import pg_bin_dir

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
PGSS = "pg_stat_statements"
# Where the private cluster copies its performance settings from (read-only: one SELECT).
SYSTEM_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Settings that move the figures. The private cluster takes each from the system cluster, fsync and
# synchronous_commit included (a WAL flush must cost what it costs there), so its numbers compare.
PERFORMANCE_SETTINGS = (
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "maintenance_work_mem",
    "max_connections",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "max_wal_senders",
    "wal_buffers",
    "wal_compression",
    "wal_sync_method",
    "commit_delay",
    "max_wal_size",
    "min_wal_size",
    "checkpoint_timeout",
    "checkpoint_completion_target",
    "autovacuum",
    "random_page_cost",
    "effective_io_concurrency",
    "jit",
    "max_parallel_workers_per_gather",
)
# No system cluster to copy from: PostgreSQL's own defaults for what PgCluster tunes for speed.
POSTGRES_DEFAULTS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "checkpoint_timeout": "5min",
    "shared_buffers": "128MB",
    "max_connections": "100",
}


class BenchError(Exception):
    """The benchmark cannot go on; the message says what to fix."""


async def connect(url: str) -> Any:
    """A driver connection to `url` with the service's own connection arguments."""
    return await db.connect(parse_database_url(url))


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
    try:
        parsed = parse_database_url(base_url)
    except ValueError as exc:
        raise BenchError(f"--database-url: {exc}") from None
    if parsed.is_sqlite:
        raise BenchError("--database-url: the benchmark needs PostgreSQL, not SQLite")
    host = parsed.host or "localhost"
    if host not in LOOPBACK_HOSTS and not host.startswith("127.") and not host.startswith("/"):
        raise BenchError(f"the benchmark only drives a loopback PostgreSQL, not {host!r}")
    if not bench_name.replace("_", "").isalnum():
        raise BenchError(f"bench database name must be [A-Za-z0-9_]: {bench_name!r}")
    parts = urlsplit(base_url)

    def with_db(name: str) -> str:
        return urlunsplit(("postgresql", parts.netloc, "/" + quote(name), parts.query, ""))

    return DatabaseUrls(with_db(bench_name), with_db("postgres"), bench_name, host, parsed.port or 5432)


async def recreate_database(urls: DatabaseUrls) -> None:
    """Drop (only) the bench database if a previous run left it, and create it empty."""
    admin = await connect(urls.admin)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{urls.name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{urls.name}"')
    finally:
        await admin.close()


async def drop_database(urls: DatabaseUrls) -> None:
    admin = await connect(urls.admin)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{urls.name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _system_settings() -> dict[str, str] | None:
    """The system cluster's values of PERFORMANCE_SETTINGS, or None when it does not answer."""
    try:
        connection = await db.connect(parse_database_url(SYSTEM_URL), connect_timeout=5)
    except db.DatabaseUnavailable:
        return None
    try:
        rows = await connection.fetch(
            "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])", list(PERFORMANCE_SETTINGS)
        )
    finally:
        await connection.close()
    # `setting` is in the parameter's base unit, which is how a bare number on the command line reads.
    return {str(row["name"]): str(row["setting"]) for row in rows}


def _filesystem(path: Path) -> str:
    """The type of the file system holding `path` (tmpfs makes fsync free: worth saying)."""
    best, kind = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        mount, fstype = line.split()[1:3]
        if str(path).startswith(mount.rstrip("/") + "/") and len(mount) > len(best):
            best, kind = mount, fstype
    return kind


@dataclass
class PrivateCluster:
    """The run's own PostgreSQL: initdb in a temp dir, a free port, pg_stat_statements preloaded.

    Started after the runner pinned itself, so the postmaster (and every backend it forks) inherits
    the load core; stopped and deleted at the end of the run.
    """

    server: PgCluster
    copied_from: str
    pgss: bool

    @classmethod
    def start(cls) -> "PrivateCluster":
        bin_dir = pg_bin_dir()
        if bin_dir is None:
            raise BenchError("no PostgreSQL server binaries: apt-get install postgresql, or pass --database-url")
        system = asyncio.run(_system_settings())
        settings = system if system is not None else POSTGRES_DEFAULTS
        copied_from = f"the system cluster ({SYSTEM_URL})" if system is not None else "PostgreSQL's defaults"
        pgss = next(bin_dir.parent.rglob(f"{PGSS}.so"), None) is not None
        if pgss:
            settings = {**settings, "shared_preload_libraries": PGSS}
        server = PgCluster(settings=settings, bin_dir=bin_dir)
        try:
            server.start()
        except RuntimeError as exc:
            server.cleanup()
            raise BenchError(f"the private PostgreSQL cluster did not start: {exc}") from None
        return cls(server, copied_from, pgss)

    @property
    def url(self) -> str:
        return self.server.url()

    def cluster(self) -> "Cluster":
        return Cluster(f"private (port {self.server.port})", self.server.port, self.server.base_dir / "data")

    async def describe(self) -> str:
        """What it ran with, for the report: the settings as the server itself shows them."""
        connection = await connect(self.url)
        try:
            version = await connection.fetchval("SHOW server_version")
            rows = await connection.fetch(
                "SELECT name, current_setting(name) AS value FROM pg_settings WHERE name = ANY($1::text[]) "
                "ORDER BY name",
                [*PERFORMANCE_SETTINGS, "shared_preload_libraries"],
            )
        finally:
            await connection.close()
        shown = ", ".join(f"{row['name']}={row['value']}" for row in rows)
        data = self.server.base_dir / "data"
        return (
            f"PostgreSQL: a private cluster started for this run (PostgreSQL {version}, data on "
            f"{_filesystem(data)}; no other cluster was stopped or reconfigured), settings copied from "
            f"{self.copied_from}: {shown}"
        )

    def stop(self) -> None:
        self.server.cleanup()


@dataclass
class Cluster:
    """The PostgreSQL cluster serving the bench database, as processes we may pin to a core."""

    label: str
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
                return cls(f"{columns[0]}/{columns[1]}", port, Path(columns[5]))
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


@dataclass
class PgssSetup:
    """How statements are counted."""

    available: bool
    how: str


async def enable_pgss(urls: DatabaseUrls) -> PgssSetup:
    """pg_stat_statements in the bench database when the server preloads it; never a restart."""
    admin = await connect(urls.admin)
    try:
        available = await admin.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = $1", PGSS)
        setting = str(await admin.fetchval("SELECT current_setting('shared_preload_libraries')"))
    finally:
        await admin.close()
    if not available:
        return PgssSetup(False, "pg_stat_statements is not installed on this server")
    if PGSS not in [item.strip() for item in setting.split(",")]:
        return PgssSetup(False, "not in that server's shared_preload_libraries")
    bench = await connect(urls.bench)
    try:
        await bench.execute(f"CREATE EXTENSION IF NOT EXISTS {PGSS}")
    finally:
        await bench.close()
    return PgssSetup(True, "preloaded by the server")


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

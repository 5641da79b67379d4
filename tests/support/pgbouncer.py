"""PgBouncer in front of a PostgreSQL server, for pooling-compatibility tests.

Defaults mirror what a managed pooler (e.g. Neon's) does: transaction pooling
with a small server pool, so code that leaks session state or relies on
named prepared statements fails here instead of in production.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import quote, urlencode

from ._proc import (
    RunAs,
    chown_tree,
    free_port,
    identity_kwargs,
    make_private_dir,
    port_open,
    remove_dir,
    resolve_run_as,
    stop_process,
    tail,
    wait_until,
)
from .pgwire import Row, simple_query
from .tools import pgbouncer_binary

PoolMode = Literal["session", "transaction", "statement"]
Version = tuple[int, int, int]
_HOST = "127.0.0.1"
_PORT_RETRIES = 3
_PREPARED_STATEMENTS_SINCE: Version = (1, 21, 0)


def ensure_pgbouncer() -> Path:
    """Path of the pgbouncer binary, or an error naming the package to install."""
    found = pgbouncer_binary()
    if found is None:
        raise RuntimeError("pgbouncer binary not found: run `apt-get install pgbouncer`")
    return found


def pgbouncer_version(binary: Path | None = None, timeout: float = 10.0) -> Version:
    """Parse `pgbouncer --version` (e.g. "PgBouncer 1.18.0")."""
    out = subprocess.run(  # noqa: S603 (fixed argv, no shell)
        [str(binary or ensure_pgbouncer()), "--version"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)(?:\.(\d+))?", out)
    if match is None:
        raise RuntimeError(f"cannot parse pgbouncer version from {out!r}")
    return int(match[1]), int(match[2]), int(match[3] or 0)


def supports_prepared_statements(version: Version) -> bool:
    """True when `max_prepared_statements` exists (protocol-level, 1.21+)."""
    return version >= _PREPARED_STATEMENTS_SINCE


class PgBouncer:
    """One pgbouncer process on a free loopback port, config in a temp dir.

    Auth is `trust` (the listed users need no password), matching a
    trust-auth backend. As root it runs as the `postgres` OS user.
    """

    def __init__(
        self,
        *,
        server_host: str = "127.0.0.1",
        server_port: int = 5432,
        server_database: str = "postgres",
        database: str | None = None,
        users: Sequence[str] = ("postgres",),
        pool_mode: PoolMode = "transaction",
        pool_size: int = 5,
        max_client_conn: int = 500,
        max_prepared_statements: int | None = None,
        settings: Mapping[str, str] | None = None,
        binary: Path | None = None,
        run_as: str | None = None,
        timeout: float = 15.0,
    ) -> None:
        if not users:
            raise ValueError("at least one user is needed (the first is the admin)")
        self._binary = binary or ensure_pgbouncer()
        self._version = pgbouncer_version(self._binary, timeout)
        self._check_prepared(max_prepared_statements)
        self._owner: RunAs = resolve_run_as(run_as)
        self._server = (server_host, server_port, server_database)
        self._database = database or server_database
        self._users = tuple(users)
        self._settings = self._base_settings(pool_mode, pool_size, max_client_conn)
        if max_prepared_statements is not None:
            self._settings["max_prepared_statements"] = str(max_prepared_statements)
        self._settings.update(settings or {})
        self._timeout = timeout
        self._port = 0
        self._base: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- properties -------------------------------------------------------

    @property
    def version(self) -> Version:
        """Installed pgbouncer version."""
        return self._version

    @property
    def host(self) -> str:
        """Listen address (loopback only)."""
        return _HOST

    @property
    def port(self) -> int:
        """Listen port, known after start()."""
        return self._port

    @property
    def database(self) -> str:
        """Database name clients use (alias of the server database)."""
        return self._database

    @property
    def dsn(self) -> str:
        """URL for the pooled database as the first user.

        asyncpg needs statement_cache_size=0 here (pgbouncer < 1.21).
        """
        return self.url()

    @property
    def admin_dsn(self) -> str:
        """URL of the admin console (simple query protocol only)."""
        return self.url(database="pgbouncer")

    @property
    def base_dir(self) -> Path:
        """Temp dir with pgbouncer.ini, userlist.txt and logs."""
        if self._base is None:
            raise RuntimeError("pgbouncer not started")
        return self._base

    @property
    def log_file(self) -> Path:
        """pgbouncer's own log (logfile=)."""
        return self.base_dir / "pgbouncer.log"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def url(self, user: str | None = None, database: str | None = None, **params: str) -> str:
        """URL for `database` as `user`; extra params go in the query string."""
        query = f"?{urlencode(params)}" if params else ""
        name = quote(user or self._users[0])
        return f"postgresql://{name}@{_HOST}:{self._port}/{quote(database or self._database)}{query}"

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Write config and launch; retries on a port taken in the meantime."""
        if self.running:
            return
        if self._base is None:
            self._base = make_private_dir("pgbouncer-", self._owner)
        for attempt in range(_PORT_RETRIES):
            self._port = free_port(_HOST)
            self._write_files()
            if self._launch():
                return
            if attempt == _PORT_RETRIES - 1 or not self._port_clash():
                break
        raise RuntimeError(f"pgbouncer failed to start; log {self.log_file}:\n{self._logs()}")

    def stop(self) -> None:
        """SIGTERM (immediate shutdown), SIGKILL if it lingers."""
        if self._proc is not None:
            stop_process(self._proc, signal.SIGTERM, self._timeout)
            self._proc = None

    def cleanup(self) -> None:
        """Stop and delete the temp dir; safe to call twice."""
        try:
            self.stop()
        finally:
            if self._base is not None:
                remove_dir(self._base)
                self._base = None

    def __enter__(self) -> PgBouncer:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # -- admin console ----------------------------------------------------

    def admin(self, command: str) -> list[Row]:
        """Run an admin-console command (SHOW ..., PAUSE, RESUME, RECONNECT)."""
        return simple_query(
            command,
            host=_HOST,
            port=self._port,
            user=self._users[0],
            database="pgbouncer",
            timeout=self._timeout,
        )

    def stats(self) -> list[Row]:
        """SHOW STATS: per-database totals and averages."""
        return self.admin("SHOW STATS")

    def pools(self) -> list[Row]:
        """SHOW POOLS: cl_active/cl_waiting/sv_active/sv_idle per pool."""
        return self.admin("SHOW POOLS")

    # -- internals --------------------------------------------------------

    def _check_prepared(self, value: int | None) -> None:
        """Fail early instead of pgbouncer rejecting an unknown setting."""
        if value is not None and not supports_prepared_statements(self._version):
            found = ".".join(map(str, self._version))
            raise RuntimeError(f"max_prepared_statements needs pgbouncer 1.21+, found {found}")

    @staticmethod
    def _base_settings(pool_mode: PoolMode, pool_size: int, max_client_conn: int) -> dict[str, str]:
        """Pooling knobs plus short retry/timeouts so failures surface fast."""
        return {
            "pool_mode": pool_mode,
            "default_pool_size": str(pool_size),
            "min_pool_size": "0",
            "reserve_pool_size": "0",
            "max_client_conn": str(max_client_conn),
            "server_login_retry": "1",
            "server_connect_timeout": "5",
            "query_wait_timeout": "15",
            "ignore_startup_parameters": "extra_float_digits",
        }

    def _write_files(self) -> None:
        """pgbouncer.ini + userlist.txt, readable by the server user."""
        base = self.base_dir
        (base / "userlist.txt").write_text("".join(f'"{u}" ""\n' for u in self._users))
        (base / "pgbouncer.ini").write_text(self._ini(base))
        chown_tree(base, self._owner)

    def _ini(self, base: Path) -> str:
        """Render the config file."""
        host, port, dbname = self._server
        core = {
            "listen_addr": _HOST,
            "listen_port": str(self._port),
            "unix_socket_dir": str(base),
            "auth_type": "trust",
            "auth_file": str(base / "userlist.txt"),
            "admin_users": self._users[0],
            "stats_users": ",".join(self._users),
            "logfile": str(self.log_file),
            "pidfile": str(base / "pgbouncer.pid"),
        }
        body = "\n".join(f"{k} = {v}" for k, v in {**core, **self._settings}.items())
        target = f"host={host} port={port} dbname={dbname}"
        return f"[databases]\n{self._database} = {target}\n\n[pgbouncer]\n{body}\n"

    def _launch(self) -> bool:
        """Start the process in the foreground; True once the port answers."""
        stdio = (self.base_dir / "stdio.log").open("ab")
        with stdio:
            self._proc = subprocess.Popen(  # noqa: S603 (argv built by us, no shell)
                [str(self._binary), str(self.base_dir / "pgbouncer.ini")],
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=stdio,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **identity_kwargs(self._owner),
            )
        proc = self._proc
        up = wait_until(lambda: proc.poll() is not None or self._answers(), self._timeout)
        if up and proc.poll() is None:
            return True
        self.stop()
        return False

    def _answers(self) -> bool:
        """True once *our* pgbouncer serves the admin console (not just any listener)."""
        if not port_open(_HOST, self._port):
            return False
        try:
            self.admin("SHOW VERSION")
        except (OSError, RuntimeError):
            return False
        return True

    def _logs(self) -> str:
        """Both log files, for error messages."""
        return tail(self.log_file) + "\n" + tail(self.base_dir / "stdio.log")

    def _port_clash(self) -> bool:
        """True when the last launch failed because the port was taken."""
        return "Address already in use" in self._logs()


__all__ = [
    "PgBouncer",
    "PoolMode",
    "Version",
    "ensure_pgbouncer",
    "pgbouncer_version",
    "supports_prepared_statements",
]

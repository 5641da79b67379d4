"""A throwaway PostgreSQL cluster per test session (or per test).

Tuned for speed, not durability: initdb --no-sync, fsync=off, WAL minimal.
Never point these settings at a cluster whose data matters.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import quote, urlencode

from ._proc import (
    RunAs,
    chown_tree,
    free_port,
    kill_pid,
    make_private_dir,
    pid_alive,
    remove_dir,
    resolve_run_as,
    run,
    wait_until,
)
from .pgwire import Row, simple_query
from .tls import ServerCert, generate_ca, issue_server_cert
from .tools import EMBEDDED_PACKAGE, missing_tool, pg_bin_dir, pg_has_ssl, shareable_pg_bin_dir

StopMode = Literal["smart", "fast", "immediate"]
_HOST = "127.0.0.1"
_PORT_RETRIES = 3
_FAST_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "checkpoint_timeout": "1h",
    "shared_buffers": "64MB",
    "max_connections": "100",
    "logging_collector": "off",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
}


def find_pg_bin_dir() -> Path:
    """Debian's /usr/lib/postgresql/N/bin (newest), else the binaries of the embedded-PostgreSQL wheel."""
    found = pg_bin_dir()
    if found is None:
        raise RuntimeError(
            "PostgreSQL server binaries not found: neither /usr/lib/postgresql/*/bin nor the "
            f"{EMBEDDED_PACKAGE} package (`make install` installs it; or apt-get install postgresql)"
        )
    return found


class PgCluster:
    """initdb + pg_ctl wrapper bound to 127.0.0.1 and a private socket dir.

    As root, every server process runs as the `postgres` OS user, because
    PostgreSQL refuses to run as root.
    """

    def __init__(
        self,
        *,
        ssl: bool = False,
        ssl_only: bool = False,
        settings: Mapping[str, str] | None = None,
        port: int | None = None,
        superuser: str = "postgres",
        password_auth: bool = False,
        locale: str = "C.UTF-8",
        bin_dir: Path | None = None,
        run_as: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._owner: RunAs = resolve_run_as(run_as)
        self._bin = bin_dir or find_pg_bin_dir()
        if self._owner.switches:
            self._bin = shareable_pg_bin_dir(self._bin)
        if (ssl or ssl_only) and not pg_has_ssl(self._bin):
            missing_tool("A PostgreSQL server built with TLS", "apt-get install postgresql (the embedded has none)")
        self._ssl = ssl or ssl_only
        self._ssl_only = ssl_only
        self._settings = dict(settings or {})
        self._fixed_port = port is not None
        self._port = port or free_port(_HOST)
        self._superuser = superuser
        self._password_auth = password_auth
        self._locale = locale
        self._timeout = timeout
        self._base: Path | None = None
        self._tls: ServerCert | None = None
        self._running = False

    # -- properties -------------------------------------------------------

    @property
    def host(self) -> str:
        """TCP host the server listens on (loopback only)."""
        return _HOST

    @property
    def port(self) -> int:
        """TCP port; unchanged across stop/start/restart."""
        return self._port

    @property
    def user(self) -> str:
        """Database superuser name (trust auth, no password)."""
        return self._superuser

    @property
    def dsn(self) -> str:
        """libpq/asyncpg URL for the `postgres` database."""
        return self.url()

    @property
    def base_dir(self) -> Path:
        """Temp dir holding data/, sock/, tls/ and the server log."""
        if self._base is None:
            raise RuntimeError("cluster not initialised; call init() or start()")
        return self._base

    @property
    def data_dir(self) -> Path:
        """PGDATA."""
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        """Unix socket directory (usable as host= in libpq/asyncpg)."""
        return self.base_dir / "sock"

    @property
    def log_file(self) -> Path:
        """Server log written by pg_ctl -l."""
        return self.base_dir / "server.log"

    @property
    def tls(self) -> ServerCert | None:
        """Server cert, key and CA paths when built with ssl=True."""
        return self._tls

    @property
    def running(self) -> bool:
        """True between a successful start() and stop()."""
        return self._running

    @property
    def pid(self) -> int | None:
        """Postmaster pid from postmaster.pid, if a server is up."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        except (OSError, RuntimeError):
            return None
        return int(first) if first.strip().isdigit() else None

    def url(self, database: str = "postgres", **params: str) -> str:
        """URL for `database`, e.g. url(sslmode="require")."""
        query = f"?{urlencode(params)}" if params else ""
        return f"postgresql://{quote(self._superuser)}@{_HOST}:{self._port}/{quote(database)}{query}"

    # -- lifecycle --------------------------------------------------------

    def init(self) -> None:
        """Run initdb once into a fresh temp dir (idempotent)."""
        if self._base is not None:
            return
        self._base = make_private_dir("pgcluster-", self._owner)
        for sub in ("sock", "tls"):
            (self._base / sub).mkdir(mode=0o700)
        if self._ssl:
            self._tls = self._make_tls(self._base / "tls")
        chown_tree(self._base, self._owner)
        self._initdb()
        self._write_config()

    def start(self) -> None:
        """Start and wait until connections are accepted."""
        self.init()
        if self._running:
            return
        for attempt in range(_PORT_RETRIES):
            log_offset = self._log_size()
            try:
                self._pg_ctl("start", "-l", str(self.log_file), "-s")
                break
            except RuntimeError:
                retry = not self._fixed_port and attempt < _PORT_RETRIES - 1
                if not (retry and self._port_clash(log_offset)):
                    raise
                self._port = free_port(_HOST)
                self._write_config()
        self._running = True

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop with pg_ctl; falls back to signals so it cannot hang."""
        if self._base is None or self.pid is None:
            self._running = False
            return
        pid = self.pid
        try:
            self._pg_ctl("stop", "-m", mode, "-s")
        except RuntimeError:
            self._force_stop()
        if pid is not None:
            # pg_ctl returns once postmaster.pid is gone, a moment before exit.
            wait_until(lambda: not pid_alive(pid), timeout=self._timeout)
        self._running = False

    def restart(self, mode: StopMode = "fast") -> None:
        """stop(mode) then start(); port and data survive."""
        self.stop(mode)
        self.start()

    def cleanup(self) -> None:
        """Stop immediately and delete every file; safe to call twice."""
        if self._base is None:
            return
        try:
            self.stop("immediate")
        finally:
            remove_dir(self._base)
            self._base = None
            self._running = False

    def __enter__(self) -> PgCluster:
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

    # -- SQL helpers ------------------------------------------------------

    def query(self, sql: str, database: str = "postgres") -> list[Row]:
        """Run simple-protocol SQL over the unix socket (works with ssl_only)."""
        return simple_query(
            sql,
            host=str(self.socket_dir),
            port=self._port,
            user=self._superuser,
            database=database,
            timeout=self._timeout,
        )

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` and return its URL."""
        quoted = name.replace('"', '""')
        self.query(f'CREATE DATABASE "{quoted}"')
        return self.url(name)

    # -- internals --------------------------------------------------------

    def _initdb(self) -> None:
        """initdb with trust auth and no fsync: fast, throwaway."""
        run(
            [
                self._bin / "initdb",
                "-D",
                self.data_dir,
                "-U",
                self._superuser,
                "--auth=trust",
                "--encoding=UTF8",
                f"--locale={self._locale}",
                "--no-sync",
                "--no-instructions",
            ],
            owner=self._owner,
            cwd=self.base_dir,
            log=self.base_dir / "initdb.log",
            timeout=self._timeout,
        )

    def _write_config(self) -> None:
        """(Re)write our include file and pg_hba.conf."""
        conf = self.data_dir / "postgresql.conf"
        include = "include_if_exists = 'private_test.conf'\n"
        if include not in conf.read_text():
            with conf.open("a") as fh:
                fh.write(include)
        lines = [f"{k} = {v}" for k, v in self._all_settings().items()]
        self._write_owned(self.data_dir / "private_test.conf", "\n".join(lines) + "\n")
        self._write_owned(self.data_dir / "pg_hba.conf", self._hba())

    def _all_settings(self) -> dict[str, str]:
        """Speed settings, listener, TLS, then caller overrides."""
        values = dict(_FAST_SETTINGS)
        values["listen_addresses"] = f"'{_HOST}'"
        values["port"] = str(self._port)
        values["unix_socket_directories"] = f"'{self.socket_dir}'"
        if self._tls is not None:
            values["ssl"] = "on"
            values["ssl_cert_file"] = f"'{self._tls.cert}'"
            values["ssl_key_file"] = f"'{self._tls.key}'"
        values.update(self._settings)
        return values

    def _hba(self) -> str:
        """Trust the socket; TCP trusted too, or with password_auth, scram-sha-256; with ssl_only, TLS."""
        tcp = "hostssl" if self._ssl_only else "host"
        method = "scram-sha-256" if self._password_auth else "trust"
        lines = ["local all all trust", f"{tcp} all all {_HOST}/32 {method}"]
        if self._ssl_only:
            lines.append(f"hostnossl all all {_HOST}/32 reject")
        return "\n".join(lines) + "\n"

    def _write_owned(self, path: Path, text: str) -> None:
        """Write a config file the server user can read."""
        path.write_text(text)
        chown_tree(path, self._owner)

    @staticmethod
    def _make_tls(directory: Path) -> ServerCert:
        """CA + server cert valid for localhost and 127.0.0.1."""
        ca = generate_ca(directory, "todo-api pgcluster CA")
        return issue_server_cert(ca, directory)

    def _pg_ctl(self, *args: str) -> None:
        """Call pg_ctl with -w and its own timeout, bounded by ours."""
        wait = max(1, int(self._timeout))
        run(
            [self._bin / "pg_ctl", *args, "-D", self.data_dir, "-w", "-t", str(wait)],
            owner=self._owner,
            cwd=self.base_dir,
            log=self.base_dir / "pg_ctl.log",
            timeout=self._timeout + 5,
        )

    def _log_size(self) -> int:
        """Current server log length, to read only what one start wrote."""
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0

    def _port_clash(self, log_offset: int) -> bool:
        """True when the last start failed because the port was taken."""
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(log_offset)
                text = fh.read().decode(errors="replace")
        except OSError:
            return False
        return "could not bind" in text or "Address already in use" in text

    def _force_stop(self) -> None:
        """SIGQUIT (immediate shutdown) then SIGKILL the postmaster."""
        pid = self.pid
        if pid is None:
            return
        kill_pid(pid, signal.SIGQUIT)
        if not wait_until(lambda: not pid_alive(pid), timeout=5):
            kill_pid(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), timeout=5)


__all__ = ["PgCluster", "StopMode", "find_pg_bin_dir"]

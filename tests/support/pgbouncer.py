"""PgBouncer in front of a PostgreSQL server, for pooling-compatibility tests.

It pools as a managed pooler (e.g. Neon's) does: transaction pooling with a small server pool, so
code that leaks session state or relies on named prepared statements fails here, not in production.
"""

from __future__ import annotations

import contextlib
from urllib.parse import quote

from backend.database_url import parse_database_url
from backend.db import DatabaseUnavailable

from ._proc import HOST, Server
from .database import run_sql
from .tools import require_pgbouncer


class PgBouncer(Server):
    """pgbouncer in the foreground on a free loopback port, trusting the server URL's user (no password)."""

    name = "pgbouncer"

    def __init__(self, server_url: str, *, pool_size: int = 5) -> None:
        super().__init__()
        self._binary = require_pgbouncer()
        self._server = parse_database_url(server_url)
        self._user = self._server.user or "postgres"
        self._database = self._server.database or "postgres"
        self._pool_size = pool_size

    def url(self, database: str | None = None) -> str:
        """URL for the pooled database (or the admin console, "pgbouncer")."""
        return f"postgresql://{quote(self._user)}@{HOST}:{self.port}/{quote(database or self._database)}"

    def prepare(self) -> None:
        """userlist.txt; pgbouncer.ini is written per start (the port may change)."""
        (self.base_dir / "userlist.txt").write_text(f'"{self._user}" ""\n')

    def argv(self) -> list[str]:
        """pgbouncer with an ini for this port: short timeouts so failures surface fast."""
        settings = {
            "listen_addr": HOST,
            "listen_port": self.port,
            "unix_socket_dir": self.base_dir,
            "auth_type": "trust",
            "auth_file": self.base_dir / "userlist.txt",
            "admin_users": self._user,
            "pool_mode": "transaction",
            "default_pool_size": self._pool_size,
            "min_pool_size": 0,
            "reserve_pool_size": 0,
            "max_client_conn": 500,
            "server_login_retry": 1,
            "server_connect_timeout": 5,
            "query_wait_timeout": 15,
            "ignore_startup_parameters": "extra_float_digits",
        }
        server = f"host={self._server.host or HOST} port={self._server.port or 5432} dbname={self._database}"
        ini = self.base_dir / "pgbouncer.ini"
        ini.write_text(f"[databases]\n{self._database} = {server}\n\n[pgbouncer]\n")
        with ini.open("a") as out:
            out.writelines(f"{name} = {value}\n" for name, value in settings.items())
        self.owner.chown(ini)
        return [str(self._binary), str(ini)]

    def ready(self) -> bool:
        """True once *our* pgbouncer serves its admin console (not just anything on the port)."""
        with contextlib.suppress(DatabaseUnavailable):
            run_sql(self.url("pgbouncer"), "SHOW VERSION")
            return True
        return False

"""The database URL, parsed and validated once when settings load.

Neon's console prints libpq connection strings (`postgresql://user:pw@host/db?sslmode=require&
channel_binding=require`); developers write `postgres://...`, Unix socket directories (`?host=/dir`)
and `options=-c name=value`. This module turns all of them into one `DatabaseURL` value, or a
`ValueError` whose message names the problem and never repeats any part of the URL that could be
the password. `backend.db` is the only reader of the result: it turns it into driver arguments for
the serving pool, Alembic, the tests and the benchmark alike.
"""

import os
import re
import shlex
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

POSTGRES_SCHEMES = frozenset(
    {"postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2"}
)
SQLITE_SCHEMES = frozenset({"sqlite", "sqlite+aiosqlite"})
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")
CHANNEL_BINDING = ("disable", "prefer", "require")
# Every libpq parameter the service honours; anything else is refused rather than ignored.
PARAMETERS = frozenset(
    {
        "host",
        "port",
        "user",
        "password",
        "dbname",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "options",
        "application_name",
        "target_session_attrs",
        "connect_timeout",
        "channel_binding",
    }
)
DEFAULT_APPLICATION_NAME = "todo-api"
_PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_SETTING = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)=(.*)", re.DOTALL)


@dataclass(frozen=True)
class DatabaseURL:
    """What the service connects to. `password` never appears in `repr` or `display`."""

    kind: Literal["postgresql", "sqlite"]
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    sslmode: str | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    server_settings: tuple[tuple[str, str], ...] = ()
    application_name: str = DEFAULT_APPLICATION_NAME
    target_session_attrs: str | None = None
    connect_timeout: float | None = None
    channel_binding: str | None = None
    sqlite_path: str | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.kind == "sqlite"

    @property
    def display(self) -> str:
        """Where it points, for logs and error lines: host (or socket directory) and database name."""
        if self.is_sqlite:
            return f"sqlite:{self.sqlite_path}"
        return f'database "{self.database or self.user or "postgres"}" on {self.host_display}'

    @property
    def host_display(self) -> str:
        host = self.host or "localhost"
        return f"{host}:{self.port}" if self.port else host


def parse_sqlite(raw: str) -> DatabaseURL:
    _, _, rest = raw.partition(":")
    path = rest[3:] if rest.startswith("///") else rest.lstrip("/")
    if not path:
        raise ValueError("an SQLite URL needs a file path (sqlite:///path/to/file.sqlite3)")
    return DatabaseURL(kind="sqlite", sqlite_path=unquote(path.partition("?")[0]))


def parse_database_url(raw: str) -> DatabaseURL:
    """Validate `raw` as a PostgreSQL (libpq-style) or SQLite URL; errors never echo a value."""
    raw = raw.strip()
    scheme, sep, _ = raw.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise ValueError("not a URL; expected postgresql://user:password@host/dbname?sslmode=require")
    scheme = scheme.lower()
    if scheme in SQLITE_SCHEMES:
        return parse_sqlite(raw)
    if scheme not in POSTGRES_SCHEMES:
        shown = scheme if len(scheme) <= 32 else scheme[:32] + "..."
        raise ValueError(f"unsupported scheme {shown!r}; use postgresql:// (or sqlite:/// for a local file)")
    return _parse_postgres(raw)


def _parse_postgres(raw: str) -> DatabaseURL:
    parts = urlsplit(raw)
    if parts.fragment:
        raise ValueError("the URL has a '#' in it: percent-encode it as %23 if it is part of the password")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if "@" in userinfo:
        raise ValueError("the password contains an unescaped '@': percent-encode it as %40")
    if "," in hostport:
        raise ValueError("several hosts in one URL are not supported; give one host")
    values: dict[str, str] = {}
    if at:
        user, _, password = userinfo.partition(":")
        values["user"] = unquote(user)
        if password:
            values["password"] = unquote(password)
    try:
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise ValueError("the port is not a number between 1 and 65535") from None
    if host:
        values["host"] = unquote(host)
    if port is not None:
        values["port"] = str(port)
    path = unquote(parts.path.lstrip("/"))
    if path:
        values["dbname"] = path
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError("the query string is malformed (expected name=value&name=value)") from None
    for name, value in query:
        if name not in PARAMETERS:
            shown = repr(name) if _PARAMETER_NAME.fullmatch(name) else "a parameter"
            raise ValueError(f"unsupported parameter {shown}; supported: {', '.join(sorted(PARAMETERS))}")
        values[name] = value  # libpq: query parameters win over the URL's own parts
    return _build(values)


def _build(values: dict[str, str]) -> DatabaseURL:
    port = _port(values["port"]) if "port" in values else None
    sslmode = _choice(values, "sslmode", SSL_MODES)
    sslrootcert = values.get("sslrootcert") or None
    _check_certificates(sslrootcert, values.get("sslcert") or None, values.get("sslkey") or None)
    return DatabaseURL(
        kind="postgresql",
        host=values.get("host") or None,
        port=port,
        user=values.get("user") or None,
        password=values.get("password") or None,
        database=values.get("dbname") or None,
        sslmode=sslmode,
        sslrootcert=sslrootcert,
        sslcert=values.get("sslcert") or None,
        sslkey=values.get("sslkey") or None,
        server_settings=_options(values.get("options", "")),
        application_name=values.get("application_name") or DEFAULT_APPLICATION_NAME,
        target_session_attrs=_choice(values, "target_session_attrs", SESSION_ATTRS),
        connect_timeout=_timeout(values["connect_timeout"]) if values.get("connect_timeout") else None,
        channel_binding=_choice(values, "channel_binding", CHANNEL_BINDING),
    )


def _check_certificates(root: str | None, cert: str | None, key: str | None) -> None:
    """Load the files once now, so a wrong path fails at start rather than on the first connection."""
    for name, path in (("sslrootcert", root if root != "system" else None), ("sslcert", cert), ("sslkey", key)):
        if path is not None and not Path(path).is_file():
            raise ValueError(f"{name}: no such file")
    if bool(cert) != bool(key):
        raise ValueError("sslcert and sslkey go together: give both or neither")
    try:
        context = ssl.create_default_context(cafile=root if root not in {None, "system"} else None)
        if cert and key:
            context.load_cert_chain(cert, key)
    except ssl.SSLError:
        raise ValueError("sslrootcert/sslcert/sslkey: not a usable PEM certificate or key") from None


def _port(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError("the port is not a number between 1 and 65535")
    return int(value)


def _choice(values: dict[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = values.get(name)
    if value is None or value == "":
        return None
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}")
    return value


def _timeout(value: str) -> float:
    if not value.isdigit():
        raise ValueError("connect_timeout must be a whole number of seconds")
    # libpq treats 0 as "wait forever" and anything below 2 as 2.
    return float(max(int(value), 2)) if int(value) else 3600.0


def _options(value: str) -> tuple[tuple[str, str], ...]:
    """libpq's `options`: `-c name=value` (or `--name=value`) pairs, as server settings."""
    try:
        words = shlex.split(value)  # libpq escapes spaces inside a value with a backslash, as a shell does
    except ValueError:
        raise ValueError("options: unbalanced quotes") from None
    settings: list[tuple[str, str]] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word == "-c" and index + 1 < len(words):
            setting, index = words[index + 1], index + 2
        elif word.startswith("-c") and len(word) > 2:
            setting, index = word[2:], index + 1
        elif word.startswith("--") and "=" in word:
            name, _, given = word[2:].partition("=")
            setting, index = f"{name.replace('-', '_')}={given}", index + 1
        else:
            raise ValueError("options may only hold -c name=value settings")
        match = _SETTING.fullmatch(setting)
        if match is None:
            raise ValueError("options may only hold -c name=value settings")
        settings.append((match.group(1), match.group(2)))
    return tuple(settings)


def database_url_variable() -> str:
    """The environment variable the URL came from, for error lines that name it."""
    if "NEON_DATABASE_URL" not in os.environ and "DATABASE_URL" in os.environ:
        return "DATABASE_URL"
    return "NEON_DATABASE_URL"

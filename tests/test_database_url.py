"""The database URL: every form the service accepts, and every malformed one refused without echoing it."""

import ssl

import certifi
import pytest

from backend.config import ConfigError, load_settings
from backend.database_url import DatabaseURL, parse_database_url
from backend.db import connect_args, ssl_context

pytestmark = pytest.mark.usefixtures("clean_env")

NEON = (
    "postgresql://neondb_owner:npg_Ab1Cd2@ep-cool-name-a1b2c3d4-pooler.us-east-2.aws.neon.tech/neondb"
    "?sslmode=require&channel_binding=require"
)


def test_neon_console_string() -> None:
    url = parse_database_url(NEON)
    assert (url.kind, url.host, url.port, url.user, url.password, url.database) == (
        "postgresql",
        "ep-cool-name-a1b2c3d4-pooler.us-east-2.aws.neon.tech",
        None,
        "neondb_owner",
        "npg_Ab1Cd2",
        "neondb",
    )
    assert url.sslmode == "require"
    assert url.channel_binding == "require"
    assert "npg_Ab1Cd2" not in repr(url)
    assert "npg_Ab1Cd2" not in url.display
    tls = connect_args(url)["ssl"]
    assert isinstance(tls, ssl.SSLContext)
    assert tls.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(
    "raw",
    [
        "postgres://u:p@host:5433/db",
        "postgresql://u:p@host:5433/db",
        "POSTGRESQL://u:p@host:5433/db",
        "postgresql+asyncpg://u:p@host:5433/db",
        "postgresql+psycopg2://u:p@host:5433/db",
        "postgresql+psycopg://u:p@host:5433/db",
    ],
)
def test_postgres_schemes(raw: str) -> None:
    url = parse_database_url(raw)
    assert (url.host, url.port, url.user, url.password, url.database) == ("host", 5433, "u", "p", "db")


def test_percent_encoded_password_survives() -> None:
    url = parse_database_url("postgresql://user:p%40ss%2Fw%3Ard%23@host/db?sslmode=disable")
    assert url.password == "p@ss/w:rd#"
    assert connect_args(url)["ssl"] is False


def test_every_libpq_parameter_is_honoured() -> None:
    root = certifi.where()
    url = parse_database_url(
        "postgresql://u@h/db?host=/var/run/postgresql&port=5999&dbname=other&user=v&password=pw"
        f"&sslmode=verify-full&sslrootcert={root}&options=-c%20search_path%3Dapp%20-c%20lock_timeout%3D5s"
        "&application_name=worker&target_session_attrs=read-write&connect_timeout=7&channel_binding=prefer"
    )
    assert (url.host, url.port, url.user, url.password, url.database) == (
        "/var/run/postgresql",
        5999,
        "v",
        "pw",
        "other",
    )
    assert url.server_settings == (("search_path", "app"), ("lock_timeout", "5s"))
    args = {k: v for k, v in connect_args(url).items() if k != "ssl"}
    assert args == {
        "host": "/var/run/postgresql",
        "port": 5999,
        "user": "v",
        "password": "pw",
        "database": "other",
        "timeout": 7.0,
        "command_timeout": None,
        "server_settings": {"application_name": "worker", "search_path": "app", "lock_timeout": "5s"},
        "statement_cache_size": 0,
        "target_session_attrs": "read-write",
    }


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("-csearch_path=app", (("search_path", "app"),)),
        ("--search-path=app", (("search_path", "app"),)),
        ("-c statement_timeout=5s -c work_mem=4MB", (("statement_timeout", "5s"), ("work_mem", "4MB"))),
        ("-c application_name=a\\ b", (("application_name", "a b"),)),
    ],
)
def test_options_become_server_settings(options: str, expected: tuple[tuple[str, str], ...]) -> None:
    from urllib.parse import quote

    assert parse_database_url(f"postgresql://h/db?options={quote(options)}").server_settings == expected


@pytest.mark.parametrize(
    ("mode", "verify", "hostname"),
    [
        ("require", ssl.CERT_NONE, False),
        ("verify-ca", ssl.CERT_REQUIRED, False),
        ("verify-full", ssl.CERT_REQUIRED, True),
    ],
)
def test_sslmode_becomes_an_ssl_context(mode: str, verify: ssl.VerifyMode, hostname: bool) -> None:
    context = ssl_context(DatabaseURL(kind="postgresql", sslmode=mode))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == verify
    assert context.check_hostname is hostname


def test_require_with_a_root_certificate_verifies_the_chain_as_libpq_does() -> None:
    context = ssl_context(DatabaseURL(kind="postgresql", sslmode="require", sslrootcert="system"))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is False


def test_sslmode_passthrough_values() -> None:
    assert ssl_context(DatabaseURL(kind="postgresql")) is None
    assert ssl_context(DatabaseURL(kind="postgresql", sslmode="disable")) is False
    assert ssl_context(DatabaseURL(kind="postgresql", sslmode="prefer")) == "prefer"


def test_sqlite_urls() -> None:
    assert parse_database_url("sqlite:////srv/todo/x.db").sqlite_path == "/srv/todo/x.db"
    assert parse_database_url("sqlite+aiosqlite:///rel/x.db").sqlite_path == "rel/x.db"


PASSWORD = "s3cr3t-Pa55"  # every malformed URL below carries it: none of the messages may


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not a url", "not a URL"),
        (f"mysql://u:{PASSWORD}@h/db", "unsupported scheme 'mysql'"),
        (f"postgresql://u:{PASSWORD}@h:54x32/db", "port is not a number"),
        (f"postgresql://u:{PASSWORD}@h:70000/db", "port is not a number"),
        (f"postgresql://u:{PASSWORD}@h/db?sslmode=requir", "sslmode must be one of"),
        (f"postgresql://u:{PASSWORD}@@h/db", "unescaped '@'"),
        (f"postgresql://u:{PASSWORD}@x@h/db", "unescaped '@'"),
        (f"postgresql://u:{PASSWORD}@h/db?gssencmode=disable", "unsupported parameter 'gssencmode'"),
        (f"postgresql://u:{PASSWORD}@h/db?{PASSWORD}", "query string is malformed"),
        (f"postgresql://u:{PASSWORD}@h/db?options=-x", "options may only hold"),
        (f"postgresql://u:{PASSWORD}@h/db?sslrootcert=/nonexistent/root.crt", "sslrootcert: no such file"),
        (f"postgresql://u:{PASSWORD}@h/db?sslrootcert={__file__}", "not a usable PEM certificate"),
        (f"postgresql://u:{PASSWORD}@h/db?sslcert={__file__}", "sslcert and sslkey go together"),
        (f"postgresql://u:{PASSWORD}@h/db?target_session_attrs=any-old", "target_session_attrs must be one of"),
        (f"postgresql://u:{PASSWORD}@h/db?connect_timeout=soon", "connect_timeout must be"),
        (f"postgresql://u:{PASSWORD}@h1,h2/db", "several hosts"),
        (f"postgresql://u:pa#{PASSWORD}@h/db", "'#'"),
    ],
)
def test_malformed_urls_are_refused_at_load_naming_the_variable(
    raw: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEON_DATABASE_URL", raw)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert message.startswith("Invalid configuration: NEON_DATABASE_URL: ")
    assert reason in message
    assert PASSWORD not in message
    assert "\n" not in message


def test_blank_url_means_the_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "  ")
    assert load_settings(_env_file=None).database.is_sqlite

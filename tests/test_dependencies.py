"""Authentication and authorisation at the API: 401 rules, 403 rules, and their order."""

import logging

import httpx
import pytest
from fastapi import FastAPI

from backend.main import create_app
from tests.servers import JWKSServer
from tests.support.api import bearer, make_settings
from tests.tokens import SigningKey, hs256

pytestmark = pytest.mark.anyio

INVALID = 'Bearer error="invalid_token"'


async def test_missing_header_is_401_with_bearer_challenge(client: httpx.AsyncClient, user: str) -> None:
    response = await client.get(f"/api/{user}/tasks")
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Basic dXNlcjpwYXNz", id="basic-scheme"),
        pytest.param("Bearer", id="no-token"),
        pytest.param("Bearer ", id="empty-token"),
        pytest.param("Token abc", id="other-scheme"),
    ],
)
async def test_no_bearer_token_is_401(client: httpx.AsyncClient, user: str, authorization: str) -> None:
    response = await client.get(f"/api/{user}/tasks", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("second", ["same", "other-user", "garbage"])
async def test_two_authorization_headers_are_400(client: httpx.AsyncClient, user: str, second: str) -> None:
    """RFC 9110: Authorization is a singleton field; which of two was meant is ambiguous."""
    token = hs256(user)
    other = {"same": token, "other-user": hs256("someone-else"), "garbage": "x"}[second]
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {other}")]
    response = await client.get(f"/api/{user}/tasks", headers=headers)
    assert response.status_code == 400
    assert response.json() == {"detail": "Send exactly one Authorization header"}
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_request"'
    created = await client.post(f"/api/{user}/tasks", json={"title": "never"}, headers=headers)
    assert created.status_code == 400
    assert (await client.get(f"/api/{user}/tasks", headers=bearer(token))).json() == []


async def test_invalid_token_is_401_invalid_token(client: httpx.AsyncClient, user: str) -> None:
    response = await client.get(f"/api/{user}/tasks", headers=bearer("not.a.token"))
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token"}
    assert response.headers["WWW-Authenticate"] == INVALID


async def test_expired_token_is_401_token_expired(client: httpx.AsyncClient, user: str) -> None:
    response = await client.get(f"/api/{user}/tasks", headers=bearer(hs256(user, ttl=-120)))
    assert response.status_code == 401
    assert response.json() == {"detail": "Token has expired"}
    assert response.headers["WWW-Authenticate"] == INVALID


async def test_scheme_is_case_insensitive(client: httpx.AsyncClient, user: str) -> None:
    response = await client.get(f"/api/{user}/tasks", headers={"Authorization": f"bearer {hs256(user)}"})
    assert response.status_code == 200


async def test_token_in_query_or_cookie_is_ignored(client: httpx.AsyncClient, user: str) -> None:
    token = hs256(user)
    by_query = await client.get(f"/api/{user}/tasks", params={"access_token": token})
    client.cookies.set("better-auth.session_token", token)
    client.cookies.set("access_token", token)
    by_cookie = await client.get(f"/api/{user}/tasks")
    assert by_query.status_code == by_cookie.status_code == 401


async def test_401_wins_over_403(client: httpx.AsyncClient, user: str) -> None:
    response = await client.get("/api/someone-else/tasks", headers=bearer("garbage"))
    assert response.status_code == 401


async def test_better_auth_jwks_token_works_end_to_end(
    client: httpx.AsyncClient, jwks: JWKSServer, eddsa_key: SigningKey, user: str
) -> None:
    headers = bearer(eddsa_key.token(user, issuer=jwks.url))
    created = await client.post(f"/api/{user}/tasks", json={"title": "via JWKS"}, headers=headers)
    assert created.status_code == 201
    assert (await client.get(f"/api/{user}/tasks", headers=headers)).json() == [created.json()]
    other = await client.get("/api/not-me/tasks", headers=headers)
    assert other.status_code == 403


async def test_refusals_are_logged_without_the_token(
    client: httpx.AsyncClient, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = hs256(user, ttl=-120)
    with caplog.at_level(logging.WARNING, logger="backend.security"):
        await client.get(f"/api/{user}/tasks", headers=bearer(token))
        await client.get("/api/other/tasks", headers=bearer(hs256(user)))
    events = [record for record in caplog.records if record.name == "backend.security"]
    assert [getattr(record, "event", None) for record in events] == ["authentication_failed", "authorization_failed"]
    assert all(token not in record.getMessage() for record in caplog.records)


@pytest.fixture
async def unreachable_database_app() -> FastAPI:
    """An app whose database does not exist: anything that touches it would fail."""
    return create_app(make_settings("postgresql://nobody@127.0.0.1:9/none", db_connect_timeout_seconds=1))


async def test_auth_is_decided_before_the_database_is_touched(unreachable_database_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=unreachable_database_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        assert (await http.get("/api/alice/tasks")).status_code == 401
        assert (await http.get("/api/alice/tasks", headers=bearer(hs256("bob")))).status_code == 403
        assert (await http.delete("/api/alice/tasks/1", headers=bearer(hs256("bob")))).status_code == 403
        down = await http.get("/api/alice/tasks", headers=bearer(hs256("alice")))
        assert down.status_code == 503


async def test_403_is_decided_before_path_validation(client: httpx.AsyncClient, user: str) -> None:
    foreign = await client.get("/api/someone-else/tasks/not-a-number", headers=bearer(hs256(user)))
    assert foreign.status_code == 403
    anonymous = await client.get(f"/api/{user}/tasks/not-a-number")
    assert anonymous.status_code == 401


async def test_verified_caller_is_recorded_for_the_access_log(
    client: httpx.AsyncClient, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="backend.access"):
        await client.get(f"/api/{user}/tasks", headers=bearer(hs256(user)))
        await client.get("/api/someone-else/tasks", headers=bearer(hs256(user)))
        await client.get(f"/api/{user}/tasks", headers=bearer("garbage"))
    users = [getattr(record, "user_id", None) for record in caplog.records if record.name == "backend.access"]
    assert users == [user, user, None]

"""Any user id a token can carry works end to end; ids that cannot be addressed are invalid tokens.

Run on every backend of the `app` fixture, in process (ASGI, as the rest of the API suite) and over
real HTTP through uvicorn, whose percent-decoding of the path is what production sees.
"""

from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from backend.routes.tasks import tasks_path
from tests.servers import serve
from tests.support.api import Endpoint, bearer, each
from tests.tokens import better_auth_session, hs256

pytestmark = pytest.mark.anyio

# Non-Latin-1, URL-special, percent-looking and dot-segment ids, each made unique per test.
ODD_IDS = ["用户", "Ωmega", "emoji😀", "a?b", "a#b", "a b", "ålice", "a%2Fb", ".", "..", "a;b", "a+b", "~"]
CONTROL_IDS = ["a\x00b", "a\rb", "a\nb", "a\r\nb", "a\tb", "a\x1bb", "a\x7fb", "a\x85b"]


def _segment(user_id: str) -> str:
    """What the contract promises: UTF-8 percent-encoding with no safe characters; dot segments as %2E."""
    return "%2E" * len(user_id) if user_id in {".", ".."} else quote(user_id, safe="")


def _path(user_id: str) -> str:
    return tasks_path(user_id).rstrip("/")


@pytest.fixture
async def http_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The session app under uvicorn, over a real socket."""
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        yield http


async def _exercise(http: httpx.AsyncClient, user_id: str, token: str) -> None:
    """Every endpoint for `user_id`, reaching the task through the `Location` header."""
    headers = bearer(token)
    created = await http.post(_path(user_id), json={"title": "odd id"}, headers=headers)
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["user_id"] == user_id
    location = created.headers["Location"]
    assert location == f"/api/{_segment(user_id)}/tasks/{task['id']}"
    fetched = await http.get(location, headers=headers)
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == task
    listing = await http.get(_path(user_id), headers=headers)
    # "." and ".." cannot be made unique per test, so other tests' tasks may be listed too.
    assert task["id"] in [item["id"] for item in listing.json()]
    assert {item["user_id"] for item in listing.json()} == {user_id}
    assert (await http.put(location, json={"title": "renamed"}, headers=headers)).json()["title"] == "renamed"
    assert (await http.patch(f"{location}/complete", headers=headers)).json()["completed"] is True
    assert (await http.delete(location, headers=headers)).status_code == 204
    assert (await http.get(location, headers=headers)).status_code == 404


@pytest.mark.parametrize("odd", ODD_IDS)
async def test_any_addressable_id_works_end_to_end(client: httpx.AsyncClient, user: str, odd: str) -> None:
    user_id = odd if odd in {".", ".."} else f"{odd}-{user}"
    await _exercise(client, user_id, hs256(user_id))


@pytest.mark.parametrize("odd", ODD_IDS)
async def test_any_addressable_id_works_over_real_http(http_client: httpx.AsyncClient, user: str, odd: str) -> None:
    user_id = odd if odd in {".", ".."} else f"{user}{odd}"
    await _exercise(http_client, user_id, hs256(user_id))


async def test_dot_ids_are_separate_users(client: httpx.AsyncClient) -> None:
    """ "." and ".." are ordinary ids; their tasks never show up under /api/tasks or each other."""
    for user_id in (".", ".."):
        response = await client.get(_path(user_id), headers=bearer(hs256(user_id)))
        assert response.status_code == 200
    assert (await client.get("/api/tasks", headers=bearer(hs256(".")))).status_code == 404


async def test_better_auth_session_jwt_with_odd_id(client: httpx.AsyncClient, user: str) -> None:
    user_id = f"用户-{user}"
    await _exercise(client, user_id, better_auth_session(user_id))


async def test_location_is_built_before_the_write(client: httpx.AsyncClient, user: str) -> None:
    """A 201 always carries a Location that leads to the task: no id makes it fail after the commit."""
    user_id = f"{user}-\U0010ffff-\u202e-\ufeff"
    created = await client.post(_path(user_id), json={"title": "t"}, headers=bearer(hs256(user_id)))
    assert created.status_code == 201
    assert created.headers["Location"].isascii()
    assert (await client.get(created.headers["Location"], headers=bearer(hs256(user_id)))).status_code == 200


@pytest.mark.parametrize("user_id", CONTROL_IDS, ids=[repr(c) for c in CONTROL_IDS])
@pytest.mark.parametrize("endpoint", each())
async def test_control_characters_in_the_identity_are_an_invalid_token(
    app: FastAPI, client: httpx.AsyncClient, user_id: str, endpoint: Endpoint
) -> None:
    path = endpoint.path(user_id, 1)
    response = await client.request(endpoint.method, path, json=endpoint.body, headers=bearer(hs256(user_id)))
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token"}
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_slash_in_the_identity_is_an_invalid_token(client: httpx.AsyncClient, user: str) -> None:
    """A "/" cannot be addressed: servers decode %2F before routing, so the path no longer matches."""
    user_id = f"a/{user}"
    token = hs256(user_id)
    assert (await client.get(_path(user_id), headers=bearer(token))).status_code == 404
    assert (await client.get(f"/api/{user}/tasks", headers=bearer(token))).status_code == 401


async def test_percent_encoded_slash_is_not_routed_as_a_segment(http_client: httpx.AsyncClient, user: str) -> None:
    """uvicorn decodes %2F before routing: /api/a%2Fb/tasks is /api/a/b/tasks, which is no route."""
    response = await http_client.get(f"/api/{user}%2Fx/tasks", headers=bearer(hs256(user)))
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}

"""RFC 9110 method handling (backend/http.py): complete `Allow` on 405, HEAD on GET routes, no slash redirects."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.servers import serve
from tests.support.api import bearer
from tests.tokens import hs256

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        yield http


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/api/u/tasks/1", "DELETE, GET, HEAD, PUT"),
        ("PATCH", "/api/u/tasks/1", "DELETE, GET, HEAD, PUT"),
        ("DELETE", "/api/u/tasks", "GET, HEAD, POST"),
        ("PUT", "/api/u/tasks", "GET, HEAD, POST"),
        ("GET", "/api/u/tasks/1/complete", "PATCH"),
        ("HEAD", "/api/u/tasks/1/complete", "PATCH"),
        ("POST", "/health", "GET, HEAD"),
        ("DELETE", "/ready", "GET, HEAD"),
        ("OPTIONS", "/api/u/tasks", "GET, HEAD, POST"),
    ],
)
async def test_405_lists_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path, headers=bearer(hs256("u")))
    assert response.status_code == 405
    assert response.headers["Allow"] == allow
    if method != "HEAD":
        assert response.json() == {"detail": "Method Not Allowed"}


async def test_405_comes_before_authentication(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/u/tasks/1")
    assert response.status_code == 405
    assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize("path", ["/health", "/ready"])
async def test_head_on_health_checks(http_client: httpx.AsyncClient, path: str) -> None:
    get = await http_client.get(path)
    head = await http_client.head(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"]
    assert head.headers["Content-Type"] == get.headers["Content-Type"]


async def test_head_on_task_reads_is_authenticated_like_get(http_client: httpx.AsyncClient, user: str) -> None:
    auth = bearer(hs256(user))
    created = await http_client.post(f"/api/{user}/tasks", json={"title": "head me"}, headers=auth)
    for path in (f"/api/{user}/tasks", created.headers["Location"]):
        get = await http_client.get(path, headers=auth)
        head = await http_client.head(path, headers=auth)
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["Content-Length"] == get.headers["Content-Length"]
        assert head.headers.get("X-Total-Count") == get.headers.get("X-Total-Count")
        assert (await http_client.head(path)).status_code == 401
        assert (await http_client.head(path.replace(user, "someone-else"), headers=auth)).status_code == 403
    assert (await http_client.head(f"/api/{user}/tasks/999999999", headers=auth)).status_code == 404


async def test_head_is_not_an_operation_in_the_openapi(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert all("head" not in operations for operations in paths.values())


@pytest.mark.parametrize(
    "path", ["/api/{user}/tasks/", "/api/{user}/tasks/1/", "/health/", "/api/{user}/tasks/1/complete/"]
)
async def test_trailing_slash_is_a_json_404_never_a_redirect(
    http_client: httpx.AsyncClient, user: str, path: str
) -> None:
    response = await http_client.get(path.format(user=user), headers={**bearer(hs256(user)), "Host": "evil.example"})
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
    assert "Location" not in response.headers

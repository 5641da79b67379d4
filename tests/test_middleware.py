"""The request edge: request ids, the 64 KiB body limit (also over real HTTP), API headers, 500s."""

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.servers import serve
from tests.support.api import FRONTEND_ORIGIN

pytestmark = pytest.mark.anyio

LIMIT = 64 * 1024


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    given = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    generated = await client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert len(generated.headers["X-Request-ID"]) == 32


async def test_api_responses_are_not_cached_or_sniffed(client: httpx.AsyncClient, user: str) -> None:
    response = await client.get(f"/api/{user}/tasks")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Cache-Control" not in (await client.get("/health")).headers


async def test_body_over_limit_is_413_json(client: httpx.AsyncClient, user: str, auth: dict[str, str]) -> None:
    body = b'{"title": "' + b"x" * LIMIT + b'"}'
    response = await client.post(
        f"/api/{user}/tasks",
        content=body,
        headers={**auth, "Content-Type": "application/json", "Origin": FRONTEND_ORIGIN},
    )
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large"}
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND_ORIGIN
    assert (await client.get(f"/api/{user}/tasks", headers=auth)).json() == []


async def test_body_at_limit_is_read(client: httpx.AsyncClient, user: str, auth: dict[str, str]) -> None:
    body = b'{"title": "ok", "pad": "' + b"x" * (LIMIT - 30) + b'"}'
    assert len(body) <= LIMIT
    response = await client.post(
        f"/api/{user}/tasks", content=body, headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 201


@pytest.fixture
async def live_url(app: FastAPI) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


async def test_chunked_body_over_limit_is_413_over_http(live_url: str, user: str, auth: dict[str, str]) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"title": "'
        for _ in range(20):
            yield b"x" * 8192

    async with httpx.AsyncClient(base_url=live_url) as http:
        response = await http.post(
            f"/api/{user}/tasks", content=chunks(), headers={**auth, "Content-Type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large"}


async def test_lying_content_length_never_500s(live_url: str, user: str, auth: dict[str, str]) -> None:
    """Claims 20 bytes and sends 100 KiB: the server answers with a 4xx, never a 5xx."""
    host, port = live_url.removeprefix("http://").split(":")
    body = b'{"title": "' + b"x" * 100_000 + b'"}'
    request = (
        f"POST /api/{user}/tasks HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth['Authorization']}\r\n"
        "Content-Type: application/json\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    reply = (await asyncio.wait_for(reader.read(4096), timeout=10)).decode("latin-1")
    writer.close()
    status = int(reply.split(" ", 2)[1])
    assert 400 <= status < 500


async def test_unhandled_error_is_a_generic_500(caplog: pytest.LogCaptureFixture) -> None:
    from tests.support.api import app_with_a_bug, make_settings

    app, secret = app_with_a_bug(make_settings(None))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/boom", headers={"Origin": "http://localhost:3000"})
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "RuntimeError" in caplog.text
    assert "in boom" in caplog.text  # the traceback's frames
    assert secret not in caplog.text


async def test_one_access_line_per_request(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="backend.access")
    await client.get("/health?token=abc", headers={"X-Request-ID": "acc-1"})
    await client.get("/nowhere", headers={"X-Request-ID": "acc-2"})
    access = [record for record in caplog.records if record.name == "backend.access"]
    assert [(r.request_id, r.status, r.path) for r in access] == [  # type: ignore[attr-defined]
        ("acc-1", 200, "/health?token=[filtered]"),
        ("acc-2", 404, "/nowhere"),
    ]

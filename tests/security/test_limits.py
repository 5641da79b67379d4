"""Resource limits over real HTTP and input edge cases: always a clear 4xx, never a 5xx."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.servers import serve

pytestmark = pytest.mark.anyio


@pytest.fixture
async def live_url(app: FastAPI) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


async def _raw(url: str, request: bytes) -> int:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    writer.close()
    return int(status_line.split(b" ", 2)[1])


@pytest.mark.parametrize("size", [300 * 1024, 1024 * 1024])
async def test_oversized_headers_are_431(live_url: str, user: str, size: int) -> None:
    request = f"GET /api/{user}/tasks HTTP/1.1\r\nHost: t\r\nX-Big: {'a' * size}\r\nConnection: close\r\n\r\n"
    assert await _raw(live_url, request.encode()) == 431


async def test_many_headers_are_431(live_url: str, user: str) -> None:
    headers = "".join(f"X-H{i}: {'v' * 100}\r\n" for i in range(3000))
    request = f"GET /api/{user}/tasks HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"
    assert await _raw(live_url, request.encode()) == 431


async def test_oversized_headers_get_json_and_cors(client: httpx.AsyncClient, user: str) -> None:
    response = await client.get(
        f"/api/{user}/tasks", headers={"X-Big": "a" * 300_000, "Origin": "http://localhost:3000"}
    )
    assert response.status_code == 431
    assert response.json() == {"detail": "Request headers too large"}
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"[" * 20_000 + b"]" * 20_000, id="deep-array-nesting"),
        pytest.param(b'{"title": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"}", id="deep-object-nesting"),
        pytest.param(b'{"title": "x", "completed": ' + b"9" * 5_000 + b"}", id="integer-with-5000-digits"),
        pytest.param(b'{"title": 1e999}', id="float-overflow"),
        pytest.param(b'{"title": "x", "completed": 1e999}', id="completed-infinity"),
        pytest.param(b'{"title": NaN}', id="nan"),
    ],
)
async def test_pathological_json_is_422(client: httpx.AsyncClient, user: str, auth: dict[str, str], raw: bytes) -> None:
    response = await client.post(
        f"/api/{user}/tasks", content=raw, headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text[:200]
    assert "detail" in response.json()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Buy 🥛 and 🍞 👨‍👩‍👧", id="emoji-and-zwj"),
        pytest.param("e\u0301cole\u0308", id="combining-marks"),
        pytest.param("שלום עולם مرحبا", id="rtl"),
        pytest.param("\u202eevil\u202c", id="bidi-override"),
        pytest.param("<img src=x onerror=alert(1)>", id="html"),
        pytest.param("1; DROP TABLE task; -- ' \" \\", id="sql"),
        pytest.param("tab\tnew\nline", id="control-characters"),
    ],
)
async def test_unusual_text_round_trips_verbatim(
    client: httpx.AsyncClient, user: str, auth: dict[str, str], text: str
) -> None:
    created = await client.post(f"/api/{user}/tasks", json={"title": text, "description": text}, headers=auth)
    assert created.status_code == 201
    fetched = (await client.get(created.headers["Location"], headers=auth)).json()
    assert fetched["title"] == text.strip()
    assert fetched["description"] == text


async def test_combining_marks_count_as_code_points(client: httpx.AsyncClient, user: str, auth: dict[str, str]) -> None:
    fits = "e\u0301" * 100  # 200 code points, 100 user-perceived characters
    assert (await client.post(f"/api/{user}/tasks", json={"title": fits}, headers=auth)).status_code == 201
    over = fits + "e"
    assert (await client.post(f"/api/{user}/tasks", json={"title": over}, headers=auth)).status_code == 422


async def test_duplicate_keys_last_one_wins(client: httpx.AsyncClient, user: str, auth: dict[str, str]) -> None:
    raw = b'{"title": "first", "title": "second", "completed": true, "completed": false}'
    response = await client.post(
        f"/api/{user}/tasks", content=raw, headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 201
    assert (response.json()["title"], response.json()["completed"]) == ("second", False)


@pytest.mark.parametrize(
    ("field", "value", "status"),
    [
        pytest.param("completed", True, 201, id="true"),
        pytest.param("completed", "true", 422, id="string-true"),
        pytest.param("completed", 1, 422, id="one"),
        pytest.param("completed", 0, 422, id="zero"),
        pytest.param("completed", "false", 422, id="string-false"),
    ],
)
async def test_completed_is_strict(
    client: httpx.AsyncClient, user: str, auth: dict[str, str], field: str, value: Any, status: int
) -> None:
    response = await client.post(f"/api/{user}/tasks", json={"title": "x", field: value}, headers=auth)
    assert response.status_code == status

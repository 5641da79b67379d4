"""OWASP API1: every endpoint x {own, other's, missing task} x {own, other's path}, exact codes.

User A attacks; user B's rows are read straight from the database before and after each request
and must be identical, and B's data must never appear in a response.
"""

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from backend.routes.tasks import tasks_path
from tests.support.api import ENDPOINTS, TASK_ENDPOINTS, Endpoint, bearer
from tests.tokens import hs256

pytestmark = pytest.mark.anyio

MISSING_ID = 2**63 - 1


def _matrix() -> list[Any]:
    rows = []
    for endpoint in ENDPOINTS:
        tasks = ("own-task", "others-task", "missing-task") if endpoint in TASK_ENDPOINTS else ("no-task",)
        for task in tasks:
            for path in ("own-path", "others-path"):
                expected = 403 if path == "others-path" else (endpoint.ok if task in ("own-task", "no-task") else 404)
                ident = f"{endpoint.name}-{task}-{path}" if task != "no-task" else f"{endpoint.name}-{path}"
                rows.append(pytest.param(endpoint, task, path, expected, id=ident))
    return rows


async def _rows_of(app: FastAPI, user_id: str) -> list[tuple[Any, ...]]:
    rows = await app.state.database.fetch(
        text("SELECT * FROM task WHERE user_id = :u ORDER BY id"), {"u": user_id}, idempotent=True
    )
    return [tuple(row.items()) for row in rows]


@pytest.mark.parametrize(("endpoint", "task", "path", "expected"), _matrix())
async def test_object_level_authorization(
    app: FastAPI,
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    task: str,
    path: str,
    expected: int,
) -> None:
    alice, bob = f"alice-{uuid.uuid4().hex}", f"bob-{uuid.uuid4().hex}"
    marker = f"bob-secret-{uuid.uuid4().hex}"
    created: dict[str, dict[str, Any]] = {}
    for owner, title in ((alice, "alice's task"), (bob, marker)):
        response = await client.post(
            f"/api/{owner}/tasks", json={"title": title, "description": title}, headers=bearer(hs256(owner))
        )
        created[owner] = response.json()
    task_id = {"own-task": created[alice]["id"], "others-task": created[bob]["id"], "missing-task": MISSING_ID}.get(
        task, 0
    )
    path_user = alice if path == "own-path" else bob
    before = await _rows_of(app, bob)

    response = await client.request(
        endpoint.method, endpoint.path(path_user, task_id), json=endpoint.body, headers=bearer(hs256(alice))
    )

    assert response.status_code == expected, response.text
    assert marker not in response.text
    assert bob not in response.text
    assert await _rows_of(app, bob) == before


@pytest.mark.parametrize(
    ("alice_id", "bob_id"),
    [
        pytest.param("\u00e5lice", "a\u030alice", id="nfc-vs-nfd"),
        pytest.param("a b", "a%20b", id="space-vs-percent-encoded"),
        pytest.param("a%2Fb", "a%252Fb", id="encoded-vs-double-encoded"),
        pytest.param(".", "..", id="dot-vs-dot-dot"),
        pytest.param("User", "user", id="case"),
    ],
)
async def test_lookalike_ids_are_different_users(
    app: FastAPI, client: httpx.AsyncClient, alice_id: str, bob_id: str
) -> None:
    """Ids are compared exactly, after the path's percent-decoding: lookalikes never share tasks."""
    suffix = uuid.uuid4().hex
    alice, bob = (f"{alice_id}{suffix}", f"{bob_id}{suffix}") if alice_id != "." else (alice_id, bob_id)
    alices, bobs = tasks_path(alice), tasks_path(bob)
    created = await client.post(bobs.rstrip("/"), json={"title": "bob's"}, headers=bearer(hs256(bob)))
    assert created.status_code == 201
    before = await _rows_of(app, bob)
    task_id = created.json()["id"]
    for method, rest in (("GET", ""), ("GET", str(task_id)), ("DELETE", str(task_id))):
        response = await client.request(method, (alices + rest).rstrip("/"), headers=bearer(hs256(alice)))
        assert response.status_code == (200 if rest == "" else 404)
        assert "bob's" not in response.text
        foreign = await client.request(method, (bobs + rest).rstrip("/"), headers=bearer(hs256(alice)))
        assert foreign.status_code == 403
    assert await _rows_of(app, bob) == before
    await client.delete(f"{bobs}{task_id}", headers=bearer(hs256(bob)))  # "..": shared by every run

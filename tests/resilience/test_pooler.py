"""Behind PgBouncer in transaction mode (Neon's pooler): heavy concurrency, no prepared-statement clashes."""

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from backend.main import create_app
from tests.support.api import ENDPOINTS, bearer, make_settings
from tests.support.pgbouncer import PgBouncer
from tests.tokens import hs256

pytestmark = pytest.mark.anyio


@pytest.fixture
async def pooled_app(pgbouncer_url: str) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(pgbouncer_url, db_pool_size=20, db_max_overflow=10))
    async with app.router.lifespan_context(app):
        yield app


async def test_mixed_load_of_50_users_through_pgbouncer(pooled_app: FastAPI, pgbouncer: PgBouncer) -> None:
    users = [f"load-{uuid.uuid4().hex}" for _ in range(50)]
    rng = random.Random(42)
    transport = httpx.ASGITransport(app=pooled_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        seeded = await asyncio.gather(
            *(http.post(f"/api/{u}/tasks", json={"title": "seed"}, headers=bearer(hs256(u))) for u in users)
        )
        assert {r.status_code for r in seeded} == {201}
        ids = {r.json()["user_id"]: r.json()["id"] for r in seeded}

        calls = [endpoint for endpoint in ENDPOINTS if endpoint.name != "delete"]  # later requests need the task

        def request(user: str) -> tuple[str, str, dict[str, Any] | None]:
            endpoint = rng.choice(calls)
            return endpoint.method, endpoint.path(user, ids[user]), endpoint.body

        plan = [(user, *request(user)) for user in rng.choices(users, k=400)]
        responses = await asyncio.gather(
            *(http.request(method, url, json=body, headers=bearer(hs256(user))) for user, method, url, body in plan)
        )
    failures = [(r.status_code, r.text) for r in responses if r.status_code >= 300]
    assert failures == []
    creates = sum(1 for _, method, _, _ in plan if method == "POST")
    assert creates > 0
    log = pgbouncer.log_file.read_text()
    assert "prepared statement" not in log
    assert "ERROR" not in log

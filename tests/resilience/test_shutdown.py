"""Graceful shutdown: a request in flight when the server is told to stop still completes."""

import asyncio
import logging
import uuid

import httpx
import pytest

from backend.main import create_app
from tests.servers import base_url, running_server
from tests.support.api import bearer, make_settings
from tests.support.database import pg_connect
from tests.tokens import hs256

pytestmark = pytest.mark.anyio


async def test_in_flight_request_finishes_and_pool_is_disposed(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="backend")
    app = create_app(make_settings(postgres_url))
    user = f"user-{uuid.uuid4().hex}"
    headers = bearer(hs256(user))
    async with (
        running_server(app, lifespan="on") as server,
        httpx.AsyncClient(base_url=base_url(server), timeout=20) as http,
    ):
        task = (await http.post(f"/api/{user}/tasks", json={"title": "slow"}, headers=headers)).json()
        # Hold the row so the toggle below stays in flight until we let go.
        blocker = await pg_connect(postgres_url)
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("SELECT 1 FROM task WHERE id = $1 FOR UPDATE", task["id"])
        toggle = asyncio.create_task(http.patch(f"/api/{user}/tasks/{task['id']}/complete", headers=headers))
        await asyncio.sleep(0.3)
        assert not toggle.done()
        server.should_exit = True
        await asyncio.sleep(0.3)
        await transaction.rollback()
        await blocker.close()
        response = await toggle
    assert response.status_code == 200
    assert response.json()["completed"] is True
    assert "database pool closed" in caplog.text

"""SC-009: every refusal is logged once, structured, and no credential ever reaches a log line."""

import logging
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from backend.main import create_app
from tests.conftest import bearer, make_settings
from tests.tokens import TEST_SECRET, hs256

pytestmark = pytest.mark.anyio

DB_PASSWORD = f"pw-{uuid.uuid4().hex}"


@pytest.fixture
async def logged_app(postgres_url: str, caplog: pytest.LogCaptureFixture) -> AsyncIterator[FastAPI]:
    """Built while logs are captured, so its startup lines are checked too."""
    caplog.set_level(logging.DEBUG)
    # Trust auth ignores the password, so a real password can ride along in the URL.
    url = make_url(postgres_url).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    app = create_app(make_settings(url, log_level="DEBUG"))
    async with app.router.lifespan_context(app):
        yield app


async def test_refusals_are_logged_once_without_credentials(
    logged_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    user = f"user-{uuid.uuid4().hex}"
    expired = hs256(user, ttl=-3600)
    forged = hs256(user, secret="a-forged-secret-that-is-long-enough-to-be-plausible-000")
    valid = hs256(user)
    transport = httpx.ASGITransport(app=logged_app, client=("203.0.113.7", 4711))
    requests = [
        ({}, "authentication_failed", "missing bearer token"),
        (bearer(expired), "authentication_failed", "token expired"),
        (bearer(forged), "authentication_failed", "InvalidSignatureError"),
        (bearer("garbage"), "authentication_failed", "malformed token"),
        (bearer(valid), "authorization_failed", "path user_id"),
    ]
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for index, (headers, _, _) in enumerate(requests):
            path_user = "someone-else" if index == len(requests) - 1 else user
            response = await http.get(f"/api/{path_user}/tasks", headers={**headers, "X-Request-ID": f"req-{index}"})
            assert response.status_code in {401, 403}
        assert (await http.get(f"/api/{user}/tasks", headers=bearer(valid))).status_code == 200

    events = [record for record in caplog.records if record.name == "backend.security"]
    assert len(events) == len(requests)
    for index, (record, (_, event, reason)) in enumerate(zip(events, requests, strict=True)):
        assert record.event == event  # type: ignore[attr-defined]
        assert reason in record.reason  # type: ignore[attr-defined]
        assert record.client == "203.0.113.7"  # type: ignore[attr-defined]
        assert record.request_id == f"req-{index}"  # type: ignore[attr-defined]
        assert record.path.startswith("/api/")  # type: ignore[attr-defined]

    records = caplog.get_records("setup") + caplog.get_records("call")
    everything = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in records)
    for credential in (TEST_SECRET, DB_PASSWORD, expired, forged, valid):
        assert credential not in everything
    for fragment in (expired, forged, valid):
        assert fragment.split(".")[2] not in everything  # not even the signature
    assert "Database: postgresql+asyncpg://" in everything

"""The API as tests call it: settings for a test app, the bearer header, the endpoint table, the task's keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI

from backend.config import Settings
from backend.main import create_app
from backend.models import Task
from backend.routes.tasks import tasks_path
from tests.tokens import TEST_SECRET

FRONTEND_ORIGIN = "http://localhost:3000"
# What a task looks like on the wire: the table's columns (models.py is the one definition).
TASK_KEYS = frozenset(Task.__table__.columns.keys())  # type: ignore[attr-defined]


def make_settings(database_url: str | None, **overrides: Any) -> Settings:
    """Development settings on `database_url` with the test secret; no .env file is read."""
    values: dict[str, Any] = {
        "_env_file": None,
        "environment": "development",
        "better_auth_secret": TEST_SECRET,
        "database_url": database_url,
        **overrides,
    }
    return Settings(**values)


def app_with_a_bug(settings: Settings) -> tuple[FastAPI, str]:
    """The app plus GET /boom, which raises with a secret made at run time (a traceback shows lines, not values)."""
    app = create_app(settings)
    secret = uuid.uuid4().hex

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"driver said: {secret}")

    return app, secret


def bearer(token: str) -> dict[str, str]:
    """The Authorization header carrying `token`."""
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Endpoint:
    """One task endpoint: what a client sends and the status it gets when all is well."""

    name: str
    method: str
    suffix: str  # after /api/{user_id}/tasks; "{id}" stands for the task's id
    body: dict[str, Any] | None
    ok: int

    def path(self, user: str, task_id: int | str = "") -> str:
        """The URL path of this endpoint for `user` (percent-encoded) and the task `task_id`."""
        return tasks_path(user).rstrip("/") + self.suffix.format(id=task_id)


# In the order a test can call them all on one task: delete last.
ENDPOINTS = (
    Endpoint("list", "GET", "", None, 200),
    Endpoint("create", "POST", "", {"title": "planted"}, 201),
    Endpoint("get", "GET", "/{id}", None, 200),
    Endpoint("update", "PUT", "/{id}", {"title": "overwritten", "completed": True}, 200),
    Endpoint("toggle", "PATCH", "/{id}/complete", None, 200),
    Endpoint("delete", "DELETE", "/{id}", None, 204),
)
TASK_ENDPOINTS = tuple(endpoint for endpoint in ENDPOINTS if "{id}" in endpoint.suffix)


def each(endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> list[Any]:
    """`endpoints` as parametrize values, one id per endpoint name."""
    return [pytest.param(endpoint, id=endpoint.name) for endpoint in endpoints]

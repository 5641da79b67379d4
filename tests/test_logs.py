"""Logging (backend/logs.py): text and JSON output, request ids, levels, tracebacks, the startup line."""

import json
import logging
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from backend.logs import escape_controls, filter_query, redacted_traceback, service_version
from backend.main import create_app
from tests.servers import JWKSServer
from tests.support.api import app_with_a_bug, bearer, make_settings
from tests.tokens import SigningKey, hs256

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("access_token=eyJ.a.b&limit=5", "access_token=[filtered]&limit=5"),
        (
            "limit=5&TOKEN=x&jwt=y&id_token=z&auth=w",
            "limit=5&TOKEN=[filtered]&jwt=[filtered]&id_token=[filtered]&auth=[filtered]",
        ),
        ("access%5Ftoken=secret", "access%5Ftoken=[filtered]"),
        ("mytoken=kept&token", "mytoken=kept&token"),
        ("", ""),
    ],
)
def test_credential_query_parameters_are_filtered(query: str, expected: str) -> None:
    assert filter_query(query) == expected


def test_control_characters_are_escaped() -> None:
    assert (
        escape_controls('/api/u\r\n{"level": "ERROR"}\x00\x1b\u2028')
        == '/api/u\\r\\n{"level": "ERROR"}\\x00\\x1b\\u2028'
    )
    assert escape_controls("ålice 用户") == "ålice 用户"


def test_traceback_keeps_frames_and_names_but_not_messages() -> None:
    secret = uuid.uuid4().hex  # only at run time: frames show source lines, which is fine

    def fail() -> None:
        try:
            raise ValueError(f"password={secret}")
        except ValueError as exc:
            raise RuntimeError(f"driver said: {secret}") from exc

    with pytest.raises(RuntimeError) as caught:
        fail()
    text = redacted_traceback(caught.value)
    assert secret not in text
    assert "builtins.ValueError (message withheld)" in text
    assert "builtins.RuntimeError (ValueError) (message withheld)" in text
    assert "direct cause" in text
    assert ", in fail" in text


def test_log_level_and_format_are_case_insensitive() -> None:
    settings = make_settings(None, log_level=" debug", log_format="JSON")
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    assert make_settings(None).log_format == "text"
    with pytest.raises(ValidationError):
        make_settings(None, log_format="xml")
    with pytest.raises(ValidationError):
        make_settings(None, log_level="loud")


def test_log_level_applies_to_the_service_and_uvicorn() -> None:
    create_app(make_settings(None, log_level="debug"))
    for name in ("backend", "uvicorn", "uvicorn.error"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.DEBUG, name
    create_app(make_settings(None, log_level="warning"))
    for name in ("backend", "uvicorn", "uvicorn.error"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name
    assert logging.getLogger("uvicorn.access").handlers == []  # ours replaces it
    assert not logging.getLogger("uvicorn.access").propagate


@pytest.fixture
async def json_app(postgres_url: str) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(postgres_url, log_format="json"))
    async with app.router.lifespan_context(app):
        yield app


def json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    """Every line written is one JSON object (json.loads fails the test otherwise)."""
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


async def test_json_lines_carry_request_id_and_access_fields(
    json_app: FastAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    user = f"user-{uuid.uuid4().hex}"
    capsys.readouterr()
    transport = httpx.ASGITransport(app=json_app, client=("198.51.100.4", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        refused = await http.get(f"/api/{user}/tasks", headers={"X-Request-ID": "refused-1"})
        listed = await http.get(
            f"/api/{user}/tasks?limit=5&access_token=leak", headers={**bearer(hs256(user)), "X-Request-ID": "ok-1"}
        )
    assert (refused.status_code, listed.status_code) == (401, 200)
    lines = json_lines(capsys)
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line)
    security = [line for line in lines if line["logger"] == "backend.security"]
    assert len(security) == 1
    assert security[0]["request_id"] == "refused-1"
    assert security[0]["event"] == "authentication_failed"
    access = [line for line in lines if line["logger"] == "backend.access"]
    assert [line["request_id"] for line in access] == ["refused-1", "ok-1"]
    assert access[1]["method"] == "GET"
    assert access[1]["path"] == f"/api/{user}/tasks?limit=5&access_token=[filtered]"
    assert access[1]["status"] == 200
    assert access[1]["client"] == "198.51.100.4"
    assert isinstance(access[1]["duration_ms"], float)
    assert "leak" not in json.dumps(lines)


async def test_access_line_names_the_authenticated_user(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The middleware writes whatever the auth dependency put in `request.state.user_id`."""
    app = create_app(make_settings(postgres_url))

    @app.get("/whoami")
    async def whoami(request: Request) -> None:
        request.state.user_id = "ålice"  # what backend.dependencies.owned_path records

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        await http.get("/whoami")
        await http.get("/health")
    access = [record for record in caplog.records if record.name == "backend.access"]
    assert [record.user_id for record in access] == ["ålice", None]  # type: ignore[attr-defined]
    assert "user=ålice" in access[0].getMessage()


async def test_unhandled_error_logs_its_traceback_with_the_request_id(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app, secret = app_with_a_bug(make_settings(postgres_url))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}
    [error] = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert error.request_id == "boom-1"  # type: ignore[attr-defined]
    assert error.exc_text is not None
    assert "Traceback (most recent call last)" in error.exc_text
    assert "in boom" in error.exc_text
    assert "RuntimeError (message withheld)" in error.exc_text
    assert secret not in caplog.text
    assert "Traceback" not in response.text


async def test_database_outage_line_carries_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(
        make_settings(
            "postgresql://nobody:hunter2@127.0.0.1:9/none",
            environment="production",
            better_auth_secret="p" * 32,
            db_connect_timeout_seconds=1,
            db_startup_timeout_seconds=0,
        )
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        caplog.clear()
        response = await http.get(
            "/api/u/tasks", headers={**bearer(hs256("u", secret="p" * 32)), "X-Request-ID": "out-1"}
        )
    assert response.status_code == 503
    errors = [record for record in caplog.records if record.name == "backend.errors"]
    assert errors
    assert all(getattr(record, "request_id", None) == "out-1" for record in errors)
    assert "hunter2" not in caplog.text


async def test_debug_shows_jwks_fetches(jwks: JWKSServer, caplog: pytest.LogCaptureFixture) -> None:
    key = SigningKey("EdDSA")
    jwks.keys.append(key.public_jwk)
    app = create_app(make_settings(None, better_auth_url=jwks.url, log_level="debug"))
    caplog.set_level(logging.DEBUG, logger="backend")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        await http.get("/api/u/tasks", headers=bearer(key.token("u", issuer=jwks.url)))
    fetches = [record for record in caplog.records if record.name == "backend.auth" and record.levelno == logging.DEBUG]
    assert fetches
    assert key.kid in fetches[0].getMessage()
    assert getattr(fetches[0], "request_id", None) is not None


async def test_startup_summary_is_one_line_without_secrets(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    url = make_url(postgres_url).set(password=password).render_as_string(hide_password=False)
    app = create_app(make_settings(url, cors_origins="https://a.example,https://b.example", docs_enabled=False))
    async with app.router.lifespan_context(app):
        pass
    [summary] = [record for record in caplog.records if record.name == "backend.startup"]
    message = summary.getMessage()
    target = make_url(postgres_url)
    for expected in (
        "todo-api 1.0.0",
        "environment=development",
        str(target.host),
        str(target.database),
        "pool=10+10",
        "cors=https://a.example,https://b.example",
        "HS256 (BETTER_AUTH_SECRET)",
        f"JWKS {app.state.settings.jwks_url}",
        "docs=off",
        "metrics=off",
    ):
        assert expected in message, expected
    assert password not in message
    assert make_settings(url).better_auth_secret.get_secret_value() not in message  # type: ignore[union-attr]
    assert summary.token_kinds == [  # type: ignore[attr-defined]
        "HS256 (BETTER_AUTH_SECRET)",
        f"JWKS {app.state.settings.jwks_url}",
    ]


def test_text_format_keeps_the_fields_readable(capsys: pytest.CaptureFixture[str]) -> None:
    create_app(make_settings(None, log_format="text"))
    capsys.readouterr()
    logging.getLogger("backend.test").warning("path %s", "/api/u\r\nINFO forged line")
    [line] = capsys.readouterr().err.splitlines()
    assert " WARNING backend.test [-] path /api/u\\r\\nINFO forged line" in line


def test_cli_version_and_help_list_every_command(project_root: Path) -> None:
    def run(*args: str) -> str:
        result = subprocess.run(  # noqa: S603 (our own module)
            [sys.executable, "-m", "backend", *args], cwd=project_root, capture_output=True, text=True, check=True
        )
        return result.stdout

    assert run("--version").strip() == f"todo-api {service_version()}"
    assert service_version() == "1.0.0"
    help_text = run("--help")
    for command in ("migrate", "token", "serve", "--version"):
        assert command in help_text

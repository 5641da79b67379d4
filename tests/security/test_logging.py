"""SC-009: every refusal is logged once, structured, and no credential ever reaches a log line."""

import json
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from backend.main import create_app
from tests.support._proc import free_port, port_open, stop_process, wait_until
from tests.support.api import bearer, make_settings
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
    logged_app: FastAPI, caplog: pytest.LogCaptureFixture, postgres_url: str
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
    assert str(make_url(postgres_url).database) in everything  # the startup lines name the database


BIN = Path(sys.executable).parent
# The three ways the README starts the service; logging is set up when the app is built, so it
# must hold for each (uvicorn and fastapi-cli configure their own logging first).
STARTS = {
    "uvicorn": [str(BIN / "uvicorn"), "backend.main:app", "--host", "127.0.0.1", "--port", "{port}"],
    "fastapi run": [str(BIN / "fastapi"), "run", "--host", "127.0.0.1", "--port", "{port}"],
    "python -m backend serve": [sys.executable, "-m", "backend", "serve", "--port", "{port}"],
}
FORGED = '{"level": "ERROR", "logger": "backend", "message": "forged"}'


def run_service(project_root: Path, tmp_path: Path, argv: list[str], **env: str) -> tuple[str, str]:
    """Start the service as an operator would, send three requests, stop it; (token, its output)."""
    port = free_port()
    user = f"user-{uuid.uuid4().hex}"
    token = hs256(user)
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "BETTER_AUTH_SECRET": TEST_SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'todo.sqlite3'}",
        **env,
    }
    output = tmp_path / "output.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 (our own executables)
            [part.format(port=port) for part in argv], cwd=project_root, env=environment, stdout=sink, stderr=sink
        )
        try:
            assert wait_until(lambda: port_open("127.0.0.1", port) or process.poll() is not None, timeout=60)
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=10) as http:
                ok = http.get(
                    f"/api/{user}/tasks?limit=5&access_token={token}",
                    headers={**bearer(token), "X-Request-ID": "proc-1"},
                )
                forged = http.get(
                    f"/api/{user}%0D%0A{FORGED}/tasks?Token={token}&jwt={token}", headers={"X-Request-ID": "proc-2"}
                )
                health = http.get("/health")
            assert (ok.status_code, forged.status_code, health.status_code) == (200, 401, 200)
        finally:
            stop_process(process, signal.SIGINT, timeout=15)
    return token, output.read_text()


def assert_no_credentials(token: str, output: str) -> None:
    assert token not in output
    assert token.split(".")[2] not in output
    assert TEST_SECRET not in output


@pytest.mark.parametrize("start", list(STARTS))
def test_json_logs_carry_no_token_and_cannot_be_forged(project_root: Path, tmp_path: Path, start: str) -> None:
    token, output = run_service(project_root, tmp_path, STARTS[start], LOG_FORMAT="json")
    assert_no_credentials(token, output)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    # fastapi-cli prints its own banner before the app exists; every other line is one JSON object.
    others = [line for line in output.splitlines() if line.strip() and not line.startswith("{")]
    assert others == [] or start == "fastapi run", others
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
    assert not [line for line in lines if line["message"] == "forged"]
    access = [line for line in lines if line["logger"] == "backend.access"]
    assert [line["request_id"] for line in access][:2] == ["proc-1", "proc-2"]
    assert len(access) == 3
    assert access[0]["path"].endswith("?limit=5&access_token=[filtered]")
    assert access[1]["path"].endswith("/tasks?Token=[filtered]&jwt=[filtered]")
    assert "\r\n" + FORGED in access[1]["path"]  # the raw bytes, inside one JSON string
    assert access[0]["status"] == 200
    assert [line for line in lines if line["logger"] == "backend.startup"]


def test_text_logs_keep_each_request_on_one_line(project_root: Path, tmp_path: Path) -> None:
    token, output = run_service(project_root, tmp_path, STARTS["uvicorn"], LOG_FORMAT="text")
    assert_no_credentials(token, output)
    lines = output.splitlines()
    assert not [line for line in lines if line.startswith("{")]
    [forged] = [line for line in lines if " backend.access [proc-2] " in line]
    assert "\\r\\n" + FORGED in forged
    assert "Token=[filtered]&jwt=[filtered] 401 " in forged
    [security] = [line for line in lines if " backend.security [proc-2] " in line]
    assert "\\r\\n" in security


def test_no_access_log_switch_silences_ours_too(project_root: Path, tmp_path: Path) -> None:
    token, output = run_service(project_root, tmp_path, [*STARTS["uvicorn"], "--no-access-log"], LOG_FORMAT="json")
    assert_no_credentials(token, output)
    loggers = {json.loads(line)["logger"] for line in output.splitlines()}
    assert "backend.access" not in loggers
    assert "backend.security" in loggers

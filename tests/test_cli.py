"""The developer CLI: migrate, and a token that the running service accepts."""

import subprocess
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import FastAPI

from backend import cli
from backend.config import Settings
from tests.support._proc import run_python
from tests.support.api import bearer
from tests.tokens import TEST_SECRET

pytestmark = pytest.mark.usefixtures("clean_env")


def test_minted_token_is_an_hs256_token_for_the_user() -> None:
    settings = Settings(_env_file=None, better_auth_secret=TEST_SECRET)
    token = cli.mint_token(settings, "dev-user", 120)
    claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "dev-user"
    assert claims["exp"] - claims["iat"] == 120


def test_minted_token_carries_configured_iss_and_aud() -> None:
    settings = Settings(_env_file=None, better_auth_secret=TEST_SECRET, jwt_issuer="https://app", jwt_audience="todo")
    claims = jwt.decode(cli.mint_token(settings, "u", 60), TEST_SECRET, algorithms=["HS256"], audience="todo")
    assert claims["iss"] == "https://app"


@pytest.mark.anyio
async def test_cli_token_works_against_the_api(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BETTER_AUTH_SECRET", TEST_SECRET)
    assert cli.main(["token", "cli-user"]) == 0
    token = capsys.readouterr().out.strip()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/api/cli-user/tasks", headers=bearer(token))
    assert response.status_code == 200


def test_cli_migrate_applies_the_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    database = tmp_path / "cli.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("BETTER_AUTH_SECRET", TEST_SECRET)
    assert cli.main(["migrate"]) == 0
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"task", "alembic_version"} <= tables


def test_cli_reports_bad_config(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    assert cli.main(["token", "u"]) == 2
    assert "Invalid configuration" in capsys.readouterr().err


def test_python_dash_m_backend_runs(project_root: Path) -> None:
    result = run_python("-m", "backend", "--help", cwd=project_root)
    assert result.returncode == 0
    assert "migrate" in result.stdout
    assert "token" in result.stdout


STARTS = [["-m", "backend", "migrate"], ["-m", "uvicorn", "backend.main:app", "--port", "0"]]
SECRET_IN_URL = "pw-" + "9f8e7d"  # built at run time: tracebacks would show a literal source line


def _run(project_root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("NEON_", "DATABASE_URL", "ENVIRONMENT"))}
    return run_python(*args, cwd=project_root, env={**clean, "BETTER_AUTH_SECRET": TEST_SECRET, **env})


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        f"mysql://u:{SECRET_IN_URL}@h/db",
        f"postgresql://u:{SECRET_IN_URL}@h:54x32/db",
        f"postgresql://u:{SECRET_IN_URL}@h/db?sslmode=requir",
        f"postgresql://u:{SECRET_IN_URL}@ish@h/db",
    ],
)
@pytest.mark.parametrize(
    "command", [["-m", "backend", "migrate"], ["-m", "uvicorn", "backend.main:app", "--port", "0"]]
)
def test_a_malformed_url_is_one_line_naming_the_variable(project_root: Path, url: str, command: list[str]) -> None:
    result = _run(project_root, {"NEON_DATABASE_URL": url}, *command)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("todo-api: Invalid configuration: NEON_DATABASE_URL: ")
    assert SECRET_IN_URL not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command", [["-m", "backend", "migrate"], ["-m", "uvicorn", "backend.main:app", "--port", "0"]]
)
def test_a_missing_database_stops_migrate_and_development_in_one_line(
    project_root: Path, postgres_url: str, command: list[str]
) -> None:
    from tests.support.database import with_database

    url = with_database(postgres_url, "todo_never_created")
    result = _run(project_root, {"DATABASE_URL": url}, *command)
    assert result.returncode != 0
    expected = 'todo-api: DATABASE_URL: database "todo_never_created" does not exist on '
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert "retrying" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if "todo-api: DATABASE_URL" in line]) == 1


@pytest.mark.parametrize("user_id", ["a/b", "line\nbreak", "x" * 256])
def test_cli_token_refuses_ids_the_api_would_refuse(user_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["token", user_id]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "the API would refuse this user id" in captured.err

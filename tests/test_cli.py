"""The developer CLI: migrate, and a token that the running service accepts."""

import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import FastAPI

from backend import cli
from backend.config import Settings
from tests.conftest import bearer
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
    result = subprocess.run(
        [sys.executable, "-m", "backend", "--help"],
        cwd=project_root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "migrate" in result.stdout
    assert "token" in result.stdout

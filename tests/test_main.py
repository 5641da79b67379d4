"""The application around the endpoints: health, readiness, CORS, OpenAPI and /docs, startup."""

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

import backend.main
from backend.lifecycle import StartupAbort
from backend.main import create_app
from tests.support._proc import run_python
from tests.support.api import bearer, make_settings
from tests.support.database import fresh_database, pg_connect
from tests.tokens import hs256

pytestmark = pytest.mark.anyio

FRONTEND = "http://localhost:3000"


async def test_health_does_not_need_the_database() -> None:
    app = create_app(make_settings("postgresql://nobody@127.0.0.1:9/none"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        ready = await http.get("/ready")
        assert ready.status_code == 503
        assert ready.headers["Retry-After"].isdigit()
        assert set(ready.json()) == {"detail"}


async def test_ready_when_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_database_outage_is_503_with_retry_after(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(make_settings("postgresql://nobody:hunter2@127.0.0.1:9/none", db_connect_timeout_seconds=2))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.post("/api/u/tasks", json={"title": "x"}, headers=bearer(hs256("u")))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {"detail": "Database unavailable, please retry shortly"}
    assert "hunter2" not in caplog.text


async def test_cors_preflight_needs_no_token(client: httpx.AsyncClient, user: str) -> None:
    response = await client.options(
        f"/api/{user}/tasks",
        headers={
            "Origin": FRONTEND,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed
    assert "DELETE" in response.headers["Access-Control-Allow-Methods"]


async def test_cors_refuses_other_origins(client: httpx.AsyncClient, user: str) -> None:
    response = await client.options(
        f"/api/{user}/tasks",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert response.status_code == 400
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("token", [None, "bad", "other-user"])
async def test_errors_carry_cors_headers(client: httpx.AsyncClient, user: str, token: str | None) -> None:
    headers = {"Origin": FRONTEND}
    if token == "other-user":
        headers |= bearer(hs256("someone-else"))
    elif token:
        headers |= bearer(token)
    response = await client.get(f"/api/{user}/tasks", headers=headers)
    assert response.status_code in {401, 403}
    assert response.headers["Access-Control-Allow-Origin"] == FRONTEND


async def test_cors_exposes_location_and_total(client: httpx.AsyncClient, user: str, auth: dict[str, str]) -> None:
    response = await client.post(f"/api/{user}/tasks", json={"title": "x"}, headers={**auth, "Origin": FRONTEND})
    exposed = {h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"location", "x-total-count"} <= exposed


async def test_cors_origins_setting(postgres_url: str) -> None:
    app = create_app(make_settings(postgres_url, cors_origins="https://a.example,https://b.example"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        for origin in ("https://a.example", "https://b.example"):
            response = await http.get("/health", headers={"Origin": origin})
            assert response.headers["Access-Control-Allow-Origin"] == origin
        assert "Access-Control-Allow-Origin" not in (await http.get("/health", headers={"Origin": FRONTEND})).headers


async def test_openapi_documents_auth_errors_and_ids(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["BetterAuthJWT"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["BetterAuthJWT"]["description"],
    }
    operations = {op["operationId"]: (method, op) for path in schema["paths"].values() for method, op in path.items()}
    expected = {
        "list_tasks": {"200", "401", "403", "422"},
        "create_task": {"201", "401", "403", "413", "422"},
        "get_task": {"200", "401", "403", "404", "422"},
        "update_task": {"200", "401", "403", "404", "413", "422"},
        "delete_task": {"204", "401", "403", "404", "422"},
        "toggle_task": {"200", "401", "403", "404", "413", "422"},
    }
    for operation_id, codes in expected.items():
        _, operation = operations[operation_id]
        assert codes <= set(operation["responses"]), operation_id
        assert operation["security"] == [{"BetterAuthJWT": []}]
        assert operation["tags"] == ["tasks"]
    assert "/health" in schema["paths"]
    assert "/ready" in schema["paths"]


async def test_docs_page_and_switch(client: httpx.AsyncClient, postgres_url: str) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "swagger" in page.text.lower()
    app = create_app(make_settings(postgres_url, docs_enabled=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        assert (await http.get("/docs")).status_code == 404
        assert (await http.get("/openapi.json")).status_code == 404


async def test_production_never_touches_the_schema(postgres_url: str) -> None:
    """In production the lifespan applies no migrations (the deploy step does)."""
    async with fresh_database(postgres_url) as url:
        app = create_app(make_settings(url, environment="production", better_auth_secret="p" * 32))
        async with app.router.lifespan_context(app):
            pass
        connection = await pg_connect(url)
        assert await connection.fetchval("SELECT to_regclass('task')") is None
        await connection.close()


def test_app_attribute_is_built_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    built = FastAPI()
    monkeypatch.setattr(backend.main, "_app", None)
    monkeypatch.setattr(backend.main, "create_app", lambda: built)
    assert backend.main.app is built
    assert backend.main.app is built
    with pytest.raises(AttributeError):
        _ = backend.main.nothing


def test_unsafe_production_config_exits_with_a_clear_message(project_root: Path, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "ENVIRONMENT": "production", "BETTER_AUTH_SECRET": "too-short-secret"}
    result = run_python("-c", "import backend.main; backend.main.app", cwd=project_root, env=env)
    assert result.returncode == 1
    assert "BETTER_AUTH_SECRET must be at least 32 characters" in result.stderr
    assert "NEON_DATABASE_URL" in result.stderr
    assert "too-short-secret" not in result.stderr
    assert "Traceback" not in result.stderr


async def test_production_starts_without_the_database_and_reports_it(caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(
        "postgresql://nobody@127.0.0.1:9/none",
        environment="production",
        db_startup_timeout_seconds=0.3,
        db_connect_timeout_seconds=1,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        assert (await http.get("/ready")).status_code == 503
        assert (await http.get("/health")).status_code == 200
    assert "Starting without the database" in caplog.text
    assert "pool closed" in caplog.text


async def test_development_refuses_to_start_without_the_database() -> None:
    app = create_app(
        make_settings(
            "postgresql://nobody@127.0.0.1:9/none", db_startup_timeout_seconds=0.2, db_connect_timeout_seconds=1
        )
    )
    with pytest.raises(StartupAbort) as aborted:
        async with app.router.lifespan_context(app):
            pass
    assert str(aborted.value) == (
        "todo-api: NEON_DATABASE_URL: connection refused by 127.0.0.1:9 (still unavailable after 0.2 s)"
    )


async def test_openapi_declares_response_headers(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    collection = paths["/api/{user_id}/tasks"]
    assert "X-Total-Count" in collection["get"]["responses"]["200"]["headers"]
    assert "Location" in collection["post"]["responses"]["201"]["headers"]
    assert "WWW-Authenticate" in collection["get"]["responses"]["401"]["headers"]
    assert "Retry-After" in collection["get"]["responses"]["503"]["headers"]
    assert {"413", "431", "503"} <= set(paths["/ready"]["get"]["responses"])
    assert {"413", "431"} <= set(paths["/health"]["get"]["responses"])
    assert "503" not in paths["/health"]["get"]["responses"]  # /health never touches the database
    for operations in paths.values():
        for operation in operations.values():
            assert "431" in operation["responses"]

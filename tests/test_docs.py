"""/docs is served from the service's own assets, and the document's examples are the real answers."""

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from backend.docs import ASSETS_URL, ERROR_EXAMPLES, REQUEST_EXAMPLES, with_examples
from backend.main import create_app
from tests.support._proc import free_port
from tests.support.api import bearer, make_settings
from tests.tokens import hs256

pytestmark = pytest.mark.anyio

JSON_BODY_METHODS = {"post", "put", "patch"}


@pytest.fixture
async def docs_client(sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(sqlite_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_docs_page_loads_only_its_own_assets(docs_client: httpx.AsyncClient) -> None:
    page = await docs_client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text) + re.findall(r"url: ?'([^']+)'", page.text)
    assert urls
    assert all(url.startswith("/") for url in urls), urls  # nothing from another host (no CDN)
    assert "https://" not in page.text
    assert "http://" not in page.text
    assert '"persistAuthorization": true' in page.text
    for asset, kind in [("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css"), ("favicon.png", "png")]:
        assert f"{ASSETS_URL}/{asset}" in urls
        served = await docs_client.get(f"{ASSETS_URL}/{asset}")
        assert served.status_code == 200
        assert kind in served.headers["content-type"]
        assert len(served.content) > 1000


async def test_docs_and_assets_are_off_with_the_document(sqlite_url: str) -> None:
    app = create_app(make_settings(sqlite_url, docs_enabled=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        for path in ("/docs", f"{ASSETS_URL}/swagger-ui-bundle.js", "/openapi.json"):
            assert (await http.get(path)).status_code == 404


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in schema["paths"].items() for method, op in ops.items()]


async def test_every_body_and_answer_has_an_example(docs_client: httpx.AsyncClient) -> None:
    schema = (await docs_client.get("/openapi.json")).json()
    operations = _operations(schema)
    assert len(operations) == 8
    for path, method, operation in operations:
        if method in JSON_BODY_METHODS:
            body = operation["requestBody"]["content"]["application/json"]
            assert body["example"] == REQUEST_EXAMPLES[operation["operationId"]], (path, method)
        for status, response in operation["responses"].items():
            content = response.get("content", {}).get("application/json")
            if content is not None:
                assert "example" in content, (path, method, status)
    for status in ("401", "403", "404", "422", "503"):
        documented = [op["responses"][status] for _, _, op in operations if status in op["responses"]]
        assert documented, status
        assert all(r["content"]["application/json"]["example"] == ERROR_EXAMPLES[status] for r in documented)


async def test_health_documents_no_503_but_ready_does(docs_client: httpx.AsyncClient) -> None:
    paths = (await docs_client.get("/openapi.json")).json()["paths"]
    assert "503" not in paths["/health"]["get"]["responses"]
    assert "503" in paths["/ready"]["get"]["responses"]


async def test_documented_errors_are_the_real_answers(docs_client: httpx.AsyncClient) -> None:
    """401, 403, 404 and 422 as the service really sends them."""
    alice = bearer(hs256("alice-docs"))
    answers = {
        "401": await docs_client.get("/api/alice-docs/tasks"),
        "403": await docs_client.get("/api/bob-docs/tasks", headers=alice),
        "404": await docs_client.get("/api/alice-docs/tasks/987654321", headers=alice),
        "422": await docs_client.post("/api/alice-docs/tasks", headers=alice, json={"title": ""}),
    }
    for status, answer in answers.items():
        assert str(answer.status_code) == status
        assert answer.json() == ERROR_EXAMPLES[status]


async def test_documented_request_bodies_are_accepted(docs_client: httpx.AsyncClient) -> None:
    alice = bearer(hs256("alice-b"))
    created = await docs_client.post("/api/alice-b/tasks", headers=alice, json=REQUEST_EXAMPLES["create_task"])
    assert created.status_code == 201
    task = created.json()["id"]
    updated = await docs_client.put(f"/api/alice-b/tasks/{task}", headers=alice, json=REQUEST_EXAMPLES["update_task"])
    assert updated.status_code == 200
    assert updated.json()["title"] == REQUEST_EXAMPLES["update_task"]["title"]
    toggled = await docs_client.patch(
        f"/api/alice-b/tasks/{task}/complete", headers=alice, json=REQUEST_EXAMPLES["toggle_task"]
    )
    assert toggled.status_code == 200
    assert toggled.json()["completed"] is True


async def test_documented_503_is_the_real_answer() -> None:
    """/ready on a PostgreSQL that is not there (nothing listens on the port)."""
    app = create_app(make_settings(f"postgresql://postgres@127.0.0.1:{free_port()}/todo", db_connect_timeout_seconds=1))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        answer = await http.get("/ready")
    await app.state.database.close()
    assert answer.status_code == 503
    assert answer.json() == ERROR_EXAMPLES["503"]


def test_with_examples_leaves_its_input_alone() -> None:
    app = FastAPI()

    @app.get("/health", responses={503: {"description": "never"}})
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    original = app.openapi()
    changed = with_examples(original)
    assert "503" in original["paths"]["/health"]["get"]["responses"]
    assert "503" not in changed["paths"]["/health"]["get"]["responses"]

"""/docs that work offline and teach: Swagger UI served by the service, an OpenAPI with real examples.

FastAPI's own page loads Swagger UI from a CDN, so without internet access /docs is blank. Here the
assets come from the `fastapi-offline` wheel (Swagger UI 5, versioned in uv.lock) and are served
under /docs/assets; the page keeps the pasted token across reloads (`persistAuthorization`).

The examples are added to the generated document in one place instead of on every model and route:
they are the service's real answers (the same detail strings the code raises), and a route that
cannot give an answer does not document it (/health never touches the database: no 503).
"""

from copy import deepcopy
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from backend.errors import DATABASE_UNAVAILABLE
from backend.middleware import CONTENT_TOO_LARGE, HEADERS_TOO_LARGE
from backend.routes.tasks import TASK_NOT_FOUND

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
ASSETS_DIR = files("fastapi_offline") / "static"
SWAGGER_UI_PARAMETERS: dict[str, Any] = {
    "persistAuthorization": True,  # the token survives a reload (kept in the browser's localStorage)
    "validatorUrl": None,  # never send the document to an online validator
    "displayRequestDuration": True,
}

_TASK = {
    "id": 42,
    "user_id": "alice",
    "title": "Buy milk",
    "description": "2 litres, semi-skimmed",
    "completed": False,
    "created_at": "2025-01-31T09:15:00Z",
    "updated_at": "2025-01-31T09:15:00Z",
}
# Request bodies by operation id (the route's name).
REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "create_task": {"title": "Buy milk", "description": "2 litres, semi-skimmed", "completed": False},
    "update_task": {"title": "Buy oat milk", "completed": True},
    "toggle_task": {"completed": True},
}
# Error answers by status: what the service really sends.
ERROR_EXAMPLES: dict[str, dict[str, Any]] = {
    "401": {"detail": "Not authenticated"},
    "403": {"detail": "You may only access your own tasks"},
    "404": {"detail": TASK_NOT_FOUND},
    "413": {"detail": CONTENT_TOO_LARGE},
    "431": {"detail": HEADERS_TOO_LARGE},
    "422": {
        "detail": [
            {"loc": ["body", "title"], "msg": "String should have at least 1 character", "type": "string_too_short"}
        ]
    },
    "503": {"detail": DATABASE_UNAVAILABLE},
}
SUCCESS_EXAMPLES: dict[str, Any] = {
    "list_tasks": [_TASK],
    "create_task": _TASK,
    "get_task": _TASK,
    "update_task": {**_TASK, "title": "Buy oat milk", "completed": True, "updated_at": "2025-01-31T10:02:00Z"},
    "toggle_task": {**_TASK, "completed": True, "updated_at": "2025-01-31T10:02:00Z"},
    "health": {"status": "ok"},
    "ready": {"status": "ready"},
}
# Answers a route documents but can never give.
UNDELIVERABLE: dict[str, set[str]] = {"/health": {"503"}}


def install_docs(app: FastAPI) -> None:
    """Serve /docs from local assets and give the document its examples (app built with docs_url=None)."""
    openapi_url = app.openapi_url
    if openapi_url is None:
        return
    app.mount(ASSETS_URL, StaticFiles(directory=str(ASSETS_DIR)), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    app.add_api_route(DOCS_URL, swagger_ui, methods=["GET"], include_in_schema=False)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = with_examples(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_examples(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` with real examples on every JSON body, and no undeliverable answers."""
    schema = deepcopy(schema)
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses: dict[str, Any] = operation.get("responses", {})
            for status in UNDELIVERABLE.get(path, set()):
                responses.pop(status, None)
            name = operation.get("operationId", "")
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None and name in REQUEST_EXAMPLES:
                body["example"] = REQUEST_EXAMPLES[name]
            for status, response in responses.items():
                content = response.get("content", {}).get("application/json")
                if content is None:
                    continue
                example = ERROR_EXAMPLES.get(status) if status[0] in "45" else SUCCESS_EXAMPLES.get(name)
                if example is not None:
                    content["example"] = example
    return schema

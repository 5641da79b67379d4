"""A real browser drives the API from another origin, as the Next.js frontend does.

Debian's Chromium runs headless under Playwright. A static page (``client.html``) is served from
``http://127.0.0.1:<A>``; the API runs under uvicorn on ``http://127.0.0.1:<B>`` with only origin A
in ``CORS_ORIGINS``. The page gets its API URL, user and token from its URL fragment and calls the
API with ``fetch`` one step per button; every result (status, the headers CORS lets the page read,
body) is written into ``<pre id="results">``, which the test reads back and checks step by step.
A third origin (port C, not allowed) must be blocked by the browser itself (``fetch`` rejects with
``TypeError``) before anything reaches the database.

Runs twice: an HS256 token minted here (``credentials: "same-origin"``, fetch's default), and a real
Better Auth JWT verified through the JWKS of a real Better Auth server (``credentials: "include"``,
as ``axios`` with ``withCredentials`` sends). Screenshots of both pages go to the test's ``tmp_path``
(their paths are printed; ``pytest -s`` shows them).

Needs ``/usr/bin/chromium`` (Debian package ``chromium``; Playwright never downloads a browser here)
and, for the Better Auth run, Node. Without them the tests skip (one summary line each, see
``tests/support/tools.py``), or fail when ``CI`` is set.
"""

import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import pytest
from playwright.async_api import BrowserContext, Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from backend.main import create_app
from tests.interop.betterauth import BetterAuthUnavailableError, better_auth_server
from tests.servers import JWKSServer, serve
from tests.support import tools
from tests.support.api import TASK_KEYS, make_settings
from tests.support.tools import missing_tool
from tests.tokens import hs256

pytestmark = pytest.mark.anyio

PAGE_HTML = Path(__file__).with_name("client.html")

Credentials = Literal["same-origin", "include"]
Result = dict[str, Any]


# --- servers ------------------------------------------------------------------------------------


def page_app() -> Starlette:
    html = PAGE_HTML.read_text(encoding="utf-8")

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(html)

    return Starlette(routes=[Route("/", index)])


@dataclass(frozen=True)
class Origins:
    allowed: str
    """Serves the page and is the API's only CORS origin."""
    foreign: str
    """Serves the same page, but is not in CORS_ORIGINS."""


@asynccontextmanager
async def page_origins() -> AsyncIterator[Origins]:
    async with serve(page_app()) as allowed, serve(page_app()) as foreign:
        yield Origins(allowed=allowed, foreign=foreign)


@asynccontextmanager
async def api_server(database_url: str, *, better_auth_url: str, cors_origins: str) -> AsyncIterator[str]:
    """The real application (lifespan, so migrations, included) under uvicorn on a free port."""
    app = create_app(make_settings(database_url, better_auth_url=better_auth_url, cors_origins=cors_origins))
    async with app.router.lifespan_context(app), serve(app) as url:
        yield url


# --- the browser --------------------------------------------------------------------------------


@dataclass
class Client:
    """One tab with ``client.html``; ``step(name)`` clicks that step's button and returns its result."""

    page: Page
    origin: str
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def results(self) -> list[Result]:
        results: list[Result] = json.loads(await self.page.inner_text("#results"))
        return results

    async def step(self, name: str) -> Result:
        done = len(await self.results())
        await self.page.click(f"#step-{name}")
        await self.page.wait_for_function(
            "n => JSON.parse(document.getElementById('results').textContent).length > n", arg=done
        )
        result = (await self.results())[done]
        assert result["step"] == name, result
        return result

    async def screenshot(self, path: Path) -> None:
        await self.page.screenshot(path=path, full_page=True)
        print(f"screenshot of {self.origin} page: {path}")


async def open_client(
    context: BrowserContext, origin: str, *, api: str, user: str, token: str, credentials: Credentials
) -> Client:
    page = await context.new_page()
    client = Client(page=page, origin=origin)
    page.on("console", lambda message: client.console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: client.errors.append(str(error)))
    config = {"api": api, "user": user, "token": token, "credentials": credentials}
    await page.goto(f"{origin}/#{quote(json.dumps(config))}")
    await page.wait_for_selector("body[data-ready='1']")
    return client


# --- what the page must see ---------------------------------------------------------------------


def parse_time(value: str) -> datetime:
    assert value.endswith("Z"), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def answered(result: Result, status: int) -> Any:
    """The fetch resolved (CORS let the page read it) with `status`; returns the parsed body."""
    assert result["ok"], f"fetch rejected: {result}"
    assert result["type"] == "cors", result
    assert result["status"] == status, result
    # X-Request-ID is exposed: the page reads back the id it sent (or, without one, a new one).
    request_id = result["headers"].get("x-request-id")
    assert request_id, result["headers"]
    assert request_id == (result["requestId"] or request_id), result["headers"]
    if status != 204:
        assert result["headers"].get("content-type") == "application/json", result["headers"]
    return result["json"]


def cors_refusal(text: str) -> bool:
    return "has been blocked by CORS policy" in text


async def blocked_step(client: Client, name: str) -> None:
    """The browser refused the call: fetch rejected with a TypeError, and Chromium logged that CORS
    was the reason (so an unreachable server cannot pass for a blocked origin)."""
    async with client.page.expect_console_message(lambda message: cors_refusal(message.text)):
        result = await client.step(name)
        assert not result["ok"], f"a non-allowed origin could read the API: {result}"
        assert result["error"]["name"] == "TypeError", result


async def run_workflow(client: Client, user: str) -> None:
    """Create, list, get, update, toggle, delete (and the errors around them), asserted step by step."""
    assert answered(await client.step("simple"), 200) == {"status": "ok"}
    assert answered(await client.step("health"), 200) == {"status": "ok"}
    assert answered(await client.step("unauthenticated"), 401) == {"detail": "Not authenticated"}

    result = await client.step("create")
    created = answered(result, 201)
    assert set(created) == TASK_KEYS, created
    assert result["headers"].get("location") == f"/api/{user}/tasks/{created['id']}", result["headers"]
    assert result["headers"].get("cache-control") == "no-store", result["headers"]
    assert created["user_id"] == user
    assert created["title"] == "Buy oat milk \N{GLASS OF MILK}"
    assert created["description"] == "2 litres, caf\N{LATIN SMALL LETTER E WITH ACUTE} au lait"
    assert created["completed"] is False
    assert parse_time(created["created_at"]) == parse_time(created["updated_at"])

    result = await client.step("list")
    assert answered(result, 200) == [created]
    assert result["headers"].get("x-total-count") == "1", result["headers"]

    assert answered(await client.step("get"), 200) == created

    # Errors reach the page too (CORS headers on error responses), in the documented shapes.
    invalid = answered(await client.step("invalid"), 422)
    assert isinstance(invalid["detail"], list), invalid
    assert {tuple(error["loc"][:2]) for error in invalid["detail"]} == {("body", "title"), ("body", "completed")}
    assert all(set(error) == {"loc", "msg", "type"} for error in invalid["detail"]), invalid
    assert answered(await client.step("oversized"), 413) == {"detail": "Request body too large"}

    updated = answered(await client.step("update"), 200)
    assert updated == {
        **created,
        "title": "Buy almond milk",
        "description": None,
        "updated_at": updated["updated_at"],
    }
    assert parse_time(updated["updated_at"]) > parse_time(created["updated_at"])

    toggled = answered(await client.step("toggle"), 200)
    assert toggled["completed"] is True
    assert toggled["title"] == "Buy almond milk"
    assert parse_time(toggled["updated_at"]) > parse_time(updated["updated_at"])

    result = await client.step("delete")
    assert answered(result, 204) is None
    assert result["text"] == "", result

    assert answered(await client.step("gone"), 404) == {"detail": "Task not found"}


async def check_foreign_origin_blocked(
    browser: BrowserContext, origins: Origins, allowed: Client, *, api: str, user: str, token: str
) -> Client:
    """A page from a non-allowed origin gets nothing, and its preflighted POST never reaches the API."""
    foreign = await open_client(browser, origins.foreign, api=api, user=user, token=token, credentials="include")
    for step in ("simple", "health", "list", "create"):
        await blocked_step(foreign, step)
    # The blocked POST was stopped at its preflight: the allowed page still sees no task.
    result = await allowed.step("list")
    assert answered(result, 200) == []
    assert result["headers"].get("x-total-count") == "0", result["headers"]
    return foreign


async def finish(allowed: Client, foreign: Client, tmp_path: Path, label: str) -> None:
    """Screenshots of both pages (kept in the test's tmp_path), then: no script errors, and the
    allowed page never hit a CORS refusal."""
    await allowed.screenshot(tmp_path / f"{label}-allowed-origin.png")
    await foreign.screenshot(tmp_path / f"{label}-foreign-origin.png")
    assert allowed.errors == foreign.errors == [], (allowed.errors, foreign.errors)
    assert not any(cors_refusal(line) for line in allowed.console), allowed.console


# --- the tests ----------------------------------------------------------------------------------


async def test_browser_crud_with_hs256_token_and_cors(
    browser: BrowserContext, postgres_url: str, jwks: JWKSServer, new_user: Callable[[], str], tmp_path: Path
) -> None:
    user = new_user()
    token = hs256(user)
    started = time.monotonic()
    async with (
        page_origins() as origins,
        api_server(postgres_url, better_auth_url=jwks.url, cors_origins=origins.allowed) as api,
    ):
        allowed = await open_client(
            browser, origins.allowed, api=api, user=user, token=token, credentials="same-origin"
        )
        await run_workflow(allowed, user)
        foreign = await check_foreign_origin_blocked(browser, origins, allowed, api=api, user=user, token=token)
        await finish(allowed, foreign, tmp_path, "hs256")
    print(f"HS256 browser run: {time.monotonic() - started:.2f}s")


async def test_browser_crud_with_better_auth_jwt_and_credentials(
    browser: BrowserContext, postgres_url: str, tmp_path: Path
) -> None:
    if shutil.which("node") is None:
        missing_tool(*tools.NODE)
    started = time.monotonic()
    async with AsyncExitStack() as stack:
        try:
            better_auth = await stack.enter_async_context(better_auth_server("EdDSA"))
        except BetterAuthUnavailableError:
            missing_tool(*tools.NODE)
        issued = await better_auth.issue_token()
        origins = await stack.enter_async_context(page_origins())
        api = await stack.enter_async_context(
            api_server(postgres_url, better_auth_url=better_auth.base_url, cors_origins=origins.allowed)
        )
        allowed = await open_client(
            browser, origins.allowed, api=api, user=issued.user_id, token=issued.token, credentials="include"
        )
        await run_workflow(allowed, issued.user_id)
        foreign = await check_foreign_origin_blocked(
            browser, origins, allowed, api=api, user=issued.user_id, token=issued.token
        )
        await finish(allowed, foreign, tmp_path, "better-auth")
    print(f"Better Auth browser run: {time.monotonic() - started:.2f}s")

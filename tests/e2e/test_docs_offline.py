"""/docs renders in a real Chromium with no request leaving the machine, and keeps the token.

The service runs under uvicorn on 127.0.0.1; every request the page makes is recorded and must go
to 127.0.0.1 (FastAPI's default page would fetch Swagger UI from a CDN and stay blank offline).
"""

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from playwright.async_api import BrowserContext, Request

from backend.main import create_app
from tests.servers import serve
from tests.support.api import make_settings
from tests.tokens import hs256

pytestmark = pytest.mark.anyio

OPERATIONS = 8  # six task endpoints, /health and /ready


@pytest.fixture
async def api(sqlite_url: str) -> AsyncIterator[str]:
    app = create_app(make_settings(sqlite_url))
    async with app.router.lifespan_context(app), serve(app) as url:
        yield url


async def test_docs_render_offline_and_keep_the_token(browser: BrowserContext, api: str) -> None:
    requested: list[str] = []
    page = await browser.new_page()

    def record(request: Request) -> None:
        requested.append(request.url)

    page.on("request", record)
    await page.goto(f"{api}/docs")
    operations = page.locator(".opblock")
    await operations.nth(OPERATIONS - 1).wait_for()
    assert await operations.count() == OPERATIONS
    assert "/api/{user_id}/tasks" in await page.locator(".opblock-summary-path").first.inner_text()

    # Authorize once; after a reload the token is still there (persistAuthorization).
    token = hs256("docs-user")
    await page.locator("button.authorize").first.click()
    await page.locator(".modal-ux input").first.fill(token)
    await page.locator(".modal-ux button.authorize").click()
    await page.locator(".modal-ux button.btn-done").click()
    await page.reload()
    await operations.nth(OPERATIONS - 1).wait_for()
    stored = await page.evaluate("window.localStorage.getItem('authorized')")
    assert stored is not None
    assert token in stored

    hosts = {urlsplit(url).hostname for url in requested}
    assert requested
    assert hosts == {"127.0.0.1"}, requested
    assert any(url.endswith("/docs/assets/swagger-ui-bundle.js") for url in requested)
    assert any(url.endswith("/openapi.json") for url in requested)

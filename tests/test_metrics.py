"""Prometheus metrics (backend/metrics.py): off by default, route templates and statuses when on."""

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from backend.main import create_app
from tests.servers import JWKSServer
from tests.support.api import bearer, make_settings
from tests.tokens import SigningKey, hs256

pytestmark = pytest.mark.anyio


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parsed with prometheus-client's own parser: the exposition is valid Prometheus text."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_are_off_by_default(postgres_url: str) -> None:
    app = create_app(make_settings(postgres_url))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        assert (await http.get("/metrics")).status_code == 404


async def test_requests_are_counted_by_route_template_and_status(postgres_url: str) -> None:
    app = create_app(make_settings(postgres_url, metrics_enabled=True))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        for user in ("alice-m", "bob-m"):
            assert (await http.get(f"/api/{user}/tasks", headers=bearer(hs256(user)))).status_code == 200
        assert (await http.get("/api/carol-m/tasks")).status_code == 401
        assert (await http.request("BREW", "/nowhere")).status_code in {404, 405}
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "/metrics" not in app.openapi()["paths"]
    values = samples(response.text)
    route = "/api/{user_id}/tasks"
    assert values[("todo_http_requests_total", (("method", "GET"), ("route", route), ("status", "200")))] == 2
    assert values[("todo_http_requests_total", (("method", "GET"), ("route", route), ("status", "401")))] == 1
    latency = ("todo_http_request_duration_seconds_count", (("method", "GET"), ("route", route), ("status", "200")))
    assert values[latency] == 2
    unmatched = [key for key in values if key[0] == "todo_http_requests_total" and ("method", "OTHER") in key[1]]
    assert unmatched
    assert all(("route", "<unmatched>") in key[1] for key in unmatched)
    assert not [key for key in values if "alice-m" in str(key)]  # ids never become label values
    assert values[("todo_database_unavailable_total", ())] == 0
    assert values[("todo_db_pool_max", ())] >= 1
    assert ("todo_db_pool_waiting", ()) in values
    assert ("process_resident_memory_bytes", ()) in values


async def test_database_outages_are_counted() -> None:
    app = create_app(
        make_settings(
            "postgresql://nobody@127.0.0.1:9/none",
            environment="production",
            better_auth_secret="p" * 32,
            metrics_enabled=True,
            db_connect_timeout_seconds=1,
            db_startup_timeout_seconds=0,
        )
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        assert (await http.get("/ready")).status_code == 503
        assert (await http.get("/api/u/tasks", headers=bearer(hs256("u", secret="p" * 32)))).status_code == 503
        values = samples((await http.get("/metrics")).text)
    assert values[("todo_database_unavailable_total", ())] == 2


async def test_jwks_fetches_are_counted_by_outcome(postgres_url: str, jwks: JWKSServer, eddsa_key: SigningKey) -> None:
    app = create_app(make_settings(postgres_url, metrics_enabled=True, better_auth_url=jwks.url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        now = int(time.time())
        token = eddsa_key.sign({"sub": "jwks-m", "iss": jwks.url, "aud": jwks.url, "iat": now, "exp": now + 60})
        assert (await http.get("/api/jwks-m/tasks", headers=bearer(token))).status_code == 200
        values = samples((await http.get("/metrics")).text)
    assert values[("todo_jwks_fetches_total", (("outcome", "ok"),))] == 1
    assert values[("todo_jwks_fetches_total", (("outcome", "failed"),))] == 0

"""The FastAPI application: middleware, routers, error handlers and lifespan, built from Settings."""

import logging
import sys

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from backend import migrate
from backend.auth.jwt import JWKSCache, TokenPolicy, TokenVerifier
from backend.config import ConfigError, Settings, load_settings
from backend.db import open_database
from backend.docs import install_docs
from backend.errors import install_error_handlers
from backend.http import complete_methods
from backend.lifecycle import StartupFailureMessage, lifespan, ready
from backend.logs import configure_logging, service_version
from backend.middleware import EdgeMiddleware
from backend.openapi import EDGE_RESPONSES
from backend.routes import tasks

log = logging.getLogger("backend")


def build_verifier(settings: Settings) -> TokenVerifier:
    policy = TokenPolicy(
        secret=settings.secret,
        jwks_issuer=settings.better_auth_url,
        jwks_audience=settings.better_auth_url,
        leeway_seconds=settings.jwt_leeway_seconds,
        hs256_issuer=settings.jwt_issuer,
        hs256_audience=settings.jwt_audience,
        max_lifetime_seconds=settings.jwt_max_lifetime_seconds,
    )
    jwks = JWKSCache(
        settings.jwks_url,
        cache_seconds=settings.jwks_cache_seconds,
        cooldown_seconds=settings.jwks_refetch_cooldown_seconds,
        timeout_seconds=settings.jwks_fetch_timeout_seconds,
    )
    return TokenVerifier(policy, jwks)


def _operation_id(route: APIRoute) -> str:
    """Stable operation ids (`list_tasks`, ...) so generated clients get clean names."""
    return route.name


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    # Here, not at import: uvicorn, `fastapi run` and `python -m backend serve` all build the app
    # after setting up their own logging, which this replaces.
    configure_logging(settings.log_level, settings.log_format)
    app = FastAPI(
        title="todo-api",
        version=service_version(),
        summary="Tasks for the Todo app; every /api call needs a Better Auth bearer token.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        docs_url=None,  # served by backend.docs from local assets
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
        # No 307 to a URL rebuilt from the Host header: /api/u/tasks/ is a plain JSON 404.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.database = open_database(settings, migrate.schema_requirement())
    app.state.verifier = build_verifier(settings)

    install_error_handlers(app)
    metrics = None
    if settings.metrics_enabled:
        from backend.metrics import Metrics

        metrics = Metrics(database=app.state.database, jwks=app.state.verifier.jwks)
        app.add_route("/metrics", metrics.endpoint, methods=["GET"], include_in_schema=False)
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes, metrics=metrics)
    # Outermost, so every answer (413s and 500s included) carries CORS headers the browser needs.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=["Location", "X-Total-Count", "X-Request-ID", "Retry-After"],
        max_age=600,
    )
    app.add_middleware(StartupFailureMessage)
    app.include_router(tasks.router)
    app.add_api_route("/health", health, methods=["GET"], tags=["health"], responses=EDGE_RESPONSES)
    app.add_api_route("/ready", ready, methods=["GET"], tags=["health"], responses=EDGE_RESPONSES)
    install_docs(app)
    complete_methods(app)  # last: HEAD and 405 Allow for every route added above
    return app


async def health() -> dict[str, str]:
    """The process is up; says nothing about the database (that is /ready)."""
    return {"status": "ok"}


_app: FastAPI | None = None


def __getattr__(name: str) -> FastAPI:
    """`backend.main:app` is built on first use, so importing this module has no side effects."""
    global _app
    if name != "app":
        raise AttributeError(name)
    if _app is None:
        try:
            _app = create_app()
        except ConfigError as exc:
            sys.exit(f"todo-api: {exc}")
    return _app

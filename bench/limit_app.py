"""The "limit" app: the task API with nothing but what it must do, as the speed-of-light reference.

Raw Starlette, one asyncpg pool, PyJWT HS256 and orjson: each request verifies its token, checks the
path user against `sub` and runs exactly one SQL statement. Only its connection arguments come from
the service (backend.db.connect_args, so a URL means the same to both apps); its pool keeps asyncpg's
own statement cache. Whatever the real service spends beyond
this is framework, validation, ORM and pool overhead, which is what the benchmark wants to show.

Run: `DATABASE_URL=postgresql://... BETTER_AUTH_SECRET=... uvicorn bench.limit_app:app`.
`LIMIT_POOL_SIZE` (default 50) sets the pool; it is opened full at startup so no request waits
for a connect.
"""

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import jwt
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backend.database_url import parse_database_url
from backend.db import connect_args

TITLE_MAX = 200
DESCRIPTION_MAX = 1000
DEFAULT_LIMIT = 1000
# asyncpg's default: statements prepared once per connection (the service's arguments turn it off).
STATEMENT_CACHE_SIZE = 100
MAX_ID = 2**63 - 1
LEEWAY_SECONDS = 30

# Written out in full (no string building), so each is one prepared statement asyncpg caches per connection.
SQL_LIST = (
    "SELECT id, user_id, title, description, completed, created_at, updated_at, count(*) OVER () AS total "
    "FROM task WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
)
SQL_GET = (
    "SELECT id, user_id, title, description, completed, created_at, updated_at FROM task WHERE id = $1 AND user_id = $2"
)
SQL_CREATE = (
    "INSERT INTO task (user_id, title, description, completed, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $5) "
    "RETURNING id, user_id, title, description, completed, created_at, updated_at"
)
# One statement for any partial update: NULL means "keep", $4 says whether description was sent.
SQL_UPDATE = (
    "UPDATE task SET title = COALESCE($3, title), "
    "description = CASE WHEN $4::boolean THEN $5 ELSE description END, "
    "completed = COALESCE($6, completed), updated_at = $7 WHERE id = $1 AND user_id = $2 "
    "RETURNING id, user_id, title, description, completed, created_at, updated_at"
)
SQL_TOGGLE = (
    "UPDATE task SET completed = NOT completed, updated_at = $3 WHERE id = $1 AND user_id = $2 "
    "RETURNING id, user_id, title, description, completed, created_at, updated_at"
)
SQL_DELETE = "DELETE FROM task WHERE id = $1 AND user_id = $2 RETURNING id"

_JSON = "application/json"
_DUMP_OPTIONS = orjson.OPT_UTC_Z


class Reject(Exception):
    """Ends a request early with a JSON error; raised by the helpers, turned into a response once."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, option=_DUMP_OPTIONS), status, headers, _JSON)


_SECRET = os.environ.get("BETTER_AUTH_SECRET", "")


def _owner(request: Request) -> str:
    """The path user, once the bearer token is valid and its `sub` is that user (401/403 otherwise)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Reject(401, "Not authenticated", {"WWW-Authenticate": "Bearer"})
    try:
        claims = jwt.decode(
            token, _SECRET, algorithms=["HS256"], options={"require": ["exp", "sub"]}, leeway=LEEWAY_SECONDS
        )
    except jwt.PyJWTError:
        raise Reject(401, "Invalid token", {"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
    user_id: str = request.path_params["user_id"]
    if claims["sub"] != user_id:
        raise Reject(403, "You may only access your own tasks")
    return user_id


def _task_id(request: Request) -> int:
    task_id: int = request.path_params["task_id"]
    if not 1 <= task_id <= MAX_ID:
        raise Reject(422, "task_id must be between 1 and 2^63-1")
    return task_id


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise Reject(422, "Body must be JSON") from None
    if not isinstance(body, dict):
        raise Reject(422, "Body must be a JSON object")
    return body


def _title(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value := value.strip()) <= TITLE_MAX:
        raise Reject(422, f"title must be a string of 1 to {TITLE_MAX} characters")
    return value


def _description(value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > DESCRIPTION_MAX):
        raise Reject(422, f"description must be null or a string of at most {DESCRIPTION_MAX} characters")
    return value


def _completed(value: object) -> bool:
    if not isinstance(value, bool):
        raise Reject(422, "completed must be a boolean")
    return value


def _pool(request: Request) -> Any:
    return request.app.state.pool


Handler = Callable[[Request], Awaitable[Response]]


def _endpoint(handler: Handler) -> Handler:
    """Turn a `Reject` into its JSON response without a Starlette exception handler round trip."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Reject as exc:
            return _json({"detail": exc.detail}, exc.status, exc.headers)

    return endpoint


@_endpoint
async def tasks(request: Request) -> Response:
    """GET lists newest first with X-Total-Count (one windowed query); POST creates (201 + Location)."""
    owner = _owner(request)
    if request.method == "GET":
        raw_limit = request.query_params.get("limit", str(DEFAULT_LIMIT))
        limit = int(raw_limit) if raw_limit.isdigit() else 0
        if not 1 <= limit <= DEFAULT_LIMIT:
            raise Reject(422, f"limit must be between 1 and {DEFAULT_LIMIT}")
        rows = await _pool(request).fetch(SQL_LIST, owner, limit)
        total = rows[0]["total"] if rows else 0
        items = []
        for row in rows:
            item = dict(row)
            del item["total"]
            items.append(item)
        return _json(items, headers={"X-Total-Count": str(total)})
    body = await _body(request)
    row = await _pool(request).fetchrow(
        SQL_CREATE,
        owner,
        _title(body.get("title")),
        _description(body.get("description")),
        _completed(body.get("completed", False)),
        datetime.now(UTC),
    )
    return _json(dict(row), 201, {"Location": f"/api/{owner}/tasks/{row['id']}"})


@_endpoint
async def task(request: Request) -> Response:
    """GET, PUT (partial: absent fields are kept, updated_at always moves) and DELETE one task."""
    owner = _owner(request)
    task_id = _task_id(request)
    pool = _pool(request)
    if request.method == "GET":
        row = await pool.fetchrow(SQL_GET, task_id, owner)
    elif request.method == "PUT":
        body = await _body(request)
        title = _title(body["title"]) if "title" in body else None
        completed = _completed(body["completed"]) if "completed" in body else None
        has_description = "description" in body
        description = _description(body["description"]) if has_description else None
        row = await pool.fetchrow(
            SQL_UPDATE, task_id, owner, title, has_description, description, completed, datetime.now(UTC)
        )
    else:
        if await pool.fetchval(SQL_DELETE, task_id, owner) is None:
            raise Reject(404, "Task not found")
        return Response(status_code=204)
    if row is None:
        raise Reject(404, "Task not found")
    return _json(dict(row))


@_endpoint
async def toggle(request: Request) -> Response:
    """Flip `completed` in one atomic UPDATE."""
    owner = _owner(request)
    row = await _pool(request).fetchrow(SQL_TOGGLE, _task_id(request), owner, datetime.now(UTC))
    if row is None:
        raise Reject(404, "Task not found")
    return _json(dict(row))


async def _no_reset(connection: Any) -> None:
    """Skip asyncpg's release-time reset query: this app never changes session state, so it would
    only add a round trip (and a statement) to every request."""


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    if len(_SECRET) < 32:
        raise RuntimeError("BETTER_AUTH_SECRET must be set (at least 32 characters)")
    size = int(os.environ.get("LIMIT_POOL_SIZE", "50"))
    connection = {
        **connect_args(parse_database_url(os.environ["DATABASE_URL"])),
        "statement_cache_size": STATEMENT_CACHE_SIZE,
    }
    app.state.pool = await asyncpg.create_pool(min_size=size, max_size=size, reset=_no_reset, **connection)
    try:
        yield
    finally:
        await app.state.pool.close()


app = Starlette(
    routes=[
        Route("/api/{user_id}/tasks", tasks, methods=["GET", "POST"]),
        Route("/api/{user_id}/tasks/{task_id:int}", task, methods=["GET", "PUT", "DELETE"]),
        Route("/api/{user_id}/tasks/{task_id:int}/complete", toggle, methods=["PATCH"]),
    ],
    lifespan=lifespan,
)

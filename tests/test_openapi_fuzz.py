"""Schema fuzzing: the API must keep every promise its own `/openapi.json` makes, for any input.

Schemathesis generates positive and negative requests for every operation (coverage phase: boundary
and missing values; fuzzing phase: `MAX_EXAMPLES` random cases) and sends them in process over ASGI,
as a real user: the path `user_id` is pinned to the token's user, so requests get past the 403 and
reach validation, the handlers and the database. It runs on every backend of the `app` fixture.

Every schemathesis check is on (`CHECKS`), ST202 (a schema-valid request is never refused) and
ST205 (405 with `Allow`) included. Schemathesis sends undocumented methods for only one operation
per path, so `test_undocumented_methods_are_405_with_the_documented_allow` covers every path and
method deterministically.

Two constraints of schemathesis shape this module:
- `@schema.parametrize()` needs the schema at collection time, so it is loaded at import, over ASGI,
  from an app built by the same factory; each test first checks that the session app serves exactly
  that document. (`schemathesis.pytest.from_fixture` would load it from the fixture, but
  schemathesis 4.32 sets `Function._nodeid`, which pytest 9.2 no longer has.)
- Schemathesis runs ASGI apps in its own event-loop thread and starts and stops their lifespan per
  test. The session app's connection pool belongs to the anyio test loop, so requests go to a twin
  built from the session app's settings (same database, secret, JWKS URL); see `fuzz_target`.
"""

import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS as REGISTERED_CHECKS
from schemathesis.checks import CheckFunction, load_all_checks
from starlette.types import Receive, Scope, Send

from backend.main import create_app
from tests.support.api import bearer, make_settings
from tests.tokens import hs256

# Every check schemathesis has, including ST202 (positive_data_acceptance: a schema-valid request
# is never refused) and ST205 (unsupported_method/allow_header_conformance: a complete `Allow`).
load_all_checks()  # the registry fills lazily; without this it holds only not_a_server_error
CHECKS: list[CheckFunction] = [check for check in REGISTERED_CHECKS.get_all() if not isinstance(check, type)]
# One user for the whole module: the schema (and its pinned `user_id`) is built at import time.
FUZZ_USER = f"fuzz-{uuid.uuid4().hex}"
SEEDED_TASKS = 8
MAX_ID = 2**63 - 1
# Fuzzing-phase examples per operation; with the coverage phase, ~5 s per backend on 2 cores.
MAX_EXAMPLES = 40
TASK_OPERATIONS = ["list_tasks", "create_task", "get_task", "update_task", "delete_task", "toggle_task"]


# Schemathesis cases are generic in their operation type, which these tests never look at.
Case: TypeAlias = schemathesis.Case[Any]


class WithoutLifespan:
    """An ASGI app whose lifespan is a no-op: enough to serve `/openapi.json`, no database needed."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


def _load_schema() -> schemathesis.BaseSchema:
    """The app's OpenAPI over ASGI; `user_id` pinned to the fuzzing user on every generated case."""
    config = schemathesis.Config.from_dict({"parameters": {"path.user_id": FUZZ_USER}})
    source = create_app(make_settings("sqlite+aiosqlite:///:memory:"))
    return schemathesis.openapi.from_asgi("/openapi.json", WithoutLifespan(source), config=config)


schema = _load_schema()


@pytest.fixture
async def seeded_ids(client: httpx.AsyncClient, anyio_backend: str) -> AsyncIterator[list[int]]:
    """Fresh real tasks of the fuzzing user for each operation, so `{task_id}` can hit a real row."""
    served = (await client.get("/openapi.json")).json()
    assert served == schema.raw_schema, "the fuzzed schema must be the one the session app serves"
    auth = bearer(hs256(FUZZ_USER))
    ids = []
    for number in range(SEEDED_TASKS):
        response = await client.post(f"/api/{FUZZ_USER}/tasks", json={"title": f"seed {number}"}, headers=auth)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    yield ids
    listed = await client.get(f"/api/{FUZZ_USER}/tasks", headers=auth)
    for task in listed.json():
        await client.delete(f"/api/{FUZZ_USER}/tasks/{task['id']}", headers=auth)


@pytest.fixture
def fuzz_target(app: FastAPI, seeded_ids: list[int]) -> FastAPI:
    """A twin of the session app, built from its settings (same database, secret and JWKS URL).

    Schemathesis runs ASGI apps in its own event-loop thread and starts and stops their lifespan per
    test; the session app's connection pool belongs to the anyio test loop and must outlive this test.
    """
    twin: FastAPI = create_app(app.state.settings)
    return twin


@schema.auth()
class FuzzUserToken:
    """A fresh HS256 token of the fuzzing user; as configured auth, schemathesis knows it is real and
    probes each operation once without it and with a wrong one (`ignored_auth`)."""

    def get(self, case: Case, ctx: schemathesis.AuthContext) -> str:
        return hs256(FUZZ_USER)

    def set(self, case: Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers["Authorization"] = f"Bearer {data}"


def aim_at_seeded_task(case: Case, seeded_ids: list[int]) -> None:
    """Point the even valid generated `task_id`s (about half) at a seeded task, so `{task_id}`
    operations reach the success path too; odd ones mostly miss (404).

    A function of the generated value rather than an extra Hypothesis strategy, because
    `@schema.given` would switch off schemathesis' coverage phase (boundary and missing values).
    Invalid ids are kept: they may be what makes a negative case negative.
    """
    task_id = case.path_parameters.get("task_id")
    if type(task_id) is int and 1 <= task_id <= MAX_ID and task_id % 2 == 0:
        seeded = seeded_ids[task_id // 2 % len(seeded_ids)]
        # Assigned, not mutated in place, so schemathesis re-checks the case against the schema.
        case.path_parameters = {**case.path_parameters, "task_id": seeded}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    # Database round trips make timing meaningless on a loaded CI machine.
    deadline=None,
    # Fixtures are per operation on purpose (fresh seeded tasks), not per example.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_api_keeps_its_openapi_contract(case: Case, fuzz_target: FastAPI, seeded_ids: list[int]) -> None:
    """Any generated request, valid or not, gets a documented status and a schema-conformant body."""
    aim_at_seeded_task(case, seeded_ids)
    case.call_and_validate(checks=CHECKS, app=fuzz_target)


def test_every_task_operation_documents_503_and_413() -> None:
    """Gaps left by test_main's check: any task call can meet a database outage (503), and the edge
    middleware refuses an oversized body on every route, GET and DELETE included (413)."""
    openapi = create_app(make_settings("sqlite+aiosqlite:///:memory:")).openapi()
    operations = {op["operationId"]: op for path in openapi["paths"].values() for op in path.values()}
    for operation_id in TASK_OPERATIONS:
        responses = operations[operation_id]["responses"]
        for code in ("413", "503"):
            assert code in responses, (operation_id, code)
            schema_ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
            assert schema_ref == "#/components/schemas/ErrorDetail", (operation_id, code)
    assert {"200", "503"} <= set(operations["ready"]["responses"])
    assert "200" in operations["health"]["responses"]


@pytest.mark.anyio
@pytest.mark.parametrize("path", sorted(schema.raw_schema["paths"]))
async def test_undocumented_methods_are_405_with_the_documented_allow(client: httpx.AsyncClient, path: str) -> None:
    """ST205, deterministically: every path answers each method it does not document with 405 and an
    `Allow` listing exactly its documented methods (plus HEAD where GET is documented)."""
    documented = {method.upper() for method in schema.raw_schema["paths"][path]}
    allow = documented | ({"HEAD"} if "GET" in documented else set())
    url = path.format(user_id=FUZZ_USER, task_id=1)
    for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "QUERY"} - allow):
        response = await client.request(method, url, headers=bearer(hs256(FUZZ_USER)))
        assert response.status_code == 405, (method, path)
        assert set(response.headers["Allow"].split(", ")) == allow, (method, path)


def test_every_schemathesis_check_is_enabled() -> None:
    names = {getattr(check, "__name__", "") for check in CHECKS}
    assert {"positive_data_acceptance", "unsupported_method", "allow_header_conformance"} <= names
    assert len(CHECKS) == len(REGISTERED_CHECKS.get_all())

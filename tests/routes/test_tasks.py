"""The task endpoints' contract, on PostgreSQL and on the embedded SQLite default."""

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.api import TASK_ENDPOINTS, TASK_KEYS, Endpoint, bearer, each
from tests.tokens import hs256

pytestmark = pytest.mark.anyio


async def create(client: httpx.AsyncClient, user: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/api/{user}/tasks", json={"title": "a task", **body}, headers=bearer(hs256(user)))
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


# --- create -------------------------------------------------------------------------------------


async def test_create_returns_201_task_and_location(client: httpx.AsyncClient, user: str, auth: dict[str, str]) -> None:
    response = await client.post(
        f"/api/{user}/tasks", json={"title": "  Buy milk  ", "description": "2 litres"}, headers=auth
    )
    assert response.status_code == 201
    task = response.json()
    assert set(task) == TASK_KEYS
    assert task["title"] == "Buy milk"
    assert task["description"] == "2 litres"
    assert task["completed"] is False
    assert task["user_id"] == user
    assert isinstance(task["id"], int)
    assert task["id"] >= 1
    assert response.headers["Location"] == f"/api/{user}/tasks/{task['id']}"
    assert parse_time(task["created_at"]) == parse_time(task["updated_at"])
    fetched = await client.get(response.headers["Location"], headers=auth)
    assert fetched.json() == task


async def test_create_accepts_null_description_and_completed(
    client: httpx.AsyncClient, user: str, auth: dict[str, str]
) -> None:
    response = await client.post(
        f"/api/{user}/tasks", json={"title": "x", "description": None, "completed": True}, headers=auth
    )
    assert response.status_code == 201
    assert response.json()["description"] is None
    assert response.json()["completed"] is True


async def test_create_ignores_fields_clients_may_not_set(
    client: httpx.AsyncClient, user: str, auth: dict[str, str]
) -> None:
    body = {
        "title": "mine",
        "id": 999_999,
        "user_id": "someone-else",
        "created_at": "2000-01-01T00:00:00Z",
        "updated_at": "2000-01-01T00:00:00Z",
        "colour": "red",
    }
    response = await client.post(f"/api/{user}/tasks", json=body, headers=auth)
    assert response.status_code == 201
    task = response.json()
    assert task["user_id"] == user
    assert task["id"] != 999_999
    assert parse_time(task["created_at"]).year > 2000
    assert "colour" not in task


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({}, "title", id="missing-title"),
        pytest.param({"title": ""}, "title", id="empty-title"),
        pytest.param({"title": "   "}, "title", id="blank-title"),
        pytest.param({"title": None}, "title", id="null-title"),
        pytest.param({"title": 5}, "title", id="number-title"),
        pytest.param({"title": "é" * 201}, "title", id="201-code-points"),
        pytest.param({"title": "ok", "description": "d" * 1001}, "description", id="long-description"),
        pytest.param({"title": "a\x00b"}, "title", id="nul-in-title"),
        pytest.param({"title": "ok", "description": "a\x00"}, "description", id="nul-in-description"),
        pytest.param({"title": "ok", "completed": "true"}, "completed", id="completed-string"),
        pytest.param({"title": "ok", "completed": 1}, "completed", id="completed-number"),
    ],
)
async def test_create_rejects_invalid_bodies(
    client: httpx.AsyncClient, user: str, auth: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = await client.post(f"/api/{user}/tasks", json=body, headers=auth)
    assert response.status_code == 422
    assert any(field in map(str, error["loc"]) for error in response.json()["detail"])
    listing = await client.get(f"/api/{user}/tasks", headers=auth)
    assert listing.json() == []


async def test_title_limit_counts_code_points(client: httpx.AsyncClient, user: str, auth: dict[str, str]) -> None:
    title = "😀" * 200  # 200 code points, 800 UTF-8 bytes
    response = await client.post(f"/api/{user}/tasks", json={"title": title}, headers=auth)
    assert response.status_code == 201
    assert response.json()["title"] == title
    description = "ß" * 1000
    response = await client.post(f"/api/{user}/tasks", json={"title": "t", "description": description}, headers=auth)
    assert response.status_code == 201
    assert response.json()["description"] == description


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"title": "x"', id="truncated"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'["title"]', id="array"),
        pytest.param(b'"title"', id="string"),
        pytest.param(b'{"title": "\\ud800"}', id="lone-surrogate"),
    ],
)
async def test_create_rejects_malformed_json(
    client: httpx.AsyncClient, user: str, auth: dict[str, str], raw: bytes
) -> None:
    response = await client.post(
        f"/api/{user}/tasks", content=raw, headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "detail" in response.json()


async def test_sql_and_html_are_stored_verbatim(client: httpx.AsyncClient, user: str) -> None:
    title = "'); DROP TABLE task; --"
    description = "<script>alert('x')</script> ‮RTL‬ é"
    task = await create(client, user, title=title, description=description)
    assert (task["title"], task["description"]) == (title, description)


# --- list ---------------------------------------------------------------------------------------


async def test_list_is_newest_first_with_total(client: httpx.AsyncClient, user: str, auth: dict[str, str]) -> None:
    ids = [(await create(client, user, title=f"t{i}"))["id"] for i in range(3)]
    response = await client.get(f"/api/{user}/tasks", headers=auth)
    assert response.status_code == 200
    assert [task["id"] for task in response.json()] == ids[::-1]
    assert response.headers["X-Total-Count"] == "3"


async def test_list_of_new_user_is_empty(client: httpx.AsyncClient, user: str, auth: dict[str, str]) -> None:
    response = await client.get(f"/api/{user}/tasks", headers=auth)
    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["X-Total-Count"] == "0"


async def test_list_filters_by_status(client: httpx.AsyncClient, user: str, auth: dict[str, str]) -> None:
    done = await create(client, user, title="done", completed=True)
    todo = await create(client, user, title="todo")
    for status, expected in [("completed", [done]), ("pending", [todo]), ("all", [todo, done])]:
        response = await client.get(f"/api/{user}/tasks", params={"status": status}, headers=auth)
        assert [t["id"] for t in response.json()] == [t["id"] for t in expected], status
        assert response.headers["X-Total-Count"] == str(len(expected))


async def test_list_sorts_and_orders(client: httpx.AsyncClient, user: str, auth: dict[str, str]) -> None:
    b = await create(client, user, title="banana")
    a = await create(client, user, title="apple")
    c = await create(client, user, title="cherry")
    url = f"/api/{user}/tasks"
    by_title = await client.get(url, params={"sort": "title", "order": "asc"}, headers=auth)
    assert [t["title"] for t in by_title.json()] == ["apple", "banana", "cherry"]
    oldest_first = await client.get(url, params={"order": "asc"}, headers=auth)
    assert [t["id"] for t in oldest_first.json()] == [b["id"], a["id"], c["id"]]
    await client.put(f"{url}/{b['id']}", json={"title": "banana split"}, headers=auth)
    by_updated = await client.get(url, params={"sort": "updated"}, headers=auth)
    assert by_updated.json()[0]["id"] == b["id"]


async def test_list_pages_with_limit_and_offset(client: httpx.AsyncClient, user: str, auth: dict[str, str]) -> None:
    ids = [(await create(client, user, title=f"t{i}"))["id"] for i in range(5)][::-1]
    url = f"/api/{user}/tasks"
    page = await client.get(url, params={"limit": 2, "offset": 1}, headers=auth)
    assert [t["id"] for t in page.json()] == ids[1:3]
    assert page.headers["X-Total-Count"] == "5"
    past_end = await client.get(url, params={"limit": 2, "offset": 10}, headers=auth)
    assert past_end.json() == []
    assert past_end.headers["X-Total-Count"] == "5"


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"limit": 0}, id="limit-0"),
        pytest.param({"limit": 1001}, id="limit-1001"),
        pytest.param({"limit": "many"}, id="limit-text"),
        pytest.param({"offset": -1}, id="offset-negative"),
        pytest.param({"limit": "3.0"}, id="limit-float"),
        pytest.param({"limit": "1000.0"}, id="limit-1000.0"),
        pytest.param({"limit": "+3"}, id="limit-plus"),
        pytest.param({"limit": "0_3"}, id="limit-underscore"),
        pytest.param({"limit": " 3 "}, id="limit-spaces"),
        pytest.param({"limit": "03"}, id="limit-leading-zero"),
        pytest.param({"offset": "1e3"}, id="offset-exponent"),
        pytest.param({"offset": "-0"}, id="offset-minus-zero"),
        pytest.param({"offset": ""}, id="offset-empty"),
        pytest.param({"status": "done"}, id="status-unknown"),
        pytest.param({"sort": "id; drop table task"}, id="sort-unknown"),
        pytest.param({"order": "sideways"}, id="order-unknown"),
    ],
)
async def test_list_rejects_bad_query(
    client: httpx.AsyncClient, user: str, auth: dict[str, str], params: dict[str, Any]
) -> None:
    response = await client.get(f"/api/{user}/tasks", params=params, headers=auth)
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["query", next(iter(params))]]


# --- get / update / delete / toggle ---------------------------------------------------------------


async def test_get_returns_task(client: httpx.AsyncClient, user: str, auth: dict[str, str]) -> None:
    task = await create(client, user, description="d")
    response = await client.get(f"/api/{user}/tasks/{task['id']}", headers=auth)
    assert response.status_code == 200
    assert response.json() == task


async def test_update_is_partial_and_bumps_updated_at(
    client: httpx.AsyncClient, user: str, auth: dict[str, str]
) -> None:
    task = await create(client, user, title="old", description="keep me")
    url = f"/api/{user}/tasks/{task['id']}"
    response = await client.put(url, json={"title": "  new  "}, headers=auth)
    assert response.status_code == 200
    updated = response.json()
    assert updated["title"] == "new"
    assert updated["description"] == "keep me"
    assert updated["completed"] is False
    assert updated["created_at"] == task["created_at"]
    assert parse_time(updated["updated_at"]) > parse_time(task["updated_at"])
    cleared = (await client.put(url, json={"description": None, "completed": True}, headers=auth)).json()
    assert cleared["description"] is None
    assert cleared["completed"] is True
    assert cleared["title"] == "new"
    assert (await client.get(url, headers=auth)).json() == cleared


async def test_update_ignores_fields_clients_may_not_set(
    client: httpx.AsyncClient, user: str, auth: dict[str, str]
) -> None:
    task = await create(client, user)
    url = f"/api/{user}/tasks/{task['id']}"
    body = {"id": 1, "user_id": "mallory", "created_at": "2000-01-01T00:00:00Z"}
    response = await client.put(url, json=body, headers=auth)
    assert response.status_code == 200
    assert {k: response.json()[k] for k in ("id", "user_id", "created_at")} == {
        k: task[k] for k in ("id", "user_id", "created_at")
    }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"title": ""}, id="empty-title"),
        pytest.param({"title": None}, id="null-title"),
        pytest.param({"title": "x" * 201}, id="long-title"),
        pytest.param({"description": "x" * 1001}, id="long-description"),
        pytest.param({"completed": None}, id="null-completed"),
        pytest.param({"completed": "yes"}, id="string-completed"),
        pytest.param({"title": "a\x00"}, id="nul"),
    ],
)
async def test_update_validates_like_create(
    client: httpx.AsyncClient, user: str, auth: dict[str, str], body: dict[str, Any]
) -> None:
    task = await create(client, user)
    url = f"/api/{user}/tasks/{task['id']}"
    response = await client.put(url, json=body, headers=auth)
    assert response.status_code == 422
    assert (await client.get(url, headers=auth)).json() == task


async def test_delete_returns_204_then_404(client: httpx.AsyncClient, user: str, auth: dict[str, str]) -> None:
    task = await create(client, user)
    url = f"/api/{user}/tasks/{task['id']}"
    response = await client.delete(url, headers=auth)
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(url, headers=auth)).status_code == 404
    assert (await client.delete(url, headers=auth)).status_code == 404


async def test_toggle_flips_and_sets(client: httpx.AsyncClient, user: str, auth: dict[str, str]) -> None:
    task = await create(client, user)
    url = f"/api/{user}/tasks/{task['id']}/complete"
    first = await client.patch(url, headers=auth)
    assert first.status_code == 200
    assert first.json()["completed"] is True
    assert parse_time(first.json()["updated_at"]) > parse_time(task["updated_at"])
    assert (await client.patch(url, headers=auth)).json()["completed"] is False
    assert (await client.patch(url, json={"completed": True}, headers=auth)).json()["completed"] is True
    assert (await client.patch(url, json={"completed": True}, headers=auth)).json()["completed"] is True
    assert (await client.patch(url, json={"completed": "no"}, headers=auth)).status_code == 422
    assert (await client.patch(url, json={"done": True}, headers=auth)).status_code == 422


async def test_toggle_with_json_null_body_flips_like_no_body(
    client: httpx.AsyncClient, user: str, auth: dict[str, str]
) -> None:
    """Documented choice (specs/spec.md): a JSON `null` body means "no body", so it flips."""
    task = await create(client, user)
    url = f"/api/{user}/tasks/{task['id']}/complete"
    headers = {**auth, "Content-Type": "application/json"}
    assert (await client.patch(url, content=b"null", headers=headers)).json()["completed"] is True
    assert (await client.patch(url, content=b" null ", headers=headers)).json()["completed"] is False


@pytest.mark.parametrize(
    ("method", "body", "expected"),
    [
        pytest.param("POST", {"title": 5}, [(["body", "title"], "string_type")], id="post-title-number"),
        pytest.param("PUT", {"title": 5}, [(["body", "title"], "string_type")], id="put-title-number"),
        pytest.param("PUT", {"title": None}, [(["body", "title"], "string_type")], id="put-title-null"),
        pytest.param("PUT", {"completed": None}, [(["body", "completed"], "bool_type")], id="put-completed-null"),
        pytest.param("PUT", {"title": ""}, [(["body", "title"], "string_too_short")], id="put-title-empty"),
        pytest.param("PUT", {"title": "a\x00"}, [(["body", "title"], "value_error")], id="put-title-nul"),
        pytest.param(
            "PUT",
            {"title": 5, "completed": "no"},
            [(["body", "title"], "string_type"), (["body", "completed"], "bool_type")],
            id="put-two-problems",
        ),
        pytest.param("PATCH", {"completed": "no"}, [(["body", "completed"], "bool_type")], id="patch-completed"),
        pytest.param("PATCH", {}, [(["body", "completed"], "missing")], id="patch-missing"),
    ],
)
async def test_422_has_one_clean_entry_per_problem(
    client: httpx.AsyncClient,
    user: str,
    auth: dict[str, str],
    method: str,
    body: dict[str, Any],
    expected: list[tuple[list[str], str]],
) -> None:
    task = await create(client, user)
    path = {"POST": f"/api/{user}/tasks", "PUT": f"/api/{user}/tasks/{task['id']}"}.get(
        method, f"/api/{user}/tasks/{task['id']}/complete"
    )
    response = await client.request(method, path, json=body, headers=auth)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [(error["loc"], error["type"]) for error in detail] == expected
    assert all(set(error) == {"loc", "msg", "type"} for error in detail)


@pytest.mark.parametrize("endpoint", each(TASK_ENDPOINTS))
async def test_missing_and_foreign_tasks_are_the_same_404(
    client: httpx.AsyncClient, new_user: Callable[[], str], endpoint: Endpoint
) -> None:
    alice, bob = new_user(), new_user()
    bobs = await create(client, bob, title="bob's secret")
    headers = bearer(hs256(alice))
    foreign = await client.request(
        endpoint.method, endpoint.path(alice, bobs["id"]), json=endpoint.body, headers=headers
    )
    missing = await client.request(
        endpoint.method, endpoint.path(alice, 2**63 - 1), json=endpoint.body, headers=headers
    )
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json() == {"detail": "Task not found"}
    assert (await client.get(f"/api/{bob}/tasks/{bobs['id']}", headers=bearer(hs256(bob)))).json() == bobs


@pytest.mark.parametrize(
    "task_id", ["0", "-1", str(2**63), "abc", "1.5", "3.0", "+3", "0_3", "03", "%203%20", "3e0", "1" * 41]
)
@pytest.mark.parametrize("endpoint", each(TASK_ENDPOINTS))
async def test_out_of_range_ids_are_422(
    client: httpx.AsyncClient, user: str, auth: dict[str, str], endpoint: Endpoint, task_id: str
) -> None:
    response = await client.request(endpoint.method, endpoint.path(user, task_id), json=endpoint.body, headers=auth)
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["path", "task_id"]]


async def test_non_canonical_id_of_an_existing_task_is_422(
    client: httpx.AsyncClient, user: str, auth: dict[str, str]
) -> None:
    """`3.0`, `+3`, `03` never reach task 3: an id is written one way only."""
    task = await create(client, user)
    for spelling in (f"{task['id']}.0", f"+{task['id']}", f"0{task['id']}", f"{task['id']}.", f" {task['id']}"):
        response = await client.get(f"/api/{user}/tasks/{spelling}", headers=auth)
        assert response.status_code == 422, spelling


# --- isolation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", each())
async def test_each_endpoint_serves_only_the_owner(
    client: httpx.AsyncClient, new_user: Callable[[], str], endpoint: Endpoint
) -> None:
    alice, bob = new_user(), new_user()
    alices = await create(client, alice, title="alice's")
    path = endpoint.path(alice, alices["id"])
    as_bob = await client.request(endpoint.method, path, json=endpoint.body, headers=bearer(hs256(bob)))
    assert as_bob.status_code == 403
    assert "alice's" not in as_bob.text
    unchanged = await client.get(f"/api/{alice}/tasks", headers=bearer(hs256(alice)))
    assert unchanged.json() == [alices]
    as_alice = await client.request(endpoint.method, path, json=endpoint.body, headers=bearer(hs256(alice)))
    assert as_alice.status_code == endpoint.ok


async def test_user_ids_compare_exactly(client: httpx.AsyncClient, user: str) -> None:
    token = hs256(user)
    for variant in (user.upper(), f" {user}", f"{user} "):
        response = await client.get(f"/api/{variant}/tasks", headers=bearer(token))
        assert response.status_code == 403, variant


# --- concurrency ----------------------------------------------------------------------------------


async def test_fifty_concurrent_toggles_end_in_the_right_state(
    client: httpx.AsyncClient, user: str, auth: dict[str, str]
) -> None:
    task = await create(client, user)
    url = f"/api/{user}/tasks/{task['id']}/complete"
    responses = await asyncio.gather(*(client.patch(url, headers=auth) for _ in range(50)))
    assert [r.status_code for r in responses] == [200] * 50
    states = sorted(r.json()["completed"] for r in responses)
    assert states.count(True) == 25  # each toggle saw a distinct prior state
    final = await client.get(f"/api/{user}/tasks/{task['id']}", headers=auth)
    assert final.json()["completed"] is False


async def test_ten_concurrent_deletes_succeed_once(client: httpx.AsyncClient, user: str, auth: dict[str, str]) -> None:
    task = await create(client, user)
    url = f"/api/{user}/tasks/{task['id']}"
    responses = await asyncio.gather(*(client.delete(url, headers=auth) for _ in range(10)))
    assert sorted(r.status_code for r in responses) == [204] + [404] * 9

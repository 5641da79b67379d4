"""The contract check: a short walk through the six routes before any load is put on a target.

A fast wrong answer would otherwise look like a win, so each app must speak the API contract
(specs/spec.md) first: 401/403, list order and X-Total-Count, 201 + Location, 404 body, partial
update that moves updated_at, toggle, 204 then 404.
"""

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx

from bench.schema import COLUMNS

Result = dict[str, Any]
_TASK_KEYS = set(COLUMNS)


def _utc(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.utcoffset() == timedelta(0) else None


async def contract_check(base_url: str, user: str, token: str, other_user: str, expected_total: int) -> list[Result]:
    """A short, bounded walk through the six routes that proves a target speaks the contract
    before any load is put on it (a fast wrong answer would otherwise look like a win)."""
    checks: list[Result] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        checks.append({"check": name, "ok": bool(ok), "detail": "" if ok else detail})

    auth = {"Authorization": f"Bearer {token}"}
    base = f"/api/{user}/tasks"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        try:
            response = await client.get(base)
            check("401 without a token", response.status_code == 401, f"got {response.status_code}")
            response = await client.get(f"/api/{other_user}/tasks", headers=auth)
            check("403 for another user's path", response.status_code == 403, f"got {response.status_code}")
            response = await client.get(base, headers=auth)
            body = response.json()
            check("list: 200", response.status_code == 200, f"got {response.status_code}")
            check(
                "list: X-Total-Count",
                response.headers.get("x-total-count") == str(expected_total),
                f"got {response.headers.get('x-total-count')!r}, want {expected_total}",
            )
            check(
                "list: all of the user's tasks",
                isinstance(body, list) and len(body) == expected_total,
                f"got {len(body) if isinstance(body, list) else type(body).__name__}",
            )
            keys = [(item["created_at"], item["id"]) for item in body] if isinstance(body, list) else []
            check("list: newest first", keys == sorted(keys, reverse=True), "not ordered by created_at, id DESC")
            check(
                "list: task fields", bool(body) and set(body[0]) == _TASK_KEYS, f"got {sorted(body[0]) if body else []}"
            )

            response = await client.post(
                base, headers=auth, json={"title": "Contract", "description": None, "completed": False}
            )
            created = response.json()
            check("create: 201", response.status_code == 201, f"got {response.status_code}: {response.text[:200]}")
            task_id = created.get("id")
            check(
                "create: Location",
                response.headers.get("location") == f"{base}/{task_id}",
                f"got {response.headers.get('location')!r}",
            )
            check(
                "create: body",
                created.get("title") == "Contract"
                and created.get("user_id") == user
                and created.get("completed") is False
                and created.get("description") is None,
                str(created)[:200],
            )
            check(
                "create: UTC ISO 8601 timestamps",
                bool(_utc(created.get("created_at"))),
                f"got {created.get('created_at')!r}",
            )

            response = await client.get(f"{base}/{task_id}", headers=auth)
            check(
                "get: 200 and the same task",
                response.status_code == 200 and response.json() == created,
                f"got {response.status_code}",
            )
            response = await client.get(f"{base}/999999999", headers=auth)
            check(
                "get: 404 Task not found",
                response.status_code == 404 and response.json() == {"detail": "Task not found"},
                f"got {response.status_code} {response.text[:100]}",
            )

            await asyncio.sleep(0.01)  # so updated_at must visibly move
            response = await client.put(f"{base}/{task_id}", headers=auth, json={"title": "Renamed"})
            updated = response.json()
            before, after = _utc(created.get("updated_at")), _utc(updated.get("updated_at"))
            check(
                "update: 200, partial",
                response.status_code == 200 and updated.get("title") == "Renamed" and updated.get("completed") is False,
                f"got {response.status_code} {str(updated)[:200]}",
            )
            check(
                "update: updated_at bumps",
                bool(before and after and after > before),
                f"{created.get('updated_at')} -> {updated.get('updated_at')}",
            )

            response = await client.patch(f"{base}/{task_id}/complete", headers=auth)
            check(
                "toggle: flips completed",
                response.status_code == 200 and response.json().get("completed") is True,
                f"got {response.status_code} {response.text[:200]}",
            )

            response = await client.delete(f"{base}/{task_id}", headers=auth)
            check("delete: 204", response.status_code == 204, f"got {response.status_code}")
            response = await client.get(f"{base}/{task_id}", headers=auth)
            check("delete: then 404", response.status_code == 404, f"got {response.status_code}")
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
            check("no exception", False, f"{type(exc).__name__}: {exc}")
    return checks

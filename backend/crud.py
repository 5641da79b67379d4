"""Task queries: each one statement, scoped by owner, built once from the SQLModel table and reused.

Every statement answers in one round trip (writes use RETURNING), which is also what makes each
write atomic without an explicit transaction: the connection autocommits. Bind parameters carry
every value, so each statement is compiled once per process and only its parameters change.
"""

from collections.abc import Mapping, Sequence
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, insert, not_, select, update

from backend.db import Database, Record
from backend.models import Task, TaskCreate, TaskUpdate, utcnow

table = Task.__table__  # type: ignore[attr-defined]
columns = tuple(table.c)
_owned = (table.c.id == bindparam("task_id"), table.c.user_id == bindparam("owner"))

# A task as the database returns it; `models.task_json` turns it into the response body.
TaskRow = Record


class StatusFilter(StrEnum):
    all = "all"
    pending = "pending"
    completed = "completed"


class SortField(StrEnum):
    created = "created"
    updated = "updated"
    title = "title"  # type: ignore[assignment]  # shadows str.title(), harmless for an enum member


class SortOrder(StrEnum):
    asc = "asc"
    desc = "desc"


_SORT_COLUMNS = {
    SortField.created: table.c.created_at,
    SortField.updated: table.c.updated_at,
    SortField.title: table.c.title,
}
_INSERTED = ("title", "description", "completed", "user_id", "created_at", "updated_at")

_INSERT = insert(table).values({name: bindparam(name) for name in _INSERTED}).returning(*columns)
_GET = select(*columns).where(*_owned)
_DELETE = delete(table).where(*_owned).returning(table.c.id)
_TOGGLE = (
    update(table)
    .where(*_owned)
    .values(completed=not_(table.c.completed), updated_at=bindparam("now"))
    .returning(*columns)
)
_SET_COMPLETED = (
    update(table)
    .where(*_owned)
    .values(completed=bindparam("completed_value"), updated_at=bindparam("now"))
    .returning(*columns)
)


def _filtered(statement: Select[Any], status: StatusFilter) -> Select[Any]:
    statement = statement.where(table.c.user_id == bindparam("owner"))
    if status is not StatusFilter.all:
        statement = statement.where(table.c.completed == (status is StatusFilter.completed))
    return statement


@cache
def _list_statement(status: StatusFilter, sort: SortField, order: SortOrder) -> Select[Any]:
    """The page plus the total count of matching rows, in a single query (a window count)."""
    keys = (_SORT_COLUMNS[sort], table.c.id)
    ordering = [key.asc() if order is SortOrder.asc else key.desc() for key in keys]
    return (
        _filtered(select(*columns, func.count().over().label("total")), status)
        .order_by(*ordering)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )


@cache
def _count_statement(status: StatusFilter) -> Select[Any]:
    return _filtered(select(func.count().label("total")).select_from(table), status)


@cache
def _update_statement(fields: frozenset[str]) -> Any:
    values: dict[str, Any] = {name: bindparam(f"new_{name}") for name in sorted(fields)}
    return update(table).where(*_owned).values(**values, updated_at=bindparam("now")).returning(*columns)


async def list_tasks(
    database: Database,
    owner: str,
    *,
    status: StatusFilter,
    sort: SortField,
    order: SortOrder,
    limit: int,
    offset: int,
) -> tuple[Sequence[TaskRow], int]:
    """One page of the owner's tasks and how many match in all."""
    params = {"owner": owner, "limit": limit, "offset": offset}
    rows = await database.fetch(_list_statement(status, sort, order), params, idempotent=True)
    if rows:
        return rows, int(rows[0]["total"])
    if offset == 0:
        return [], 0
    # Past the last page: the window count came back empty, so ask for it on its own.
    counted = await database.fetchrow(_count_statement(status), {"owner": owner}, idempotent=True)
    return [], int(counted["total"]) if counted else 0


async def create_task(database: Database, owner: str, data: TaskCreate) -> TaskRow:
    now = utcnow()
    params: Mapping[str, Any] = {**data.model_dump(), "user_id": owner, "created_at": now, "updated_at": now}
    row = await database.fetchrow(_INSERT, params, idempotent=False)
    assert row is not None  # INSERT ... RETURNING always returns the row
    return row


async def get_task(database: Database, owner: str, task_id: int) -> TaskRow | None:
    return await database.fetchrow(_GET, {"task_id": task_id, "owner": owner}, idempotent=True)


async def update_task(database: Database, owner: str, task_id: int, changes: TaskUpdate) -> TaskRow | None:
    fields = changes.changes()
    params = {f"new_{name}": value for name, value in fields.items()}
    return await database.fetchrow(
        _update_statement(frozenset(fields)),
        {**params, "task_id": task_id, "owner": owner, "now": utcnow()},
        idempotent=False,
    )


async def toggle_task(database: Database, owner: str, task_id: int, completed: bool | None) -> TaskRow | None:
    """Flip completion atomically in the database, or set it when the client says which way."""
    params: dict[str, Any] = {"task_id": task_id, "owner": owner, "now": utcnow()}
    if completed is None:
        return await database.fetchrow(_TOGGLE, params, idempotent=False)
    return await database.fetchrow(_SET_COMPLETED, {**params, "completed_value": completed}, idempotent=False)


async def delete_task(database: Database, owner: str, task_id: int) -> bool:
    row = await database.fetchrow(_DELETE, {"task_id": task_id, "owner": owner}, idempotent=False)
    return row is not None

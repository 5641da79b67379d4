"""Task queries: each one statement, scoped by owner, built once from the SQLModel table and reused.

Every statement answers in one round trip (writes use RETURNING), which is also what makes each
write atomic without an explicit transaction: the connection autocommits.
"""

from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, insert, not_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.models import Task, TaskCreate, TaskRead, TaskUpdate, utcnow

table = Task.__table__  # type: ignore[attr-defined]
columns = tuple(table.c)
_owned = (table.c.id == bindparam("task_id"), table.c.user_id == bindparam("owner"))


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

_INSERT = insert(table).returning(*columns)
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
    return _filtered(select(func.count()).select_from(table), status)


@cache
def _update_statement(fields: frozenset[str]) -> Any:
    values: dict[str, Any] = {name: bindparam(f"new_{name}") for name in sorted(fields)}
    return update(table).where(*_owned).values(**values, updated_at=bindparam("now")).returning(*columns)


def _read(row: Row[Any]) -> TaskRead:
    return TaskRead.model_validate(row._mapping)


async def list_tasks(
    connection: AsyncConnection,
    owner: str,
    *,
    status: StatusFilter,
    sort: SortField,
    order: SortOrder,
    limit: int,
    offset: int,
) -> tuple[list[TaskRead], int]:
    """One page of the owner's tasks and how many match in all."""
    result = await connection.execute(
        _list_statement(status, sort, order),
        {"owner": owner, "limit": limit, "offset": offset},
    )
    rows = result.all()
    if rows:
        return [_read(row) for row in rows], rows[0].total
    if offset == 0:
        return [], 0
    # Past the last page: the window count came back empty, so ask for it on its own.
    total = await connection.scalar(_count_statement(status), {"owner": owner})
    return [], int(total or 0)


async def create_task(connection: AsyncConnection, owner: str, data: TaskCreate) -> TaskRead:
    now = utcnow()
    result = await connection.execute(
        _INSERT,
        {**data.model_dump(), "user_id": owner, "created_at": now, "updated_at": now},
    )
    return _read(result.one())


async def get_task(connection: AsyncConnection, owner: str, task_id: int) -> TaskRead | None:
    row = (await connection.execute(_GET, {"task_id": task_id, "owner": owner})).first()
    return _read(row) if row else None


async def update_task(connection: AsyncConnection, owner: str, task_id: int, changes: TaskUpdate) -> TaskRead | None:
    fields = changes.changes()
    params = {f"new_{name}": value for name, value in fields.items()}
    result = await connection.execute(
        _update_statement(frozenset(fields)),
        {**params, "task_id": task_id, "owner": owner, "now": utcnow()},
    )
    row = result.first()
    return _read(row) if row else None


async def toggle_task(connection: AsyncConnection, owner: str, task_id: int, completed: bool | None) -> TaskRead | None:
    """Flip completion atomically in the database, or set it when the client says which way."""
    params: dict[str, Any] = {"task_id": task_id, "owner": owner, "now": utcnow()}
    if completed is None:
        result = await connection.execute(_TOGGLE, params)
    else:
        result = await connection.execute(_SET_COMPLETED, {**params, "completed_value": completed})
    row = result.first()
    return _read(row) if row else None


async def delete_task(connection: AsyncConnection, owner: str, task_id: int) -> bool:
    result = await connection.execute(_DELETE, {"task_id": task_id, "owner": owner})
    return result.first() is not None

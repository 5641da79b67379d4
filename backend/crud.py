"""Task queries: each one statement, scoped by owner, built once from the SQLModel table and reused.

Every statement answers in one round trip (writes use RETURNING), which is also what makes each
write atomic without an explicit transaction: the connection autocommits. Bind parameters carry
every value, so each statement is compiled once per process and only its parameters change.

The seam with `db.py` is typed: each statement has a `TypedDict` of its bind parameters, built by
the small function next to it (a misspelt key is a mypy error, not a run-time one), and rows come
back as `TaskRow`s. `tests/test_crud.py` compiles every statement this module can build for asyncpg
and checks its bind names against its parameters and its columns against the row types.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any, TypedDict, cast

from sqlalchemy import Executable, Select, bindparam, delete, false, func, insert, not_, select, true, update
from sqlalchemy.sql.dml import ReturningUpdate

from backend.db import Database
from backend.models import Task, TaskCreate, TaskUpdate, utcnow
from backend.schemas import SortField, SortOrder, StatusFilter, TaskRow

table = Task.__table__  # type: ignore[attr-defined]
columns = tuple(table.c)
_owned = (table.c.id == bindparam("task_id"), table.c.user_id == bindparam("owner"))


class ListedRow(TaskRow):
    """A row of a list page: the task and how many rows match in all (a window count)."""

    total: int


class CountRow(TypedDict):
    total: int


async def _task(
    database: Database, statement: Executable, params: Mapping[str, object], *, idempotent: bool
) -> TaskRow | None:
    """The statement's row, if any: it returns the table's columns (tests/test_crud.py checks)."""
    return cast(TaskRow | None, await database.fetchrow(statement, params, idempotent=idempotent))


# --- list -------------------------------------------------------------------------------------


class OwnerParams(TypedDict):
    owner: str


class PageParams(OwnerParams):
    limit: int
    offset: int


_SORT_COLUMNS = {
    SortField.created: table.c.created_at,
    SortField.updated: table.c.updated_at,
    SortField.title: table.c.title,
}


def _filtered(statement: Select[Any], status: StatusFilter) -> Select[Any]:
    statement = statement.where(table.c.user_id == bindparam("owner"))
    if status is not StatusFilter.all:
        # A SQL constant, not a Python bool: that would become a bind parameter no caller fills.
        statement = statement.where(table.c.completed == (true() if status is StatusFilter.completed else false()))
    return statement


@cache
def list_statement(status: StatusFilter, sort: SortField, order: SortOrder) -> Select[Any]:
    """The page plus the total count of matching rows, in a single query (a window count)."""
    keys = (_SORT_COLUMNS[sort], table.c.id)
    ordering = [key.asc() if order is SortOrder.asc else key.desc() for key in keys]
    return (
        _filtered(select(*columns, func.count().over().label("total")), status)
        .order_by(*ordering)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )


def list_params(owner: str, limit: int, offset: int) -> PageParams:
    return {"owner": owner, "limit": limit, "offset": offset}


@cache
def _count_statement(status: StatusFilter) -> Select[Any]:
    return _filtered(select(func.count().label("total")).select_from(table), status)


def _count_params(owner: str) -> OwnerParams:
    return {"owner": owner}


# --- one task ---------------------------------------------------------------------------------


class InsertParams(TypedDict):
    title: str
    description: str | None
    completed: bool
    user_id: str
    created_at: datetime
    updated_at: datetime


_INSERT = insert(table).values({name: bindparam(name) for name in InsertParams.__annotations__}).returning(*columns)


def _insert_params(owner: str, data: TaskCreate) -> InsertParams:
    now = utcnow()
    return {
        "title": data.title,
        "description": data.description,
        "completed": data.completed,
        "user_id": owner,
        "created_at": now,
        "updated_at": now,
    }


class OwnedParams(TypedDict):
    task_id: int
    owner: str


_GET = select(*columns).where(*_owned)
_DELETE = delete(table).where(*_owned).returning(table.c.id)


def _owned_params(owner: str, task_id: int) -> OwnedParams:
    return {"task_id": task_id, "owner": owner}


class WriteParams(OwnedParams):
    now: datetime


_TOGGLE = (
    update(table)
    .where(*_owned)
    .values(completed=not_(table.c.completed), updated_at=bindparam("now"))
    .returning(*columns)
)


def _write_params(owner: str, task_id: int) -> WriteParams:
    return {"task_id": task_id, "owner": owner, "now": utcnow()}


class SetCompletedParams(WriteParams):
    completed_value: bool


_SET_COMPLETED = (
    update(table)
    .where(*_owned)
    .values(completed=bindparam("completed_value"), updated_at=bindparam("now"))
    .returning(*columns)
)


def _set_completed_params(owner: str, task_id: int, completed: bool) -> SetCompletedParams:
    return {**_write_params(owner, task_id), "completed_value": completed}


class UpdateParams(WriteParams, total=False):
    """Only the fields the client sent, each under `new_<field>`."""

    new_title: str
    new_description: str | None
    new_completed: bool


@cache
def _update_statement(fields: frozenset[str]) -> ReturningUpdate[Any]:
    values: dict[str, Any] = {name: bindparam(f"new_{name}") for name in sorted(fields)}
    return update(table).where(*_owned).values(**values, updated_at=bindparam("now")).returning(*columns)


def _update_params(owner: str, task_id: int, changes: TaskUpdate) -> UpdateParams:
    params: UpdateParams = {"task_id": task_id, "owner": owner, "now": utcnow()}
    sent = changes.fields_sent()
    if "title" in sent:
        params["new_title"] = changes.title
    if "description" in sent:
        params["new_description"] = changes.description
    if "completed" in sent:
        params["new_completed"] = changes.completed
    return params


# --- the queries ------------------------------------------------------------------------------


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
    statement = list_statement(status, sort, order)
    rows = cast(list[ListedRow], await database.fetch(statement, list_params(owner, limit, offset), idempotent=True))
    if rows:
        return rows, rows[0]["total"]
    if offset == 0:
        return [], 0
    # Past the last page: the window count came back empty, so ask for it on its own.
    counted = cast(
        CountRow | None, await database.fetchrow(_count_statement(status), _count_params(owner), idempotent=True)
    )
    return [], counted["total"] if counted else 0


async def create_task(database: Database, owner: str, data: TaskCreate) -> TaskRow:
    row = await _task(database, _INSERT, _insert_params(owner, data), idempotent=False)
    assert row is not None  # INSERT ... RETURNING always returns the row
    return row


async def get_task(database: Database, owner: str, task_id: int) -> TaskRow | None:
    return await _task(database, _GET, _owned_params(owner, task_id), idempotent=True)


async def update_task(database: Database, owner: str, task_id: int, changes: TaskUpdate) -> TaskRow | None:
    statement = _update_statement(changes.fields_sent())
    return await _task(database, statement, _update_params(owner, task_id, changes), idempotent=False)


async def toggle_task(database: Database, owner: str, task_id: int, completed: bool | None) -> TaskRow | None:
    """Flip completion atomically in the database, or set it when the client says which way."""
    if completed is None:
        return await _task(database, _TOGGLE, _write_params(owner, task_id), idempotent=False)
    return await _task(database, _SET_COMPLETED, _set_completed_params(owner, task_id, completed), idempotent=False)


async def delete_task(database: Database, owner: str, task_id: int) -> bool:
    row = await database.fetchrow(_DELETE, _owned_params(owner, task_id), idempotent=False)
    return row is not None

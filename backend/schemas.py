"""What crosses the layers: the list's query vocabulary, a task row's shape, and its JSON encoding.

They sit with the models (below `crud` and the routes) so that data flows one way: the routes
parse a `ListQuery` into these enums and `crud` turns them into SQL, but neither imports the other
for them; `crud` returns `TaskRow`s and the routes encode them here, once, with pydantic-core.
"""

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import TypedDict

from pydantic import TypeAdapter

from backend.models import TaskRead


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


class TaskRow(TypedDict):
    """A task as the database returns it: every column of the `task` table, by name.

    A TypedDict, not a model: rows arrive as dicts from both backends and are encoded straight to
    JSON, so a class instance per row would be built for nothing. `tests/test_crud.py` checks that
    every statement returning tasks returns exactly these columns.
    """

    id: int
    user_id: str
    title: str
    description: str | None
    completed: bool
    created_at: datetime
    updated_at: datetime


_task_adapter = TypeAdapter(TaskRead)
_tasks_adapter = TypeAdapter(list[TaskRead])


def task_json(row: TaskRow) -> bytes:
    """One row as the response body, validated and encoded once."""
    return _task_adapter.dump_json(_task_adapter.validate_python(row, from_attributes=True))


def tasks_json(rows: Sequence[TaskRow]) -> bytes:
    return _tasks_adapter.dump_json(_tasks_adapter.validate_python(rows, from_attributes=True))

"""What the benchmark takes from the service instead of restating it: the table and its columns
(backend.models.Task, created by the service's own migrations) and the list statement as
backend.crud builds it and the service compiles it for asyncpg.
"""

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import asyncpg as postgresql_asyncpg

from backend import crud
from backend.models import Task
from backend.schemas import SortField, SortOrder, StatusFilter

TABLE: Table = Task.__table__  # type: ignore[attr-defined]
TABLE_NAME = TABLE.name
COLUMNS: tuple[str, ...] = tuple(column.name for column in TABLE.columns)
# What a page of the default list asks for (the route's defaults: all tasks, newest first, up to 1000).
LIST_LIMIT = 1000


def service_list_statement(owner: str) -> tuple[str, list[Any]]:
    """The SQL and arguments the service runs for `GET /api/{owner}/tasks` with no query string."""
    statement = crud.list_statement(StatusFilter.all, SortField.created, SortOrder.desc)
    compiled = statement.compile(dialect=postgresql_asyncpg.dialect())  # type: ignore[no-untyped-call]
    params: dict[str, Any] = {**crud.list_params(owner, LIST_LIMIT, 0)}
    return compiled.string, [params[name] for name in compiled.positiontup or ()]

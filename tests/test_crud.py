"""Every statement `crud` can build survives compilation for asyncpg the way `backend/db.py` runs it.

`db.py` compiles each statement once for the asyncpg dialect and sends the SQL with positional
arguments taken from the parameters by bind name, skipping SQLAlchemy's bind processing. So a
statement must compile to plain SQL (no `POSTCOMPILE` placeholders, which expanding `IN` and
literal-execute parameters leave for a later step), no bind parameter's type may have a bind
processor (it would silently not run), its bind names must be exactly the keys its parameter
function builds, and its columns exactly the row type `crud` says it returns.
"""

import itertools
from datetime import timedelta
from typing import Any, is_typeddict

import pytest
from sqlalchemy import Boolean, ClauseElement, bindparam, select
from sqlalchemy.dialects.postgresql import asyncpg as postgresql_asyncpg
from sqlalchemy.sql.compiler import SQLCompiler

from backend import crud
from backend.models import TaskCreate, TaskUpdate
from backend.schemas import SortField, SortOrder, StatusFilter, TaskRow

DIALECT = postgresql_asyncpg.dialect()  # type: ignore[no-untyped-call]
OWNER = "alice"
SENT = {"title": "Buy milk", "description": None, "completed": True}


def _keys(row_type: Any) -> set[str]:
    assert is_typeddict(row_type)
    return set(row_type.__required_keys__ | row_type.__optional_keys__)


def _statements() -> list[tuple[str, ClauseElement, dict[str, Any], set[str]]]:
    """(name, statement, its parameters, the columns it returns) for everything `crud` runs."""
    task, listed, counted = _keys(TaskRow), _keys(crud.ListedRow), _keys(crud.CountRow)
    cases: list[tuple[str, ClauseElement, dict[str, Any], set[str]]] = []
    for status, sort, order in itertools.product(StatusFilter, SortField, SortOrder):
        page = crud.list_statement(status, sort, order)
        cases.append((f"list-{status}-{sort}-{order}", page, dict(crud.list_params(OWNER, 10, 0)), listed))
    for status in StatusFilter:
        cases.append((f"count-{status}", crud._count_statement(status), dict(crud._count_params(OWNER)), counted))
    for size in range(len(SENT) + 1):
        for fields in itertools.combinations(SENT, size):
            changes = TaskUpdate.model_validate({name: SENT[name] for name in fields})
            update = crud._update_statement(changes.fields_sent())
            params = dict(crud._update_params(OWNER, 1, changes))
            cases.append((f"update-{'+'.join(fields) or 'nothing'}", update, params, task))
    data = TaskCreate(title="Buy milk")
    cases += [
        ("insert", crud._INSERT, dict(crud._insert_params(OWNER, data)), task),
        ("get", crud._GET, dict(crud._owned_params(OWNER, 1)), task),
        ("delete", crud._DELETE, dict(crud._owned_params(OWNER, 1)), {"id"}),
        ("toggle", crud._TOGGLE, dict(crud._write_params(OWNER, 1)), task),
        ("set-completed", crud._SET_COMPLETED, dict(crud._set_completed_params(OWNER, 1, True)), task),
    ]
    return cases


STATEMENTS = _statements()


def hot_path_problems(statement: ClauseElement, params: dict[str, Any]) -> list[str]:
    """What would go wrong running `statement` with `params` the way db.py does (empty: nothing)."""
    compiled = statement.compile(dialect=DIALECT)
    assert isinstance(compiled, SQLCompiler)
    problems = []
    if "POSTCOMPILE" in compiled.string:
        problems.append("POSTCOMPILE placeholder (expanding or literal-execute parameter)")
    for name, bind in compiled.binds.items():
        if bind.type._cached_bind_processor(DIALECT) is not None:
            problems.append(f"bind processor skipped for {name} ({bind.type!r})")
    names = list(compiled.positiontup or ())
    if set(names) != set(params):
        problems.append(f"bind names {sorted(names)} are not the parameters {sorted(params)}")
    return problems


def test_every_variant_is_covered() -> None:
    """3 x 3 x 2 list statements, 3 counts, 8 update subsets (all fields down to none), 5 others."""
    names = [name for name, *_ in STATEMENTS]
    assert len(names) == len(set(names)) == 18 + 3 + 8 + 5


@pytest.mark.parametrize(("statement", "params"), [case[1:3] for case in STATEMENTS], ids=[c[0] for c in STATEMENTS])
def test_statement_compiles_to_plain_positional_sql(statement: ClauseElement, params: dict[str, Any]) -> None:
    assert hot_path_problems(statement, params) == []


@pytest.mark.parametrize(("statement", "columns"), [(c[1], c[3]) for c in STATEMENTS], ids=[c[0] for c in STATEMENTS])
def test_statement_returns_its_row_type(statement: Any, columns: set[str]) -> None:
    assert {column.key for column in statement.exported_columns} == columns


def test_the_check_catches_what_asyncpg_compilation_would_lose() -> None:
    """The rule is not vacuous: each kind of problem is reported."""
    table = crud.table
    expanding = select(table.c.id).where(table.c.id.in_(bindparam("ids", expanding=True)))
    assert any("POSTCOMPILE" in problem for problem in hot_path_problems(expanding, {"ids": [1]}))
    processed = select(table.c.id).where(bindparam("flag", type_=Boolean()) == table.c.completed)
    assert any("bind processor" in problem for problem in hot_path_problems(processed, {"flag": True}))
    assert any("not the parameters" in problem for problem in hot_path_problems(crud._GET, {"task_id": 1}))


def test_update_parameters_carry_only_the_fields_sent() -> None:
    changes = TaskUpdate.model_validate({"description": None})
    params = crud._update_params(OWNER, 7, changes)
    assert changes.fields_sent() == {"description"}
    assert set(params) == {"task_id", "owner", "now", "new_description"}
    assert (params["task_id"], params["owner"], params.get("new_description", "absent")) == (7, OWNER, None)


def test_insert_parameters_are_the_task_and_its_owner() -> None:
    params = crud._insert_params(OWNER, TaskCreate(title="Buy milk", description="2 litres"))
    assert params["created_at"] == params["updated_at"]
    assert params["created_at"].utcoffset() == timedelta(0)
    assert {key: value for key, value in params.items() if key not in {"created_at", "updated_at"}} == {
        "title": "Buy milk",
        "description": "2 litres",
        "completed": False,
        "user_id": OWNER,
    }

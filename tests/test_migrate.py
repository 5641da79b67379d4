"""Migrations: they build exactly the schema the models describe, and they reverse cleanly."""

import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlmodel import SQLModel

from backend.db import create_migration_engine
from backend.migrate import alembic_config, upgrade, upgrade_connection_isolation
from tests.support.api import make_settings
from tests.support.database import fresh_database

pytestmark = pytest.mark.anyio


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, SQLModel.metadata))


def _describe(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    return {
        "columns": {c["name"]: (str(c["type"]), c["nullable"]) for c in inspector.get_columns("task")},
        "indexes": {i["name"]: i["column_names"] for i in inspector.get_indexes("task")},
        "pk": inspector.get_pk_constraint("task")["constrained_columns"],
    }


async def test_migrated_schema_matches_the_models(database_url: str, app: Any) -> None:
    engine = create_migration_engine(make_settings(database_url))
    async with engine.connect() as connection:
        assert await connection.run_sync(_diff) == []
        schema = await connection.run_sync(_describe)
    await engine.dispose()
    assert schema["pk"] == ["id"]
    assert schema["indexes"]["ix_task_user_id_created_at"] == ["user_id", "created_at"]
    assert "ix_task_user_id" not in schema["indexes"]  # a prefix of the one above (migration 0002)
    assert schema["columns"]["title"] == ("VARCHAR(200)", False)
    assert schema["columns"]["description"] == ("VARCHAR(1000)", True)
    assert schema["columns"]["completed"][1] is False


def _downgrade_then_upgrade(connection: Connection) -> list[tuple[list[str], set[str | None]]]:
    """Tables and task indexes after each step: down to 0001, down to nothing, back up to head."""
    config = alembic_config()
    config.attributes["connection"] = connection
    seen = []
    for step, revision in ((command.downgrade, "0001"), (command.downgrade, "base"), (command.upgrade, "head")):
        step(config, revision)
        inspector = inspect(connection)
        tables = inspector.get_table_names()
        indexes = {index["name"] for index in inspector.get_indexes("task")} if "task" in tables else set()
        seen.append((tables, indexes))
    return seen


@pytest.fixture(params=["postgresql", "sqlite"])
async def scratch_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """A database of its own: the steps below drop the table the session's database serves from."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
        return
    async with fresh_database(request.getfixturevalue("admin_url")) as url:
        yield url


async def test_migrations_reverse_and_reapply(scratch_url: str) -> None:
    engine = create_migration_engine(make_settings(scratch_url))
    await upgrade(engine)
    await upgrade(engine)  # idempotent
    async with upgrade_connection_isolation(engine).connect() as connection:
        at_0001, at_base, at_head = await connection.run_sync(_downgrade_then_upgrade)
        await connection.commit()
    await engine.dispose()
    assert {"ix_task_user_id", "ix_task_user_id_created_at"} <= at_0001[1]
    assert "task" not in at_base[0]
    assert "task" in at_head[0]
    assert "ix_task_user_id" not in at_head[1]
    assert "ix_task_user_id_created_at" in at_head[1]


def test_the_alembic_command_line_migrates_the_configured_database(project_root: Path, tmp_path: Path) -> None:
    """`alembic upgrade head` (the developer's autogenerate workflow) reads the same settings as the service."""
    database = tmp_path / "alembic-cli.sqlite3"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("NEON_", "DATABASE_URL"))}
    result = subprocess.run(  # noqa: S603 (this interpreter, fixed arguments)
        [sys.executable, "-m", "alembic", "-c", str(project_root / "alembic.ini"), "upgrade", "head"],
        cwd=project_root,
        env={**environment, "DATABASE_URL": f"sqlite:///{database}", "BETTER_AUTH_SECRET": "s" * 32},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"task", "alembic_version"} <= tables

"""Migrations: they build exactly the schema the models describe, and they reverse cleanly."""

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
    assert schema["indexes"]["ix_task_user_id"] == ["user_id"]
    assert schema["columns"]["title"] == ("VARCHAR(200)", False)
    assert schema["columns"]["description"] == ("VARCHAR(1000)", True)
    assert schema["columns"]["completed"][1] is False


def _downgrade_then_upgrade(connection: Connection) -> list[str]:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, "base")
    after_down = inspect(connection).get_table_names()
    command.upgrade(config, "head")
    return after_down


async def test_migrations_reverse_and_reapply(tmp_path: Any) -> None:
    engine = create_migration_engine(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"))
    await upgrade(engine)
    await upgrade(engine)  # idempotent
    async with upgrade_connection_isolation(engine).connect() as connection:
        tables_after_downgrade = await connection.run_sync(_downgrade_then_upgrade)
        await connection.commit()
        assert await connection.run_sync(lambda c: inspect(c).has_table("task"))
    assert "task" not in tables_after_downgrade
    await engine.dispose()

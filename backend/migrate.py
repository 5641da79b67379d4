"""Apply Alembic migrations: from the CLI on deploy, or at startup in development."""

import logging

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.config import BACKEND_DIR, Settings
from backend.db import SchemaRequirement, create_migration_engine, unwrap_unavailable

log = logging.getLogger("backend.migrate")

MIGRATIONS_DIR = BACKEND_DIR / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    return config


def schema_requirement() -> SchemaRequirement:
    """The revision this code needs (the migrations' head) and every revision it knows."""
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    assert head is not None, "the migrations have a single head"
    return SchemaRequirement(head=head, known=frozenset(script.revision for script in scripts.walk_revisions()))


def upgrade_connection_isolation(engine: AsyncEngine) -> AsyncEngine:
    """The app's connections autocommit; migrations must run in one transaction instead."""
    isolation = "SERIALIZABLE" if engine.dialect.name == "sqlite" else "READ COMMITTED"
    return engine.execution_options(isolation_level=isolation)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with upgrade_connection_isolation(engine).connect() as connection:
        await connection.run_sync(_upgrade, revision)
        await connection.commit()
    log.info("Database schema is at %s", revision)


async def upgrade_database(settings: Settings, revision: str = "head") -> None:
    """Upgrade the configured database through a short-lived engine of its own.

    A database that cannot be used raises `DatabaseUnavailable`, unwrapped from SQLAlchemy's errors.
    """
    engine = create_migration_engine(settings)
    try:
        await upgrade(engine, revision)
    except Exception as exc:
        unavailable = unwrap_unavailable(exc)
        if unavailable is None:
            raise
        raise unavailable from exc
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)

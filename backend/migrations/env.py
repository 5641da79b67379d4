"""Alembic environment: runs on a connection we hand it, or on the configured database."""

import asyncio

from alembic import context
from sqlalchemy import Connection, text
from sqlmodel import SQLModel

import backend.models  # noqa: F401  (registers the tables on SQLModel.metadata)

# Serialises concurrent upgrades (several workers starting at once) on PostgreSQL.
MIGRATION_LOCK_ID = 7_246_131_001

target_metadata = SQLModel.metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})"))
        context.run_migrations()


async def run_on_configured_database() -> None:
    from backend.config import load_settings
    from backend.db import create_migration_engine
    from backend.migrate import upgrade_connection_isolation

    engine = create_migration_engine(load_settings())
    try:
        async with upgrade_connection_isolation(engine).connect() as connection:
            await connection.run_sync(run_on)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Offline (--sql) migrations are not supported; run them against a database.")

given = context.config.attributes.get("connection")
if given is not None:
    run_on(given)
else:
    asyncio.run(run_on_configured_database())

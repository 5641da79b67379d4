"""Seed the task table fast (binary COPY) and mint one long-lived HS256 token per user for wrk.

The table and its columns come from the service (bench/schema.py); the schema is the one its
migrations create. Rows get explicit ids and deterministic timestamps, so a reset (TRUNCATE + the same COPY) gives
every scenario the same table and the same ids, and the tokens file stays valid across resets.

CLI: `python -m bench.seed --database-url postgresql://... --secret <32+ chars> --out tokens.tsv`.
"""

import argparse
import asyncio
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any

import jwt

from backend.database_url import parse_database_url
from backend.db import connect
from bench.schema import COLUMNS, TABLE_NAME

DEFAULT_USERS = 1000
DEFAULT_TASKS_PER_USER = 20
TOKEN_TTL_SECONDS = 30 * 24 * 3600
# Fixed, so two seeds of the same shape are byte-for-byte the same table.
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)

Row = tuple[Any, ...]
_in_table_order = itemgetter(*COLUMNS)  # a column the seed does not fill fails here, by name


@dataclass
class Dataset:
    """Rows to COPY, and which task ids belong to which user (in groups wrk can address)."""

    rows: list[Row] = field(default_factory=list)
    ids: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def add(self, group: str, user_ids: Iterable[str], per_user: int) -> None:
        """Give each user `per_user` new tasks, recorded under `group` (e.g. "base", "delete")."""
        owned = self.ids.setdefault(group, {})
        for user_id in user_ids:
            mine = owned.setdefault(user_id, [])
            for _ in range(per_user):
                task_id = len(self.rows) + 1
                created = EPOCH + timedelta(seconds=task_id)
                values = {
                    "id": task_id,
                    "user_id": user_id,
                    "title": f"Task {task_id}",
                    "description": None if task_id % 2 else f"Description of task {task_id}",
                    "completed": task_id % 3 == 0,
                    "created_at": created,
                    "updated_at": created,
                }
                self.rows.append(_in_table_order(values))
                mine.append(task_id)


def user_ids(count: int, prefix: str = "bench-user") -> list[str]:
    return [f"{prefix}-{number:05d}" for number in range(count)]


def build(
    users: Sequence[str], per_user: int, *, extra_groups: Mapping[str, tuple[Sequence[str], int]] | None = None
) -> Dataset:
    """The standard table: `per_user` tasks for each user in group "base", plus any extra groups."""
    dataset = Dataset()
    dataset.add("base", users, per_user)
    for group, (members, count) in (extra_groups or {}).items():
        dataset.add(group, members, count)
    return dataset


def mint_token(secret: str, user_id: str, ttl_seconds: int = TOKEN_TTL_SECONDS) -> str:
    """What Better Auth would hand the browser: HS256, `sub` = user id, `exp` required."""
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl_seconds}, secret, algorithm="HS256")


def write_tokens(path: Path, secret: str, owned: dict[str, list[int]]) -> int:
    """One line per user for wrk's Lua: `user_id<TAB>token<TAB>id,id,...`; returns the user count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{user}\t{mint_token(secret, user)}\t{','.join(map(str, ids))}\n" for user, ids in owned.items()]
    path.write_text("".join(lines))
    return len(lines)


async def load(connection: Any, dataset: Dataset) -> None:
    """Replace the table's contents with `dataset`: TRUNCATE, binary COPY, identity past the max id,
    then VACUUM ANALYZE so plans and hint bits are the same for every run."""
    async with connection.transaction():  # a straggling request waits instead of seeing a half-loaded table
        await connection.execute(f"TRUNCATE {TABLE_NAME} RESTART IDENTITY")
        await connection.copy_records_to_table(TABLE_NAME, records=dataset.rows, columns=COLUMNS)
        await connection.execute(
            "SELECT setval(pg_get_serial_sequence($1, 'id'), $2::bigint, true)", TABLE_NAME, max(len(dataset.rows), 1)
        )
    await connection.execute(f"VACUUM (ANALYZE) {TABLE_NAME}")


async def fill(connection: Any, total_rows: int, filler_users: int = 50_000) -> int:
    """Grow the table to `total_rows` with other users' tasks, generated server-side; returns rows added."""
    current = int(await connection.fetchval(f"SELECT count(*) FROM {TABLE_NAME}"))  # noqa: S608 (the model's name)
    missing = max(total_rows - current, 0)
    if missing:
        generated = {  # one SQL expression per column; `g` counts the generated rows
            "user_id": "'filler-' || (g % $2)",
            "title": "'Filler task ' || g",
            "description": "NULL",
            "completed": "g % 3 = 0",
            "created_at": "$3::timestamptz - g * interval '1 second'",
            "updated_at": "$3::timestamptz - g * interval '1 second'",
        }
        names = [name for name in COLUMNS if name != "id"]
        await connection.execute(
            f"INSERT INTO {TABLE_NAME} ({', '.join(names)}) "  # noqa: S608 (the model's names)
            f"SELECT {', '.join(generated[name] for name in names)} FROM generate_series(1, $1::bigint) AS g",
            missing,
            filler_users,
            EPOCH,
        )
        await connection.execute(f"VACUUM (ANALYZE) {TABLE_NAME}")
    return missing


async def _main(args: argparse.Namespace) -> None:
    connection = await connect(parse_database_url(args.database_url))
    try:
        if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", TABLE_NAME):
            raise SystemExit(f"no {TABLE_NAME} table: apply the service's migrations first (python -m backend migrate)")
        dataset = build(user_ids(args.users), args.tasks)
        started = time.perf_counter()
        await load(connection, dataset)
        elapsed = time.perf_counter() - started
    finally:
        await connection.close()
    count = write_tokens(args.out, args.secret, dataset.ids["base"])
    print(f"seeded {len(dataset.rows)} tasks for {count} users in {elapsed:.2f}s; tokens in {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL"), required="DATABASE_URL" not in os.environ
    )
    parser.add_argument(
        "--secret", default=os.environ.get("BETTER_AUTH_SECRET"), required="BETTER_AUTH_SECRET" not in os.environ
    )
    parser.add_argument("--users", type=int, default=DEFAULT_USERS)
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS_PER_USER, help="tasks per user")
    parser.add_argument("--out", type=Path, default=Path("bench/results/work/tokens.tsv"))
    args = parser.parse_args()
    if len(args.secret) < 32:
        parser.error("the secret must be at least 32 characters (the service refuses shorter ones)")
    try:
        parse_database_url(args.database_url)
    except ValueError as exc:
        parser.error(f"--database-url: {exc}")  # the parser's reason echoes no password
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()

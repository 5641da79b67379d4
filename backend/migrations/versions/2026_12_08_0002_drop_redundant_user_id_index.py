"""Drop ix_task_user_id: ix_task_user_id_created_at starts with user_id and serves every lookup it did.

Every query filters on user_id; the composite index answers those alone too, so the single-column
one only cost a write on every insert (and space).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index(op.f("ix_task_user_id"), table_name="task")


def downgrade() -> None:
    op.create_index(op.f("ix_task_user_id"), "task", ["user_id"])

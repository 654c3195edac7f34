"""The columns Store() used to add when it opened a store (_add_missing_columns, before migrations).

A store made before they existed may miss them (0001 leaves a table that is there as it is); one made
by the baseline's release, or by 0001, has them all, and this revision leaves it alone.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 02:50:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS: dict[str, list[sa.Column[Any]]] = {
    "jobs": [sa.Column("tags", sa.JSON(), nullable=True), sa.Column("artifact_data", sa.JSON(), nullable=True)],
    "task_results": [sa.Column("role", sa.String(length=120), nullable=True)],
    "api_tokens": [sa.Column("kind", sa.String(length=16), nullable=True)],
}


def upgrade() -> None:
    insp = sa.inspect(op.get_bind())
    for table, columns in COLUMNS.items():
        have = {c["name"] for c in insp.get_columns(table)}
        missing = [c for c in columns if c.name not in have]
        if missing:
            with op.batch_alter_table(table) as batch_op:
                for column in missing:
                    batch_op.add_column(column)


def downgrade() -> None:
    pass  # the baseline has these columns too

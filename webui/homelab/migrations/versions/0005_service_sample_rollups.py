"""Service sample rollups: the retention pass (homelab.history.thin_service_samples) merges the
probes of each 5 minutes older than 24 h into one row, and these columns say what that row stands
for: how many probes (`samples`), how many of them were up (`up_samples`), how many had a response
time (`response_samples`, the weight of the row's mean `response_ms`) and the slowest one
(`response_ms_max`). All four are NULL on a probe's own row, so every existing sample keeps its
meaning (one probe) and no row is rewritten.

Like 0002, it adds only the columns that are missing, so a store that already has them (one that
lost its alembic_version row and is upgraded again from 0001) is left as it is.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 18:40:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS: dict[str, list[sa.Column[Any]]] = {
    "service_samples": [
        sa.Column("samples", sa.Integer(), nullable=True),
        sa.Column("up_samples", sa.Integer(), nullable=True),
        sa.Column("response_samples", sa.Integer(), nullable=True),
        sa.Column("response_ms_max", sa.Float(), nullable=True),
    ],
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
    with op.batch_alter_table("service_samples") as batch_op:
        for column in COLUMNS["service_samples"]:
            batch_op.drop_column(column.name)

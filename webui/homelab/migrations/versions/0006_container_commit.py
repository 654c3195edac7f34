"""Container samples carry the commit a container was built from: the full sha of its docker label
homelab.commit (the delivery pipeline, playbooks/ops/deliver.yml, sets it), read by the facts cycle
so the dashboard and a service page say which commit runs. NULL on the rows stored before (no label
was read then); the facts cycle stores "" for a container without one.

Like 0002 and 0005, it adds the column only when it is missing, so a store that already has it (one
that lost its alembic_version row and is upgraded again from 0001) is left as it is.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS: dict[str, list[sa.Column[Any]]] = {
    "container_samples": [sa.Column("git_commit", sa.String(length=40), nullable=True)],
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
    with op.batch_alter_table("container_samples") as batch_op:
        batch_op.drop_column("git_commit")

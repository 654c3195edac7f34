"""Service status samples: what the status cycle (homelab.status) observed of each service, an
HTTP and a TLS probe from the controller every minute, kept for the retention the settings say.

A new table only: every store at 0002 gets it empty, nothing else changes. Like the baseline, it
creates only what is missing, so a store that already has the table (one that lost its
alembic_version row and is upgraded again from 0001) is left as it is, its samples kept.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 07:20:22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("response_ms", sa.Float(), nullable=True),
        sa.Column("tls_days_left", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(op.f("ix_service_samples_at"), "service_samples", ["at"], unique=False, if_not_exists=True)
    op.create_index(
        "ix_service_samples_service_at", "service_samples", ["service", "at"], unique=False, if_not_exists=True
    )


def downgrade() -> None:
    op.drop_index("ix_service_samples_service_at", table_name="service_samples")
    op.drop_index(op.f("ix_service_samples_at"), table_name="service_samples")
    op.drop_table("service_samples")

"""Host and container samples: what the facts cycle (homelab.facts) read of each host with the
read-only `facts` playbook every five minutes (CPU, memory, disk, load, uptime; each service
container's state, health, restart count and image), kept as long as the service samples.

New tables only: every store at 0003 gets them empty, nothing else changes. Like the baseline and
0003, it creates only what is missing, so a store that already has them (one that lost its
alembic_version row and is upgraded again from 0001) is left as it is, its samples kept.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "host_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("cpu_percent", sa.Float(), nullable=True),
        sa.Column("cpus", sa.Integer(), nullable=True),
        sa.Column("mem_percent", sa.Float(), nullable=True),
        sa.Column("mem_total", sa.BigInteger(), nullable=True),
        sa.Column("disk_percent", sa.Float(), nullable=True),
        sa.Column("disk_free", sa.BigInteger(), nullable=True),
        sa.Column("load1", sa.Float(), nullable=True),
        sa.Column("load5", sa.Float(), nullable=True),
        sa.Column("load15", sa.Float(), nullable=True),
        sa.Column("uptime_seconds", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(op.f("ix_host_samples_at"), "host_samples", ["at"], unique=False, if_not_exists=True)
    op.create_index("ix_host_samples_host_at", "host_samples", ["host", "at"], unique=False, if_not_exists=True)
    op.create_table(
        "container_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("health", sa.String(length=32), nullable=False),
        sa.Column("restart_count", sa.Integer(), nullable=False),
        sa.Column("image", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(op.f("ix_container_samples_at"), "container_samples", ["at"], unique=False, if_not_exists=True)
    op.create_index(
        "ix_container_samples_service_at", "container_samples", ["service", "at"], unique=False, if_not_exists=True
    )


def downgrade() -> None:
    op.drop_index("ix_container_samples_service_at", table_name="container_samples")
    op.drop_index(op.f("ix_container_samples_at"), table_name="container_samples")
    op.drop_table("container_samples")
    op.drop_index("ix_host_samples_host_at", table_name="host_samples")
    op.drop_index(op.f("ix_host_samples_at"), table_name="host_samples")
    op.drop_table("host_samples")

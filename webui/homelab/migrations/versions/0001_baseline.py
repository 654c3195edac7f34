"""Baseline: the store as the release before migrations (d5ce24b) created it, Jarvis's tables included.

Every table and index is created only where it is missing, so this revision also brings any store
made before migrations existed (no alembic_version table) up to that schema, rows untouched; 0002
adds the columns such a store may miss. An empty database starts here.

Revision ID: 0001
Revises:
Create Date: 2026-12-02 02:48:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
        if_not_exists=True,
    )
    op.create_index(op.f("ix_api_tokens_prefix"), "api_tokens", ["prefix"], unique=False, if_not_exists=True)

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(op.f("ix_audit_log_action"), "audit_log", ["action"], unique=False, if_not_exists=True)
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"], unique=False, if_not_exists=True)

    op.create_table(
        "drift_episodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("playbook", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("tasks", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("started_job", sa.Integer(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("resolved_job", sa.Integer(), nullable=True),
        sa.Column("resolution", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(op.f("ix_drift_episodes_host"), "drift_episodes", ["host"], unique=False, if_not_exists=True)

    op.create_table(
        "drift_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("playbook", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.Column("checked_at", sa.DateTime(), nullable=False),
        sa.Column("last_job_id", sa.Integer(), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("tasks", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(
        "ux_drift_states_host_playbook", "drift_states", ["host", "playbook"], unique=True, if_not_exists=True
    )

    op.create_table(
        "jarvis_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("finding_id", sa.Integer(), nullable=True),
        sa.Column("finding_key", sa.String(length=400), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("playbook", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("limit", sa.Text(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("check_first", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("check_job_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("verify_job_id", sa.Integer(), nullable=True),
        sa.Column("requested_by", sa.String(length=120), nullable=False),
        sa.Column("decided_by", sa.String(length=120), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("failed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_jarvis_actions_created_at"), "jarvis_actions", ["created_at"], unique=False, if_not_exists=True
    )
    op.create_index(op.f("ix_jarvis_actions_rule_id"), "jarvis_actions", ["rule_id"], unique=False, if_not_exists=True)
    op.create_index(
        "ix_jarvis_actions_rule_target", "jarvis_actions", ["rule_id", "target"], unique=False, if_not_exists=True
    )
    op.create_index(op.f("ix_jarvis_actions_status"), "jarvis_actions", ["status"], unique=False, if_not_exists=True)

    op.create_table(
        "jarvis_breakers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reset_at", sa.DateTime(), nullable=True),
        sa.Column("reset_by", sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_jarvis_breakers_rule_id"), "jarvis_breakers", ["rule_id"], unique=False, if_not_exists=True
    )

    op.create_table(
        "jarvis_chat",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(length=120), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(op.f("ix_jarvis_chat_user"), "jarvis_chat", ["user"], unique=False, if_not_exists=True)

    op.create_table(
        "jarvis_findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("scope", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
        if_not_exists=True,
    )
    op.create_index(op.f("ix_jarvis_findings_code"), "jarvis_findings", ["code"], unique=False, if_not_exists=True)
    op.create_index(op.f("ix_jarvis_findings_status"), "jarvis_findings", ["status"], unique=False, if_not_exists=True)

    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("playbook", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("limit", sa.Text(), nullable=False),
        sa.Column("requested_limit", sa.Text(), nullable=False),
        sa.Column("hosts", sa.JSON(), nullable=False),
        sa.Column("check", sa.Boolean(), nullable=False),
        sa.Column("diff", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("rc", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("rerun_of", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("server_pid", sa.Integer(), nullable=True),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("artifacts_dir", sa.Text(), nullable=False),
        sa.Column("marker", sa.String(length=64), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("artifact_data", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(op.f("ix_jobs_created_at"), "jobs", ["created_at"], unique=False, if_not_exists=True)
    op.create_index(op.f("ix_jobs_playbook"), "jobs", ["playbook"], unique=False, if_not_exists=True)
    op.create_index(op.f("ix_jobs_status"), "jobs", ["status"], unique=False, if_not_exists=True)

    op.create_table(
        "scheduler_lease",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
        if_not_exists=True,
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
        if_not_exists=True,
    )
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id_hash"),
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_web_sessions_expires_at"), "web_sessions", ["expires_at"], unique=False, if_not_exists=True
    )
    op.create_index(op.f("ix_web_sessions_username"), "web_sessions", ["username"], unique=False, if_not_exists=True)

    op.create_table(
        "drift_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("playbook", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("tasks", sa.JSON(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("checked_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(
        op.f("ix_drift_results_checked_at"), "drift_results", ["checked_at"], unique=False, if_not_exists=True
    )
    op.create_index(op.f("ix_drift_results_host"), "drift_results", ["host"], unique=False, if_not_exists=True)
    op.create_index(op.f("ix_drift_results_job_id"), "drift_results", ["job_id"], unique=False, if_not_exists=True)

    op.create_table(
        "drift_runs",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("playbook", sa.String(length=64), nullable=False),
        sa.Column("schedule_id", sa.String(length=64), nullable=False),
        sa.Column("claimed", sa.Boolean(), nullable=False),
        sa.Column("analyzed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id"),
        if_not_exists=True,
    )
    op.create_index(op.f("ix_drift_runs_playbook"), "drift_runs", ["playbook"], unique=False, if_not_exists=True)

    op.create_table(
        "host_recaps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("unreachable", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("rescued", sa.Integer(), nullable=False),
        sa.Column("ignored", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(op.f("ix_host_recaps_job_id"), "host_recaps", ["job_id"], unique=False, if_not_exists=True)

    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("stdout", sa.Text(), nullable=False),
        sa.Column("created", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index("ix_job_events_job_seq", "job_events", ["job_id", "seq"], unique=False, if_not_exists=True)

    op.create_table(
        "task_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=120), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("duration", sa.Double(), nullable=True),
        sa.Column("role", sa.String(length=120), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        if_not_exists=True,
    )
    op.create_index(op.f("ix_task_results_job_id"), "task_results", ["job_id"], unique=False, if_not_exists=True)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("task_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_results_job_id"))

    op.drop_table("task_results")
    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.drop_index("ix_job_events_job_seq")

    op.drop_table("job_events")
    with op.batch_alter_table("host_recaps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_host_recaps_job_id"))

    op.drop_table("host_recaps")
    with op.batch_alter_table("drift_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drift_runs_playbook"))

    op.drop_table("drift_runs")
    with op.batch_alter_table("drift_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drift_results_job_id"))
        batch_op.drop_index(batch_op.f("ix_drift_results_host"))
        batch_op.drop_index(batch_op.f("ix_drift_results_checked_at"))

    op.drop_table("drift_results")
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_sessions_username"))
        batch_op.drop_index(batch_op.f("ix_web_sessions_expires_at"))

    op.drop_table("web_sessions")
    op.drop_table("users")
    op.drop_table("scheduler_lease")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_status"))
        batch_op.drop_index(batch_op.f("ix_jobs_playbook"))
        batch_op.drop_index(batch_op.f("ix_jobs_created_at"))

    op.drop_table("jobs")
    with op.batch_alter_table("jarvis_findings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jarvis_findings_status"))
        batch_op.drop_index(batch_op.f("ix_jarvis_findings_code"))

    op.drop_table("jarvis_findings")
    with op.batch_alter_table("jarvis_chat", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jarvis_chat_user"))

    op.drop_table("jarvis_chat")
    with op.batch_alter_table("jarvis_breakers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jarvis_breakers_rule_id"))

    op.drop_table("jarvis_breakers")
    with op.batch_alter_table("jarvis_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jarvis_actions_status"))
        batch_op.drop_index("ix_jarvis_actions_rule_target")
        batch_op.drop_index(batch_op.f("ix_jarvis_actions_rule_id"))
        batch_op.drop_index(batch_op.f("ix_jarvis_actions_created_at"))

    op.drop_table("jarvis_actions")
    with op.batch_alter_table("drift_states", schema=None) as batch_op:
        batch_op.drop_index("ux_drift_states_host_playbook")

    op.drop_table("drift_states")
    with op.batch_alter_table("drift_episodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drift_episodes_host"))

    op.drop_table("drift_episodes")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))
        batch_op.drop_index(batch_op.f("ix_audit_log_action"))

    op.drop_table("audit_log")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_prefix"))

    op.drop_table("api_tokens")

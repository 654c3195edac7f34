"""Jarvis's tables, in the same store as jobs and the audit log (homelab.store.Base).

jarvis_findings  the current and past findings (one row per code and target, reopened when seen again)
jarvis_actions   every remediation Jarvis considered and ran: proposals waiting for a person,
                 check-mode runs with their diff, real runs, verification, outcome
jarvis_breakers  open circuit breakers (a rule that failed too often stops until a person resets it)
jarvis_chat      the chat with Jarvis, per user
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from homelab.store import Base, iso_z, utcnow

ACTION_OPEN = ("pending", "queued", "checking", "running", "verifying")


class JarvisFinding(Base):
    __tablename__ = "jarvis_findings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(400), unique=True)  # code|target
    code: Mapped[str] = mapped_column(String(64), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(300))
    host: Mapped[str] = mapped_column(String(200), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # masked
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    scope: Mapped[str] = mapped_column(String(300), default="")
    status: Mapped[str] = mapped_column(String(16), index=True, default="open")  # open, escalated, resolved
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    decision: Mapped[str] = mapped_column(Text, default="")  # the last decision about it, in words


class JarvisAction(Base):
    __tablename__ = "jarvis_actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    source: Mapped[str] = mapped_column(String(16), default="rules")  # rules, chat
    rule_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    finding_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    finding_key: Mapped[str] = mapped_column(String(400), default="")
    target: Mapped[str] = mapped_column(String(300), default="")
    playbook: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # masked
    limit: Mapped[str] = mapped_column(Text, default="")
    mode: Mapped[str] = mapped_column(String(16), default="auto")  # auto, approve
    check_first: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    reason: Mapped[str] = mapped_column(Text, default="")  # why (proposal text, refusal, outcome)
    diff: Mapped[str] = mapped_column(Text, default="")  # what the check-mode run would change (masked)
    check_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    verify_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    requested_by: Mapped[str] = mapped_column(String(120), default="jarvis")
    decided_by: Mapped[str] = mapped_column(String(120), default="")
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)  # the real run (rate limit)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    failed: Mapped[bool] = mapped_column(default=False)  # counts for the circuit breaker
    __table_args__ = (Index("ix_jarvis_actions_rule_target", "rule_id", "target"),)

    def as_dict(self) -> dict[str, Any]:
        iso = iso_z
        return {
            "id": self.id,
            "created_at": iso(self.created_at),
            "source": self.source,
            "rule": self.rule_id,
            "finding": self.finding_key,
            "target": self.target,
            "playbook": self.playbook,
            "params": self.params,
            "limit": self.limit,
            "mode": self.mode,
            "check_first": self.check_first,
            "status": self.status,
            "reason": self.reason,
            "diff": self.diff,
            "check_job_id": self.check_job_id,
            "job_id": self.job_id,
            "verify_job_id": self.verify_job_id,
            "requested_by": self.requested_by,
            "decided_by": self.decided_by,
            "decided_at": iso(self.decided_at),
            "finished_at": iso(self.finished_at),
        }


class JarvisBreaker(Base):
    __tablename__ = "jarvis_breakers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(64), index=True)
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(Text, default="")
    reset_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    reset_by: Mapped[str] = mapped_column(String(120), default="")


class JarvisChat(Base):
    __tablename__ = "jarvis_chat"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(String(120), index=True)
    role: Mapped[str] = mapped_column(String(16))  # user, assistant, tool (what Jarvis did with a tool call)
    content: Mapped[str] = mapped_column(Text, default="")
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # tool name, action id, refused reason
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

"""The store: jobs, their events, per-host recaps, task results, users, API tokens, the audit log.

SQLAlchemy on SQLite (a file under var/) by default, PostgreSQL when HOMELAB_DATABASE_URL says so.
The schema changes through Alembic migrations (homelab.migrations); opening a store upgrades it.
Only the engine's writer thread writes events; web requests read.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def rowcount(result: Any) -> int:
    """How many rows an UPDATE or DELETE changed (Session.execute's declared Result type hides rowcount)."""
    return int(result.rowcount)


def table(model: Any) -> Table:
    """A mapped class's Table, for SQLAlchemy Core statements."""
    return cast(Table, model.__table__)


def iso_z(t: dt.datetime | None) -> str | None:
    """A stored (naive UTC) time as ISO 8601 with a Z, as the API and the pages show it; None stays None."""
    return t.isoformat() + "Z" if t else None


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    playbook: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # masked
    limit: Mapped[str] = mapped_column(Text, default="")
    requested_limit: Mapped[str] = mapped_column(Text, default="")
    hosts: Mapped[list[str]] = mapped_column(JSON, default=list)
    check: Mapped[bool] = mapped_column(Boolean, default=False)
    diff: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    reason: Mapped[str] = mapped_column(Text, default="")
    rc: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_by: Mapped[str] = mapped_column(String(120), default="")
    source: Mapped[str] = mapped_column(String(16), default="web")  # web, api, cli, schedule, jarvis
    rerun_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    server_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    event_count: Mapped[int] = mapped_column(Integer, default=0)
    artifacts_dir: Mapped[str] = mapped_column(Text, default="")
    marker: Mapped[str] = mapped_column(String(64), default="")  # in every job process's environment
    tags: Mapped[list[str] | None] = mapped_column(JSON, default=list, nullable=True)  # --tags of the run
    # What the playbook reported with ansible.builtin.set_stats (masked): structured results a
    # caller reads back, e.g. Jarvis's read-only `diagnose` playbook.
    artifact_data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    def as_dict(self) -> dict[str, Any]:
        iso = iso_z
        return {
            "id": self.id,
            "playbook": self.playbook,
            "title": self.title,
            "params": self.params,
            "limit": self.requested_limit,
            "hosts": self.hosts,
            "check": self.check,
            "diff": self.diff,
            "status": self.status,
            "reason": self.reason,
            "rc": self.rc,
            "created_by": self.created_by,
            "source": self.source,
            "rerun_of": self.rerun_of,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "event_count": self.event_count,
            "tags": list(self.tags or []),
        }


class JobEvent(Base):
    __tablename__ = "job_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)  # the runner's event counter
    event: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(200), default="")
    task: Mapped[str] = mapped_column(Text, default="")
    stdout: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[str] = mapped_column(String(40), default="")
    __table_args__ = (Index("ix_job_events_job_seq", "job_id", "seq"),)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "event": self.event,
            "host": self.host,
            "task": self.task,
            "stdout": self.stdout,
            "created": self.created,
        }


class HostRecap(Base):
    __tablename__ = "host_recaps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(200))
    ok: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    unreachable: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    rescued: Mapped[int] = mapped_column(Integer, default=0)
    ignored: Mapped[int] = mapped_column(Integer, default=0)

    def as_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("host", "ok", "changed", "failed", "unreachable", "skipped", "rescued", "ignored")
        }


class TaskResult(Base):
    __tablename__ = "task_results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(120), default="")
    status: Mapped[str] = mapped_column(String(16))  # ok, changed, failed, unreachable, skipped
    message: Mapped[str] = mapped_column(Text, default="")
    diff: Mapped[str] = mapped_column(Text, default="")  # unified text, masked
    duration: Mapped[float | None] = mapped_column(nullable=True)
    role: Mapped[str | None] = mapped_column(String(120), default="", nullable=True)  # the role the task is in

    def as_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("seq", "host", "task", "action", "status", "message", "diff", "duration", "role")
        }


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    username: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)  # sha256 of a 256-bit random token
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    # What the token is for, fixed when it is made: "cli" (the local CLI's token) or "api". Jobs started
    # with it record this as their source; no request header can claim another one.
    kind: Mapped[str | None] = mapped_column(String(16), default="api", nullable=True)


class WebSession(Base):
    """A logged-in browser. The signed cookie carries a random id whose hash is the key here; a
    request counts as logged in only while its row exists, so logout (which deletes it) ends the
    session on the server and a copy of the cookie taken before stops working."""

    __tablename__ = "web_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the id in the cookie
    username: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(200), default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # masked
    ip: Mapped[str] = mapped_column(String(64), default="")
    outcome: Mapped[str] = mapped_column(String(200), default="ok")


class DriftRun(Base):
    """A job that is a drift check (the playbook in check + diff mode), and what asked for it."""

    __tablename__ = "drift_runs"
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    playbook: Mapped[str] = mapped_column(String(64), index=True)  # the catalog id checked
    schedule_id: Mapped[str] = mapped_column(String(64), default="")  # "" when run by hand
    claimed: Mapped[bool] = mapped_column(Boolean, default=False)  # one process reads its result, once
    analyzed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)  # when the result was stored


class DriftResult(Base):
    """One host's result of one drift check."""

    __tablename__ = "drift_results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    playbook: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(200), index=True)
    state: Mapped[str] = mapped_column(String(16))  # drifted, clean, unknown
    reason: Mapped[str] = mapped_column(Text, default="")  # why unknown
    tasks: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=list
    )  # {task, role, action, diff, message}, masked
    fingerprint: Mapped[str] = mapped_column(String(64), default="")
    checked_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class DriftState(Base):
    """The current drift state of a host for a playbook, and the drift last notified."""

    __tablename__ = "drift_states"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    playbook: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    since: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)  # in this state since
    checked_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    fingerprint: Mapped[str] = mapped_column(String(64), default="")  # of the open drift ("" when none)
    tasks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # the open drift's tasks
    __table_args__ = (Index("ux_drift_states_host_playbook", "host", "playbook", unique=True),)


class DriftEpisode(Base):
    """History: one drift (a set of drifted tasks on a host) from when it was seen until it was resolved."""

    __tablename__ = "drift_episodes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(200), index=True)
    playbook: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)  # the services (roles) that drifted
    tasks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_job: Mapped[int | None] = mapped_column(Integer, nullable=True)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    resolved_job: Mapped[int | None] = mapped_column(Integer, nullable=True)
    resolution: Mapped[str] = mapped_column(String(32), default="")  # clean, changed (another drift replaced it)


class ServiceSample(Base):
    """One observation of a service by the status cycle (homelab.status): an HTTP and a TLS probe
    from the controller; past 24 h, one row per 5 minutes (a rollup). Kept for the retention the
    settings say, then deleted."""

    __tablename__ = "service_samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    status: Mapped[str] = mapped_column(String(16))  # up, degraded, down
    url: Mapped[str] = mapped_column(Text, default="")  # what was probed
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: no answer
    response_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    tls_days_left: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")  # why not up, as the probe said it
    # A rollup (homelab.history.thin_service_samples: the probes of 5 minutes older than 24 h as one
    # row, at the start of those 5 minutes, its status the worst, response_ms their mean) says what it
    # stands for; all four are None on a probe's own row.
    samples: Mapped[int | None] = mapped_column(Integer, nullable=True)  # how many probes
    up_samples: Mapped[int | None] = mapped_column(Integer, nullable=True)  # how many of them were up
    response_samples: Mapped[int | None] = mapped_column(Integer, nullable=True)  # how many had a response time
    response_ms_max: Mapped[float | None] = mapped_column(Float, nullable=True)  # the slowest one
    __table_args__ = (Index("ix_service_samples_service_at", "service", "at"),)

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "observed_at": iso_z(self.at),
            "status": self.status,
            "url": self.url,
            "http_status": self.http_status,
            "response_ms": self.response_ms,
            "tls_days_left": self.tls_days_left,
            "error": self.error,
            "samples": self.samples or 1,
        }


class HostSample(Base):
    """One host's facts as the facts cycle (homelab.facts) read them with the read-only `facts`
    playbook: CPU, memory, disk, load, uptime. Kept as long as the service samples, then deleted."""

    __tablename__ = "host_samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the facts job that read them
    cpu_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    cpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    mem_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    mem_total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # bytes
    disk_percent: Mapped[float | None] = mapped_column(Float, nullable=True)  # of the data root's file system
    disk_free: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # bytes
    load1: Mapped[float | None] = mapped_column(Float, nullable=True)
    load5: Mapped[float | None] = mapped_column(Float, nullable=True)
    load15: Mapped[float | None] = mapped_column(Float, nullable=True)
    uptime_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")  # why (some) facts are missing
    __table_args__ = (Index("ix_host_samples_host_at", "host", "at"),)

    def as_dict(self) -> dict[str, Any]:
        keys = ("host", "job_id", "cpu_percent", "cpus", "mem_percent", "mem_total", "disk_percent", "disk_free")
        more = ("load1", "load5", "load15", "uptime_seconds", "error")
        return {"observed_at": iso_z(self.at), **{k: getattr(self, k) for k in (*keys, *more)}}


class ContainerSample(Base):
    """One container of a service as the facts cycle saw it: state, health, restarts, image, commit."""

    __tablename__ = "container_samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    service: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(32), default="")  # running, exited, restarting, ...
    health: Mapped[str] = mapped_column(String(32), default="")  # healthy, unhealthy, starting, "" (no check)
    restart_count: Mapped[int] = mapped_column(Integer, default=0)
    image: Mapped[str] = mapped_column(Text, default="")
    # the full sha of its label homelab.commit (what the delivery pipeline built it from), "" without one
    git_commit: Mapped[str | None] = mapped_column(String(40), default="", nullable=True)
    __table_args__ = (Index("ix_container_samples_service_at", "service", "at"),)

    def as_dict(self) -> dict[str, Any]:
        keys = ("host", "service", "name", "state", "health", "restart_count", "image")
        return {
            "observed_at": iso_z(self.at),
            **{k: getattr(self, k) for k in keys},
            "git_commit": self.git_commit or "",
        }


class SchedulerLease(Base):
    """Who runs the scheduler: the one process holding an unexpired lease (works on SQLite and PostgreSQL)."""

    __tablename__ = "scheduler_lease"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Store:
    """Engine and session factory; one per process."""

    def __init__(self, url: str) -> None:
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):

            @event.listens_for(self.engine, "connect")
            def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

        from homelab.migrations import upgrade

        upgrade(self.engine)  # the schema through its migrations (webui/homelab/migrations): a no-op at the head
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    def audit(
        self,
        actor: str,
        action: str,
        target: str = "",
        params: dict[str, Any] | None = None,
        ip: str = "",
        outcome: str = "ok",
    ) -> None:
        from homelab.masking import mask

        with self.session.begin() as s:
            s.add(
                AuditEntry(
                    actor=_text(actor, 120),
                    action=_text(action, 64),
                    target=_text(target, 200),
                    params=mask(params or {}),
                    ip=_text(ip, 64),
                    outcome=_text(outcome, 200),
                )
            )


def _text(value: str, limit: int) -> str:
    """Text the audit page can always show: cut to its column, lone surrogates (from a JSON "\\ud800"
    escape) replaced, since a page holding one cannot be encoded."""
    return str(value)[:limit].encode("utf-8", "replace").decode("utf-8")

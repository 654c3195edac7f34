"""A job's pipeline stages, read from its task results, and the notification when a staged job fails.

The delivery pipeline (catalog `deliver`, playbooks/ops/deliver.yml) begins each stage with a marker
task: an ansible.builtin.debug named exactly `Stage: <name>` (Validate, Test, Build, Deploy, Verify,
and Rollback when a stage after Build failed). Every task result of a host after its marker (by seq)
belongs to that stage until the host's next marker; a skipped marker (its `when` false, as the
Rollback's is when nothing live changed) opens no stage. Any playbook that names its tasks so gets
the same Stages panel on its job page and the same notification.

Why it is read this way:
- From the stored task results, not from a report the playbook writes at its end: they are stored
  (masked) as they come, so a running job shows its stages live, and a run that dies half way still
  says where it was.
- Per host: under the free strategy (or with a host that is slower) hosts are in different stages at
  once; a global "last marker seen" would give one host's results to another's stage.
- The run's verdict: after a rollback that worked the run must still fail, so the playbook ends with
  an ansible.builtin.fail that re-raises what went wrong. A failed `fail` task that comes after a
  stage already failed on that host is that verdict: it fails the job, not the stage it runs in
  (Rollback stays ok). Anything else that fails in a later stage (a rollback task, an assert) fails
  that stage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence

from homelab.notify import Notifier
from homelab.states import LIVE_STATES
from homelab.store import Job

log = logging.getLogger(__name__)

MARKER = "Stage: "
PIPELINE = ("Validate", "Test", "Build", "Deploy", "Verify")  # shown from the start, pending until reached
ROLLBACK = "Rollback"  # shown only when it ran
DELIVER = "deliver"  # the catalog entry of the delivery pipeline: notified even when it failed before a stage
FAILED = ("failed", "unreachable")
VERDICT_ACTIONS = ("ansible.builtin.fail", "fail")
STATUSES = ("ok", "changed", "failed", "skipped", "running", "pending")


class Result(Protocol):
    """What a stage is computed from: a task result row (homelab.store.TaskResult)."""

    seq: int
    host: str
    task: str
    action: str
    status: str
    message: str
    duration: float | None


@dataclass
class Stage:
    """One stage as the job page shows it; message: its first failure (task, host and what it said)."""

    name: str
    status: str = "pending"
    seconds: float = 0.0
    message: str = ""
    task: str = ""
    host: str = ""
    results: list[Any] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "seconds": self.seconds,
            "message": self.message,
            "task": self.task,
            "host": self.host,
        }


def stage_name(task: str) -> str | None:
    """The stage a marker task starts ("Stage: Verify" -> "Verify"); None for any other task."""
    if not task.startswith(MARKER):
        return None
    return task[len(MARKER) :].strip() or None


def job_stages(results: Iterable[Result], job_status: str = "successful", job_reason: str = "") -> list[Stage]:
    """The stages of a job from its task results ([] when no task is a stage marker): the stages in
    the order they ran, the known ones not reached yet as pending (Rollback only when it ran)."""
    stages: dict[str, Stage] = {}
    current: dict[str, str] = {}  # host -> the stage it is in
    failed_on: set[str] = set()  # hosts on which a stage failed
    last_of: dict[str, str] = {}  # host -> the stage of its newest result
    for r in sorted(results, key=lambda r: r.seq):
        name = stage_name(r.task)
        if name is not None and r.status == "skipped":
            continue  # a marker whose `when` was false opens no stage: the host stays where it was
        if name is not None:
            current[r.host] = name
            stages.setdefault(name, Stage(name))
        stage = current.get(r.host)
        if stage is None:
            continue  # before the host's first marker: set-up, no stage's
        last_of[r.host] = stage
        if r.status in FAILED and r.host in failed_on and r.action in VERDICT_ACTIONS:
            continue  # the run's verdict, re-raising the failure it rolled back from
        if r.status in FAILED:
            failed_on.add(r.host)
        stages[stage].results.append(r)
    if not stages:
        return []
    live = job_status in LIVE_STATES
    for st in stages.values():
        _judge(st, running=live and st.name in last_of.values())
    if not live and job_status != "successful" and not any(s.status == "failed" for s in stages.values()):
        # canceled, or ended by something no task result shows (a timeout, a crash): where it was
        newest = max(stages.values(), key=lambda s: max((r.seq for r in s.results), default=0))
        newest.status, newest.message = "failed", job_reason or f"the job {job_status}"
    return _ordered(stages, live)


def _judge(st: Stage, running: bool) -> None:
    per_host: dict[str, float] = {}
    for r in st.results:
        per_host[r.host] = per_host.get(r.host, 0.0) + (r.duration or 0.0)
    st.seconds = round(max(per_host.values(), default=0.0), 3)  # hosts run a stage side by side
    statuses = {r.status for r in st.results}
    first = next((r for r in st.results if r.status in FAILED), None)
    if first is not None:
        st.status, st.task, st.host = "failed", first.task, first.host
        st.message = first.message or f"{first.task} {first.status} on {first.host}"
    elif running:
        st.status = "running"
    elif statuses <= {"skipped"}:
        st.status = "skipped"
    elif "changed" in statuses:
        st.status = "changed"
    else:
        st.status = "ok"


def _ordered(stages: dict[str, Stage], live: bool) -> list[Stage]:
    """Stages in the order they ran; a known stage passed over (a later one ran) is skipped, the known
    ones not reached are pending, and Rollback comes last, only when it ran (not all skipped)."""
    out: list[Stage] = []
    names: set[str] = set()
    for name, st in stages.items():
        if name == ROLLBACK:
            continue
        if name in PIPELINE:
            for before in PIPELINE[: PIPELINE.index(name)]:
                if before not in stages and before not in names:
                    out.append(Stage(before, status="skipped"))
                    names.add(before)
        out.append(st)
        names.add(name)
    out += [Stage(name) for name in PIPELINE if name not in names]
    rollback = stages.get(ROLLBACK)
    if rollback is not None and rollback.status != "skipped":
        out.append(rollback)
    return out


def failed_stage(stages: Sequence[Stage]) -> Stage | None:
    """The stage the run failed at: the first failed one that is not the rollback (else the rollback)."""
    failed = [s for s in stages if s.status == "failed"]
    return next((s for s in failed if s.name != ROLLBACK), failed[0] if failed else None)


# ---------------------------------------------------------------------- the notification
@dataclass(frozen=True)
class StageFailedEvent:
    """A staged job (a delivery) ended failed: at which stage, with what message, and whether it rolled back."""

    job_id: int
    playbook: str
    subject: str  # "Deliver discord_bot"
    stage: str = ""  # "" when it failed before its first stage
    task: str = ""
    host: str = ""
    message: str = ""
    stages: tuple[tuple[str, str], ...] = ()  # (name, status) of each stage
    service: str = ""
    commit: str = ""
    url: str = ""

    @property
    def alarm(self) -> bool:
        return True

    @property
    def title(self) -> str:
        return f"{self.subject} failed at {self.stage}" if self.stage else f"{self.subject} failed"

    @property
    def rollback(self) -> str:
        """The rollback's status ("" when none ran)."""
        return next((st for name, st in self.stages if name == ROLLBACK), "")

    def text(self, limit: int = 1800) -> str:
        lines = [self.title]
        if self.message:
            where = f"{self.task} on {self.host}: " if self.task else ""
            lines.append(f"{where}{self.message}")
        if self.rollback == "failed":
            lines.append("The rollback failed too.")
        elif self.rollback:
            lines.append("Rolled back to the previous release.")
        if self.stages:
            lines.append("Stages: " + ", ".join(f"{n} {s}" for n, s in self.stages))
        if self.url:
            lines.append(self.url)
        out = "\n".join(lines)
        return out if len(out) <= limit else out[: limit - 1] + "…"

    def as_json(self) -> dict[str, Any]:
        return {
            "event": "job.stage_failed",
            "title": self.title,
            "job_id": self.job_id,
            "playbook": self.playbook,
            "service": self.service,
            "commit": self.commit,
            "stage": self.stage,
            "task": self.task,
            "host": self.host,
            "message": self.message,
            "rollback": self.rollback,
            "stages": [{"name": n, "status": s} for n, s in self.stages],
            "url": self.url,
        }


def subject_of(job: Job) -> str:
    """What a person calls the run: "Deliver discord_bot" (the entry's verb and its service), else its title."""
    service = str((job.params or {}).get("service") or "")
    if service:
        return f"{job.playbook.split('_')[0].capitalize()} {service}"
    return job.title or job.playbook


def failure_event(job: Job, stages: Sequence[Stage], public_url: str = "") -> StageFailedEvent:
    at = failed_stage(stages)
    params = job.params or {}
    return StageFailedEvent(
        job_id=job.id,
        playbook=job.playbook,
        subject=subject_of(job),
        stage=at.name if at else "",
        task=at.task if at else "",
        host=at.host if at else "",
        message=(at.message if at else job.reason)[:1000],
        stages=tuple((s.name, s.status) for s in stages),
        service=str(params.get("service") or ""),
        commit=str(params.get("commit") or ""),
        url=f"{public_url}/jobs/{job.id}" if public_url else "",
    )


class _Engine(Protocol):
    on_finished: list[Any]

    def get(self, job_id: int) -> Job: ...

    def task_results(self, job_id: int) -> Sequence[Any]: ...


class StageAlerts:
    """Notifies when a job with stages (or a `deliver` job) ends failed; listens on engine.on_finished,
    so a delivery started from the web, the API, a schedule or Jarvis is told the same way."""

    def __init__(self, engine: _Engine, notifier: Notifier, public_url: str = "") -> None:
        self.engine = engine
        self.notifier = notifier
        self.public_url = public_url.rstrip("/")
        engine.on_finished.append(self._on_finished)

    def _on_finished(self, job_id: int) -> None:
        job = self.engine.get(job_id)
        if job.status != "failed" or job.check:
            return
        stages = job_stages(self.engine.task_results(job_id), job.status, job.reason)
        if not stages and job.playbook != DELIVER:
            return
        event = failure_event(job, stages, self.public_url)
        log.info("job %s: %s", job_id, event.title)
        self.notifier.send_async([event])

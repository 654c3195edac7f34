"""Drift detection: a catalog playbook in check + diff mode through the job engine, read per host.

Why it is built this way:
- A drift check is an ordinary engine job (check=True, diff=True), so it is queued, serialized
  per host, masked, streamed and audited like every other run; this module only starts it and
  reads its per-host recap and task results when it ends (engine.on_finished).
- A host is "clean" only when its recap says it ran to the end with nothing failed, nothing
  unreachable and nothing changed. Unreachable, failed, canceled or missing = "unknown", never
  clean: a silent miss is worse than a false alarm.
- The drifted task set (role, task, changed loop items) is fingerprinted: a notification goes out
  when a host starts drifting, when its drift becomes a different set, and when it is resolved;
  the same drift seen again says nothing. An "unknown" check leaves the open drift open.
- "Fix drift" runs the real converge of the same playbook limited to the drifted hosts, with
  --tags of the drifted roles when every drifted task belongs to a role that carries its own tag;
  when it succeeds, the same hosts are checked again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from homelab.catalog import Catalog, ValidationError, run_variant
from homelab.notify import DriftEvent, Notifier
from homelab.schedule.definitions import Schedule
from homelab.settings import Settings
from homelab.states import FINAL_STATES, LIVE_STATES
from homelab.store import DriftEpisode, DriftResult, DriftRun, DriftState, Job, Store, rowcount, utcnow

log = logging.getLogger(__name__)
ITEM_RE = re.compile(r"^# item changed: (.*)$", re.M)


@dataclass(frozen=True)
class HostVerdict:
    host: str
    state: str  # drifted, clean, unknown
    reason: str
    tasks: tuple[dict[str, Any], ...]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.tasks) if self.state == "drifted" else ""


def fingerprint(tasks: Any) -> str:
    """Identity of a drift: which tasks (and which of their loop items) would change, not the diff text."""
    keys = sorted(
        {
            f"{t.get('role') or ''}|{t.get('task') or ''}|{','.join(sorted(ITEM_RE.findall(t.get('diff') or '')))}"
            for t in tasks
        }
    )
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:32]


def task_label(t: dict[str, Any]) -> str:
    items = ITEM_RE.findall(t.get("diff") or "")
    label = f"{t['role']} : {t['task']}" if t.get("role") else str(t.get("task"))
    return label + (f" ({', '.join(items)})" if items else "")


class DriftService:
    """Start drift checks, read their results, keep per-host state and history, notify, fix."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        catalog: Catalog,
        inventory: Any,
        engine: Any,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.inventory = inventory
        self.engine = engine
        self.notifier = notifier or Notifier()
        self._lock = threading.Lock()
        self._fixes: dict[int, tuple[str, str]] = {}  # fix job -> (checked catalog id, actor)
        self.listeners: list[Any] = []  # called with each analyzed job id (tests, UI)
        engine.on_finished.append(self._on_finished)

    # ------------------------------------------------------------------ starting
    def check(
        self, playbook: str, limit: str = "", actor: str = "", source: str = "web", schedule_id: str = ""
    ) -> tuple[Job, bool]:
        """Start a drift check, or return the one already queued/running on any of these hosts (False).
        A check-only entry ("Check site (dry run)", from the catalog) is the same check as one of its
        playbook's converge ("site", from a schedule): recorded under the converge's id, so both reach
        the same drift state, history and fix."""
        entry = self.catalog.get(playbook)
        spec = self.catalog.prepare(entry.id, {}, limit, check=True, diff=True, inventory=self.inventory)
        checked = run_variant(self.catalog, entry.id) or entry.id
        with self._lock:
            running = self._active_check(checked, set(spec.hosts))
            if running is not None:
                return running, False
            job = self.engine.submit(spec, actor, source, requested_limit=limit)
            with self.store.session.begin() as s:
                s.add(DriftRun(job_id=job.id, playbook=checked, schedule_id=schedule_id))
        if self.engine.get(job.id).status in FINAL_STATES:
            self._on_finished(job.id)  # it ended before its DriftRun row existed
        return job, True

    def check_schedule(self, s: Schedule) -> int:
        """The scheduler's "check" action: the schedule's drift check (or the one already running there)."""
        job, started = self.check(s.playbook, s.limit, f"schedule {s.id}", "schedule", schedule_id=s.id)
        if not started:
            log.info("schedule %s: job %s already checks these hosts", s.id, job.id)
        return int(job.id)

    def _active_check(self, playbook: str, hosts: set[str]) -> Job | None:
        """A queued or running check of the same playbook file (any catalog id for it) on any of these hosts."""
        path = self.catalog.get(playbook).playbook
        with self.store.session() as s:
            rows = s.execute(
                select(Job, DriftRun.playbook)
                .join(DriftRun, DriftRun.job_id == Job.id)
                .where(Job.status.in_(LIVE_STATES))
                .order_by(Job.id)
            ).all()
        for job, checked in rows:
            entry = self.catalog.entries.get(checked)
            if (checked == playbook or (entry is not None and entry.playbook == path)) and hosts & set(job.hosts or []):
                return job
        return None

    def fix(self, playbook: str, hosts: list[str] | None = None, actor: str = "", source: str = "web") -> Job:
        """The real converge for exactly the drifted hosts (of `hosts`, when given), tagged when known."""
        entry = self.catalog.get(playbook)
        run_id = run_variant(self.catalog, entry.id)
        if run_id is None:
            raise ValidationError(f"'{entry.id}' has no catalog entry that converges {entry.playbook.name}", status=409)
        with self.store.session() as s:
            q = select(DriftState).where(DriftState.playbook == entry.id, DriftState.fingerprint != "")
            states = [st for st in s.scalars(q.order_by(DriftState.host)) if not hosts or st.host in hosts]
        if not states:
            which = f" among {', '.join(hosts)}" if hosts else ""
            raise ValidationError(f"no host{which} has open drift from '{entry.id}'", status=409)
        tags = self.tags_for([t for st in states for t in st.tasks or []])
        limit = ",".join(st.host for st in states)
        spec = self.catalog.prepare(run_id, {}, limit, inventory=self.inventory, tags=list(tags))
        title = f"Fix drift on {', '.join(st.host for st in states)} ({spec.entry.title})"
        job = self.engine.submit(spec, actor, source, requested_limit=limit, title=title[:200])
        with self._lock:
            self._fixes[job.id] = (entry.id, actor)
        return job

    def tags_for(self, tasks: list[dict[str, Any]]) -> tuple[str, ...]:
        """The drifted services' own tags when every drifted task is in the role of a service of the
        registry (each tags its tasks with its name: tests/test_registry.py holds them to it);
        () = a full converge (a task outside any service role, or no registry to ask)."""
        roles = {t.get("role") or "" for t in tasks}
        if not roles or "" in roles:
            return ()
        registry = getattr(self.inventory, "registry", None)
        try:
            services = set(registry.union()) if registry is not None else set()
        except Exception:  # an unreadable registry: converge everything rather than guess
            log.exception("drift: the service registry cannot be read")
            return ()
        if not roles <= services:
            return ()
        return tuple(sorted(roles))

    # ------------------------------------------------------------------ reading results
    def _on_finished(self, job_id: int) -> None:
        with self._lock:
            fix = self._fixes.pop(job_id, None)
        if fix is not None:
            self._after_fix(job_id, *fix)
            return
        with self.store.session.begin() as s:  # claim it: analyzed exactly once
            claimed = rowcount(
                s.execute(
                    update(DriftRun).where(DriftRun.job_id == job_id, DriftRun.claimed.is_(False)).values(claimed=True)
                )
            )
        if claimed:
            try:
                self.analyze(job_id)
            except Exception:
                log.exception("reading drift check job %s failed", job_id)
            with self.store.session.begin() as s:
                s.execute(update(DriftRun).where(DriftRun.job_id == job_id).values(analyzed_at=utcnow()))
            for cb in list(self.listeners):
                try:
                    cb(job_id)
                except Exception:
                    log.exception("drift listener failed")

    def _after_fix(self, job_id: int, playbook: str, actor: str) -> None:
        job = self.engine.get(job_id)
        if job.status != "successful":
            log.warning("fix job %s ended %s: not re-checking", job_id, job.status)
            return
        try:
            self.check(playbook, ",".join(job.hosts), actor or "drift-fix", job.source, schedule_id="")
        except ValidationError as exc:
            log.warning("re-check after fix job %s refused: %s", job_id, exc)

    def verdicts(self, job_id: int) -> list[HostVerdict]:
        """Per host of a finished check job: drifted, clean or unknown, with the tasks that would change."""
        job = self.engine.get(job_id)
        recaps = {r.host: r for r in self.engine.recaps(job_id)}
        results = self.engine.task_results(job_id)
        out = []
        for host in job.hosts or []:
            r = recaps.get(host)
            mine = [t for t in results if t.host == host]
            if job.status == "canceled":
                out.append(HostVerdict(host, "unknown", f"the check was canceled ({job.reason})", ()))
            elif r is None:
                out.append(
                    HostVerdict(
                        host, "unknown", f"no result for this host: {job.reason or 'the run ended before it'}", ()
                    )
                )
            elif r.unreachable:
                msg = next((t.message for t in mine if t.status == "unreachable"), "")
                out.append(HostVerdict(host, "unknown", f"unreachable: {msg}"[:500], ()))
            elif r.failed:
                bad = next((t for t in mine if t.status == "failed"), None)
                what = f"{bad.task}: {bad.message}" if bad else "a task failed"
                out.append(HostVerdict(host, "unknown", f"the check failed, so drift is unknown: {what}"[:500], ()))
            else:
                changed = tuple(
                    {"task": t.task, "role": t.role or "", "action": t.action, "diff": t.diff, "message": t.message}
                    for t in mine
                    if t.status == "changed"
                )
                if changed:
                    out.append(HostVerdict(host, "drifted", "", changed))
                elif r.changed:
                    out.append(
                        HostVerdict(
                            host,
                            "drifted",
                            "",
                            (
                                {
                                    "task": f"{r.changed} change(s) reported without a task result",
                                    "role": "",
                                    "action": "",
                                    "diff": "",
                                    "message": "",
                                },
                            ),
                        )
                    )
                else:
                    out.append(HostVerdict(host, "clean", "", ()))
        return out

    def analyze(self, job_id: int) -> list[HostVerdict]:
        """Store the results, move each host's state, keep the history, notify what is new."""
        with self.store.session() as s:
            run = s.get(DriftRun, job_id)
        if run is None:
            raise ValidationError(f"job {job_id} is not a drift check", status=404)
        verdicts = self.verdicts(job_id)
        now = utcnow()
        events: list[DriftEvent] = []
        url = f"{self.settings.public_url}/drift" if self.settings.public_url else ""
        with self.store.session.begin() as s:
            for v in verdicts:
                fp = v.fingerprint
                s.add(
                    DriftResult(
                        job_id=job_id,
                        playbook=run.playbook,
                        host=v.host,
                        state=v.state,
                        reason=v.reason,
                        tasks=list(v.tasks),
                        fingerprint=fp,
                        checked_at=now,
                    )
                )
                st = s.scalar(select(DriftState).where(DriftState.host == v.host, DriftState.playbook == run.playbook))
                if st is None:
                    st = DriftState(
                        host=v.host, playbook=run.playbook, state=v.state, since=now, fingerprint="", tasks=[]
                    )
                    s.add(st)
                elif st.state != v.state:
                    st.since = now
                open_ep = s.scalar(
                    select(DriftEpisode)
                    .where(
                        DriftEpisode.host == v.host,
                        DriftEpisode.playbook == run.playbook,
                        DriftEpisode.resolved_at.is_(None),
                    )
                    .order_by(DriftEpisode.id.desc())
                )
                if v.state == "drifted" and fp != st.fingerprint:
                    if open_ep is not None:
                        open_ep.resolved_at, open_ep.resolved_job, open_ep.resolution = now, job_id, "changed"
                    s.add(
                        DriftEpisode(
                            host=v.host,
                            playbook=run.playbook,
                            fingerprint=fp,
                            tasks=list(v.tasks),
                            roles=sorted({t["role"] for t in v.tasks if t.get("role")}),
                            started_at=now,
                            started_job=job_id,
                        )
                    )
                    events.append(
                        DriftEvent(
                            "drift", v.host, run.playbook, tuple(task_label(t) for t in v.tasks), fp, job_id, url
                        )
                    )
                    st.fingerprint, st.tasks = fp, list(v.tasks)
                elif v.state == "drifted":
                    st.tasks = list(v.tasks)  # same drift: fresher diffs, no notification
                elif v.state == "clean":
                    if st.fingerprint or open_ep is not None:
                        if open_ep is not None:
                            open_ep.resolved_at, open_ep.resolved_job, open_ep.resolution = now, job_id, "clean"
                        events.append(DriftEvent("resolved", v.host, run.playbook, (), st.fingerprint, job_id, url))
                    st.fingerprint, st.tasks = "", []
                st.state, st.reason, st.checked_at, st.last_job_id = v.state, v.reason, now, job_id
        self.notifier.send_async(events)
        log.info("drift check job %s: %s", job_id, ", ".join(f"{v.host}={v.state}" for v in verdicts))
        return verdicts

    # ------------------------------------------------------------------ reading state
    def states(self) -> list[DriftState]:
        with self.store.session() as s:
            return list(s.scalars(select(DriftState).order_by(DriftState.host, DriftState.playbook)))

    def history(self, host: str | None = None, limit: int = 200) -> list[DriftEpisode]:
        q = select(DriftEpisode)
        if host:
            q = q.where(DriftEpisode.host == host)
        with self.store.session() as s:
            return list(s.scalars(q.order_by(DriftEpisode.id.desc()).limit(limit)))

    def recent_checks(self, limit: int = 20) -> list[tuple[DriftRun, Job]]:
        with self.store.session() as s:
            rows = s.execute(
                select(DriftRun, Job).join(Job, Job.id == DriftRun.job_id).order_by(Job.id.desc()).limit(limit)
            )
            return [(r, j) for r, j in rows]

    def results(self, job_id: int) -> list[DriftResult]:
        with self.store.session() as s:
            return list(s.scalars(select(DriftResult).where(DriftResult.job_id == job_id).order_by(DriftResult.host)))

    def summary(self) -> dict[str, Any]:
        """Counts for the dashboard: the worst state per host across playbooks."""
        rank = {"drifted": 2, "unknown": 1, "clean": 0}
        per_host: dict[str, str] = {}
        for st in self.states():
            if rank.get(st.state, 1) >= rank.get(per_host.get(st.host, "clean"), 0):
                per_host[st.host] = st.state
        counts = {k: sum(1 for v in per_host.values() if v == k) for k in rank}
        return {"hosts": per_host, **counts}

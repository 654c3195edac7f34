"""The job engine: the one way a playbook runs (web, API, CLI, schedules, Jarvis all call submit).
It queues, dispatches, launches and cancels; building a runner (homelab.jobs.runner), turning its
events into rows (homelab.jobs.events) and pruning old artifacts (homelab.jobs.retention) live apart.

Design, and why:
- Each job gets a fresh private_data_dir under var/jobs/ and runs through ansible-runner in its
  own thread, with our cancel_callback, no console output and no env/ files written.
- The runner is built the way ansible_runner.run_async builds it (RunnerConfig -> prepare ->
  Runner -> thread), with one step between: the prepared environment is filtered, because the
  runner seeds it from the whole os.environ and the web process holds secrets.
- The event handler only puts the event on a queue. One writer thread drains the queue in
  batches into the store, so a slow database never stalls ansible, and events of a job are
  written in order before the job's final status (the same queue carries both).
- Per-host serialization: a queued job starts only when no running job shares a host with it
  (and none queued before it does), and only while fewer than max_parallel_jobs run.
- Cancel: the cancel_callback answers True and ansible-runner SIGKILLs the process group; any
  process still carrying the job's marker in its environment is then killed too.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import secrets as pysecrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ansible_runner import Runner
from sqlalchemy import select, update

from homelab.catalog import Catalog, JobSpec, ValidationError, job_title
from homelab.inventory import Inventory
from homelab.jobs.events import rows_of, write_rows
from homelab.jobs.retention import prune_artifacts
from homelab.jobs.runner import SECRET_VARS_FILE, build_runner, filter_env
from homelab.masking import MASK
from homelab.processes import kill_marked
from homelab.settings import Settings
from homelab.states import FINAL_STATES, LIVE_STATES
from homelab.store import HostRecap, Job, JobEvent, Store, TaskResult, utcnow

log = logging.getLogger(__name__)


@dataclass
class _Active:
    job_id: int
    hosts: frozenset[str]
    marker: str
    secrets: tuple[str, ...]
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = "canceled on request"
    runner: Runner | None = None
    thread: threading.Thread | None = None


def _another_live_server(pid: int | None) -> bool:
    """Whether pid is a running homelab process other than this one."""
    if not pid or pid == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"homelab" in f.read()
    except OSError:
        return False


class JobEngine:
    """Queue, run, persist and cancel catalog jobs."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        catalog: Catalog,
        inventory: Any,
        pexpect_timeout: float = 0.25,
        coalesce: float = 0.02,
    ) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.inventory = inventory
        self.pexpect_timeout = pexpect_timeout
        self.coalesce = coalesce
        self._lock = threading.RLock()
        self._active: dict[int, _Active] = {}
        self._queue: "queue.Queue[tuple[str, int, Any]]" = queue.Queue()
        self._changed = threading.Condition()
        self._version = 0
        self._writer: threading.Thread | None = None
        self._stopping = threading.Event()
        self.on_finished: list[Callable[[int], None]] = []
        self._specs: dict[int, JobSpec] = {}  # validated specs of jobs queued by this process

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    def for_settings(cls, settings: Settings, **kwargs: Any) -> JobEngine:
        """An engine on the store, inventory and catalog its settings name (the app, the lab tests and
        the benchmarks all start from this); they are its .store, .inventory and .catalog."""
        store = Store(settings.db_url)
        inventory = Inventory(settings.inventory)
        return cls(settings, store, Catalog(settings.catalog, registry=inventory.registry), inventory, **kwargs)

    def start(self) -> None:
        """Recover from a previous process, prune old artifacts, start writing and dispatching."""
        self.settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.recover_stale()
        self.prune_artifacts()
        self._writer = threading.Thread(target=self._write_loop, name="homelab-job-writer", daemon=True)
        self._writer.start()
        self._dispatch()

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel what runs (a server going away must not leave ansible behind) and flush the writer."""
        self._stopping.set()  # first: a job ending now must not start a queued one
        with self._lock:
            active = list(self._active.values())
        for a in active:
            a.cancel_reason = "canceled: the homelab server shut down while it ran"
            a.cancel.set()
        for a in active:
            if a.thread:
                a.thread.join(timeout)
        self._queue.put(("stop", 0, None))
        if self._writer:
            self._writer.join(timeout)

    def recover_stale(self) -> int:
        """Jobs a dead process left queued or running are marked failed with the reason."""
        now = utcnow()
        n = 0
        with self.store.session.begin() as s:
            for job in s.scalars(select(Job).where(Job.status.in_(LIVE_STATES))):
                if _another_live_server(job.server_pid):
                    continue  # a second server on this machine and store still owns it
                killed = kill_marked(job.marker, grace=2.0) if job.marker else 0
                if job.status == "running":
                    job.reason = (
                        f"the homelab server (pid {job.server_pid}) that ran this job stopped before it "
                        f"finished; marked failed when the server started again"
                    )
                else:
                    job.reason = (
                        f"the homelab server (pid {job.server_pid}) stopped before this job could start; "
                        f"marked failed when the server started again (run it again if still wanted)"
                    )
                if killed:
                    job.reason += f"; {killed} leftover ansible process(es) were killed"
                job.status = "failed"
                job.finished_at = now
                n += 1
        if n:
            log.warning("marked %d job(s) of a stopped server as failed", n)
        return n

    # ---------------------------------------------------------------- public API
    def submit(
        self,
        spec: JobSpec,
        actor: str,
        source: str = "web",
        rerun_of: int | None = None,
        requested_limit: str = "",
        title: str = "",
    ) -> Job:
        """Record a validated job as queued and start it when its hosts and a slot are free. Its
        title says what it is (a check is a check: homelab.catalog.job_title) unless one is given."""
        marker = pysecrets.token_hex(16)
        with self.store.session.begin() as s:
            job = Job(
                playbook=spec.entry.id,
                title=title or job_title(self.catalog, spec),
                params=spec.masked_params(),
                limit=spec.limit,
                requested_limit=requested_limit,
                hosts=list(spec.hosts),
                check=spec.check,
                diff=spec.diff,
                status="queued",
                created_by=actor,
                source=source,
                rerun_of=rerun_of,
                server_pid=os.getpid(),
                marker=marker,
                tags=list(spec.tags),
            )
            s.add(job)
            s.flush()
            job_id = job.id
        with self._lock:
            self._specs[job_id] = spec
        self._notify()
        self._dispatch()
        return self.get(job_id)

    def rerun(self, job_id: int, actor: str, source: str = "web") -> Job:
        """The same playbook, parameters, limit and mode, validated again against today's catalog."""
        old = self.get(job_id)
        entry = self.catalog.get(old.playbook)
        if any(p.secret and p.name in old.params for p in entry.parameters) or MASK in old.params.values():
            raise ValidationError(
                f"job {job_id} had secret parameters, which are not stored; start it from the catalog", status=409
            )
        spec = self.catalog.prepare(
            old.playbook,
            old.params,
            old.requested_limit,
            check=old.check,
            diff=old.diff,
            inventory=self.inventory,
            tags=list(old.tags or []),
        )
        return self.submit(spec, actor, source, rerun_of=job_id, requested_limit=old.requested_limit)

    def cancel(self, job_id: int, actor: str = "") -> str:
        """Cancel a queued or running job; returns the status it had."""
        with self._lock:
            active = self._active.get(job_id)
            if active:
                active.cancel_reason = f"canceled by {actor or 'someone'} while running"
                active.cancel.set()
                with self.store.session.begin() as s:
                    s.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
                self._notify()
                return "running"
            with self.store.session.begin() as s:
                job = s.get(Job, job_id)
                if job is None:
                    raise ValidationError(f"job {job_id} does not exist", status=404)
                if job.status != "queued":
                    return job.status
                job.status = "canceled"
                job.cancel_requested = True
                job.reason = f"canceled by {actor or 'someone'} while queued"
                job.finished_at = utcnow()
            self._specs.pop(job_id, None)
        self._notify()
        self._dispatch()
        return "queued"

    def get(self, job_id: int) -> Job:
        with self.store.session() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise ValidationError(f"job {job_id} does not exist", status=404)
            return job

    def events_after(self, job_id: int, after: int = 0, limit: int = 1000) -> list[JobEvent]:
        with self.store.session() as s:
            return list(
                s.scalars(
                    select(JobEvent)
                    .where(JobEvent.job_id == job_id, JobEvent.seq > after)
                    .order_by(JobEvent.seq)
                    .limit(limit)
                )
            )

    def recaps(self, job_id: int) -> list[HostRecap]:
        with self.store.session() as s:
            return list(s.scalars(select(HostRecap).where(HostRecap.job_id == job_id).order_by(HostRecap.host)))

    def task_results(self, job_id: int) -> list[TaskResult]:
        with self.store.session() as s:
            return list(s.scalars(select(TaskResult).where(TaskResult.job_id == job_id).order_by(TaskResult.seq)))

    def wait_for_change(self, version: int, timeout: float) -> int:
        """Block until the store changed after `version` (or timeout); returns the new version."""
        with self._changed:
            if self._version == version:
                self._changed.wait(timeout)
            return self._version

    @property
    def version(self) -> int:
        return self._version

    def wait(self, job_id: int, timeout: float = 300.0) -> Job:
        """Until the job reaches a final state (tests, CLI); raises TimeoutError."""
        deadline = time.monotonic() + timeout
        v = self.version
        while True:
            job = self.get(job_id)
            if job.status in FINAL_STATES:
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout:.0f}s")
            v = self.wait_for_change(v, min(left, 1.0))

    def active_ids(self) -> list[int]:
        with self._lock:
            return sorted(self._active)

    # ---------------------------------------------------------------- dispatching
    def _dispatch(self) -> None:
        if self._stopping.is_set():
            return
        with self._lock:
            with self.store.session() as s:
                queued = list(s.scalars(select(Job).where(Job.status == "queued").order_by(Job.id)))
            busy: dict[str, int] = {}  # host -> the job that holds it (running, or queued before)
            for a in self._active.values():
                busy.update(dict.fromkeys(a.hosts, a.job_id))
            waiting: dict[int, str] = {}
            for job in queued:
                hosts = frozenset(job.hosts)
                if job.id in self._active:
                    continue
                blockers = sorted({busy[h] for h in hosts if h in busy})
                if blockers:
                    held = sorted(h for h in hosts if h in busy)
                    waiting[job.id] = (
                        f"waiting: {', '.join(held)} busy with job {', '.join('#' + str(b) for b in blockers)}"
                    )
                    for h in hosts:
                        busy.setdefault(h, job.id)  # a later job on these hosts waits behind this one
                    continue
                if len(self._active) >= self.settings.max_parallel_jobs:
                    waiting[job.id] = (
                        f"waiting: {len(self._active)} jobs running, the limit is {self.settings.max_parallel_jobs}"
                    )
                    continue
                spec = self._specs.get(job.id)
                if spec is None:  # queued by another process: never started here
                    continue
                busy.update(dict.fromkeys(hosts, job.id))
                self._launch(job, spec)
            changed = {
                jid: why for jid, why in waiting.items() if why != next((j.reason for j in queued if j.id == jid), None)
            }
            if changed:
                with self.store.session.begin() as s:
                    for jid, why in changed.items():
                        s.execute(update(Job).where(Job.id == jid, Job.status == "queued").values(reason=why))
                self._notify()

    def _launch(self, job: Job, spec: JobSpec) -> None:
        active = _Active(job_id=job.id, hosts=frozenset(job.hosts), marker=job.marker, secrets=spec.secrets)
        self._active[job.id] = active
        pdd = self.settings.jobs_dir / f"{job.id:06d}"
        try:
            if pdd.exists():
                shutil.rmtree(pdd)
            pdd.mkdir(parents=True, mode=0o700)
            runner = self._build_runner(job, spec, pdd, active)
        except Exception as exc:  # the job cannot start: say why, free the slot
            log.exception("job %s could not start", job.id)
            self._active.pop(job.id, None)
            self._queue.put(
                ("finish", job.id, {"status": "failed", "rc": None, "reason": f"could not start: {exc}", "done": None})
            )
            return
        active.runner = runner
        with self.store.session.begin() as s:
            s.execute(
                update(Job)
                .where(Job.id == job.id)
                .values(
                    status="running", reason="", started_at=utcnow(), artifacts_dir=str(pdd), server_pid=os.getpid()
                )
            )
        self._notify()
        active.thread = threading.Thread(target=self._run, args=(active,), name=f"homelab-job-{job.id}", daemon=True)
        active.thread.start()

    def _build_runner(self, job: Job, spec: JobSpec, pdd: Path, active: _Active) -> Runner:
        return build_runner(
            self.settings,
            job,
            spec,
            pdd,
            cancelled=active.cancel.is_set,
            on_event=functools.partial(self._on_event, job.id),
            pexpect_timeout=self.pexpect_timeout,
        )

    def filter_env(self, prepared: dict[str, str], server_env: dict[str, str] | None = None) -> dict[str, str]:
        """Keep what ansible-runner added or changed and the allow-listed variables; drop the rest."""
        return filter_env(self.settings.job_env_allow, prepared, server_env)

    def _on_event(self, job_id: int, event: dict[str, Any]) -> bool:
        """Runs in the runner's thread: only enqueue. False: the runner writes no job_events file."""
        self._queue.put(("event", job_id, event))
        return False

    def _run(self, active: _Active) -> None:
        assert active.runner is not None
        status, rc, reason = "failed", None, ""
        try:
            runner_status, rc = active.runner.run()
            if active.cancel.is_set():
                status, reason = "canceled", active.cancel_reason
            elif runner_status == "successful":
                status = "successful"
            else:
                status = "failed"
                reason = f"ansible-playbook ended with rc={rc} ({runner_status})"
        except Exception as exc:  # a runner crash must still end the job
            log.exception("job %s crashed", active.job_id)
            reason = f"the job engine failed: {exc}"
        finally:
            secret_file = Path(active.runner.config.private_data_dir) / SECRET_VARS_FILE
            secret_file.unlink(missing_ok=True)
            leftovers = kill_marked(active.marker)
            if leftovers:
                reason += f"; killed {leftovers} leftover process(es)"
            done = threading.Event()
            self._queue.put(("finish", active.job_id, {"status": status, "rc": rc, "reason": reason, "done": done}))
            done.wait(60)
            with self._lock:
                self._active.pop(active.job_id, None)
                self._specs.pop(active.job_id, None)
            self.prune_artifacts()
            for cb in self.on_finished:
                try:
                    cb(active.job_id)
                except Exception:  # a listener must not break the engine
                    log.exception("on_finished listener failed")
            self._dispatch()

    # ---------------------------------------------------------------- the writer
    def _write_loop(self) -> None:
        """Drain the queue in batches: one transaction per batch, not per event.

        After the first item, wait up to `coalesce` seconds for more, so a trickle of events
        becomes a few transactions (less CPU taken from ansible on a small machine) at the
        cost of at most that much streaming latency.
        """
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.coalesce
            while len(batch) < 2000:
                try:
                    left = deadline - time.monotonic()
                    batch.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
                if batch[-1][0] in ("finish", "stop"):
                    break
            stop = any(kind == "stop" for kind, _, _ in batch)
            try:
                self._write(batch)
            except Exception:
                log.exception("writing %d job events failed", len(batch))
                for kind, _, payload in batch:  # never leave a caller waiting on a finish
                    if kind == "finish" and payload.get("done"):
                        payload["done"].set()
            self._notify()
            if stop:
                return

    def _secrets_of(self, job_id: int) -> tuple[str, ...]:
        with self._lock:
            a = self._active.get(job_id)
            return a.secrets if a else ()

    def _write(self, batch: list[tuple[str, int, Any]]) -> None:
        rows = rows_of(batch, self._secrets_of)
        write_rows(self.store, rows)
        for _, p in rows.finishes:
            if p.get("done"):
                p["done"].set()

    def _notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    # ---------------------------------------------------------------- retention
    def prune_artifacts(self) -> list[Path]:
        """Drop private data dirs older than the age limit or beyond the count; never a live job's."""
        with self._lock:
            active = set(self._active)
        return prune_artifacts(self.settings, self.store, active)

"""The scheduler: APScheduler inside the server process, exactly one active across workers. It
fires every kind of schedule (drift checks, real runs, Jarvis cycles) and knows each action only by
the handler registered for it (Scheduler.register): it hands the job over and waits for it to end,
nothing more (as Semaphore's schedule pool only hands tasks to its task pool).

Why it is built this way:
- Jobs live in the same database as everything else (SQLAlchemyJobStore), so next run times
  survive a restart and a run missed while the server was down fires once when it comes back
  (coalesce=True, within misfire_grace_time) instead of never or many times.
- Exactly one scheduler runs even with several web workers or servers on one store: each
  process tries to hold a lease row (scheduler_lease) that it renews every few seconds; only
  the holder runs APScheduler. A holder that dies stops renewing and another takes over after
  the lease expires. A row lease works on SQLite and PostgreSQL alike (an fcntl lock would not
  cover two machines sharing one PostgreSQL).
- A scheduled run waits for its check job to end, so max_instances=1 really means one check
  of a schedule at a time; DriftService.check (the "check" handler) also refuses a second check of a host that has
  one queued or running, and the engine serializes jobs per host.
- The schedules file is re-read when it changes (web edits, git pull): jobs whose trigger did
  not change keep their persisted next run time.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import socket
import threading
from typing import Any, Callable

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from homelab.catalog import ValidationError
from homelab.schedule.definitions import Schedule, ScheduleError, Schedules
from homelab.store import SchedulerLease, Store, table, utcnow

log = logging.getLogger(__name__)
LEASE = "drift-scheduler"
JOB_TABLE = "apscheduler_jobs"
_LEADER: "Scheduler | None" = None  # the scheduler of this process while it holds the lease
_LEADER_LOCK = threading.Lock()


def run_scheduled(schedule_id: str) -> None:
    """What APScheduler calls (by reference, from its job store): one scheduled drift check."""
    with _LEADER_LOCK:
        leader = _LEADER
    if leader is None:
        log.warning("schedule %s fired in a process that no longer leads; skipped", schedule_id)
        return
    leader.fire(schedule_id)


# What fires one action: takes the schedule, returns the job to wait for (None: nothing to wait for).
# It raises ValidationError when the schedule may not run now (the reason is logged).
Handler = Callable[[Schedule], "int | None"]


class Scheduler:
    """Lease holder election plus the APScheduler instance of the holder."""

    def __init__(
        self,
        store: Store,
        schedules: Schedules,
        wait: Callable[[int, float], Any],
        lease_seconds: float = 30.0,
        tick: float = 5.0,
        misfire_grace_seconds: int = 6 * 3600,
        job_timeout: float = 6 * 3600,
    ) -> None:
        self.store = store
        self.schedules = schedules
        self.wait = wait  # (job id, timeout) -> the ended job; raises TimeoutError (JobEngine.wait)
        self.lease_seconds = lease_seconds
        self.tick = tick
        self.misfire_grace_seconds = misfire_grace_seconds
        self.job_timeout = job_timeout
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.error = ""  # the schedules file's problem, shown on the Drift page
        self._aps: Any = None
        self._mtime = -1.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        # action -> what fires it: "check" (the drift service), "run" (run_playbook_handler: a real
        # run of the catalog playbook, proactive maintenance), "jarvis" (a diagnosis cycle).
        self.handlers: dict[str, Handler] = {}
        # Built-in schedules (every()): fired like the file's, but set by the server's settings, not
        # the file; their ids hold a ':' that no schedule of the file may have.
        self.builtin: dict[str, Schedule] = {}

    def register(self, action: str, handler: Handler) -> None:
        """Say what fires schedules of this action (the app factory does, for each part it composes)."""
        self.handlers[action] = handler

    def every(self, action: str, seconds: int, handler: Handler) -> None:
        """A built-in schedule: the action every `seconds`, on the lease holder only, first at once
        when it is new (the status cycle: HOMELAB_STATUS_INTERVAL)."""
        self.register(action, handler)
        sid = f"builtin:{action}"
        self.builtin[sid] = Schedule(id=sid, playbook="", interval=f"{seconds}s", action=action)
        self._mtime = -1.0  # sync at the next tick

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="homelab-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(30)
        self._step_down()
        with self.store.session.begin() as s:
            s.execute(
                update(SchedulerLease)
                .where(SchedulerLease.name == LEASE, SchedulerLease.holder == self.holder)
                .values(expires_at=utcnow() - dt.timedelta(seconds=1))
            )

    def reload(self) -> None:
        """Re-read the schedules now (after an edit) instead of at the next tick."""
        self._mtime = -1.0
        self._wake.set()

    @property
    def leading(self) -> bool:
        return self._aps is not None

    def lease_holder(self) -> tuple[str, dt.datetime] | None:
        with self.store.session() as s:
            row = s.get(SchedulerLease, LEASE)
            return (row.holder, row.expires_at) if row and row.expires_at > utcnow() else None

    def next_runs(self) -> dict[str, dt.datetime | None]:
        """schedule id -> next run time (UTC), from the persisted job store (any process can read it)."""
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        try:
            js = SQLAlchemyJobStore(engine=self.store.engine, tablename=JOB_TABLE)
            js.start(None, "default")
            return {
                j.id: (j.next_run_time.astimezone(dt.timezone.utc).replace(tzinfo=None) if j.next_run_time else None)
                for j in js.get_all_jobs()
            }
        except Exception:  # the table does not exist before the first leader started
            return {}

    # ---------------------------------------------------------------- election
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._renew():
                    if self._aps is None:
                        self._lead()
                    elif self.schedules.mtime() != self._mtime:
                        self._sync()
                elif self._aps is not None:
                    log.warning("scheduler: lost the lease, standing by")
                    self._step_down()
            except Exception:
                log.exception("scheduler tick failed")
            self._wake.wait(self.tick)
            self._wake.clear()

    def _renew(self) -> bool:
        """Take or extend the lease; True when this process holds it."""
        now = utcnow()
        until = now + dt.timedelta(seconds=self.lease_seconds)
        with self.store.engine.begin() as conn:
            t = table(SchedulerLease)
            r = conn.execute(
                update(t)
                .where(t.c.name == LEASE, or_(t.c.holder == self.holder, t.c.expires_at < now))
                .values(holder=self.holder, expires_at=until)
            )
            if r.rowcount == 1:
                return True
            if conn.execute(select(t.c.name).where(t.c.name == LEASE)).first() is not None:
                return False
        try:
            with self.store.engine.begin() as conn:
                conn.execute(insert(table(SchedulerLease)).values(name=LEASE, holder=self.holder, expires_at=until))
            return True
        except IntegrityError:
            return False

    def _lead(self) -> None:
        global _LEADER
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        aps = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.store.engine, tablename=JOB_TABLE)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": self.misfire_grace_seconds},
            timezone=dt.datetime.now().astimezone().tzinfo,
        )
        aps.start(paused=True)  # no job fires before the file and the store agree
        with _LEADER_LOCK:
            _LEADER = self
        self._aps = aps
        self._sync()
        aps.resume()
        log.info("scheduler: leading (%s)", self.holder)

    def _step_down(self) -> None:
        global _LEADER
        aps, self._aps = self._aps, None
        with _LEADER_LOCK:
            if _LEADER is self:
                _LEADER = None
        if aps is not None:
            try:
                aps.shutdown(wait=False)
            except Exception:
                log.exception("scheduler shutdown failed")

    def _sync(self) -> None:
        """Make the job store hold exactly the enabled schedules of the file and the built-in ones."""
        self._mtime = self.schedules.mtime()
        aps = self._aps
        try:
            wanted = {s.id: s for s in self.schedules.load() if s.enabled}
            self.error = ""
        except ScheduleError as exc:
            self.error = str(exc)
            log.error("drift schedules not applied: %s", exc)
            if aps is not None:  # keep what runs until the file is fixed; the built-in ones still run
                self._add(aps, self.builtin)
            return
        if aps is None:
            return
        wanted.update(self.builtin)
        for job in aps.get_jobs():
            if job.id not in wanted:
                aps.remove_job(job.id)
        self._add(aps, wanted)

    def _add(self, aps: Any, wanted: dict[str, Schedule]) -> None:
        for s in wanted.values():
            trigger = s.trigger()
            job = aps.get_job(s.id)
            if job is not None and str(job.trigger) == str(trigger) and list(job.args) == [s.id]:
                continue  # unchanged: keep the persisted next run time (and a missed run)
            label = {"check": "drift check", "run": "run"}.get(s.action, s.action)
            extra = {"next_run_time": dt.datetime.now(dt.timezone.utc)} if s.id in self.builtin and job is None else {}
            aps.add_job(
                run_scheduled,
                trigger=trigger,
                args=[s.id],
                id=s.id,
                name=f"{label}: {s.playbook or 'built in'}",
                replace_existing=True,
                **extra,
            )

    # ---------------------------------------------------------------- firing
    def launch(self, s: Schedule) -> int | None:
        """Start the schedule's action through its handler, without waiting; the job id (None: no job).
        Raises ValidationError when nothing handles the action here or it may not run now."""
        handler = self.handlers.get(s.action)
        if handler is None:
            raise ValidationError(f"nothing handles action {s.action} here")
        return handler(s)

    def fire(self, schedule_id: str) -> int | None:
        """Start the schedule's action and wait for its job to end; the job id, or None when refused."""
        try:
            s: Schedule = self.builtin.get(schedule_id) or self.schedules.get(schedule_id)
        except (ValidationError, ScheduleError) as exc:
            log.error("schedule %s not run: %s", schedule_id, exc)
            return None
        try:
            job_id = self.launch(s)
        except ValidationError as exc:
            log.error("schedule %s not run: %s", schedule_id, exc)
            return None
        if job_id is not None:
            try:
                self.wait(job_id, self.job_timeout)
            except TimeoutError:
                log.warning("schedule %s: job %s still runs after %ss", schedule_id, job_id, self.job_timeout)
        return job_id


def run_playbook_handler(engine: Any) -> Handler:
    """The "run" action: a scheduled real run of a catalog playbook (proactive maintenance), through the one engine."""

    def run(s: Schedule) -> int:
        spec = engine.catalog.prepare(s.playbook, s.params, s.limit, inventory=engine.inventory)
        job = engine.submit(spec, f"schedule {s.id}", "schedule", requested_limit=s.limit)
        engine.store.audit(
            f"schedule {s.id}",
            "schedule.run",
            f"job {job.id} ({s.playbook})",
            {"limit": s.limit, "params": spec.masked_params()},
        )
        return int(job.id)

    return run

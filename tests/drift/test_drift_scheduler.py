"""The drift scheduler: a short interval schedule fires and stores a result; exactly one of two
server processes on one store runs it, and the other takes over when it stops; a run missed while
no scheduler ran fires once (coalesced) when one starts again."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from homelab.drift import DriftService
from homelab.jobs import JobEngine
from homelab.schedule.definitions import Schedules
from homelab.schedule.runner import LEASE, Scheduler
from homelab.settings import Settings
from homelab.store import DriftResult, DriftRun, Job, SchedulerLease, Store

from drift_fixtures import *  # noqa: F401,F403 (the fixtures)
from drift_helpers import PY, ROOT, wait_until, write_schedules


def _lease(store: Store) -> SchedulerLease | None:
    with store.session() as s:
        return s.get(SchedulerLease, LEASE)


def _scheduled_runs(store: Store) -> list[tuple[int, int | None]]:
    """(job id, pid of the server that ran it) of every check the schedule started."""
    with store.session() as s:
        return [
            (j.id, j.server_pid)
            for j in s.scalars(
                select(Job)
                .join(DriftRun, DriftRun.job_id == Job.id)
                .where(DriftRun.schedule_id == "fast", Job.source == "schedule")
                .order_by(Job.id)
            )
        ]


def test_an_interval_schedule_fires_in_exactly_one_of_two_servers_and_fails_over(
    drift_settings: Settings, server_factory: Any
) -> None:
    settings = replace(drift_settings, scheduler=True)
    write_schedules(
        settings.schedules, [{"id": "fast", "playbook": "files-check", "interval": "6s", "limit": "alpha,beta"}]
    )
    env = {"HOMELAB_SCHEDULES": str(settings.schedules), "HOMELAB_SCHEDULER_LEASE_SECONDS": "6"}
    first = server_factory(settings, extra_env=env).start()
    second = server_factory(settings, extra_env=env).start()
    store = Store(settings.db_url)

    # One lease holder; the schedule fires and its result is stored per host.
    wait_until(lambda: _scheduled_runs(store), 90, "the first scheduled check")
    holder = _lease(store).holder
    pids = {first.proc.pid, second.proc.pid}
    leader_pid = int(holder.split(":")[1])
    assert leader_pid in pids

    def stored() -> bool:
        with store.session() as s:
            return (
                s.scalar(
                    select(func.count())
                    .select_from(DriftResult)
                    .join(DriftRun, DriftRun.job_id == DriftResult.job_id)
                    .where(DriftRun.schedule_id == "fast")
                )
                >= 2
            )

    wait_until(stored, 90, "a stored result of the scheduled check")
    wait_until(lambda: len(_scheduled_runs(store)) >= 3, 120, "three scheduled checks")
    runs = _scheduled_runs(store)
    assert {pid for _, pid in runs} == {leader_pid}, f"only the lease holder schedules: {runs}"
    with store.session() as s:
        jobs = [j for j in s.scalars(select(Job).where(Job.id.in_([r[0] for r in runs])).order_by(Job.id))]
    for a, b in zip(jobs, jobs[1:]):
        assert a.finished_at and b.started_at and a.finished_at <= b.started_at, "two checks of one schedule overlapped"

    # The leader stops: the other server takes the lease and the schedule keeps firing there.
    leader, other = (first, second) if first.proc.pid == leader_pid else (second, first)
    seen = len(runs)
    leader.stop()
    wait_until(
        lambda: _lease(store) and _lease(store).holder.split(":")[1] == str(other.proc.pid),
        60,
        "the other server to take over",
    )
    wait_until(
        lambda: any(pid == other.proc.pid for _, pid in _scheduled_runs(store)[seen:]),
        90,
        "a check scheduled by the new leader",
    )

    # The CLI talks to the running server: status and the schedules with their next run.
    cli_env = {
        "HOMELAB_URL": other.url,
        "HOMELAB_VAR_DIR": str(settings.var_dir),
        "PYTHONPATH": str(ROOT / "webui"),
        "PATH": str(Path(PY).parent) + ":/usr/bin:/bin",
    }
    out = subprocess.run(
        [PY, "-m", "homelab", "drift", "schedules"], env=cli_env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "fast" in out.stdout and "every 6s" in out.stdout, out.stdout + out.stderr
    out = subprocess.run(
        [PY, "-m", "homelab", "drift", "status"], env=cli_env, capture_output=True, text=True, timeout=60
    )
    # a check of "files-check" is recorded as the check of the playbook it converges, "files"
    assert re.search(r"^alpha\s+files\s", out.stdout, re.M), out.stdout + out.stderr
    out = subprocess.run(
        [PY, "-m", "homelab", "drift", "check", "files-check", "-l", "beta"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    # Nothing converged the files yet: beta has drifted, and the CLI names the task.
    assert (
        out.returncode == 0 and "beta: drifted" in out.stdout and "would change: Write the managed config" in out.stdout
    ), out.stdout + out.stderr[-2000:]


def _scheduler(settings: Settings) -> tuple[Scheduler, JobEngine]:
    engine = JobEngine.for_settings(settings)
    store, catalog, inventory = engine.store, engine.catalog, engine.inventory
    engine.start()
    drift = DriftService(settings, store, catalog, inventory, engine)
    scheduler = Scheduler(
        store, Schedules(settings.schedules, catalog, inventory), engine.wait, lease_seconds=6, tick=0.5
    )
    scheduler.register("check", drift.check_schedule)
    return scheduler, engine


def test_a_run_missed_while_no_scheduler_ran_fires_once_when_one_starts(drift_settings: Settings) -> None:
    write_schedules(
        drift_settings.schedules, [{"id": "fast", "playbook": "files-check", "interval": "1h", "limit": "alpha"}]
    )
    sched, engine = _scheduler(drift_settings)
    sched.start()
    wait_until(lambda: sched.next_runs().get("fast"), 30, "the schedule in the job store")
    sched.stop()
    engine.stop()
    store = sched.store
    assert _scheduled_runs(store) == []

    # Pretend the server was down for three intervals: the persisted next run is 3 h in the past.
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    js = SQLAlchemyJobStore(engine=store.engine, tablename="apscheduler_jobs")
    js.start(None, "default")
    job = js.lookup_job("fast")
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=3, minutes=1)
    job.next_run_time = past
    js.update_job(job)

    sched2, engine2 = _scheduler(drift_settings)
    try:
        sched2.start()
        wait_until(lambda: _scheduled_runs(store), 60, "the missed run")
        engine2.wait(_scheduled_runs(store)[0][0], 120)
        nxt = wait_until(lambda: sched2.next_runs().get("fast"), 30, "the next run")
        assert nxt > dt.datetime.utcnow() + dt.timedelta(minutes=50), nxt
        assert len(_scheduled_runs(store)) == 1, "three missed runs must coalesce into one"
    finally:
        sched2.stop()
        engine2.stop()


def test_schedules_are_edited_in_the_web_ui_validated_written_back_and_audited(web: Any, drift_app: Any) -> None:
    from homelab.store import AuditEntry

    from drift_helpers import csrf_from

    h = drift_app.extensions["homelab"]
    path = h.schedules.path
    page = web.get("/drift/schedules").get_data(as_text=True)
    token = csrf_from(page)
    form = {
        "csrf_token": token,
        "rows": "1",
        "id-0": "files-hourly",
        "playbook-0": "files",
        "kind-0": "cron",
        "when-0": "15 3 * * 1",
        "limit-0": "alpha",
        "enabled-0": "1",
        "id-1": "files-often",
        "playbook-1": "files-check",
        "kind-1": "interval",
        "when-1": "30m",
        "limit-1": "",
        "enabled-1": "1",
    }
    r = web.post("/drift/schedules", data=form)
    assert r.status_code == 302, r.get_data(as_text=True)[:3000]
    saved = {s.id: s for s in h.schedules.load()}
    assert saved["files-hourly"].cron == "15 3 * * 1" and saved["files-hourly"].limit == "alpha"
    assert saved["files-often"].interval == "30m" and saved["files-often"].playbook == "files-check"
    assert path.read_text().startswith("---\n# Drift-check schedules")
    before = path.read_text()

    bad = dict(form, **{"when-0": "61 3 * * *"})
    r = web.post("/drift/schedules", data=bad)
    assert r.status_code == 400 and "files-hourly" in r.get_data(as_text=True) and "cron" in r.get_data(as_text=True)
    unknown = dict(form, **{"playbook-1": "nope"})
    assert web.post("/drift/schedules", data=unknown).status_code == 400
    badlimit = dict(form, **{"limit-0": "alpha:&beta"})
    assert web.post("/drift/schedules", data=badlimit).status_code == 400
    assert web.post("/drift/schedules", data={k: v for k, v in form.items() if k != "csrf_token"}).status_code == 403
    assert path.read_text() == before, "a refused edit must leave the file as it was"

    with h.store.session() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.action == "schedules.edit").order_by(AuditEntry.id)).all()
    assert rows[0].outcome == "ok" and [x["id"] for x in rows[0].params["after"]] == ["files-hourly", "files-often"]
    assert [r.outcome.startswith("refused") for r in rows[1:]] == [True, True, True]

    # Delete one row: the file loses it.
    r = web.post(
        "/drift/schedules",
        data=dict(
            form, **{"delete-1": "1", "csrf_token": csrf_from(web.get("/drift/schedules").get_data(as_text=True))}
        ),
    )
    assert r.status_code == 302 and [s.id for s in h.schedules.load()] == ["files-hourly"]
    api = web.get("/api/v1/drift/schedules").get_json()
    assert [s["id"] for s in api["schedules"]] == ["files-hourly"] and json.dumps(api)

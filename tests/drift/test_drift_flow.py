"""Drift checks through the real engine and web app on localhost hosts (directories of managed
files): clean, drifted with named tasks and masked diffs, unknown for an unreachable host,
notifications once per drift to a local HTTP receiver, fix for exactly the drifted host."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sqlalchemy import select

from homelab.store import AuditEntry, DriftEpisode, DriftRun, Job

from drift_fixtures import *  # noqa: F401,F403 (the fixtures)
from drift_helpers import SECRET_TOKEN, csrf_from, wait_until

RUN_TIMEOUT = 180


def _h(app: Any) -> Any:
    return app.extensions["homelab"]


def _post(web: Any, path: str, data: dict[str, Any], page: str = "/drift") -> Any:
    token = csrf_from(web.get(page).get_data(as_text=True))
    return web.post(path, data={**data, "csrf_token": token})


def _job_from_redirect(resp: Any) -> int:
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    m = re.search(r"/jobs/(\d+)$", resp.headers["Location"])
    assert m, resp.headers["Location"]
    return int(m[1])


def _check_done(app: Any, job_id: int) -> None:
    """Until the check job ended and its result was analyzed (and its notifications went out)."""
    h = _h(app)
    h.engine.wait(job_id, RUN_TIMEOUT)

    def analyzed() -> bool:
        with h.store.session() as s:
            run = s.get(DriftRun, job_id)
            return bool(run and run.analyzed_at)

    wait_until(analyzed, 60, f"drift check {job_id} analyzed")
    h.drift.notifier.flush()


def _states(app: Any) -> dict[str, Any]:
    return {st.host: st for st in _h(app).drift.states()}


def test_drift_is_found_named_masked_notified_once_and_fixed_for_exactly_the_drifted_host(
    drift_app: Any, web: Any, files_dir: Path, receiver: Any
) -> None:
    h = _h(drift_app)
    # Converge first (the real playbook, through the engine), then a drift check reports clean.
    spec = h.catalog.prepare("files", {}, "alpha,beta", inventory=h.inventory)
    assert h.engine.wait(h.engine.submit(spec, "t").id, RUN_TIMEOUT).status == "successful"

    job_id = _job_from_redirect(_post(web, "/drift/check", {"schedule": "files-hourly"}))  # the "Run now" button
    _check_done(drift_app, job_id)
    st = _states(drift_app)
    assert st["alpha"].state == "clean" and st["beta"].state == "clean", {k: (v.state, v.tasks) for k, v in st.items()}
    assert st["gamma"].state == "unknown" and "unreachable" in st["gamma"].reason, st["gamma"].reason
    assert receiver.requests == [], "a clean first check must not notify"

    # Drift behind ansible's back on alpha only: a config edit and a removed marker file.
    (files_dir / "alpha.conf").write_text(f"managed = false\napi_token = {SECRET_TOKEN}\n")
    (files_dir / "alpha-two.flag").unlink()
    job_id = _job_from_redirect(_post(web, "/drift/check", {"playbook": "files", "limit": ""}))
    _check_done(drift_app, job_id)
    st = _states(drift_app)
    assert st["alpha"].state == "drifted" and st["beta"].state == "clean" and st["gamma"].state == "unknown"
    tasks = {t["task"]: t for t in st["alpha"].tasks}
    assert set(tasks) == {"Write the managed config", "Keep the marker files"}, tasks
    assert "-managed = false" in tasks["Write the managed config"]["diff"]
    assert "+managed = true" in tasks["Write the managed config"]["diff"]
    assert "# item changed: two" in tasks["Keep the marker files"]["diff"]
    assert "# item changed: one" not in tasks["Keep the marker files"]["diff"]
    assert SECRET_TOKEN not in json.dumps(st["alpha"].tasks), "the secret reached the stored diff"

    # One notification per channel, naming the host and the tasks; the webhook URL's token is never logged.
    for prefix in ("/discord", "/ntfy", "/hook"):
        assert len(receiver.on(prefix)) == 1, (prefix, receiver.requests)
    hook = receiver.json_on("/hook")[0]
    assert hook["event"] == "drift.drift" and hook["host"] == "alpha" and hook["job_id"] == job_id
    assert any("Write the managed config" in t for t in hook["tasks"]) and any("two" in t for t in hook["tasks"])
    discord = receiver.json_on("/discord")[0]
    assert "alpha" in discord["embeds"][0]["title"]
    ntfy = receiver.on("/ntfy")[0]
    assert "alpha" in ntfy["headers"]["Title"] and b"Write the managed config" in ntfy["body"]
    assert all(SECRET_TOKEN.encode() not in r["body"] for r in receiver.requests)

    # The drift page shows the diff (masked) and a fix button; the dashboard shows the state.
    page = web.get("/drift").get_data(as_text=True)
    assert "-managed = false" in page and SECRET_TOKEN not in page and "********" in page
    assert 'data-fix="alpha"' in page and 'data-fix="beta"' not in page
    dash = web.get("/").get_data(as_text=True)
    assert re.search(r'data-host="alpha" data-state="drifted"', dash) and re.search(
        r'data-host="gamma" data-state="unknown"', dash
    )

    # The same unchanged drift seen again: stored, but no repeat notification.
    job_id = _job_from_redirect(_post(web, "/drift/check", {"schedule": "files-hourly"}))
    _check_done(drift_app, job_id)
    assert _states(drift_app)["alpha"].state == "drifted"
    assert len(receiver.requests) == 3, [r["path"] for r in receiver.requests]

    # Fix: the real converge for exactly alpha (audited), then the automatic re-check is clean.
    fix_id = _job_from_redirect(_post(web, "/drift/fix", {"playbook": "files", "host": "alpha"}))
    fix = h.engine.wait(fix_id, RUN_TIMEOUT)
    assert fix.status == "successful" and fix.hosts == ["alpha"] and not fix.check and fix.playbook == "files"
    with h.store.session() as s:
        audit = s.scalars(select(AuditEntry).where(AuditEntry.action == "drift.fix")).all()
        assert [a.target for a in audit] == [f"job {fix_id} (files)"] and audit[0].params["hosts"] == ["alpha"]

    def recheck() -> int | None:
        with h.store.session() as s:
            return s.scalar(select(Job.id).join(DriftRun, DriftRun.job_id == Job.id).where(Job.id > fix_id))

    recheck_id = wait_until(recheck, 60, "the re-check after the fix")
    assert h.engine.get(recheck_id).hosts == ["alpha"]
    _check_done(drift_app, recheck_id)
    assert _states(drift_app)["alpha"].state == "clean"
    assert (files_dir / "alpha-two.flag").is_file()
    resolved = [r for r in receiver.json_on("/hook") if r["event"] == "drift.resolved"]
    assert (
        [r["host"] for r in resolved] == ["alpha"]
        and len(receiver.on("/discord")) == 2
        and len(receiver.on("/ntfy")) == 2
    )

    with h.store.session() as s:
        episodes = s.scalars(select(DriftEpisode).where(DriftEpisode.host == "alpha")).all()
    assert len(episodes) == 1 and episodes[0].resolved_at and episodes[0].resolution == "clean"
    assert episodes[0].started_at <= episodes[0].resolved_at and episodes[0].resolved_job == recheck_id
    # An unreachable host never became clean, and a fix of a host without drift is refused.
    assert _states(drift_app)["gamma"].state == "unknown"
    assert _post(web, "/drift/fix", {"playbook": "files", "host": "beta"}).status_code == 409


def test_a_second_check_of_a_busy_host_is_not_started(drift_app: Any) -> None:
    h = _h(drift_app)
    first, started = h.drift.check("files", "alpha,beta", "t", "api")
    again, started_again = h.drift.check("files-check", "beta", "t", "api")
    other, _ = h.drift.check("files", "alpha", "t", "api")
    assert started and not started_again and again.id == first.id and other.id == first.id
    h.engine.wait(first.id, RUN_TIMEOUT)
    with h.store.session() as s:
        assert s.scalar(select(DriftRun).where(DriftRun.job_id != first.id)) is None


def test_a_failing_notification_channel_is_reported_without_its_url(drift_app: Any, receiver: Any) -> None:
    from homelab.notify import DriftEvent, Notifier

    url = receiver.url.replace("127.0.0.1", "127.0.0.1") + "/hook"
    closed = "http://127.0.0.1:9/api/webhooks/123/TOPSECRET"
    n = Notifier(urls={"discord": closed, "webhook": url})
    n.send([DriftEvent("drift", "alpha", "files", ("t",), "f", 1)])
    assert (
        "discord" in n.failures
        and "TOPSECRET" not in n.failures["discord"]
        and "127.0.0.1" not in n.failures["discord"]
    )
    assert len(receiver.on("/hook")) == 1, "one channel failing must not stop the others"

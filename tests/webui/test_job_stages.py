"""A job's pipeline stages (homelab.jobs.stages): computed from its task results, shown on the job
page, and notified when a staged job fails. The computation is tested on store rows; the page and
the notification on a real ansible-runner run of tests/webui/playbooks/deliver.yml (the delivery
pipeline's stage markers on localhost: Verify fails, the rescue rolls back and fails the run)
through the real engine and app, with a real HTTP receiver on 127.0.0.1 for the webhook."""

from __future__ import annotations

import html as htmllib
import re
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from homelab.jobs.stages import failure_event, job_stages
from homelab.settings import Settings
from homelab.store import Job, TaskResult

from drift_helpers import Receiver
from webui_helpers import HERE, logged_in_app, write_inventory

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _r(seq: int, task: str, status: str = "ok", host: str = "alpha", **kw: Any) -> TaskResult:
    action = kw.pop("action", "ansible.builtin.debug" if task.startswith("Stage: ") else "ansible.builtin.command")
    return TaskResult(seq=seq, host=host, task=task, action=action, status=status, duration=1.0, **kw)


def _by_name(stages: list[Any]) -> dict[str, tuple[str, str]]:
    return {s.name: (s.status, s.message) for s in stages}


# ---------------------------------------------------------------------- the computation
def test_a_job_without_stage_markers_has_no_stages() -> None:
    assert job_stages([_r(1, "Greet"), _r(2, "Write a file", "changed")]) == []


def test_each_result_belongs_to_the_stage_of_the_marker_before_it_and_unreached_ones_are_pending() -> None:
    results = [
        _r(1, "Gather the release (before any stage)", "failed", message="not a stage's"),
        _r(2, "Stage: Validate"),
        _r(3, "Check the commit"),
        _r(4, "Stage: Test"),
        _r(5, "Run the tests", "skipped"),
        _r(6, "Stage: Build"),
        _r(7, "Build the image", "changed"),
        _r(8, "Tag the image"),
    ]
    stages = job_stages(results, "running")
    assert [s.name for s in stages] == ["Validate", "Test", "Build", "Deploy", "Verify"]
    assert [s.status for s in stages] == ["ok", "ok", "running", "pending", "pending"]
    assert stages[0].seconds == 2.0 and stages[2].seconds == 3.0
    done = job_stages(results, "successful")
    assert [s.status for s in done] == ["ok", "ok", "changed", "pending", "pending"]
    assert "Rollback" not in _by_name(done), "Rollback is shown only when it ran"


def test_a_failed_stage_says_its_first_failure_and_the_verdict_after_a_rollback_keeps_rollback_ok() -> None:
    results = [
        _r(1, "Stage: Validate"),
        _r(2, "Stage: Test", "skipped"),
        _r(3, "Stage: Build"),
        _r(4, "Stage: Deploy"),
        _r(5, "Start the new release", "changed"),
        _r(6, "Stage: Verify"),
        _r(7, "Wait for the health check", "failed", message="answered HTTP 502", action="ansible.builtin.uri"),
        _r(8, "Stage: Rollback"),
        _r(9, "Start the previous release", "changed"),
        _r(10, "Fail the run", "failed", message="Verify failed; rolled back", action="ansible.builtin.fail"),
    ]
    stages = job_stages(results, "failed", "ansible-playbook ended with rc=2 (failed)")
    assert _by_name(stages) == {
        "Validate": ("ok", ""),
        "Test": ("skipped", ""),
        "Build": ("ok", ""),
        "Deploy": ("changed", ""),
        "Verify": ("failed", "answered HTTP 502"),
        "Rollback": ("changed", ""),
    }
    assert stages[4].task == "Wait for the health check" and stages[4].host == "alpha"
    # a failure before Deploy: the Rollback's marker is skipped, so what the rescue does after it (record
    # the attempt, the verdict) stays in the failed stage, and Rollback is not shown
    early = [
        _r(1, "Stage: Validate"),
        _r(2, "Stage: Test"),
        _r(3, "Fail when the tests fail", "failed", message="exit 1", action="ansible.builtin.assert"),
        _r(4, "Keep which stage failed and why", action="ansible.builtin.set_fact"),
        _r(5, "Stage: Rollback", "skipped"),
        _r(6, "Record the failed attempt", "changed"),
        _r(7, "Fail, saying which stage failed", "failed", message="failed at Test", action="ansible.builtin.fail"),
    ]
    assert [(s.name, s.status, s.message) for s in job_stages(early, "failed")] == [
        ("Validate", "ok", ""),
        ("Test", "failed", "exit 1"),
        ("Build", "pending", ""),
        ("Deploy", "pending", ""),
        ("Verify", "pending", ""),
    ]
    # a rollback task that fails (not the verdict) fails the rollback
    broken = results[:8] + [_r(9, "Start the previous release", "failed", message="no previous image")]
    assert _by_name(job_stages(broken, "failed"))["Rollback"] == ("failed", "no previous image")


def test_hosts_in_different_stages_keep_their_own_results_and_a_cancel_fails_the_stage_it_was_in() -> None:
    results = [
        _r(1, "Stage: Validate", host="alpha"),
        _r(2, "Stage: Validate", host="beta"),
        _r(3, "Stage: Test", host="alpha"),
        _r(4, "Check the commit", "failed", host="beta", message="beta: not a sha", action="ansible.builtin.assert"),
        _r(5, "Run the tests", host="alpha"),
    ]
    stages = _by_name(job_stages(results, "failed"))
    assert stages["Validate"] == ("failed", "beta: not a sha") and stages["Test"] == ("ok", "")
    canceled = _by_name(job_stages(results[:3] + [results[4]], "canceled", "canceled by admin while running"))
    assert canceled["Test"] == ("failed", "canceled by admin while running") and canceled["Validate"][0] == "ok"
    # a known stage passed over (the pipeline has no Test stage) is skipped, not pending
    no_test = [_r(1, "Stage: Validate"), _r(2, "Stage: Build"), _r(3, "Stage: Deploy")]
    assert [(s.name, s.status) for s in job_stages(no_test, "running")][:3] == [
        ("Validate", "ok"),
        ("Test", "skipped"),
        ("Build", "ok"),
    ]


def test_the_failure_event_names_the_service_the_stage_and_the_job_url() -> None:
    job = Job(id=7, playbook="deliver", title="Deliver a service", params={"service": "stream_bot", "commit": COMMIT})
    job.reason = "ansible-playbook ended with rc=2 (failed)"
    stages = job_stages(
        [
            _r(1, "Stage: Deploy"),
            _r(2, "Start", "failed", message="compose up failed", action="community.docker.docker_compose_v2"),
        ],
        "failed",
    )
    ev = failure_event(job, stages, "https://homelab.example")
    assert ev.title == "Deliver stream_bot failed at Deploy" and ev.alarm is True
    assert ev.url == "https://homelab.example/jobs/7"
    body = ev.as_json()
    assert (body["event"], body["service"], body["commit"], body["stage"]) == (
        "job.stage_failed",
        "stream_bot",
        COMMIT,
        "Deploy",
    )
    assert "Start on alpha: compose up failed" in ev.text() and ev.text().endswith(ev.url)


# ---------------------------------------------------------------------- a real run
@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def site(tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    """The app on the test catalog (its `deliver` entry runs playbooks/deliver.yml), its engine
    started, notifying a real webhook receiver; Jarvis off (it would notify too)."""
    var = tmp_path / "var"
    var.mkdir()
    (tmp_path / "schedules.yml").write_text("schedules: []\n")
    settings = Settings.from_env(
        {
            "HOMELAB_VAR_DIR": str(var),
            "HOMELAB_INVENTORY": str(write_inventory(tmp_path / "inventory.yml")),
            "HOMELAB_CATALOG": str(HERE / "catalog.yml"),
            "HOMELAB_SCHEDULES": str(tmp_path / "schedules.yml"),
            "HOMELAB_SCHEDULER": "0",
            "HOMELAB_PUBLIC_URL": "https://homelab.example/",
        }
    )
    monkeypatch.setenv("HOMELAB_JARVIS", "0")
    monkeypatch.setenv("HOMELAB_NOTIFY_WEBHOOK_URL", receiver.url + "/hook")
    with logged_in_app(settings, monkeypatch, start_engine=True, stop_timeout=60) as pair:
        yield pair


def _run(app: Any, entry: str, params: dict[str, Any]) -> Job:
    """Run a catalog entry on alpha through the engine; return once every on_finished listener (the
    stage alerts among them) ran and what they handed the notifier was sent."""
    h = app.extensions["homelab"]
    listened = threading.Event()
    h.engine.on_finished.append(lambda _job_id: listened.set())  # after StageAlerts: listeners run in order
    job = h.engine.wait(h.engine.submit(h.catalog.prepare(entry, params, "alpha", inventory=h.inventory), "t").id, 180)
    assert listened.wait(60), "the engine's listeners did not run"
    h.drift.notifier.flush()  # the one Notifier of the app (drift, stage alerts, Jarvis)
    return job


def _stage_items(page: str) -> dict[str, dict[str, str]]:
    """The Stages panel's items as a person reads them: name -> status text and failure message."""
    panel = re.search(r'<section class="panel" aria-labelledby="stages-h" id="stages".*?</section>', page, re.S)
    assert panel, "no Stages panel"
    out = {}
    for m in re.finditer(
        r'<li class="stage [^"]*" data-stage="([^"]+)" data-status="([^"]+)"[^>]*>(.*?)</li>', panel[0], re.S
    ):
        text = htmllib.unescape(re.sub(r"<[^>]+>", " ", m[3]))
        why = re.search(r'data-field="failure">(.*?)</p>', m[3], re.S)
        out[m[1]] = {
            "status": m[2],
            "text": " ".join(text.split()),
            "failure": " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", why[1])).split()) if why else "",
        }
    return out


def test_a_real_delivery_whose_verify_fails_shows_its_stages_rolls_back_and_notifies(
    site: tuple[Any, Any], receiver: Receiver
) -> None:
    app, client = site
    job = _run(app, "deliver", {"service": "discord_bot", "commit": COMMIT})
    assert job.status == "failed", job.reason

    for path in (f"/jobs/{job.id}", f"/jobs/{job.id}/summary"):
        page = client.get(path).get_data(as_text=True)
        stages = _stage_items(page)
        assert list(stages) == ["Validate", "Test", "Build", "Deploy", "Verify", "Rollback"], path
        assert {n: s["status"] for n, s in stages.items()} == {
            "Validate": "ok",
            "Test": "ok",
            "Build": "ok",
            "Deploy": "ok",
            "Verify": "failed",
            "Rollback": "ok",
        }
        for s in stages.values():
            assert s["status"] in s["text"], "each stage says its status in words, not only by colour"
        assert stages["Verify"]["failure"] == (
            "Wait for the health check on alpha: the health check of discord_bot answered HTTP 502 at 0123456789ab"
        )
        assert stages["Rollback"]["failure"] == ""
        assert page.index('id="stages"') < page.index('id="recap"'), "the Stages panel comes first"
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert '<span id="job-status" aria-live="polite"><span class="badge st-failed">failed</span>' in page

    [body] = [b for b in receiver.json_on("/hook") if b.get("event") == "job.stage_failed"]
    assert body["title"] == "Deliver discord_bot failed at Verify"
    assert body["url"] == f"https://homelab.example/jobs/{job.id}"
    assert (body["job_id"], body["service"], body["commit"], body["stage"]) == (job.id, "discord_bot", COMMIT, "Verify")
    assert body["message"] == "the health check of discord_bot answered HTTP 502 at 0123456789ab"
    assert body["task"] == "Wait for the health check" and body["rollback"] == "ok"
    assert [s["name"] for s in body["stages"]] == ["Validate", "Test", "Build", "Deploy", "Verify", "Rollback"]


def test_a_failed_job_without_stages_and_a_successful_one_send_no_alert(
    site: tuple[Any, Any], receiver: Receiver
) -> None:
    app, _client = site
    assert _run(app, "fail", {}).status == "failed"
    assert _run(app, "hello", {}).status == "successful"
    assert [b for b in receiver.json_on("/hook") if b.get("event") == "job.stage_failed"] == []
    assert receiver.on("/hook") == [], "nothing else notified either"

"""What a newcomer hit (issue 12, "Also fix what a newcomer hit"), each against a real store, the
app and real ansible-runner runs on localhost: a job's output without the bare timestamps of
skipped tasks, task results grouped with the skipped ones hidden, disruptive operations confirmed."""

from __future__ import annotations

import html
import json
import os
import pty
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from homelab.joboutput import bare_timestamp
from homelab.schedule.definitions import parse_schedule
from homelab.settings import Settings
from homelab.store import AuditEntry, Job
from homelab.web.auth import create_token

from webui_helpers import HERE, ROOT, csrf_from, wait_until, write_inventory

NEWCOMER = HERE / "newcomer"
SPAN_RE = re.compile(r'<span class="line" data-seq="(\d+)">(.*?)\n</span>', re.S)
TAG_RE = re.compile(r"<[^>]+>")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    var = tmp_path / "var"
    var.mkdir()
    schedules = tmp_path / "schedules.yml"
    schedules.write_text("schedules: []\n")
    return Settings.from_env(
        {
            "HOMELAB_VAR_DIR": str(var),
            "HOMELAB_INVENTORY": str(_inventory(tmp_path)),
            "HOMELAB_CATALOG": str(NEWCOMER / "catalog.yml"),
            "HOMELAB_MAX_PARALLEL_JOBS": "2",
            "HOMELAB_SCHEDULES": str(schedules),
        }
    )


def _inventory(tmp_path: Path) -> Path:
    """alpha and beta on localhost, each with its own directory of managed files (files.yml)."""
    path = write_inventory(tmp_path / "inventory.yml")
    for host in ("alpha", "beta"):
        (tmp_path / "managed" / host).mkdir(parents=True)
    text = path.read_text()
    for host in ("alpha", "beta"):
        text = text.replace(f"{host}: {{", f"{host}: {{newcomer_dir: {tmp_path / 'managed' / host}, ")
    path.write_text(text)
    return path


def _text(fragment: str) -> str:
    return html.unescape(TAG_RE.sub("", fragment))


def _start(client: Any, entry: str, form: dict[str, str]) -> int:
    page = client.get(f"/catalog/{entry}").get_data(as_text=True)
    r = client.post(f"/catalog/{entry}", data={**form, "csrf_token": csrf_from(page)})
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    return int(r.headers["Location"].rsplit("/", 1)[1])


def _shown_lines_say_what_follows(lines: list[str]) -> None:
    """Every timestamp line shown is followed by the banner of the task it timed, or is the time of
    profile_tasks' own TASKS RECAP."""
    for i, text in enumerate(lines):
        if bare_timestamp(text):
            assert i + 1 < len(lines), "the output ends with a bare timestamp"
            if i and lines[i - 1].strip().startswith("TASKS RECAP"):
                continue
            nxt = lines[i + 1].strip()
            assert nxt.startswith(("TASK [", "PLAY RECAP", "RUNNING HANDLER")), (
                f"a timestamp line is followed by {nxt[:80]!r}, not a task banner"
            )


def test_a_run_with_many_skipped_tasks_reads_without_their_noise(app: Any, logged_in: Any, tmp_path: Path) -> None:
    job_id = _start(logged_in, "skips", {"skips_dir": str(tmp_path), "limit": ""})
    h = app.extensions["homelab"]
    job = h.engine.wait(job_id, timeout=300)
    assert job.status == "failed", job.reason  # breaky fails on alpha: a failure to sort first

    stored = h.engine.events_after(job_id, 0, limit=100000)
    bare = [e for e in stored if bare_timestamp(e.stdout)]
    assert len(bare) >= 25, "the fixture must leave the noise the page has to drop"

    page = logged_in.get(f"/jobs/{job_id}").get_data(as_text=True)
    shown = [_text(t) for _, t in SPAN_RE.findall(page)]
    assert any("TASK [skippy : Write the marker (changed)]" in t for t in shown)
    _shown_lines_say_what_follows(shown)
    shown_bare = sum(1 for t in shown if bare_timestamp(t))
    assert shown_bare <= len(bare) - 25, f"{shown_bare} of {len(bare)} timestamp lines still shown"
    assert not any("TASK [skippy : Skipped step" in t for t in shown), "a skipped task's banner is shown"

    # the live stream the page follows says the same; the API's events stay as ansible printed them
    body = logged_in.get(f"/jobs/{job_id}/stream").get_data(as_text=True)
    streamed = [json.loads(d) for d in re.findall(r"^event: output\ndata: (.*)$", body, re.M)]
    assert streamed and [e["seq"] for e in streamed] == sorted(e["seq"] for e in streamed)
    _shown_lines_say_what_follows([_text(e["html"]) for e in streamed])
    assert "event: end" in body
    raw = logged_in.get(f"/api/v1/jobs/{job_id}/events").get_json()
    assert sum(1 for e in raw if bare_timestamp(e["stdout"])) == len(bare)

    # task results: grouped by role and host, failed groups first, then changed; skipped hidden
    summary = page[page.index('id="task-results"') :]
    group_re = r'<tbody class="result-group([^"]*)" data-role="([^"]*)" data-host="([^"]*)">(.*?)</tbody>'
    groups = re.findall(group_re, summary, re.S)
    keys = [(role, host) for _, role, host, _ in groups]
    assert keys[0] == ("breaky", "alpha"), keys
    assert set(keys[1:3]) == {("skippy", "alpha"), ("skippy", "beta")}, keys
    assert len(keys) == len(set(keys)) == 6, keys  # play tasks, skippy and breaky on each host
    hidden = {(role, host) for cls, role, host, _ in groups if "r-skipped" in cls}
    assert hidden == {("breaky", "beta")}, "a group of only skipped tasks is hidden by default"
    for _, role, host, rows in groups:
        statuses = re.findall(r'<tr class="r-(\w+)" data-status="\w+">', rows)
        order = {"failed": 0, "changed": 1, "ignored": 2, "ok": 3, "skipped": 4}
        assert [order[s] for s in statuses] == sorted(order[s] for s in statuses), (role, host, statuses)
        if role == "skippy":
            assert statuses[0] == "changed" and statuses.count("skipped") == 25, statuses
            took = re.findall(r'<td class="took">([^<]*)</td>', rows)
            assert all(re.fullmatch(r"\d+\.\d s|\d+ s|\d+ min \d\d s", t) for t in took), took
    toggle = r'<input type="checkbox" id="show-skipped"[^>]*><label for="show-skipped"[^>]*>Show the 51 skipped'
    assert re.search(toggle, summary), "a toggle shows the 25 x 2 skipped tasks and breaky's on beta"


def test_a_disruptive_operation_says_what_it_interrupts_and_needs_a_confirmation(
    app: Any, logged_in: Any, tmp_path: Path
) -> None:
    h = app.extensions["homelab"]
    form_page = logged_in.get("/catalog/bounce").get_data(as_text=True)
    assert "The test service stops answering while it restarts." in form_page
    assert re.search(r'<input type="checkbox" name="confirm" value="1"[^>]*required', form_page)

    def jobs() -> int:
        with h.store.session() as s:
            return s.query(Job).count()

    # the form without the confirmation: 400, the page says why, nothing starts
    r = logged_in.post("/catalog/bounce", data={"bounce_dir": str(tmp_path), "csrf_token": csrf_from(form_page)})
    assert r.status_code == 400 and "confirm" in r.get_data(as_text=True).lower()
    assert jobs() == 0 and not list(tmp_path.glob("bounced-*"))
    # the API: no confirm, or confirm false, or not a boolean -> 400, nothing starts
    token = {"Authorization": "Bearer " + create_token(h.store, "admin", "test")}
    for extra in ({}, {"confirm": False}, {"confirm": "yes"}):
        r = logged_in.post(
            "/api/v1/jobs", json={"playbook": "bounce", "params": {"bounce_dir": str(tmp_path)}, **extra}, headers=token
        )
        assert r.status_code == 400, (extra, r.get_json())
        assert r.get_json()["field"] == "confirm", r.get_json()
    assert jobs() == 0
    with h.store.session() as s:
        refusals = [a for a in s.query(AuditEntry).all() if a.action == "job.start"]
    assert len(refusals) == 4 and all("refused" in a.outcome for a in refusals), [a.outcome for a in refusals]

    # confirmed: it runs, and the audit log says it was confirmed
    job_id = _start(logged_in, "bounce", {"bounce_dir": str(tmp_path), "confirm": "1"})
    assert h.engine.wait(job_id, timeout=300).status == "successful"
    r = logged_in.post(
        "/api/v1/jobs",
        json={"playbook": "bounce", "params": {"bounce_dir": str(tmp_path)}, "limit": "alpha", "confirm": True},
        headers=token,
    )
    assert r.status_code == 201, r.get_json()
    assert h.engine.wait(r.get_json()["id"], timeout=300).status == "successful"
    assert sorted(p.name for p in tmp_path.glob("bounced-*")) == ["bounced-alpha.txt", "bounced-beta.txt"]
    with h.store.session() as s:
        started = [a for a in s.query(AuditEntry).all() if a.action == "job.start" and a.outcome == "ok"]
    assert len(started) == 2 and all((a.params or {}).get("confirmed") is True for a in started)
    # the OpenAPI document says so: confirm is required and must be true for this entry only
    doc = logged_in.get("/api/v1/openapi.json").get_json()
    bounce, skips = (_start_shape(doc, entry) for entry in ("bounce", "skips"))
    assert "confirm" in bounce["required"] and bounce["properties"]["confirm"]["const"] is True
    assert "confirm" not in skips["required"] and skips["properties"]["confirm"] == {"type": "boolean"}


def _start_shape(node: Any, entry: str) -> dict[str, Any]:
    """The OpenAPI document's body schema for starting `entry`."""
    if isinstance(node, dict):
        if (node.get("properties") or {}).get("playbook") == {"const": entry} and "params" in node["properties"]:
            return node
        children: Any = node.values()
    elif isinstance(node, list):
        children = node
    else:
        children = ()
    for child in children:
        found = _start_shape(child, entry)
        if found:
            return found
    return {}


def _analyzed(h: Any, job_id: int) -> None:
    h.engine.wait(job_id, timeout=300)
    wait_until(lambda: h.drift.results(job_id), 60, f"the drift result of job {job_id}")


def test_a_check_from_the_catalog_is_a_drift_check_and_a_fix_says_it_is_one(
    app: Any, logged_in: Any, tmp_path: Path
) -> None:
    h = app.extensions["homelab"]
    token = {"Authorization": "Bearer " + create_token(h.store, "admin", "test")}
    # "Check the files (dry run)" from the catalog form: a drift check, named as one
    first = _start(logged_in, "files_check", {"limit": "alpha"})
    _analyzed(h, first)
    assert h.engine.get(first).title == "Check the files (dry run)"
    page = logged_in.get(f"/jobs/{first}").get_data(as_text=True)
    assert 'id="drift-link"' in page and 'href="/drift"' in page
    # "Converge the files" with "Check only" ticked, and the API's check of it: the same check
    second = _start(logged_in, "files", {"limit": "beta", "check": "1"})
    _analyzed(h, second)
    r = logged_in.post("/api/v1/jobs", json={"playbook": "files", "check": True, "limit": "alpha"}, headers=token)
    assert r.status_code == 201, r.get_json()
    third = r.get_json()["id"]
    _analyzed(h, third)
    # and the schedule's check of the converge
    s = parse_schedule({"id": "files-nightly", "playbook": "files", "cron": "0 3 * * *", "limit": "beta"})
    fourth = h.drift.check_schedule(s)
    _analyzed(h, fourth)
    for job_id in (second, third, fourth):
        assert h.engine.get(job_id).title == "Check the files (dry run)", job_id
        assert h.engine.get(job_id).check

    # one drift state per host, whichever way the check came; all four on the Drift page
    states = {(st.host, st.playbook): st for st in h.drift.states()}
    assert set(states) == {("alpha", "files"), ("beta", "files")}, set(states)
    assert all(st.state == "drifted" for st in states.values())
    assert {st.last_job_id for st in states.values()} == {third, fourth}
    drift_page = logged_in.get("/drift").get_data(as_text=True)
    for job_id in (first, second, third, fourth):
        assert f'href="/jobs/{job_id}"' in drift_page, job_id
    assert 'data-fix="alpha"' in drift_page and 'data-fix="beta"' in drift_page

    # the fix is titled as a fix of the drifted host, not "Converge the files"
    form = logged_in.get("/drift").get_data(as_text=True)
    r = logged_in.post("/drift/fix", data={"playbook": "files", "host": "alpha", "csrf_token": csrf_from(form)})
    assert r.status_code == 302, r.get_data(as_text=True)[:500]
    fix = int(r.headers["Location"].rsplit("/", 1)[1])
    assert h.engine.wait(fix, timeout=300).status == "successful"
    assert h.engine.get(fix).title == "Fix drift on alpha (Converge the files)"
    assert (tmp_path / "managed" / "alpha" / "managed-alpha.txt").is_file()
    assert not (tmp_path / "managed" / "beta" / "managed-beta.txt").exists(), "a check changed beta"
    dashboard = logged_in.get("/").get_data(as_text=True)
    assert "Fix drift on alpha (Converge the files)" in dashboard and "Check the files (dry run)" in dashboard


def test_the_cli_runs_from_the_repository_root_with_headed_tables_plain_logs_and_says_when_empty(
    settings: Settings, server_factory: Any, tmp_path: Path
) -> None:
    server = server_factory(
        settings, extra_env={"HOMELAB_SCHEDULER": "0", "HOMELAB_SCHEDULES": str(settings.schedules)}
    ).start()
    env = {"HOMELAB_URL": server.url, "HOMELAB_VAR_DIR": str(settings.var_dir), "PATH": "/usr/bin:/bin"}

    def homelab(*args: str) -> subprocess.CompletedProcess[str]:
        # ./homelab from the repository root, no .venv/bin on PATH; stdout is a pipe, not a terminal
        return subprocess.run(["./homelab", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

    for args, says in (
        (("jobs",), "no job has run yet"),
        (("drift", "status"), "no drift check has run yet: homelab drift check"),
        (("drift", "schedules"), "no schedule"),
        (("drift", "history"), "no drift recorded yet"),
    ):
        out = homelab(*args)
        assert out.returncode == 0 and out.stdout.strip() == says, (args, out.stdout, out.stderr)
    out = homelab("catalog")
    assert out.returncode == 0 and out.stdout.splitlines()[0].split() == ["ID", "CATEGORY", "RISK", "TITLE"]
    assert re.search(r"^bounce\s+operate\s+disruptive\s+Bounce the test service$", out.stdout, re.M), out.stdout

    # a disruptive run needs --confirm; with it, it runs
    out = homelab("run", "bounce", "-p", f"bounce_dir={tmp_path}", "-l", "alpha")
    assert out.returncode != 0 and "confirm" in out.stderr, out.stderr
    out = homelab("run", "bounce", "-p", f"bounce_dir={tmp_path}", "-l", "alpha", "--confirm")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "bounced-alpha.txt").is_file()
    out = homelab("run", "skips", "-p", f"skips_dir={tmp_path}", "-l", "beta")
    job_id = int(re.search(r"^job (\d+):", out.stderr, re.M)[1])  # type: ignore[index]
    assert "\x1b[" not in out.stdout and "TASK [skippy : Write the marker (changed)]" in out.stdout

    # logs into a pipe: the same text without a colour code; the server stored them coloured
    logs = homelab("logs", str(job_id))
    assert logs.returncode == 0 and "\x1b" not in logs.stdout
    assert "changed: [beta]" in logs.stdout and "PLAY RECAP" in logs.stdout
    # to a terminal it keeps ansible's colours
    master, slave = pty.openpty()
    proc = subprocess.Popen(["./homelab", "logs", str(job_id)], cwd=ROOT, env=env, stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other end closed
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0 and b"\x1b[" in seen and b"PLAY RECAP" in seen
    out = homelab("jobs")
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["JOB", "STATUS", "PLAYBOOK", "TITLE", "HOSTS", "BY", "CREATED"], lines
    assert len(lines) == 3, lines
    assert re.match(rf"{job_id}\s+successful\s+skips\s+Many skipped tasks\s+beta\s", lines[1]), lines
    out = homelab("jobs", "--status", "canceled")
    assert out.stdout.strip() == "no job matches", out.stdout

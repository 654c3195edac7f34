"""Jarvis and the delivery pipeline: the release records and commit labels the diagnose script
reports, judged as deploy.unhealthy (roll back, not restart), deploy.behind (deliver the synced
commit, once) and deploy.failed (notify only); the shipped rules for them against the real catalog;
and the whole loop on localhost: a synced commit delivered through the catalog, verified, resolved,
and a failed delivery notified once, never retried."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from homelab.registry import check_entries
from homelab.store import AuditEntry, Job
from jarvis.config import DEFAULT_RULES, Checks, RulesError, load_rules, set_rule_mode
from jarvis.diagnosis import Diagnosis
from jarvis.findings import CODES, Finding
from jarvis.hostchecks import judge

from jarvis_helpers import Box, Receiver

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 26, 12, 0, 0)
OLD, HEAD, NEWER = "a" * 40, "b" * 40, "c" * 40
URL = "https://github.com/me/discord-bot.git"


def ago(minutes: float) -> str:
    return (NOW - dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(
    serving: str = OLD, previous: str = "9" * 40, minutes: float = 600, tried: str = "", **last: str
) -> dict[str, Any]:
    """A release record as roles/node_app writes it (/var/lib/homelab/releases/<service>.json);
    tried: the commit of the last attempt (default: the one serving, live)."""
    return {
        "service": "discord_bot",
        "commit": serving,
        "previous_commit": previous,
        "deployed_at": ago(minutes),
        "last": {"commit": tried or serving, "outcome": "live", "stage": "verify", "message": "", "at": ago(1), **last},
    }


def container(name: str = "discord-bot", commit: str = OLD, **state: Any) -> dict[str, Any]:
    return {
        "name": name,
        "service": "discord_bot",
        "state": "running",
        "running": True,
        "health": "healthy",
        "commit": commit,
        **state,
    }


def git(head: str = HEAD, url: str = "https://***@github.com/me/discord-bot", branch: str = "main") -> dict[str, Any]:
    """The git sync section as diagnose.py reports it (credentials already scrubbed by git sync)."""
    repo = {"path": "/srv/bot", "url": url, "branch": branch, "head": head, "consecutive_failures": 0}
    return {"present": True, "age_seconds": 30, "git_running": False, "data": {"repos": {"bot": repo}}, "locks": []}


def facts(items: list[dict[str, Any]] = (), releases: Any = None, git_sync: Any = None) -> dict[str, Any]:
    return {
        "containers": {"available": True, "error": "", "items": list(items)},
        "disk": [{"mount": "/", "percent": 40.0}],
        "memory": {"percent": 30.0},
        "load": {"load5": 0.5, "cpus": 2},
        "git_sync": git_sync or {"present": False},
        "ddclient": {"present": False},
        "backup": {"present": False},
        "postgres": {"checked": False},
        "releases": {} if releases is None else releases,
    }


def registry(**entry: Any) -> dict[str, Any]:
    return check_entries(
        [
            {
                "name": "discord_bot",
                "enabled": True,
                "project": "discord_bot",
                "containers": ["discord-bot"],
                "source": URL,
                "branch": "main",
                "auto_deploy": True,
                "ops": ["deploy", "restart", "rollback", "deliver"],
                **entry,
            }
        ]
    )


def found(fs: list[Finding]) -> list[tuple[str, str, str]]:
    return sorted((f.code, f.severity, f.target) for f in fs)


# ---------------------------------------------------------------------------------- deploy.unhealthy
def test_a_container_failing_right_after_a_deploy_is_one_deploy_unhealthy_per_service_not_container_down() -> None:
    items = [
        container(state="exited", running=False, exit_code=1, health=""),
        container("discord-bot-worker", health="unhealthy", health_output="timeout"),
        {"name": "n8n", "service": "n8n", "state": "exited", "running": False, "exit_code": 137},
    ]
    fs = judge("h", facts(items, {"discord_bot": record(HEAD, OLD, minutes=10)}), Checks(), NOW)
    assert found(fs) == [
        ("container.down", "critical", "h/container:n8n"),  # no release record: the restart rule's
        ("deploy.unhealthy", "critical", "h/deploy:discord_bot"),
    ]
    [f] = [f for f in fs if f.code == "deploy.unhealthy"]
    assert f.params == {"host": "h", "service": "discord_bot", "commit": HEAD, "previous_commit": OLD}
    assert f.host == "h" and f.scope == "host:h"
    assert "10 min after bbbbbbbbbbbb" in f.summary and "previous release is aaaaaaaaaaaa" in f.summary
    assert [c["name"] for c in f.evidence["containers"]] == ["discord-bot", "discord-bot-worker"]


def test_a_release_that_dies_after_each_start_is_deploy_unhealthy_even_while_up_between_crashes() -> None:
    """Docker restarts it (unless-stopped), so between crashes it runs, healthy: its restart count and
    a recent start say it is looping. Right after a deploy that is a rollback, later a restart loop."""
    up = [container(restart_count=5, started_at=ago(1))]
    fs = judge("h", facts(up, {"discord_bot": record(HEAD, OLD, minutes=5)}), Checks(), NOW)
    assert found(fs) == [("deploy.unhealthy", "critical", "h/deploy:discord_bot")]
    late = judge("h", facts(up, {"discord_bot": record(HEAD, OLD, minutes=60)}), Checks(), NOW)
    assert found(late) == [("container.restart_loop", "warning", "h/container:discord-bot")]
    settled = [container(restart_count=5, started_at=ago(30))]  # restarted long ago, fine since
    assert judge("h", facts(settled, {"discord_bot": record(HEAD, OLD, minutes=5)}), Checks(), NOW) == []


def test_after_the_watch_window_or_the_pipeline_s_own_rollback_the_container_findings_apply_again() -> None:
    down = [container(state="exited", running=False, exit_code=1)]
    late = judge("h", facts(down, {"discord_bot": record(HEAD, OLD, minutes=31)}), Checks(), NOW)
    assert found(late) == [("container.down", "critical", "h/container:discord-bot")]
    wider = Checks(host={"deploy_watch_minutes": 60})
    assert [f.code for f in judge("h", facts(down, {"discord_bot": record(HEAD, OLD, minutes=31)}), wider, NOW)] == [
        "deploy.unhealthy"
    ]
    # the pipeline rolled back itself: a second rollback would go forward to the release that failed
    rolled = record(OLD, "9" * 40, minutes=5, tried=HEAD, outcome="rolled_back", stage="verify", message="502")
    assert "deploy.unhealthy" not in [f.code for f in judge("h", facts(down, {"discord_bot": rolled}), Checks(), NOW)]
    healthy = judge("h", facts([container()], {"discord_bot": record(HEAD, OLD, minutes=5)}), Checks(), NOW)
    assert healthy == []


# ------------------------------------------------------------------------------------ deploy.behind
def test_a_newer_synced_commit_of_an_auto_deploy_service_is_deploy_behind_with_the_commit_in_its_target() -> None:
    fs = judge("h", facts([container()], {"discord_bot": record()}, git()), Checks(), NOW, registry())
    assert found(fs) == [("deploy.behind", "info", f"h/deploy:discord_bot@{HEAD}")]
    assert fs[0].params == {"host": "h", "service": "discord_bot", "commit": HEAD}
    assert fs[0].evidence["serving"] == OLD and "git sync has bbbbbbbbbbbb on main" in fs[0].summary
    # without a release record the container's homelab.commit says what serves
    assert found(judge("h", facts([container()], {}, git(OLD)), Checks(), NOW, registry())) == []
    assert [f.target for f in judge("h", facts([container()], {}, git()), Checks(), NOW, registry())] == [
        f"h/deploy:discord_bot@{HEAD}"
    ]


def test_a_source_that_is_the_checkout_git_sync_keeps_matches_its_path() -> None:
    """Production builds each bot from its checkout in the project tree (discord_bot_git_repo is a path
    on the host), the one git sync fast-forwards: the source matches the repository's path."""
    fs = judge("h", facts([container()], {"discord_bot": record()}, git()), Checks(), NOW, registry(source="/srv/bot"))
    assert found(fs) == [("deploy.behind", "info", f"h/deploy:discord_bot@{HEAD}")]
    assert (
        judge("h", facts([container()], {"discord_bot": record()}, git()), Checks(), NOW, registry(source="/srv/other"))
        == []
    )


@pytest.mark.parametrize(
    "entry, sync",
    [
        ({"auto_deploy": False}, {}),
        ({"enabled": False}, {}),
        ({"branch": "release"}, {}),
        ({"source": "https://github.com/me/other-bot.git"}, {}),
        ({}, {"head": ""}),  # git sync has never checked it out
        ({}, {"head": OLD}),  # serving the head already
    ],
)
def test_no_deploy_behind_unless_auto_deploy_source_branch_and_a_new_head_all_match(
    entry: dict[str, Any], sync: dict[str, Any]
) -> None:
    fs = judge("h", facts([container()], {"discord_bot": record()}, git(**sync)), Checks(), NOW, registry(**entry))
    assert fs == []
    assert judge("h", facts([container()], {"discord_bot": record()}, git()), Checks(), NOW) == [], "no registry"


# ------------------------------------------------------------------------------------ deploy.failed
@pytest.mark.parametrize("outcome, how", [("failed", "failed"), ("rolled_back", "was rolled back")])
def test_a_failed_attempt_of_the_head_is_deploy_failed_naming_commit_stage_and_message_and_never_behind(
    outcome: str, how: str
) -> None:
    rec = record(OLD, tried=HEAD, outcome=outcome, stage="test", message="npm test exited 1")
    fs = judge("h", facts([container()], {"discord_bot": rec}, git()), Checks(), NOW, registry())
    assert found(fs) == [("deploy.failed", "warning", f"h/deploy:discord_bot@{HEAD}")]
    f = fs[0]
    assert f.params == {"host": "h", "service": "discord_bot", "commit": HEAD, "outcome": outcome, "stage": "test"}
    assert f"delivering bbbbbbbbbbbb {how} at test: npm test exited 1" in f.summary
    assert "aaaaaaaaaaaa serves" in f.summary
    # a newer commit arrives: it is delivered, and the failure of the one before stays reported
    fs = judge("h", facts([container()], {"discord_bot": rec}, git(NEWER)), Checks(), NOW, registry())
    assert found(fs) == [
        ("deploy.behind", "info", f"h/deploy:discord_bot@{NEWER}"),
        ("deploy.failed", "warning", f"h/deploy:discord_bot@{HEAD}"),
    ]


def test_unreadable_release_records_are_check_errors_and_gitsync_failing_carries_the_last_error() -> None:
    fs = judge("h", facts(releases={"error": "PermissionError: [Errno 13] denied"}), Checks(), NOW)
    assert found(fs) == [("check.error", "warning", "h/releases")] and "denied" in fs[0].summary
    fs = judge("h", facts(releases={"stream_bot": {"error": "JSONDecodeError: Expecting value"}}), Checks(), NOW)
    assert found(fs) == [("check.error", "warning", "h/release:stream_bot")]
    sync = git()
    sync["data"]["repos"]["bot"].update(consecutive_failures=3, last_error="fatal: Authentication failed for x")
    [f] = [f for f in judge("h", facts(git_sync=sync), Checks(), NOW) if f.code == "gitsync.failing"]
    assert "Authentication failed" in f.summary and f.evidence["last_error"] == "fatal: Authentication failed for x"


# ------------------------------------------------------------------------------------ shipped rules
def test_the_shipped_rules_handle_the_delivery_codes_and_fit_the_real_catalog() -> None:
    from homelab.catalog import Catalog
    from homelab.registry import Registry

    rf = load_rules(DEFAULT_RULES, env={})
    assert {"deploy.unhealthy", "deploy.behind", "deploy.failed"} <= set(CODES)
    rollback, deliver, notify = (rf.rule_for(c) for c in ("deploy.unhealthy", "deploy.behind", "deploy.failed"))
    assert (rollback.id, rollback.playbook, rollback.mode, rollback.throttle) == (
        "rollback-after-deploy",
        "rollback_service",
        "approve",
        3600,
    )
    assert (deliver.id, deliver.playbook, deliver.mode, deliver.check_first, deliver.throttle) == (
        "deliver-synced",
        "deliver",
        "auto",
        False,
        7 * 86400,
    )
    assert (notify.id, notify.mode, notify.playbook) == ("notify-failed-pipeline", "notify", "")
    assert rf.rule_for("tls.invalid").id == "renew-certificate"
    failing = rf.rule_for("gitsync.failing")
    assert failing.mode == "off" and "last error" in failing.description
    assert rf.rule_for("container.down").id == "restart-container"
    assert rf.checks.threshold("deploy_watch_minutes") == 30

    catalog = Catalog(ROOT / "playbooks" / "catalog.yml", registry=Registry(ROOT / "inventory" / "lab"))
    for rule, params in (
        (rollback, {"service": "discord_bot", "commit": HEAD, "previous_commit": OLD}),
        (deliver, {"service": "discord_bot", "commit": HEAD}),
        (rf.rule_for("tls.invalid"), {"domain": "bot.example.org"}),
    ):
        entry = catalog.entries.get(rule.playbook)
        if entry is None:
            pytest.skip(f"the catalog has no '{rule.playbook}' yet")
        want = rule.render({"host": "h", **params})
        assert set(want) <= {p.name for p in entry.parameters}, rule.id
        assert entry.risk in ("disruptive", "changes-config"), rule.id
        if rule is deliver:
            assert want == {"service": "discord_bot", "commit": HEAD}
            [commit] = [p for p in entry.parameters if p.name == "commit"]
            assert commit.coerce(HEAD) == HEAD


def test_mode_notify_needs_no_playbook_and_a_rule_that_runs_one_must_name_it(tmp_path: Path) -> None:
    p = tmp_path / "rules.yml"
    p.write_text("rules:\n  - id: tell\n    codes: [deploy.failed]\n    mode: notify\n")
    assert load_rules(p, env={}).rules[0].mode == "notify"
    with pytest.raises(RulesError, match="changing rule 'tell' would|needs one"):
        set_rule_mode(p, "tell", "auto")  # the settings page cannot turn it into a rule that runs nothing
    assert load_rules(p, env={}).rules[0].mode == "notify"
    for mode in ("auto", "approve"):
        p.write_text(yaml.safe_dump({"rules": [{"id": "x", "codes": ["deploy.failed"], "mode": mode}]}))
        with pytest.raises(RulesError, match=f"mode {mode} runs a playbook, so it needs one"):
            load_rules(p, env={})


def test_the_shipped_rules_file_loads_as_the_homelab_command_reads_it(tmp_path: Path) -> None:
    """`homelab jarvis targets` reads the rules file (HOMELAB_JARVIS_RULES) before anything else."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HOMELAB_JARVIS_RULES": str(DEFAULT_RULES)}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "homelab",
            "jarvis",
            "targets",
            "--json",
            "--inventory",
            str(ROOT / "inventory" / "lab"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert isinstance(json.loads(r.stdout), list)


# ----------------------------------------------------------------------------- on localhost, for real
def rules_of(*ids: str) -> list[dict[str, Any]]:
    """The shipped rules, as they are in jarvis/rules.yml."""
    shipped = {r["id"]: r for r in yaml.safe_load(DEFAULT_RULES.read_text())["rules"]}
    return [shipped[i] for i in ids]


def bot_box(box: Box) -> Path:
    releases = box.base / "releases"
    releases.mkdir()
    box.write_inventory(
        {
            "discord_bot_enabled": True,
            "discord_bot_auto_deploy": True,
            "discord_bot_git_repo": URL,
            "discord_bot_git_version": "main",
            "jarvis_diag_releases_dir": str(releases),
        }
    )
    return releases


def write_record(releases: Path, rec: dict[str, Any]) -> None:
    rec = {**rec, "deployed_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    (releases / "discord_bot.json").write_text(json.dumps(rec))


def jobs(j: Any) -> list[tuple[str, str, bool]]:
    with j.store.session() as s:
        return [(x.playbook, x.status, bool(x.check)) for x in s.scalars(select(Job).order_by(Job.id))]


def test_a_synced_commit_is_delivered_once_through_the_catalog_verified_and_resolved(build: Any, box: Box) -> None:
    releases = bot_box(box)
    write_record(releases, record(OLD))
    box.write_git_status(url="https://***@github.com/me/discord-bot", branch="main", head=HEAD)
    j = build(rules_of("deliver-synced", "notify-failed-pipeline"))
    d = j.cycle("test")
    assert [(f.code, f.target) for f in d.findings] == [("deploy.behind", f"alpha/deploy:discord_bot@{HEAD}")]
    [a] = j.actions()
    assert (a.playbook, a.params, a.mode, a.check_first, a.status) == (
        "deliver",
        {"service": "discord_bot", "commit": HEAD},
        "auto",
        False,
        "resolved",
    ), a.as_dict()
    assert jobs(j) == [("diagnose", "successful", False), ("deliver", "successful", False)] + [
        ("diagnose", "successful", False)
    ], "no check-mode run of the pipeline"
    assert json.loads((releases / "discord_bot.json").read_text())["commit"] == HEAD
    j.cycle("test")
    assert len(j.actions()) == 1, "delivered once"

    box.write_git_status(url="https://***@github.com/me/discord-bot", branch="main", head=NEWER)
    j.cycle("test")
    assert [(a.params["commit"], a.status) for a in j.actions()] == [(NEWER, "resolved"), (HEAD, "resolved")]


def test_a_failed_delivery_is_notified_once_and_not_tried_again(build: Any, box: Box, receiver: Receiver) -> None:
    releases = bot_box(box)
    failed = record(OLD, tried=HEAD, outcome="failed", stage="test", message="npm test exited 1")
    write_record(releases, failed)
    box.write_git_status(url="https://***@github.com/me/discord-bot", branch="main", head=HEAD)
    j = build(rules_of("deliver-synced", "notify-failed-pipeline"))
    d = j.cycle("test")
    assert [f.code for f in d.findings] == ["deploy.failed"]
    j.cycle("test")
    j.notifier.flush()
    [ev] = receiver.json_on("/hook")
    assert ev["event"] == "jarvis.finding" and ev["host"] == "alpha" and ev["playbook"] == ""
    assert "bbbbbbbbbbbb failed at test: npm test exited 1" in ev["title"]
    assert j.actions() == [] and [p for p, _, _ in jobs(j)] == ["diagnose", "diagnose"]
    [row] = j.findings()
    assert row.decision.startswith("reported and notified to webhook (rule notify-failed-pipeline, notify)")


def test_a_failed_delivery_this_server_ran_is_not_notified_again_its_job_told_already(
    build: Any, box: Box, receiver: Receiver
) -> None:
    """The pipeline keeps the job engine's job id with its attempt (HOMELAB_JOB_ID); that job's end
    was told by the engine (StageAlerts, with the stage), so the deploy.failed rule does not repeat it.
    A record naming a job this server does not have (another controller) is notified as before."""
    releases = bot_box(box)
    j = build(rules_of("deliver-synced", "notify-failed-pipeline"))
    with j.store.session.begin() as s:
        job = Job(playbook="deliver", params={"service": "discord_bot"}, status="failed", source="web")
        s.add(job)
        s.flush()
        job_id = job.id
    write_record(releases, record(OLD, tried=HEAD, outcome="failed", stage="Test", message="exit 1", job=str(job_id)))
    box.write_git_status(url="https://***@github.com/me/discord-bot", branch="main", head=HEAD)
    assert [f.code for f in j.cycle("test").findings] == ["deploy.failed"]
    j.cycle("test")
    j.notifier.flush()
    assert receiver.json_on("/hook") == []
    [row] = j.findings()
    assert f"job #{job_id}, which ran it here, notified when it failed" in row.decision, row.decision
    write_record(releases, record(OLD, tried=NEWER, outcome="failed", stage="Test", message="exit 1", job="99999"))
    box.write_git_status(url="https://***@github.com/me/discord-bot", branch="main", head=NEWER)
    j.cycle("test")
    j.notifier.flush()
    assert len(receiver.json_on("/hook")) == 1


def test_notify_mode_sends_once_per_target_within_its_throttle_even_when_the_finding_comes_back(
    build: Any, receiver: Receiver
) -> None:
    j = build([{"id": "tell", "codes": ["deploy.failed"], "mode": "notify", "throttle": "1h"}])
    f = Finding(
        "deploy.failed",
        "warning",
        f"alpha/deploy:discord_bot@{HEAD}",
        "discord_bot: delivering bbbbbbbbbbbb failed at build: no space left",
        {},
        host="alpha",
        params={"service": "discord_bot", "commit": HEAD},
        scope="host:alpha",
    )
    seen, clean = Diagnosis(findings=[f], scopes={"host:alpha"}), Diagnosis(scopes={"host:alpha"})
    for d in (seen, seen, clean, seen):  # open, seen again, resolved, back within the hour
        j.record(d)
        j.decide_all()
    j.notifier.flush()
    assert len(receiver.json_on("/hook")) == 1
    [row] = j.findings()
    assert "throttled: rule tell notified about alpha/deploy:discord_bot@" in row.decision
    real = j.clock
    j.clock = lambda: real() + dt.timedelta(hours=2)
    j.record(clean)
    j.record(seen)
    j.decide_all()
    j.notifier.flush()
    assert len(receiver.json_on("/hook")) == 2
    with j.store.session() as s:
        sent = list(s.scalars(select(AuditEntry).where(AuditEntry.action == "jarvis.notify")))
    assert [(e.target, e.outcome) for e in sent] == [(f.target, "sent (rule tell)")] * 2
    assert j.actions() == []

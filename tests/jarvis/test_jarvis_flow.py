"""Jarvis over the real job engine on a localhost host whose state lives in the test's files:
diagnosis through the read-only `diagnose` catalog playbook, auto remediation verified and resolved,
approve mode that waits for a person, check mode first with the diff, throttle, circuit breaker,
rate limit, maintenance window, escalation without a loop, and the audit trail of all of it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import select

from homelab.catalog import ValidationError
from homelab.store import AuditEntry, Job

from jarvis_helpers import Box

LOCK_RULE = {
    "id": "locks",
    "codes": ["gitsync.stale_lock"],
    "playbook": "clear_git_locks",
    "params": {"max_age_minutes": "{max_age_minutes}"},
    "mode": "auto",
}


def jobs(j: Any) -> list[Job]:
    with j.store.session() as s:
        return list(s.scalars(select(Job).order_by(Job.id)))


def audit(j: Any, action: str | None = None) -> list[AuditEntry]:
    with j.store.session() as s:
        q = select(AuditEntry).order_by(AuditEntry.id)
        if action:
            q = q.where(AuditEntry.action == action)
        return list(s.scalars(q))


def finding(j: Any, code: str) -> Any:
    rows = [r for r in j.findings(include_resolved=True) if r.code == code]
    assert len(rows) == 1, [(r.code, r.target) for r in j.findings(include_resolved=True)]
    return rows[0]


def test_a_stale_git_lock_is_found_cleared_through_the_catalog_verified_and_resolved_with_an_audit_trail(
    build: Any, box: Box
) -> None:
    lock = box.stale_lock(minutes=30)
    fresh = box.stale_lock("config.lock", minutes=1)  # younger than the limit: not stale, not touched
    j = build([LOCK_RULE])
    d = j.cycle("test")
    assert [f.code for f in d.findings] == ["gitsync.stale_lock"], [f.as_dict() for f in d.findings]
    f = d.findings[0]
    assert f.target == "alpha/repo:site" and f.params["repo"] == "site"
    assert [x["path"] for x in f.evidence["locks"]] == [str(lock)]

    assert not lock.exists() and fresh.exists()
    [a] = j.actions()
    assert (a.playbook, a.status, a.params) == ("clear_git_locks", "resolved", {"max_age_minutes": 10}), a.as_dict()
    assert finding(j, "gitsync.stale_lock").status == "resolved"
    ran = {jb.id: jb for jb in jobs(j)}
    # diagnose, the remediation, the verification diagnose: all catalog jobs of the one engine, source jarvis
    assert [(jb.playbook, jb.source, jb.status) for jb in ran.values()] == [
        ("diagnose", "jarvis", "successful"),
        ("clear_git_locks", "jarvis", "successful"),
        ("diagnose", "jarvis", "successful"),
    ]
    assert a.job_id in ran and a.verify_job_id in ran and ran[a.verify_job_id].playbook == "diagnose"
    trail = [(e.action, e.outcome.split(":")[0]) for e in audit(j) if e.action.startswith("jarvis.")]
    assert trail == [
        ("jarvis.finding", "open"),
        ("jarvis.decision", "remediating (rule locks, auto)"),
        ("jarvis.run", "started"),
        ("jarvis.finding", "resolved"),
        ("jarvis.outcome", "resolved"),
    ], trail

    # a second cycle: nothing open, nothing runs
    j.cycle("test")
    assert len(jobs(j)) == 4 and len(j.actions()) == 1


def test_approve_mode_waits_with_the_check_mode_diff_and_runs_only_after_approval(build: Any, box: Box) -> None:
    box.backup("failed", error="disk full")
    j = build([{"id": "backup", "codes": ["backup.failed"], "playbook": "mark_backup_ok", "mode": "approve"}])
    j.cycle("test")
    [a] = j.actions()
    assert a.status == "pending" and a.check_first, a.as_dict()
    # the changes-config playbook ran in check mode only: the diff is there, the file is unchanged
    check = j.engine.get(a.check_job_id)
    assert check.check and check.diff and check.playbook == "mark_backup_ok"
    assert '"status": "failed"' in a.diff and '"status": "ok"' in a.diff, a.diff
    assert json.loads(box.backup_status.read_text())["status"] == "failed"
    assert [jb.playbook for jb in jobs(j) if not jb.check] == ["diagnose"]

    # more cycles do not run it or propose it again
    j.cycle("test")
    assert [x.id for x in j.actions()] == [a.id] and j.actions()[0].status == "pending"
    assert [jb.playbook for jb in jobs(j) if not jb.check] == ["diagnose", "diagnose"]

    done = j.approve(a.id, "alice")
    assert done.status == "resolved" and done.decided_by == "alice", done.as_dict()
    assert json.loads(box.backup_status.read_text())["status"] == "ok"
    assert finding(j, "backup.failed").status == "resolved"
    real = j.engine.get(done.job_id)
    assert not real.check and real.created_by == "jarvis (approved by alice)"
    assert [e.actor for e in audit(j, "jarvis.approve")] == ["alice"]
    with pytest.raises(ValidationError, match="not waiting for approval"):
        j.approve(a.id, "alice")


def test_a_rejected_proposal_never_runs_and_is_not_proposed_again_within_the_throttle(build: Any, box: Box) -> None:
    box.backup("failed")
    j = build(
        [
            {
                "id": "backup",
                "codes": ["backup.failed"],
                "playbook": "mark_backup_ok",
                "mode": "approve",
                "throttle": "1h",
                "check_first": False,
            }
        ]
    )
    j.cycle("test")
    [a] = j.actions()
    assert a.status == "pending" and a.check_job_id is None
    j.reject(a.id, "bob", "not now")
    j.cycle("test")
    assert [x.status for x in j.actions()] == ["rejected"]
    assert finding(j, "backup.failed").decision.startswith("throttled: rule backup acted on alpha/backup")
    assert [jb.playbook for jb in jobs(j)] == ["diagnose", "diagnose"]
    assert json.loads(box.backup_status.read_text())["status"] == "failed"


def test_a_remediation_that_does_not_fix_escalates_once_notifies_and_never_loops(
    build: Any, box: Box, receiver: Any
) -> None:
    box.backup("failed")
    j = build(
        [
            {
                "id": "pretend",
                "codes": ["backup.failed"],
                "playbook": "noop",
                "params": {"service": "backup"},
                "mode": "auto",
                "throttle": "0s",
            }
        ]
    )
    j.cycle("test")
    [a] = j.actions()
    assert a.status == "escalated" and "still there" in a.reason, a.as_dict()
    assert finding(j, "backup.failed").status == "escalated"
    j.notifier.flush()
    [hook] = receiver.json_on("/hook")
    assert hook["event"] == "jarvis.escalated" and "alpha/backup" in hook["title"]
    for _ in range(3):  # throttle 0: only the escalation keeps it from running again
        j.cycle("test")
    assert len(j.actions()) == 1
    assert finding(j, "backup.failed").decision.startswith("escalated")
    assert [jb.playbook for jb in jobs(j)].count("noop") == 1

    # fixed by a person: resolved; if it comes back it is a new episode and Jarvis acts again
    box.backup("ok")
    j.cycle("test")
    assert finding(j, "backup.failed").status == "resolved"
    box.backup("failed")
    j.cycle("test")
    assert len(j.actions()) == 2


def test_a_rule_that_keeps_failing_trips_the_breaker_alerts_and_stops(build: Any, box: Box, receiver: Any) -> None:
    box.backup("failed")
    j = build(
        [
            {
                "id": "hopeless",
                "codes": ["backup.failed"],
                "playbook": "always_fail",
                "params": {"service": "backup"},
                "mode": "auto",
                "throttle": "0s",
            }
        ],
        safety={"breaker": {"failures": 2, "window": "1h"}},
    )
    # each failure escalates the finding (no loop); a person resolving it lets Jarvis try again
    for _ in range(2):
        j.cycle("test")
        box.backup("ok")
        j.cycle("test")
        box.backup("failed")
    assert [a.status for a in j.actions()] == ["failed", "failed"]
    [br] = j.breakers()
    assert br.rule_id == "hopeless" and "2 failed remediations" in br.reason
    j.cycle("test")
    assert len(j.actions()) == 2, "the rule ran although its breaker is open"
    assert finding(j, "backup.failed").decision.startswith("refused: the circuit breaker of rule hopeless is open")
    j.notifier.flush()
    events = [h["event"] for h in receiver.json_on("/hook")]
    assert events.count("jarvis.breaker") == 1 and events.count("jarvis.escalated") == 2, events
    assert [e.outcome for e in audit(j, "jarvis.breaker")][0].startswith("open: 2 failed")

    assert j.reset_breaker("hopeless", "carol")
    j.cycle("test")  # it may run again; one more failure alone does not trip it again
    assert len(j.actions()) == 3 and j.breakers() == []


def test_throttle_holds_a_rule_back_on_the_same_target(build: Any, box: Box) -> None:
    j = build([{**LOCK_RULE, "throttle": "1h"}])
    box.stale_lock()
    j.cycle("test")
    assert [a.status for a in j.actions()] == ["resolved"]
    box.stale_lock()  # the lock is back within the hour
    j.cycle("test")
    assert [a.status for a in j.actions()] == ["resolved"]
    f = finding(j, "gitsync.stale_lock")
    assert f.status == "open" and f.decision.startswith("throttled: rule locks acted on alpha/repo:site")
    assert (box.repo / ".git" / "index.lock").exists()


def test_the_global_rate_limit_caps_actions_per_minute(build: Any, box: Box) -> None:
    box.stale_lock()
    box.backup("failed")
    j = build(
        [
            LOCK_RULE,
            {
                "id": "backup",
                "codes": ["backup.failed"],
                "playbook": "mark_backup_ok",
                "mode": "auto",
                "check_first": False,
            },
        ],
        safety={"rate_limit_per_minute": 1},
    )
    j.cycle("test")
    started = [a for a in j.actions() if a.started_at]
    assert len(started) == 1, [a.as_dict() for a in j.actions()]
    other = [r for r in j.findings() if r.status == "open"]
    assert len(other) == 1 and other[0].decision.startswith(
        "rate limited: 1 actions started in the last minute (limit 1)"
    )


def test_nothing_runs_in_a_maintenance_window_but_findings_are_recorded(build: Any, box: Box) -> None:
    box.stale_lock()
    now = dt.datetime.now(dt.timezone.utc)
    j = build(
        [LOCK_RULE],
        safety={
            "maintenance": [
                {
                    "from": (now - dt.timedelta(minutes=5)).isoformat(),
                    "until": (now + dt.timedelta(hours=1)).isoformat(),
                    "reason": "moving",
                }
            ]
        },
    )
    j.cycle("test")
    assert j.actions() == []
    f = finding(j, "gitsync.stale_lock")
    assert f.status == "open" and f.decision.startswith("deferred: maintenance window") and "moving" in f.decision
    assert [jb.playbook for jb in jobs(j)] == ["diagnose"]


def test_a_rule_naming_a_playbook_outside_the_catalog_never_runs(build: Any, box: Box) -> None:
    box.stale_lock()
    j = build(
        [
            {**LOCK_RULE, "playbook": "ops/../../bin/sh"},
        ]
    )
    j.cycle("test")
    assert j.actions() == [] and [jb.playbook for jb in jobs(j)] == ["diagnose"]
    assert finding(j, "gitsync.stale_lock").decision == "refused: playbook 'ops/../../bin/sh' is not in the catalog"
    assert [e.outcome for e in audit(j, "jarvis.decision")] == [
        "refused: playbook 'ops/../../bin/sh' is not in the catalog"
    ]


def test_an_unreachable_host_is_a_finding_and_its_other_findings_stay_open(build: Any, box: Box, tmp_path: Any) -> None:
    box.stale_lock()
    j = build([{**LOCK_RULE, "mode": "off"}])
    j.cycle("test")
    assert finding(j, "gitsync.stale_lock").decision == "reported only: rule locks is off"
    box.write_inventory(
        {
            "ansible_connection": "ssh",
            "ansible_host": "127.0.0.1",
            "ansible_port": 9,
            "ansible_ssh_common_args": "-o ConnectTimeout=3 -o StrictHostKeyChecking=no",
        }
    )
    d = j.cycle("test")
    assert [f.code for f in d.findings] == ["host.unreachable"] and "unreachable" in d.findings[0].summary
    assert finding(j, "gitsync.stale_lock").status == "open", "an unknown host must not resolve its findings"

"""Jarvis on a real lab host (Docker, Caddy with its internal CA), with the real catalog and its
ops playbooks: a stopped service container is found by the `diagnose` playbook and brought back by
restart_service; approve mode waits and runs only after approval; a rule that keeps failing trips
its breaker and stops; an expiring (test-threshold) certificate triggers renew_certificates and the
TLS check sees the new one; a stale git lock is cleared by clear_git_locks; a backup that failed
(its off-host repository was away for the night) is run again by the backup playbook."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from homelab.testing.lab import ansible, container_state, host_ip, in_host, lab, start_lab_with_caddy

from jarvis_helpers import Receiver, lab_jarvis, write_rules

# One lab host per xdist worker: the xdist_group below should keep this module on one worker, but
# pytest-xdist 3.8 cannot regroup items under pytest 9 (it sets item._nodeid, pytest 9 reads item._id),
# so a module's tests may be spread over workers; a shared name would have them remove each other's host.
HOST = "homelab-jarvis-test" + (
    f"-{os.environ['PYTEST_XDIST_WORKER']}" if os.environ.get("PYTEST_XDIST_WORKER") else ""
)
pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("jarvis-lab")]
RESTART = {
    "id": "restart-container",
    "codes": ["container.down", "container.unhealthy"],
    "playbook": "restart_service",
    "params": {"service": "{service}"},
    "mode": "auto",
    "throttle": "0s",
}


@pytest.fixture(scope="module")
def lab_inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    try:
        yield start_lab_with_caddy(HOST, tmp_path_factory.mktemp("jarvis-lab") / "inventory")
    finally:
        lab("rm", HOST)


@pytest.fixture
def make(lab_inventory: Path, tmp_path: Path, receiver: Receiver) -> Iterator[Any]:
    made: list[Any] = []

    def build(
        rules: list[dict[str, Any]], safety: dict[str, Any] | None = None, checks: dict[str, Any] | None = None
    ) -> Any:
        path = write_rules(tmp_path / f"rules{len(made)}.yml", rules, safety, checks)
        made.append(lab_jarvis(lab_inventory, tmp_path / f"var{len(made)}", path, receiver.url + "/hook"))
        return made[-1]

    yield build
    for j in made:
        j.stop()
        j.engine.stop(timeout=120)


def test_a_stopped_service_container_is_found_and_restart_service_brings_it_back(make: Any) -> None:
    j = make([RESTART])
    d = j.cycle("test")
    assert [f.code for f in d.findings] == [], [f.as_dict() for f in d.findings]
    in_host(HOST, "docker stop caddy >/dev/null")
    d = j.cycle("test")
    assert [(f.code, f.target, f.params.get("service")) for f in d.findings] == [
        ("container.down", f"{HOST}/container:caddy", "caddy")
    ]
    [a] = j.actions()
    assert (a.playbook, a.params, a.limit, a.status) == ("restart_service", {"service": "caddy"}, HOST, "resolved"), (
        a.as_dict()
    )
    assert container_state(HOST, "caddy") == "running"
    assert [r.status for r in j.findings(include_resolved=True)] == ["resolved"]


def test_approve_mode_waits_on_the_lab_and_runs_only_after_approval(make: Any) -> None:
    j = make([{**RESTART, "mode": "approve"}])
    in_host(HOST, "docker stop caddy >/dev/null")
    try:
        j.cycle("test")
        j.cycle("test")
        [a] = j.actions()
        assert a.status == "pending" and a.job_id is None
        assert container_state(HOST, "caddy") == "exited", "approve mode ran without approval"
        done = j.approve(a.id, "alice")
        assert done.status == "resolved", done.as_dict()
        assert container_state(HOST, "caddy") == "running"
    finally:
        in_host(HOST, "docker start caddy >/dev/null", check=False)


def test_a_rule_that_keeps_failing_trips_its_breaker_and_stops(make: Any, receiver: Receiver) -> None:
    # A service container Jarvis sees but restart_service cannot fix (no compose project on the host).
    image = os.environ["LAB_CADDY_IMAGE"]
    in_host(
        HOST,
        "docker rm -f n8n >/dev/null 2>&1 || true; "
        f"docker create --name n8n --label homelab.service=n8n {image} >/dev/null",
    )
    try:
        j = make([RESTART], safety={"breaker": {"failures": 2, "window": "1h"}})
        for _ in range(
            2
        ):  # two episodes: each failure escalates (no loop); the finding comes back after a person's fix
            j.cycle("test")
            in_host(HOST, "docker start n8n >/dev/null")
            j.cycle("test")
            in_host(HOST, "docker stop n8n >/dev/null")
        failed = j.actions()
        assert [a.status for a in failed] == ["failed", "failed"] and "not deployed" in j.engine.get(
            failed[0].job_id
        ).reason + "".join(r.message for r in j.engine.task_results(failed[0].job_id))
        assert [b.rule_id for b in j.breakers()] == ["restart-container"]
        j.cycle("test")
        assert len(j.actions()) == 2, "the rule ran with its breaker open"
        j.notifier.flush()
        events = [h["event"] for h in receiver.json_on("/hook")]
        assert events.count("jarvis.breaker") == 1, events
    finally:
        in_host(HOST, "docker rm -f n8n >/dev/null 2>&1 || true", check=False)


def test_an_expiring_certificate_triggers_renew_certificates_and_the_new_one_is_seen(make: Any, tmp_path: Path) -> None:
    from jarvis.netchecks import check_tls

    ca = tmp_path / "caddy-root.crt"
    ca.write_text(in_host(HOST, "cat /opt/homelab/caddy/data/caddy/pki/authorities/local/root.crt"))
    connect = f"{host_ip(HOST)}:443"
    assert check_tls("status.lab.test", connect, 5, str(ca), 0, 0) == [], "the lab certificate does not verify"
    import socket
    import ssl

    from cryptography import x509

    ctx = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection((connect.split(":")[0], 443), timeout=5) as s,
        ctx.wrap_socket(s, server_hostname="status.lab.test") as t,
    ):
        cert = x509.load_der_x509_certificate(t.getpeercert(binary_form=True))
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    left = (cert.not_valid_after_utc - now).total_seconds() / 86400
    lifetime = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400
    # A test threshold between this certificate's remaining life and a fresh one's: this one is "expiring".
    warn = (left + lifetime) / 2
    assert lifetime - left > 10 / 86400, "the certificate is too fresh to tell a renewed one apart"
    j = make(
        [
            {
                "id": "renew",
                "codes": ["tls.expiring"],
                "playbook": "renew_certificates",
                "params": {"domain": "{domain}"},
                "mode": "auto",
                "limit": HOST,
            }
        ],
        checks={
            "tls": {
                "domains": [{"domain": "status.lab.test", "connect": connect}],
                "ca_file": str(ca),
                "warn_days": warn,
                "critical_days": 0,
            }
        },
    )
    d = j.cycle("test")
    assert [(f.code, f.target) for f in d.findings] == [("tls.expiring", "tls:status.lab.test")], [
        f.as_dict() for f in d.findings
    ]
    [a] = j.actions()
    assert (a.playbook, a.params, a.status) == ("renew_certificates", {"domain": "status.lab.test"}, "resolved"), (
        a.as_dict()
    )


def test_a_stale_git_lock_is_cleared_by_clear_git_locks(make: Any) -> None:
    j = make(
        [
            {
                "id": "locks",
                "codes": ["gitsync.stale_lock"],
                "playbook": "clear_git_locks",
                "params": {"max_age_minutes": "{max_age_minutes}", "repo": "{repo}"},
                "mode": "auto",
            }
        ]
    )
    status = {
        "updated_at": "2026-11-26T10:00:00Z",
        "repos": {
            "app": {
                "path": "/srv/projects/app",
                "last_attempt": None,
                "last_success": None,
                "last_error": "",
                "consecutive_failures": 0,
                "next_attempt_after": None,
                "head": "",
            }
        },
    }
    in_host(
        HOST,
        "mkdir -p /srv/projects/app/.git /var/lib/homelab/git-sync && "
        f"echo '{json.dumps(status)}' > /var/lib/homelab/git-sync/status.json && "
        "touch -d '30 minutes ago' /srv/projects/app/.git/index.lock && touch /srv/projects/app/.git/HEAD.lock",
    )
    try:
        j.cycle("test")
        [a] = j.actions()
        assert (a.playbook, a.params, a.status) == (
            "clear_git_locks",
            {"max_age_minutes": 10, "repo": "app"},
            "resolved",
        ), a.as_dict()
        assert a.check_job_id and j.engine.get(a.check_job_id).check, "changes-config: check mode first"
        assert in_host(HOST, "ls /srv/projects/app/.git").split() == ["HEAD.lock"], "only the stale lock goes"
    finally:
        in_host(HOST, "rm -rf /srv/projects/app /var/lib/homelab/git-sync/status.json", check=False)


def test_a_failed_backup_is_run_again_by_the_backup_playbook_and_the_finding_resolves(
    make: Any, lab_inventory: Path
) -> None:
    """The default rule (jarvis/rules.yml, backup-again) on the real backup role: the night's run
    failed because the off-host repository was away; Jarvis runs the catalog's backup, which now
    succeeds, and the finding resolves."""
    from jarvis.config import DEFAULT_RULES

    [rule] = [r for r in yaml.safe_load(DEFAULT_RULES.read_text())["rules"] if r["id"] == "backup-again"]
    # The backup role as the lab inventory has it (copies into a restic repository on the host),
    # without a PostgreSQL, which this host does not run.
    ansible(
        lab_inventory,
        "playbooks/ops/deploy_service.yml",
        "-e",
        json.dumps(
            {
                "service": "backup",
                "backup_postgres_enabled": False,
                "backup_data_dirs": {"caddy": "/opt/homelab/caddy/data"},
            }
        ),
        strategy="mitogen_linear",
    )
    repo = "/srv/offsite/restic-homelab"
    in_host(HOST, f"mv {repo} {repo}.away && (systemctl start homelab-backup.service || true) && mv {repo}.away {repo}")
    status = json.loads(in_host(HOST, "cat /var/lib/homelab/backup/status.json"))
    assert status["status"] == "failed" and "off-host copy" in status["error"], status
    j = make([{**rule, "throttle": "0s"}])
    d = j.cycle("test")
    assert [(f.code, f.target) for f in d.findings] == [("backup.failed", f"{HOST}/backup")], d.findings
    [a] = j.actions()
    assert (a.playbook, a.limit, a.status) == ("backup", HOST, "resolved"), a.as_dict()
    status = json.loads(in_host(HOST, "cat /var/lib/homelab/backup/status.json"))
    assert status["status"] == "ok" and status["offsite"]["status"] == "ok", status
    assert [r.status for r in j.findings(include_resolved=True)] == ["resolved"]

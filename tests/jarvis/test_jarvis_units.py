"""The rules file's validation, maintenance windows, parameter filling, the shipped rules file, and
the host facts -> findings judgement (thresholds, codes, evidence) without a host."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from jarvis.config import DEFAULT_RULES, Checks, RulesError, Window, load_rules
from jarvis.findings import CODES
from jarvis.hostchecks import judge

NOW = dt.datetime(2026, 11, 26, 12, 0, 0)  # a Thursday


def rules_file(tmp_path: Path, doc: dict[str, Any]) -> Path:
    p = tmp_path / "rules.yml"
    p.write_text(yaml.safe_dump(doc))
    return p


@pytest.mark.parametrize(
    "rule, message",
    [
        ({"id": "x", "codes": ["container.gone"], "playbook": "p"}, "unknown: container.gone"),
        (
            {"id": "x", "codes": ["container.down"], "playbook": "p", "mode": "yolo"},
            "mode must be one of auto, approve, notify, off",
        ),
        ({"id": "X Y", "codes": ["container.down"], "playbook": "p"}, "must be lower-case"),
        ({"id": "x", "codes": ["container.down"], "playbook": "p", "throttle": "soon"}, "is not a duration"),
        ({"id": "x", "codes": ["container.down"], "playbook": "p", "params": {"a": ["list"]}}, "params must map names"),
        ({"id": "x", "codes": ["container.down"], "playbook": "p", "shell": "id"}, "unknown key(s) shell"),
    ],
)
def test_a_wrong_rule_is_refused_with_where_and_why(tmp_path: Path, rule: dict[str, Any], message: str) -> None:
    with pytest.raises(RulesError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_rules(rules_file(tmp_path, {"rules": [rule]}), env={})


def test_duplicate_rule_ids_and_unknown_sections_are_refused(tmp_path: Path) -> None:
    r = {"id": "x", "codes": ["container.down"], "playbook": "p"}
    with pytest.raises(RulesError, match="listed twice"):
        load_rules(rules_file(tmp_path, {"rules": [r, r]}), env={})
    with pytest.raises(RulesError, match="unknown section"):
        load_rules(rules_file(tmp_path, {"rules": [], "commands": []}), env={})


def test_the_shipped_rules_file_loads_and_maps_the_issue_s_codes_to_catalog_playbooks() -> None:
    from homelab.catalog import Catalog

    rf = load_rules(DEFAULT_RULES, env={})
    from homelab.registry import Registry

    root = Path(__file__).resolve().parents[2]
    catalog = Catalog(root / "playbooks" / "catalog.yml", registry=Registry(root / "inventory" / "lab"))
    want = {
        "container.unhealthy": "restart_service",
        "container.down": "restart_service",
        "tls.expiring": "renew_certificates",
        "ddclient.auth_error": "fix_ddclient",
        "gitsync.stale_lock": "clear_git_locks",
        "dns.mismatch": "update_dns",
    }
    for code, playbook in want.items():
        assert rf.rule_for(code) is not None and rf.rule_for(code).playbook == playbook, code
    assert "diagnose" in catalog.entries and catalog.entries["diagnose"].risk == "read-only"
    for r in rf.rules:
        entry = catalog.entries.get(r.playbook)
        if entry is None:
            continue  # listed, never runs until the catalog has it (the Jarvis page says so)
        names = {p.name for p in entry.parameters}
        assert set(r.params) <= names, (r.id, set(r.params) - names)
    assert rf.safety.rate_limit_per_minute == 60 and rf.safety.throttle == 900


def test_environment_overrides_the_check_targets_and_params_fill_only_from_the_finding(tmp_path: Path) -> None:
    p = rules_file(
        tmp_path,
        {
            "rules": [
                {
                    "id": "r",
                    "codes": ["container.down"],
                    "playbook": "restart_service",
                    "params": {"service": "{service}", "fixed": "x"},
                }
            ]
        },
    )
    rf = load_rules(
        p, env={"HOMELAB_JARVIS_DNS_RESOLVERS": "127.0.0.1:5353, 9.9.9.9", "HOMELAB_JARVIS_PUBLIC_IP": "203.0.113.7"}
    )
    assert rf.checks.dns_resolvers == ("127.0.0.1:5353", "9.9.9.9") and rf.checks.dns_expected == ("203.0.113.7",)
    rule = rf.rules[0]
    assert rule.render({"service": "caddy"}) == {"service": "caddy", "fixed": "x"}
    assert rule.render({"service": "{other}"}) == {"service": "{other}", "fixed": "x"}, "substitution is not recursive"
    with pytest.raises(KeyError):
        rule.render({})


def test_maintenance_windows_weekly_across_midnight_and_one_off() -> None:
    w = Window(days=("thu",), start="11:00", end="13:00")
    assert (
        w.contains(NOW) and not w.contains(NOW + dt.timedelta(hours=2)) and not w.contains(NOW + dt.timedelta(days=1))
    )
    night = Window(days=("wed",), start="23:00", end="02:00")
    assert night.contains(dt.datetime(2026, 11, 26, 1, 30)), "Thursday 01:30 belongs to Wednesday's window"
    assert not night.contains(dt.datetime(2026, 11, 26, 23, 30))
    once = Window(at=(NOW, NOW + dt.timedelta(hours=1)))
    assert once.contains(NOW) and not once.contains(NOW + dt.timedelta(hours=1))


def facts(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "containers": {"available": True, "error": "", "items": []},
        "disk": [{"mount": "/", "percent": 40.0}],
        "memory": {"percent": 30.0},
        "load": {"load5": 0.5, "cpus": 2},
        "git_sync": {"present": False},
        "ddclient": {"present": False},
        "backup": {"present": False},
        "postgres": {"checked": False},
    }
    base.update(over)
    return base


def codes(fs: list[Any]) -> list[tuple[str, str, str]]:
    return sorted((f.code, f.severity, f.target) for f in fs)


def test_healthy_facts_give_no_finding() -> None:
    assert judge("h", facts(), Checks(), NOW) == []


def test_containers_down_unhealthy_and_restarting_are_named_with_their_service() -> None:
    items = [
        {"name": "caddy", "service": "caddy", "state": "exited", "running": False, "exit_code": 137},
        {
            "name": "n8n",
            "service": "n8n",
            "state": "running",
            "running": True,
            "health": "unhealthy",
            "health_output": "connection refused",
        },
        {
            "name": "plex",
            "service": "plex",
            "state": "restarting",
            "running": True,
            "restarting": True,
            "restart_count": 12,
        },
        {"name": "postgres", "service": "postgres", "state": "running", "running": True, "health": "healthy"},
    ]
    fs = judge("h", facts(containers={"available": True, "error": "", "items": items}), Checks(), NOW)
    assert codes(fs) == [
        ("container.down", "critical", "h/container:caddy"),
        ("container.restart_loop", "critical", "h/container:plex"),
        ("container.unhealthy", "critical", "h/container:n8n"),
    ]
    down = next(f for f in fs if f.code == "container.down")
    assert (
        down.params == {"host": "h", "service": "caddy", "container": "caddy"}
        and down.host == "h"
        and down.scope == "host:h"
    )
    assert down.evidence["exit_code"] == 137


def test_a_failed_off_host_check_or_drill_is_a_finding_of_its_own() -> None:
    fresh = (NOW - dt.timedelta(hours=2)).isoformat() + "Z"
    data = {
        "status": "ok",
        "last_success": fresh,
        "offsite_check": {"status": "ok", "at": fresh},
        "offsite_drill": {"status": "failed", "at": fresh, "error": "restore drill: app does not restore"},
    }
    fs = judge("h", facts(backup={"present": True, "data": data}), Checks(), NOW)
    assert [(f.code, f.severity, f.target) for f in fs if f.code.startswith("backup")] == [
        ("backup.offsite_failed", "critical", "h/backup:offsite_drill")
    ]
    [f] = [f for f in fs if f.code == "backup.offsite_failed"]
    assert f.params["step"] == "drill" and "does not restore" in f.summary
    data["offsite_drill"]["status"] = "ok"
    assert not [
        f
        for f in judge("h", facts(backup={"present": True, "data": data}), Checks(), NOW)
        if f.code.startswith("backup")
    ]


def test_thresholds_git_ddclient_backup_and_postgres() -> None:
    old = (NOW - dt.timedelta(hours=30)).isoformat() + "Z"
    git = {
        "present": True,
        "age_seconds": 30,
        "git_running": False,
        "data": {
            "repos": {
                "site": {
                    "path": "/x",
                    "last_success": old,
                    "consecutive_failures": 4,
                    "last_error": "fatal: Not possible to fast-forward, aborting.",
                }
            }
        },
        "locks": [
            {"repo": "site", "path": "/x/.git/index.lock", "age_seconds": 1800},
            {"repo": "site", "path": "/x/.git/HEAD.lock", "age_seconds": 60},
        ],
    }
    fs = judge(
        "h",
        facts(
            disk=[{"mount": "/", "percent": 96.0}, {"mount": "/srv", "percent": 86.0}],
            memory={"percent": 95.0},
            load={"load5": 9.0, "cpus": 2},
            git_sync=git,
            ddclient={
                "present": True,
                "age_seconds": 10,
                "entries": {"home.example.org": {"status": "badauth", "ip": "203.0.113.7"}},
            },
            backup={"present": True, "data": {"status": "ok", "last_success": old}},
            postgres={"checked": True, "reachable": False, "error": "pg_isready exit 2"},
        ),
        Checks(),
        NOW,
    )
    assert codes(fs) == [
        ("backup.stale", "warning", "h/backup"),
        ("ddclient.auth_error", "critical", "h/ddclient:home.example.org"),
        ("disk.full", "critical", "h/disk:/"),
        ("disk.full", "warning", "h/disk:/srv"),
        ("gitsync.diverged", "warning", "h/repo:site"),
        ("gitsync.failing", "warning", "h/repo:site"),
        ("gitsync.stale_lock", "warning", "h/repo:site"),
        ("load.high", "warning", "h/load"),
        ("memory.high", "warning", "h/memory"),
        ("postgres.unreachable", "critical", "h/postgres"),
    ]
    lock = next(f for f in fs if f.code == "gitsync.stale_lock")
    assert [x["path"] for x in lock.evidence["locks"]] == ["/x/.git/index.lock"] and lock.params[
        "max_age_minutes"
    ] == "10"
    # a git process at work: its lock is not stale
    git["git_running"] = True
    assert "gitsync.stale_lock" not in [f.code for f in judge("h", facts(git_sync=git), Checks(), NOW)]


def test_a_section_that_failed_on_the_host_is_a_finding_not_a_crash() -> None:
    fs = judge(
        "h",
        facts(
            git_sync={"error": "JSONDecodeError: Expecting value"},
            memory={"error": "OSError: no /proc"},
            containers={"available": False, "error": "docker ps failed: permission denied", "items": []},
        ),
        Checks(),
        NOW,
    )
    assert codes(fs) == [
        ("check.error", "warning", "h/git-sync"),
        ("check.error", "warning", "h/memory"),
        ("docker.unavailable", "critical", "h/docker"),
    ]
    assert all(f.code in CODES for f in fs)


def test_credentials_in_evidence_are_cut_out_before_anything_is_stored() -> None:
    from jarvis.service import scrub

    ev = {
        "last_error": "fatal: unable to access 'https://bot:ghp_SECRET123@github.com/me/site.git/': 403",
        "api_token": "abc123456",
        "nested": [{"url": "ssh://git:hunter22@example.org/x"}],
    }
    out = scrub(ev)
    assert "ghp_SECRET123" not in str(out) and "hunter22" not in str(out) and "abc123456" not in str(out)
    assert "https://********@github.com/me/site.git/" in out["last_error"]


def test_network_targets_default_to_the_registry_s_enabled_services_unless_turned_off() -> None:
    from homelab.registry import check_entries
    from jarvis.netchecks import service_targets, targets

    services = check_entries(
        [
            {
                "name": "n8n",
                "enabled": True,
                "domains": ["n8n.example.org"],
                "health": {"path": "/healthz", "status": [200]},
            },
            {"name": "site", "enabled": True, "domains": ["example.org", "www.example.org"]},
            {"name": "off", "enabled": False, "domains": ["off.example.org"]},
        ]
    )
    ts = service_targets(services.values())
    got = [(t.kind, t.name) for t in targets(Checks(dns_expected=("203.0.113.7",)), ts)]
    assert got == [
        ("dns", "example.org"),
        ("dns", "n8n.example.org"),
        ("dns", "www.example.org"),
        ("tls", "example.org"),
        ("tls", "n8n.example.org"),
        ("tls", "www.example.org"),
        ("http", "n8n"),
        ("http", "site"),
    ]
    http = {t.name: t.spec for t in targets(Checks(), ts) if t.kind == "http"}
    assert http["n8n"] == {"url": "https://n8n.example.org/healthz", "expect": (200,)}
    assert http["site"]["url"] == "https://example.org/"
    assert targets(Checks(from_inventory=False), ts) == []
    assert [t.spec["expected"] for t in targets(Checks(), ts, ("198.51.100.1",)) if t.kind == "dns"][0] == (
        "198.51.100.1",
    )


def test_ddclient_legacy_protocol_status_is_read_from_status_not_noconnect() -> None:
    """ZoneEdit (a legacy protocol in ddclient 3.11) leaves status-ipv4=noconnect after a good update."""

    def dd(**entry: str) -> dict[str, Any]:
        return facts(ddclient={"present": True, "age_seconds": 60, "entries": {"home.example.org": entry}})

    assert judge("h", dd(**{"status-ipv4": "noconnect", "status": "good"}), Checks(), NOW) == []
    assert codes(judge("h", dd(**{"status-ipv4": "noconnect", "status": "badauth"}), Checks(), NOW)) == [
        ("ddclient.auth_error", "critical", "h/ddclient:home.example.org")
    ]
    assert codes(judge("h", dd(**{"status-ipv4": "noconnect"}), Checks(), NOW)) == [
        ("ddclient.update_failed", "warning", "h/ddclient:home.example.org")
    ]

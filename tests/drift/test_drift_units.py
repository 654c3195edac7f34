"""Schedules validation, fix tags, drift fingerprints, store upgrade, and the drift API's refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from homelab.catalog import Catalog
from homelab.drift import DriftService, fingerprint
from homelab.schedule.definitions import ScheduleError, Schedules, parse_schedule, run_variant
from homelab.settings import Settings
from homelab.store import Store

from drift_fixtures import *  # noqa: F401,F403 (the fixtures)
from drift_helpers import ROOT, write_schedules


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"id": "a", "playbook": "files", "cron": "0 4 * * *", "interval": "1h"}, "exactly one of cron"),
        ({"id": "a", "playbook": "files"}, "exactly one of cron"),
        ({"id": "a", "playbook": "files", "cron": "0 25 * * *"}, "cron '0 25 * * *' is not valid"),
        ({"id": "a", "playbook": "files", "interval": "2s"}, "at least 5s"),
        ({"id": "a", "playbook": "files", "interval": "often"}, "number with s, m, h or d"),
        ({"id": "Bad Id", "playbook": "files", "interval": "1h"}, "must be lower-case"),
        ({"id": "a", "playbook": "files", "interval": "1h", "shell": "rm -rf /"}, "unknown key(s) shell"),
        ({"id": "a", "playbook": "files", "interval": "1h", "limit": "all:!beta"}, "is not a host or group name"),
        ({"id": "a", "playbook": "", "interval": "1h"}, "playbook (a catalog id) is required"),
    ],
)
def test_a_bad_schedule_is_refused_with_a_message_that_says_why(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ScheduleError, match=None) as exc:
        parse_schedule(raw)
    assert message in str(exc.value)


def test_schedules_are_checked_against_the_catalog_and_the_inventory(drift_settings: Settings, tmp_path: Path) -> None:
    from homelab.inventory import Inventory

    catalog = Catalog(drift_settings.catalog)
    sched = Schedules(tmp_path / "s.yml", catalog, Inventory(drift_settings.inventory))
    assert sched.load() == []  # no file: no schedules
    assert run_variant(catalog, "files-check") == "files" and run_variant(catalog, "files") == "files"
    for rows, message in (
        ([{"id": "a", "playbook": "nope", "interval": "1h"}], "playbook 'nope' is not in the catalog"),
        ([{"id": "a", "playbook": "files", "interval": "1h", "limit": "zeta"}], "neither a host nor a group"),
        (
            [{"id": "a", "playbook": "files", "interval": "1h"}, {"id": "a", "playbook": "files", "interval": "2h"}],
            "listed twice",
        ),
    ):
        write_schedules(sched.path, rows)
        with pytest.raises(ScheduleError, match=None) as exc:
            sched.load()
        assert message in str(exc.value)
    write_schedules(sched.path, [{"id": "a", "playbook": "files-check", "interval": "90m", "limit": "alpha"}])
    [s] = sched.load()
    assert s.interval_seconds == 5400 and str(s.trigger()).startswith("interval[1:30:00]")


def test_the_repository_default_is_a_daily_check_of_site_on_every_host() -> None:
    from homelab.registry import Registry

    catalog = Catalog(ROOT / "playbooks" / "catalog.yml", registry=Registry(ROOT / "inventory" / "lab"))
    schedules = Schedules(ROOT / "playbooks" / "schedules.yml", catalog).load()
    [s] = [x for x in schedules if x.action == "check"]  # the others: Jarvis's diagnosis and maintenance runs
    assert {x.action for x in schedules} == {"check", "jarvis", "run"}
    assert (s.playbook, s.limit, s.enabled) == ("site", "", True)
    assert s.cron and str(s.trigger()).startswith("cron[") and "day='*'" in str(s.trigger())


def test_fix_drift_uses_the_drifted_services_tags_only_when_every_task_is_in_a_service_role(
    drift_settings: Settings,
) -> None:
    from homelab.inventory import Inventory

    class _Engine:
        on_finished: list[Any] = []

    d = DriftService(
        drift_settings,
        Store(drift_settings.db_url),
        Catalog(drift_settings.catalog),
        Inventory(ROOT / "inventory" / "lab"),
        _Engine(),
    )
    assert d.tags_for([{"role": "compose_service"}]) == (), "a shared role is no service: converge everything"
    assert (
        DriftService(
            drift_settings, Store(drift_settings.db_url), Catalog(drift_settings.catalog), None, _Engine()
        ).tags_for([{"role": "caddy"}])
        == ()
    ), "no registry to ask: converge everything"
    assert d.tags_for([{"role": "caddy"}, {"role": "base"}, {"role": "base"}]) == ("base", "caddy")
    assert d.tags_for([{"role": "caddy"}, {"role": ""}]) == (), "a task outside a role: converge everything"
    assert d.tags_for([{"role": "no-such-role"}]) == ()
    assert d.tags_for([]) == ()


def test_a_drift_is_identified_by_its_tasks_and_items_not_by_its_diff_text() -> None:
    a = [{"role": "base", "task": "Harden sshd", "diff": "-MaxSessions 9\n+..."}]
    b = [{"role": "base", "task": "Harden sshd", "diff": "-MaxSessions 10\n+..."}]
    c = [{"role": "base", "task": "Set sysctl", "diff": "# item changed: net.a=1"}]
    d = [{"role": "base", "task": "Set sysctl", "diff": "# item changed: net.b=1"}]
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(c) != fingerprint(d) and fingerprint(a) != fingerprint(c)
    assert fingerprint(a + c) == fingerprint(c + a)


def test_a_store_from_before_drift_gains_the_new_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE jobs DROP COLUMN tags"))
        conn.execute(text("ALTER TABLE task_results DROP COLUMN role"))
        conn.execute(text("DROP TABLE alembic_version"))  # as a store from before migrations: no version
    store.engine.dispose()
    store = Store(url)
    cols = {t: {c["name"] for c in inspect(store.engine).get_columns(t)} for t in ("jobs", "task_results")}
    assert "tags" in cols["jobs"] and "role" in cols["task_results"]


def test_the_drift_api_needs_a_token_and_refuses_bad_requests(drift_app: Any) -> None:
    from homelab.web.auth import create_token

    client = drift_app.test_client()
    assert client.get("/api/v1/drift").status_code == 401
    assert client.post("/api/v1/drift/check", json={"schedule": "files-hourly"}).status_code == 401
    auth = {"Authorization": f"Bearer {create_token(drift_app.extensions['homelab'].store, 'admin', 't')}"}
    assert client.get("/api/v1/drift", headers=auth).get_json() == {
        "summary": {"hosts": {}, "drifted": 0, "unknown": 0, "clean": 0},
        "states": [],
    }
    r = client.post("/api/v1/drift/check", json={"schedule": "nope"}, headers=auth)
    assert r.status_code == 404 and "schedule 'nope' does not exist" in r.get_json()["error"]
    r = client.post("/api/v1/drift/check", json={"playbook": "files", "limit": "alpha", "extra": 1}, headers=auth)
    assert r.status_code == 400
    r = client.post("/api/v1/drift/fix", json={"playbook": "files"}, headers=auth)
    assert r.status_code == 409 and "no host has open drift" in r.get_json()["error"]
    r = client.post("/api/v1/drift/fix", json={"playbook": "files", "hosts": "alpha"}, headers=auth)
    assert r.status_code == 400


@pytest.mark.parametrize(
    "cron, first, words",
    [
        ("15 3 * * 0", "Sun 2026-12-06 03:15", "Sundays at 03:15"),
        ("15 3 * * 7", "Sun 2026-12-06 03:15", "Sundays at 03:15"),
        ("15 3 * * sun", "Sun 2026-12-06 03:15", "Sundays at 03:15"),
        ("0 2 * * 1-5", "Tue 2026-12-01 02:00", "weekdays at 02:00"),
        ("0 1 * * 6,0", "Sat 2026-12-05 01:00", "Sundays and Saturdays at 01:00"),
        ("30 4 * * *", "Tue 2026-12-01 04:30", "daily at 04:30"),
    ],
)
def test_a_crontab_schedule_fires_when_crontab_says(cron: str, first: str, words: str) -> None:
    """APScheduler's from_crontab reads day-of-week 0 as Monday: the weekly Sunday maintenance ran
    on Mondays. A schedule written as crontab must mean what crontab means, and say it in words."""
    import datetime as dt

    s = parse_schedule({"id": "w", "playbook": "db_maintenance", "cron": cron, "action": "run"})
    start = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)  # a Tuesday
    tz = s.trigger().timezone  # the server's time zone, as crontab
    fire = s.trigger().get_next_fire_time(None, start.astimezone(tz).replace(hour=0, minute=0))
    assert fire.strftime("%a %H:%M") == f"{first[:3]} {first[-5:]}"
    assert s.in_words == words


def test_the_shipped_weekly_maintenance_runs_on_sunday() -> None:
    from homelab.registry import Registry

    catalog = Catalog(ROOT / "playbooks" / "catalog.yml", registry=Registry(ROOT / "inventory" / "lab"))
    [weekly] = [
        s for s in Schedules(ROOT / "playbooks" / "schedules.yml", catalog).load() if s.id == "db-maintenance-weekly"
    ]
    assert weekly.in_words.startswith("Sundays at ")

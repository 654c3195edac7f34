"""Jarvis's diagnosis and the proactive maintenance runs fire from the one scheduler (the schedules
file, APScheduler with the DB lease): a `jarvis` schedule runs a diagnosis cycle that remediates,
a `run` schedule runs its catalog playbook for real through the engine; both are listed on the
Drift page, and the web form keeps their action when it rewrites the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from homelab.settings import Settings
from homelab.store import Job

from jarvis_helpers import ADMIN_PASSWORD, CATALOG, Box, csrf_from, wait_until, write_rules


def test_a_jarvis_schedule_diagnoses_and_remediates_and_a_run_schedule_runs_maintenance(
    tmp_path: Path, box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    from homelab.web import create_app, stop_app

    box.stale_lock()
    box.backup("failed")
    schedules = tmp_path / "schedules.yml"
    schedules.write_text(
        "---\n"
        + yaml.safe_dump(
            {
                "schedules": [
                    {
                        "id": "jarvis",
                        "playbook": "diagnose",
                        "interval": "5s",
                        "limit": "",
                        "enabled": True,
                        "action": "jarvis",
                    },
                    {
                        "id": "backup-fix",
                        "playbook": "mark_backup_ok",
                        "interval": "1h",
                        "limit": "",
                        "enabled": True,
                        "action": "run",
                    },
                ]
            },
            sort_keys=False,
        )
    )
    write_rules(
        tmp_path / "rules.yml",
        [
            {
                "id": "locks",
                "codes": ["gitsync.stale_lock"],
                "playbook": "clear_git_locks",
                "params": {"max_age_minutes": "{max_age_minutes}"},
                "mode": "auto",
            }
        ],
    )
    monkeypatch.setenv("HOMELAB_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("HOMELAB_JARVIS_RULES", str(tmp_path / "rules.yml"))
    var = tmp_path / "var"
    var.mkdir()
    settings = Settings.from_env(
        {
            "HOMELAB_VAR_DIR": str(var),
            "HOMELAB_INVENTORY": str(box.inventory),
            "HOMELAB_CATALOG": str(CATALOG),
            "HOMELAB_SCHEDULES": str(schedules),
            "HOMELAB_SCHEDULER_LEASE_SECONDS": "3",
        }
    )
    app = create_app(settings)
    h = app.extensions["homelab"]
    try:

        def jobs() -> list[Job]:
            with h.store.session() as s:
                return list(s.scalars(select(Job).order_by(Job.id)))

        wait_until(
            lambda: any(a.status == "resolved" for a in h.jarvis.actions()), 240, "a scheduled diagnosis and its fix"
        )
        assert not (box.repo / ".git" / "index.lock").exists()
        assert h.jarvis.last["by"] == "schedule jarvis"
        ran = jobs()
        assert ("diagnose", "jarvis") in [(j.playbook, j.source) for j in ran]
        assert ("clear_git_locks", "jarvis") in [(j.playbook, j.source) for j in ran]
        # the interval schedule "backup-fix" first fires after an hour: run it now from the Drift page
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf_from(page)})
        drift = client.get("/drift").get_data(as_text=True)
        assert 'data-run-now="backup-fix"' in drift and 'data-run-now="jarvis"' in drift
        r = client.post("/drift/check", data={"schedule": "backup-fix", "csrf_token": csrf_from(drift)})
        assert r.status_code == 302, r.get_data(as_text=True)
        job_id = int(r.headers["Location"].rsplit("/", 1)[1])
        job = h.engine.wait(job_id, 120)
        assert (job.playbook, job.check, job.source, job.status) == ("mark_backup_ok", False, "schedule", "successful")
        assert json.loads(box.backup_status.read_text())["status"] == "ok"
        assert (
            client.post("/drift/check", data={"schedule": "jarvis", "csrf_token": csrf_from(drift)}).status_code == 409
        )

        # the schedules form keeps each schedule's action when it rewrites the file
        form = client.get("/drift/schedules").get_data(as_text=True)
        data: dict[str, Any] = {"csrf_token": csrf_from(form), "rows": "2"}
        for i, s in enumerate(yaml.safe_load(schedules.read_text())["schedules"]):
            data.update(
                {
                    f"id-{i}": s["id"],
                    f"playbook-{i}": s["playbook"],
                    f"action-{i}": s["action"],
                    f"kind-{i}": "interval",
                    f"when-{i}": s["interval"],
                    f"limit-{i}": "",
                    f"enabled-{i}": "1",
                }
            )
        assert 'id="action-0"' in form
        r = client.post("/drift/schedules", data=data)
        assert r.status_code == 302, r.get_data(as_text=True)[-2000:]
        assert [s.get("action") for s in yaml.safe_load(schedules.read_text())["schedules"]] == ["jarvis", "run"]
    finally:
        stop_app(app, timeout=60)

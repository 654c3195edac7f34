"""The Restore and Verify forms offer the backups the store knows (`suggest: backups`): from the
newest list_backups job and the backup jobs since (their new id in, their retention's removals
out). The list_backups playbook runs for real on localhost through the engine, with the real
backup script (roles/backup/files/homelab-backup.py) reading a backup directory made here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from sqlalchemy import select

from homelab.backups import known_backups
from homelab.store import Job

from webui_helpers import PY, ROOT, csrf_from, logged_in_app, real_catalog_settings


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    backups = tmp_path / "backups"
    for bid, size in (("20261124T033000Z", 1000), ("20261125T033000Z", 2048)):
        (backups / bid).mkdir(parents=True)
        (backups / bid / "manifest.json").write_text(
            json.dumps({"id": bid, "created": f"{bid[:8]}T03:30:00Z", "size": size})
        )
    (backups / ".partial-20261126T033000Z").mkdir()  # not complete: never listed
    script = tmp_path / "homelab-backup"
    shutil.copy(ROOT / "roles" / "backup" / "files" / "homelab-backup.py", script)
    script.chmod(0o755)
    config = tmp_path / "backup.json"
    config.write_text(json.dumps({"backup_dir": str(backups), "status_file": str(tmp_path / "status.json")}))
    hostvars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": PY,
        "ansible_become": False,
        "backup_script_path": str(script),
        "backup_config_path": str(config),
    }
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"homelab": {"hosts": {"alpha": hostvars}}}}}))
    quiet = {"HOMELAB_JARVIS": "0", "HOMELAB_STATUS_INTERVAL": "0", "HOMELAB_FACTS_INTERVAL": "0"}
    settings = real_catalog_settings(tmp_path, inventory, **quiet)
    with logged_in_app(settings, monkeypatch, start_engine=True, stop_timeout=60) as (app, client):
        yield app, client


def _offered(page: str) -> list[str]:
    datalist = page.split('<datalist id="p-backup-options">', 1)[1].split("</datalist>", 1)[0]
    return [part.split('"', 1)[0] for part in datalist.split('<option value="')[1:]]


def test_the_restore_form_offers_the_backups_a_list_job_found_and_later_backup_jobs_made(site: Any) -> None:
    app, client = site
    h = app.extensions["homelab"]
    page = client.get("/catalog/restore").get_data(as_text=True)
    assert _offered(page) == [] and "No backup is known yet." in page and 'id="p-backup-refresh"' in page

    # the read-only list, run for real through the catalog form
    r = client.post("/catalog/list_backups", data={"csrf_token": csrf_from(page)})
    assert r.status_code == 302
    job = h.engine.wait(int(r.headers["Location"].rsplit("/", 1)[1]), 300)
    assert job.status == "successful", job.reason
    assert [b["id"] for b in job.artifact_data["backups"]["alpha"]] == ["20261125T033000Z", "20261124T033000Z"]

    page = client.get("/catalog/restore").get_data(as_text=True)
    assert _offered(page) == ["20261125T033000Z", "20261124T033000Z"]
    assert 'list="p-backup-options"' in page and f'href="/jobs/{job.id}"' in page and "2.0 KiB" in page

    # a backup made through this server since: its id is offered, the one its retention removed is not
    with h.store.session.begin() as s:
        for status, data in (
            ("successful", {"alpha": {"id": "20261126T033000Z", "size": 4096, "removed": ["20261124T033000Z"]}}),
            ("failed", {"alpha": {"id": "20261127T033000Z", "removed": ["20261125T033000Z"]}}),
        ):
            s.add(Job(playbook="backup", status=status, hosts=["alpha"], artifact_data={"backup": data}))
    for path in ("/catalog/restore", "/catalog/verify_backup"):
        page = client.get(path).get_data(as_text=True)
        assert _offered(page) == ["20261126T033000Z", "20261125T033000Z"], path
    assert [b.id for b in known_backups(h.store).backups] == ["20261126T033000Z", "20261125T033000Z"]

    # the field is still free text, validated as before: a picked id starts the job, a bad one is a 400
    csrf = csrf_from(page)
    r = client.post("/catalog/verify_backup", data={"csrf_token": csrf, "backup": "20261125T033000Z; rm -rf /"})
    assert r.status_code == 400 and "does not match the pattern" in r.get_data(as_text=True)
    r = client.post("/catalog/verify_backup", data={"csrf_token": csrf, "backup": "20261126T033000Z"})
    assert r.status_code == 302
    with h.store.session() as s:
        newest = s.scalars(select(Job).order_by(Job.id.desc())).first()
    assert newest is not None and newest.playbook == "verify_backup" and newest.params["backup"] == "20261126T033000Z"
    h.engine.cancel(newest.id, "test")

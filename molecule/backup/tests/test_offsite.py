"""Off-host copies (restic): what an operator sees once the backup role has run with
backup_offsite_enabled (the lab inventory's inventory/lab/group_vars/all/backup.yml: a repository
on "another disk", a directory of the lab host, through the same code path as sftp:, s3: or rest:).

Each backup is copied into the encrypted repository; a copy comes back as a local backup that the
restore playbook restores from after the local backups are lost; the weekly check and restore drill
pass and a damaged repository fails the check; a wrong key or URL is refused before anything
changes; a copy that cannot be made fails the run while the local backup stays.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from checks import recap, run_converge

ROOT = Path(__file__).resolve().parents[3]
BACKUPS = "/var/backups/homelab"
STATUS = "/var/lib/homelab/backup/status.json"
REPO = "/srv/offsite/restic-homelab"
KEY = (Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "var" / "lab-secrets" / "backup_restic").read_text().strip()


def status(host) -> dict:
    return json.loads(host.file(STATUS).content_string)


def script(host, *args: str):
    return host.run("/usr/local/sbin/homelab-backup " + " ".join(args))


def ops(name: str, *extra: str):
    return run_converge(*extra, playbook=str(ROOT / "playbooks" / "ops" / f"{name}.yml"))


def psql(host, sql: str) -> str:
    res = host.run("docker exec postgres psql -U app -d app -XAtq -v ON_ERROR_STOP=1 -c %s", sql)
    assert res.rc == 0, res.stderr
    return res.stdout.strip()


def test_each_backup_is_copied_into_the_encrypted_repository(host):
    res = host.run("systemctl start homelab-backup.service")
    assert res.rc == 0, host.run("journalctl -u homelab-backup --no-pager -n 30").stdout
    st = status(host)
    assert st["status"] == "ok" and st["offsite"]["status"] == "ok" and st["offsite"]["repository"] == REPO
    snaps = json.loads(script(host, "offsite-list").stdout)
    assert snaps[0]["backup"] == st["id"] and snaps[0]["snapshot"] == st["offsite"]["snapshot"]
    assert snaps[0]["paths"] == [f"{BACKUPS}/{st['id']}"]
    # Retention in the repository (restic forget --keep-daily 7 ...): the earlier tests made several
    # backups today, and what is kept is the newest of the day plus, while the repository holds fewer
    # than 7 days, the oldest one (restic keeps the "oldest daily snapshot" then).
    assert len(snaps) == 2 and snaps[1]["backup"] < snaps[0]["backup"], snaps
    for path, mode in (("/etc/homelab/restic.password", 0o600), ("/etc/homelab/restic.env", 0o600)):
        f = host.file(path)
        assert (f.user, f.mode) == ("root", mode), path
    assert host.file("/etc/homelab/restic.password").content_string.strip() == KEY
    assert KEY not in host.file("/etc/homelab/backup.json").content_string
    # Encrypted: the app's data file and its database rows are nowhere readable in the repository.
    assert host.run(f"grep -rlaF 'app state' {REPO}").rc == 1
    assert host.file(f"{REPO}/config").exists and host.file(f"{REPO}/data").is_directory


def test_an_off_host_copy_brings_lost_backups_and_data_back(host):
    psql(
        host,
        "DROP TABLE IF EXISTS parcels; CREATE TABLE parcels (id int PRIMARY KEY); INSERT INTO parcels VALUES (7), (8);",
    )
    made = ops("backup")
    assert made.returncode == 0, made.stdout[-3000:]
    ident = status(host)["id"]
    # The disk with the local backups is lost, and the table too.
    host.check_output(f"rm -rf {BACKUPS}/{ident}")
    psql(host, "DROP TABLE parcels")
    got = script(host, "offsite-restore", "latest")
    assert got.rc == 0, got.stdout + got.stderr
    doc = json.loads(got.stdout)
    assert (doc["id"], doc["verified"]) == (ident, True)
    assert host.file(f"{BACKUPS}/{ident}/manifest.json").exists
    assert status(host)["offsite_restore"]["status"] == "ok"
    again = script(host, "offsite-restore", "latest")
    assert again.rc == 1 and "is already here" in again.stderr
    proc = ops("restore", "-e", json.dumps({"backup": ident, "database": "app", "data": False}))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert psql(host, "SELECT string_agg(id::text, ',' ORDER BY id) FROM parcels") == "7,8"


def test_the_check_and_restore_drill_pass_and_a_missing_pack_fails_the_check(host):
    res = host.run("systemctl start homelab-backup-check.service")
    assert res.rc == 0, host.run("journalctl -u homelab-backup-check --no-pager -n 30").stdout
    st = status(host)
    assert st["offsite_check"]["status"] == "ok"
    drill = st["offsite_drill"]
    assert drill["status"] == "ok" and drill["backup"] == json.loads(script(host, "offsite-list").stdout)[0]["backup"]
    by_db = {d["database"]: d["tables"] for d in drill["databases"]}
    assert by_db["app"] >= 1, drill
    # The drill's scratch database is gone again.
    assert (
        host.check_output(
            'docker exec postgres psql -U postgres -XAtc "SELECT count(*) FROM pg_database'
            " WHERE datname = '_homelab_restore_drill'\""
        )
        == "0"
    )
    pack = host.check_output(f"find {REPO}/data -type f | head -n 1")
    host.check_output(f"mv {pack} /srv/offsite/held-pack")
    try:
        bad = script(host, "offsite-check")
        assert bad.rc == 1
        assert status(host)["offsite_check"]["status"] == "failed", status(host)
    finally:
        host.check_output(f"mv /srv/offsite/held-pack {pack}")
    assert script(host, "offsite-check").rc == 0


def test_a_copy_that_cannot_be_made_fails_the_run_and_keeps_the_local_backup(host):
    host.check_output(f"mv {REPO} {REPO}.away")
    try:
        assert host.run("systemctl start homelab-backup.service").rc != 0
        st = status(host)
        assert st["status"] == "failed" and "off-host copy" in st["error"] and "does not exist" in st["error"]
        assert st["offsite"]["status"] == "failed"
        assert host.file(f"{st['path']}/manifest.json").exists, "the local backup was made and stays"
    finally:
        host.check_output(f"mv {REPO}.away {REPO}")
    assert host.run("systemctl start homelab-backup.service").rc == 0 and status(host)["status"] == "ok"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"backup_restic_password": "not-the-key-of-this-repo"},
            "backup_restic_password does not open the restic repository",
        ),
        (
            {"backup_restic_repository": "ftp://backup.example.org/x"},
            "backup_restic_repository (ftp://backup.example.org/x) is not a restic repository URL",
        ),
        (
            {"backup_restic_repository": "/opt/homelab/app"},
            "backup_restic_repository /opt/homelab/app exists and is not a restic repository",
        ),
        ({"backup_restic_password": "short"}, "backup_restic_password (at least 16 characters) is not set"),
    ],
    ids=["wrong-key", "bad-url", "not-a-repository", "short-key"],
)
def test_a_wrong_key_or_repository_is_refused_before_anything_changes(host, override, message):
    config = host.file("/etc/homelab/backup.json").content_string
    proc = run_converge("-e", json.dumps(override), playbook="backup_role.yml")
    assert proc.returncode != 0
    assert message in " ".join(proc.stdout.split()), proc.stdout[-3000:]
    assert all(c["changed"] == 0 for c in recap(proc.stdout).values()), proc.stdout[-3000:]
    assert host.file("/etc/homelab/backup.json").content_string == config
    assert host.file("/etc/homelab/restic.password").content_string.strip() == KEY
    assert "not-the-key-of-this-repo" not in proc.stdout

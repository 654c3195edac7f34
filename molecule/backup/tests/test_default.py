"""What an operator of the backup role and the maintenance playbooks sees on a lab host.

The backup timer is scheduled; a run writes root-only dumps, archives and a manifest and reports
"ok" in the status file diagnostics read; the restore playbook brings deleted rows and changed data
back (stopping and restarting the service that owns them) and refuses unknown backups and
databases before it touches anything; verify_backup names a corrupted file; retention keeps the
newest backup of each of the newest N days. create_database is idempotent and its credentials open
that database only; db_maintenance vacuums and rebuilds a bloated index it measured; prune_docker
removes a dangling image and a stranger's stopped container but no homelab container or image;
log_cleanup deletes old rotated logs only, in check mode nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from checks import assert_check_mode_clean, recap, run_converge

ROOT = Path(__file__).resolve().parents[3]

BACKUPS = "/var/backups/homelab"
STATUS = "/var/lib/homelab/backup/status.json"
ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z$")


def ops(name: str, *extra: str):
    """Run playbooks/ops/<name>.yml against this scenario's lab host, as the web UI's job would."""
    return run_converge(*extra, playbook=str(ROOT / "playbooks" / "ops" / f"{name}.yml"))


def psql(host, sql: str, db: str = "app", user: str = "postgres") -> str:
    res = host.run(f"docker exec postgres psql -U {user} -d {db} -XAtq -v ON_ERROR_STOP=1 -c %s", sql)
    assert res.rc == 0, res.stderr
    return res.stdout.strip()


def backup_ids(host) -> list[str]:
    return sorted(n for n in host.file(BACKUPS).listdir() if ID.match(n))


def status(host) -> dict:
    return json.loads(host.file(STATUS).content_string)


def started_at(host, name: str) -> str:
    return host.check_output(f"docker inspect -f '{{{{.State.StartedAt}}}}' {name}")


def changed(proc) -> int:
    counters = recap(proc.stdout)
    assert counters, proc.stdout[-3000:] + proc.stderr[-2000:]
    return sum(c["changed"] for c in counters.values())


def test_the_timer_is_scheduled_daily(host):
    assert host.run("systemctl is-enabled homelab-backup.timer").stdout.strip() == "enabled"
    assert host.run("systemctl is-active homelab-backup.timer").stdout.strip() == "active"
    unit = host.file("/etc/systemd/system/homelab-backup.timer").content_string
    assert "OnCalendar=*-*-* 03:30:00" in unit and "Persistent=true" in unit
    assert host.file("/usr/local/sbin/homelab-backup").mode == 0o700
    assert host.file("/etc/homelab/backup.json").mode == 0o600


def test_the_service_writes_root_only_dumps_archives_and_an_ok_status(host):
    res = host.run("systemctl start homelab-backup.service")
    assert res.rc == 0, host.run("journalctl -u homelab-backup --no-pager -n 30").stdout
    st = status(host)
    assert st["status"] == "ok" and st["error"] == "" and st["last_success"] and st["last_attempt"]
    path = st["path"]
    assert Path(path).name == backup_ids(host)[-1]
    for d in (BACKUPS, path):
        f = host.file(d)
        assert (f.user, f.mode) == ("root", 0o700), d
    assert host.file(STATUS).mode == 0o600
    manifest = json.loads(host.file(f"{path}/manifest.json").content_string)
    files = {e["file"]: e for e in manifest["files"]}
    assert {"postgres/globals.sql", "postgres/app.dump", "postgres/postgres.dump", "data/app.tar.gz"} <= set(files)
    assert files["postgres/app.dump"]["owner"] == "app"
    for name, entry in files.items():
        f = host.file(f"{path}/{name}")
        assert (f.user, f.mode, f.size) == ("root", 0o600, entry["size"]), name
        assert host.check_output(f"sha256sum {path}/{name}").split()[0] == entry["sha256"], name
    # A real custom-format dump of the app database, and the data directory in the archive.
    assert host.run(f"docker exec -i postgres pg_restore --list < {path}/postgres/app.dump").rc == 0
    assert "data/state.txt" in host.check_output(f"tar -tzf {path}/data/app.tar.gz")


def test_restore_brings_deleted_rows_and_data_back_and_restarts_the_service(host):
    psql(host, "DROP TABLE IF EXISTS orders, junk; CREATE TABLE orders (id int PRIMARY KEY, item text);"
               "INSERT INTO orders VALUES (1, 'disk'), (2, 'ram'), (3, 'cpu');", user="app")
    host.run("echo 'app state v2' > /opt/homelab/app/data/state.txt")
    made = ops("backup")
    assert made.returncode == 0, made.stdout[-3000:]
    backup_id = status(host)["id"]
    assert f"Backup {backup_id} written to {BACKUPS}/{backup_id}" in " ".join(made.stdout.split())

    # Damage: rows gone and changed, a table added, the data file rewritten.
    psql(host, "DELETE FROM orders WHERE id > 1; UPDATE orders SET item = 'lost' WHERE id = 1;"
               "CREATE TABLE junk (x int);", user="app")
    host.run("echo 'broken' > /opt/homelab/app/data/state.txt")
    before = started_at(host, "app")

    proc = ops("restore", "-e", json.dumps({"backup": backup_id, "database": "app", "data": True}))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert psql(host, "SELECT string_agg(id || '=' || item, ',' ORDER BY id) FROM orders") == "1=disk,2=ram,3=cpu"
    # --clean restores the database as it was: objects made after the backup are gone.
    assert psql(host, "SELECT count(*) FROM pg_tables WHERE tablename = 'junk'") == "0"
    assert psql(host, "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'") == "app"
    assert host.file("/opt/homelab/app/data/state.txt").content_string == "app state v2\n"
    kept = f"/opt/homelab/app/data.pre-restore-{backup_id}"
    assert host.file(f"{kept}/state.txt").content_string == "broken\n"
    # The service owning the database was stopped for the restore and runs, healthy, again.
    assert started_at(host, "app") != before
    assert host.check_output("docker inspect -f '{{.State.Health.Status}}' app") == "healthy"
    assert "restarted app." in " ".join(proc.stdout.split()), proc.stdout[-3000:]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"backup": "20000101T000000Z"}, "there is no backup 20000101T000000Z"),
        ({"backup": "../../etc"}, "backup must be 'latest' or an id"),
        ({"database": "nosuch"}, "holds no database 'nosuch'"),
        ({"database": "none"}, "something must be restored"),
    ],
)
def test_restore_refuses_unknown_backups_and_databases_before_touching_anything(host, extra, message):
    before = started_at(host, "app")
    proc = ops("restore", "-e", json.dumps(extra))
    assert proc.returncode != 0
    assert message in " ".join(proc.stdout.split()), proc.stdout[-3000:]
    assert started_at(host, "app") == before


def test_restoring_every_database_keeps_owners_and_grants(host):
    proc = ops("restore")  # latest backup, every database in it (the maintenance database "postgres" too)
    text = " ".join(proc.stdout.split())
    assert proc.returncode == 0 and "databases app, postgres; data none" in text, text[-3000:]
    assert psql(host, "SELECT string_agg(id || '=' || item, ',' ORDER BY id) FROM orders") == "1=disk,2=ram,3=cpu"
    # The swapped-in database has the live one's owner, encoding and grants: CONNECT for its owner, not PUBLIC.
    assert psql(host, "SELECT pg_get_userbyid(datdba) || ' ' || pg_encoding_to_char(encoding) FROM pg_database"
                      " WHERE datname = 'app'") == "app UTF8"
    assert psql(host, "SELECT count(*) FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = 'app' AND a.grantee = 0") == "0"
    assert psql(host, "SELECT has_database_privilege('app', 'app', 'CONNECT')") == "t"
    assert psql(host, "SELECT count(*) FROM pg_database WHERE datname LIKE '%restoring%'") == "0"
    assert host.check_output("docker inspect -f '{{.State.Health.Status}}' app") == "healthy"


def test_verify_backup_passes_on_an_intact_backup_and_names_a_corrupted_file(host):
    ok = ops("verify_backup")
    assert ok.returncode == 0 and "is intact" in ok.stdout, ok.stdout[-3000:]
    assert changed(ok) == 0

    latest = backup_ids(host)[-1]
    copy = "20000102T000000Z"
    host.check_output(f"cp -a {BACKUPS}/{latest} {BACKUPS}/{copy}")
    # Flip one byte in the middle of the data archive.
    host.check_output(
        f"python3 -c \"import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); i=len(b)//2; b[i]^=0xFF;"
        f" open(p,'wb').write(b)\" {BACKUPS}/{copy}/data/app.tar.gz"
    )
    bad = ops("verify_backup", "-e", f"backup={copy}")
    text = " ".join(bad.stdout.split())
    assert bad.returncode != 0
    assert f"Backup {copy} is damaged" in text and "data/app.tar.gz: checksum or size differs" in text, text[-3000:]
    # A restore from it is refused before anything stops.
    before = started_at(host, "app")
    refused = ops("restore", "-e", json.dumps({"backup": copy, "data": True}))
    assert refused.returncode != 0 and "is damaged, nothing was restored" in " ".join(refused.stdout.split())
    assert started_at(host, "app") == before

    # A dump that matches its (rewritten) checksum but is not a dump fails pg_restore --list.
    host.check_output(
        f"python3 - {BACKUPS}/{copy} <<'EOF'\n"
        "import hashlib, json, sys\n"
        "d = sys.argv[1]\n"
        "open(d + '/postgres/app.dump', 'wb').write(b'PGDMP not really a dump')\n"
        "m = json.load(open(d + '/manifest.json'))\n"
        "for e in m['files']:\n"
        "    p = d + '/' + e['file']\n"
        "    data = open(p, 'rb').read()\n"
        "    e['size'], e['sha256'] = len(data), hashlib.sha256(data).hexdigest()\n"
        "json.dump(m, open(d + '/manifest.json', 'w'))\n"
        "EOF"
    )
    bad = ops("verify_backup", "-e", f"backup={copy}")
    assert bad.returncode != 0 and "postgres/app.dump: pg_restore --list failed" in " ".join(bad.stdout.split())
    host.check_output(f"rm -rf {BACKUPS}/{copy}")


def test_retention_keeps_the_newest_backup_of_each_of_the_newest_days(host):
    latest = backup_ids(host)[-1]
    seeded = ["20200101T010000Z", "20200102T010000Z", "20200103T010000Z", "20200103T020000Z"]
    for ident in seeded:
        host.check_output(f"cp -a {BACKUPS}/{latest} {BACKUPS}/{ident}")
    # Something that is not a backup is never touched.
    host.check_output(f"mkdir -p {BACKUPS}/keep-me")
    assert host.run("systemctl start homelab-backup.service").rc == 0
    new = status(host)["id"]
    # keep_daily 3: today's newest (the new one), 2020-01-03's newest, 2020-01-02's.
    assert backup_ids(host) == ["20200102T010000Z", "20200103T020000Z", new]
    assert {"20200101T010000Z", "20200103T010000Z", latest} <= set(status(host)["removed"])
    assert host.file(f"{BACKUPS}/keep-me").is_directory
    host.check_output(f"rm -rf {BACKUPS}/keep-me")


def test_a_failed_backup_says_so_in_the_status_file_and_keeps_last_success(host):
    good = status(host)["last_success"]
    host.check_output("docker stop postgres")
    try:
        assert host.run("systemctl start homelab-backup.service").rc != 0
        st = status(host)
        assert st["status"] == "failed" and "not running" in st["error"] and st["last_success"] == good
        assert not any(n.startswith(".partial") for n in host.file(BACKUPS).listdir())
        proc = ops("backup")
        assert proc.returncode != 0 and "The backup failed" in proc.stdout
    finally:
        host.check_output("docker start postgres")
        host.check_output("for i in $(seq 60); do docker exec postgres pg_isready -q && exit 0; sleep 1; done; exit 1")
    assert host.run("systemctl start homelab-backup.service").rc == 0
    assert status(host)["status"] == "ok"


def test_create_database_is_idempotent_and_its_credentials_open_that_database_only(host):
    first = ops("create_database", "-e", "database=shop")
    assert first.returncode == 0 and changed(first) > 0, first.stdout[-3000:]
    second = ops("create_database", "-e", "database=shop")
    assert second.returncode == 0 and changed(second) == 0, second.stdout[-3000:]

    env = host.file("/opt/homelab/shop/database.env")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    values = dict(line.split("=", 1) for line in env.content_string.splitlines() if "=" in line and not line.startswith("#"))
    assert values["PGUSER"] == "shop" and values["PGDATABASE"] == "shop" and len(values["PGPASSWORD"]) >= 32
    assert values["DATABASE_URL"] == f"postgresql://shop:{values['PGPASSWORD']}@postgres:5432/shop"
    # The password never shows in the job output.
    assert values["PGPASSWORD"] not in first.stdout + first.stderr + second.stdout

    def connect(db: str):
        url = f"postgresql://shop:{values['PGPASSWORD']}@127.0.0.1:5432/{db}"
        return host.run(f"docker exec postgres psql '{url}' -XAtc 'select current_user, current_database()'")

    ok = connect("shop")
    assert ok.rc == 0 and ok.stdout.strip() == "shop|shop", ok.stderr
    denied = connect("app")
    assert denied.rc != 0 and "permission denied for database" in denied.stderr
    wrong = host.run("docker exec postgres psql 'postgresql://shop:wrong-password@127.0.0.1:5432/shop' -c 'select 1'")
    assert wrong.rc != 0 and "password authentication failed" in wrong.stderr

    # Another owner for an existing database is refused, nothing changes.
    steal = ops("create_database", "-e", "database=app owner=shop")
    assert steal.returncode != 0 and "already exists, owned by app" in " ".join(steal.stdout.split())
    assert psql(host, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'app'") == "app"
    bad = ops("create_database", "-e", json.dumps({"database": "Robert');DROP"}))
    assert bad.returncode != 0 and "must match" in bad.stdout


def test_db_maintenance_vacuums_and_rebuilds_a_measurably_bloated_index(host):
    psql(host, "DROP TABLE IF EXISTS bloat; CREATE TABLE bloat (id int PRIMARY KEY, pad text);"
               "INSERT INTO bloat SELECT g, repeat('x', 20) FROM generate_series(1, 50000) g;"
               "DELETE FROM bloat WHERE id % 10 <> 0;", user="app")
    size_before = int(psql(host, "SELECT pg_relation_size('bloat_pkey')"))

    # Check mode says what it would do (vacuum: changed) and does nothing.
    dry = ops("db_maintenance", "--check", "-e", "database=app")
    assert dry.returncode == 0 and changed(dry) > 0, dry.stdout[-3000:]
    assert "app: not vacuumed (check mode)" in " ".join(dry.stdout.split()), dry.stdout[-3000:]
    assert int(psql(host, "SELECT pg_relation_size('bloat_pkey')")) == size_before

    proc = ops("db_maintenance", "-e", "database=app")
    text = " ".join(proc.stdout.split())
    assert proc.returncode == 0 and changed(proc) > 0, text[-3000:]
    assert "app: vacuumed and analyzed; reindexed public.bloat_pkey (leaf density" in text, text[-3000:]
    assert int(psql(host, "SELECT pg_relation_size('bloat_pkey')")) < size_before / 3
    assert psql(host, "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'bloat'") == "t"
    # The measurement leaves no extension behind in the service's database.
    assert psql(host, "SELECT count(*) FROM pg_extension WHERE extname = 'pgstattuple'") == "0"

    again = ops("db_maintenance", "-e", "database=app")
    assert again.returncode == 0 and "app: vacuumed and analyzed; no index reindexed" in " ".join(again.stdout.split())
    every = ops("db_maintenance")
    assert every.returncode == 0
    for db in ("app", "postgres", "shop"):
        assert f"{db}: vacuumed and analyzed" in " ".join(every.stdout.split())
    assert ops("db_maintenance", "-e", "reindex=sometimes").returncode != 0


def test_prune_docker_removes_dangling_images_and_strangers_but_no_homelab_container(host):
    standin = host.check_output("docker inspect -f '{{.Config.Image}}' app")
    # A dangling image: the second commit takes the tag from the first.
    host.check_output(f"docker run --name lab-junk-1 --entrypoint true {standin} && docker commit lab-junk-1 lab/junk:1")
    host.check_output(f"docker run --name lab-junk-2 --entrypoint sh {standin} -c 'echo x > /x' && docker commit lab-junk-2 lab/junk:1")
    dangling = host.check_output("docker images -q -f dangling=true")
    assert dangling
    # A homelab service's stopped container must stay.
    host.check_output("docker stop app")
    try:
        # Check mode reports what would go (changed) and removes nothing.
        dry = ops("prune_docker", "--check")
        assert dry.returncode == 0 and changed(dry) > 0, dry.stdout[-3000:]
        assert "Would reclaim up to" in dry.stdout and "lab-junk-1" in dry.stdout
        assert "lab-junk-1" in host.check_output("docker ps -a --format '{{.Names}}'")
        assert host.check_output("docker images -q -f dangling=true") == dangling

        proc = ops("prune_docker")
        text = " ".join(proc.stdout.split())
        assert proc.returncode == 0 and changed(proc) > 0, text[-3000:]
        assert "Reclaimed" in text and "homelab containers kept: app" in text, text[-3000:]
        assert host.check_output("docker images -q -f dangling=true") == ""
        names = host.check_output("docker ps -a --format '{{.Names}}'").split()
        assert "app" in names and "postgres" in names
        assert "lab-junk-1" not in names and "lab-junk-2" not in names
        assert host.run(f"docker image inspect {standin}").rc == 0
    finally:
        host.check_output("docker start app")
    again = ops("prune_docker")
    assert again.returncode == 0 and changed(again) == 0, again.stdout[-3000:]


def test_log_cleanup_removes_old_rotated_logs_only_and_nothing_in_check_mode(host):
    host.check_output(
        "mkdir -p /var/log/labapp && head -c 20000 /dev/urandom > /var/log/labapp/app.log.1"
        " && head -c 30000 /dev/urandom | gzip > /var/log/labapp/app.log.2.gz"
        " && touch -d '40 days ago' /var/log/labapp/app.log.1 /var/log/labapp/app.log.2.gz"
        " && echo fresh > /var/log/labapp/app.log.3 && echo live > /var/log/labapp/app.log"
        " && touch -d '40 days ago' /var/log/labapp/app.log"
    )
    old = ["/var/log/labapp/app.log.1", "/var/log/labapp/app.log.2.gz"]
    dry = ops("log_cleanup", "--check")
    assert dry.returncode == 0 and "Would free" in dry.stdout, dry.stdout[-3000:]
    assert all(host.file(p).exists for p in old)

    proc = ops("log_cleanup")
    text = " ".join(proc.stdout.split())
    assert proc.returncode == 0 and changed(proc) > 0, text[-3000:]
    assert "Freed" in text and "/var/log/labapp/app.log.1" in text and "/var/log/labapp/app.log.2.gz" in text
    assert not any(host.file(p).exists for p in old)
    # The active log and a recent rotation stay; Docker's logs are reported, not touched.
    assert host.file("/var/log/labapp/app.log").exists and host.file("/var/log/labapp/app.log.3").exists
    assert "Docker container logs" in text
    again = ops("log_cleanup")
    assert again.returncode == 0 and changed(again) == 0, again.stdout[-3000:]


def test_check_mode_reports_no_changes_on_a_converged_host():
    assert_check_mode_clean()

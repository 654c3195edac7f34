"""What a user of the postgres role sees on a converged lab host.

Services reach the server as postgres:5432 on the homelab network, so the connection checks run
psql in a throwaway container on that network, over TCP (password auth, as a service would).
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
import yaml
from checks import assert_check_mode_clean, recap, run_converge

CONVERGE_VARS = yaml.safe_load(
    (Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml").read_text()
)[0]["vars"]
SUPERUSER_PASSWORD = CONVERGE_VARS["postgres_superuser_password"]
SERVICES = {db["name"]: db for db in CONVERGE_VARS["postgres_databases"]}
IMAGE = os.environ["LAB_POSTGRES_IMAGE"]
BASE = "/opt/homelab/postgres"


def psql(host, user: str, password: str, database: str, sql: str):
    """Run one SQL command as a service would: from another container on the homelab network."""
    return host.run(
        "docker run --rm --network homelab --entrypoint psql"
        f" -e PGPASSWORD={shlex.quote(password)} {shlex.quote(IMAGE)}"
        f" --no-psqlrc -v ON_ERROR_STOP=1 -At -h postgres -p 5432 -U {shlex.quote(user)}"
        f" -d {shlex.quote(database)} -c {shlex.quote(sql)}"
    )


def test_container_reports_healthy(host):
    status = host.check_output("docker inspect --format '{{.State.Health.Status}}' postgres")
    assert status == "healthy"


def test_port_is_published_on_loopback_only(host):
    assert host.check_output("docker port postgres 5432/tcp").splitlines() == ["127.0.0.1:5432"]


def test_superuser_manages_the_server_from_the_host(host):
    script = (
        "import psycopg2; c = psycopg2.connect(host='127.0.0.1', port=5432, dbname='postgres',"
        f" user='postgres', password={SUPERUSER_PASSWORD!r}); cur = c.cursor();"
        " cur.execute('select datname from pg_database order by 1'); print(' '.join(r[0] for r in cur))"
    )
    out = host.check_output(f"python3 -c {shlex.quote(script)}")
    assert {"n8n", "discord_bot"} <= set(out.split())


@pytest.mark.parametrize("service", ["n8n", "discord_bot"])
def test_service_connects_to_its_own_database_and_creates_a_table(host, service):
    creds = SERVICES[service]
    sql = (
        "CREATE TABLE IF NOT EXISTS probe (id int); INSERT INTO probe VALUES (1);"
        " SELECT current_user || '@' || current_database(), count(*) > 0 FROM probe"
    )
    res = psql(host, creds["owner"], creds["password"], creds["name"], sql)
    assert res.rc == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == f"{creds['owner']}@{creds['name']}|t"


def test_service_is_refused_on_another_services_database(host):
    res = psql(host, "n8n", SERVICES["n8n"]["password"], "discord_bot", "SELECT 1")
    assert res.rc != 0
    assert "permission denied for database" in res.stderr, res.stderr


def test_wrong_password_is_refused(host):
    res = psql(host, "n8n", "not-the-password", "n8n", "SELECT 1")
    assert res.rc != 0
    assert "password authentication failed" in res.stderr, res.stderr


def test_data_lives_on_the_host(host):
    data = host.file(f"{BASE}/data")
    assert data.is_directory and data.mode == 0o700
    assert host.file(f"{BASE}/data/PG_VERSION").content_string.strip().isdigit()
    assert host.file(f"{BASE}/data/base").is_directory


def test_superuser_password_stays_in_the_private_env_file(host):
    env = host.file(f"{BASE}/postgres.env")
    assert env.user == "root" and env.mode == 0o600
    assert SUPERUSER_PASSWORD in env.content_string
    assert SUPERUSER_PASSWORD not in host.file(f"{BASE}/compose.yml").content_string


def test_no_password_in_verbose_converge_output():
    proc = run_converge("-v")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-4000:]
    for secret in [SUPERUSER_PASSWORD, *(db["password"] for db in SERVICES.values())]:
        assert secret not in output
    # A third converge: still nothing to change (no password churn).
    assert all(c["changed"] == 0 for c in recap(proc.stdout).values()), proc.stdout[-4000:]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"postgres_superuser_password": ""}, "postgres_superuser_password is not set"),
        (
            {"postgres_databases": [{"name": "Bad-Name", "owner": "x", "password": "p"}]},
            "postgres_databases: names and owners must match",
        ),
        (
            {"postgres_databases": [{"name": "a", "owner": "a", "password": "p"},
                                    {"name": "a", "owner": "b", "password": "q"}]},
            "must name each database and each owner once",
        ),
        ({"postgres_databases": [{"name": "a", "owner": "a", "password": ""}]}, "password must not be empty for a"),
        ({"postgres_databases": [{"name": "a", "password": "p"}]}, "missing required arguments: owner"),
    ],
    ids=["no-superuser-password", "bad-identifier", "duplicate", "empty-password", "missing-owner"],
)
def test_bad_settings_are_refused_before_any_change(override, message):
    proc = run_converge("-e", json.dumps(override))
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout[-3000:]
    assert all(c["changed"] == 0 for c in recap(proc.stdout).values())


def test_check_mode_reports_no_drift():
    assert_check_mode_clean()

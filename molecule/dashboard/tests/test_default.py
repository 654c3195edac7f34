"""What a user of the dashboard (this project's web UI, deployed as a service) sees: it answers
through Caddy over HTTPS, the login page renders, the vault's admin password logs in, and what it
stores lives in the kept data directory, surviving a new container. Its jobs find the project's
playbooks and roles and the inventory in the container, read-only."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from checks import assert_check_mode_clean, run_converge
from services import get_json

BASE = "https://dashboard.lab.test"
DATA = "/opt/homelab/dashboard/data"
JAR = "/root/dashboard-cookies"
SECRETS = Path(os.environ["HOMELAB_VAR_DIR"]) / "lab-secrets"


def admin_password() -> str:
    # The lab's vault stand-in: the password lookup wrote it on the first converge.
    return (SECRETS / "dashboard_admin").read_text().split()[0]


def test_healthz_answers_through_caddy_over_https(host):
    assert get_json(host, f"{BASE}/healthz")["status"] == "ok"


def test_the_login_page_renders_and_the_vault_password_logs_in(host):
    jar = f"-b {JAR} -c {JAR}"
    mount = "-v /root:/root"
    image = os.environ["LAB_CADDY_IMAGE"]
    ca = "/data/caddy/pki/authorities/local/root.crt"

    def c(args: str, url: str):
        return host.run(
            f"docker run --rm --network host -v /opt/homelab/caddy/data:/data:ro {mount} {image} "
            f"curl -sS --max-time 10 --retry 5 --retry-all-errors --cacert {ca} "
            f"--resolve dashboard.lab.test:443:127.0.0.1 {jar} {args} {url}")

    host.run(f"rm -f {JAR}")
    page = c("--fail-with-body", f"{BASE}/login")
    assert page.rc == 0, page.stderr
    assert "Log in to run playbooks" in page.stdout and 'type="password"' in page.stdout
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.stdout)[1]
    # The session cookie is Secure (HTTPS behind Caddy, HOMELAB_TRUST_PROXY) and HttpOnly.
    cookies = host.file(JAR).content_string
    assert "#HttpOnly_dashboard.lab.test" in cookies and "\t/\tTRUE\t" in cookies, cookies

    wrong = c(f"-o /dev/null -w '%{{http_code}}' --data-urlencode username=admin "
              f"--data-urlencode password=not-the-password --data-urlencode csrf_token={token}", f"{BASE}/login")
    assert wrong.stdout.strip() == "401"

    ok = c(f"-o /dev/null -w '%{{http_code}} %{{redirect_url}}' --data-urlencode username=admin "
           f"--data-urlencode password={admin_password()} --data-urlencode csrf_token={token}", f"{BASE}/login")
    status, _, target = ok.stdout.strip().partition(" ")
    assert status == "302" and target == f"{BASE}/", ok.stdout  # redirects to https: the proxy headers are trusted
    catalog = c("--fail-with-body", f"{BASE}/catalog")
    assert catalog.rc == 0, catalog.stdout[-500:]
    # The catalog comes from the project tree the role copied to the host.
    assert "Roll back the static site" in catalog.stdout


def logins_in_store(host) -> int:
    query = "select count(*) from audit_log where action = 'login' and outcome = 'ok'"
    out = host.check_output(
        f"python3 -c \"import sqlite3; print(sqlite3.connect('{DATA}/homelab.db').execute(\\\"{query}\\\").fetchone()[0])\"")
    return int(out)


def test_data_persists_in_the_data_dir_across_a_new_container(host):
    before = logins_in_store(host)
    assert before >= 1
    assert host.file(f"{DATA}/schedules.yml").exists and host.file(f"{DATA}/jobs").is_directory
    host.check_output("docker rm -f dashboard")
    proc = run_converge()
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert get_json(host, f"{BASE}/healthz")["status"] == "ok"
    assert logins_in_store(host) == before


def test_container_runs_unprivileged_with_limits_secrets_and_read_only_project(host):
    info = json.loads(host.check_output("docker inspect dashboard"))[0]
    assert info["Config"]["User"] == "10001:10001"
    assert info["HostConfig"]["Memory"] == 1024**3
    assert info["State"]["Health"]["Status"] == "healthy"
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["HOMELAB_TRUST_PROXY"] == "1" and env["HOMELAB_HOST"] == "0.0.0.0"
    assert env["HOMELAB_ADMIN_PASSWORD"] == admin_password()  # from the env file (the vault)
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts["/data"]["RW"] and mounts["/data"]["Source"] == DATA
    for ro in ("/srv/homelab", "/srv/inventory", "/etc/homelab", "/run/homelab"):
        assert not mounts[ro]["RW"], ro
    secrets = host.file("/opt/homelab/dashboard/secrets.env")
    assert (secrets.user, secrets.mode) == ("root", 0o600)
    assert "HOMELAB_ADMIN_PASSWORD" not in host.file("/opt/homelab/dashboard/compose.yml").content_string


def test_jobs_in_the_container_find_the_project_and_the_inventory(host):
    # What a job runs: ansible-playbook with the container's settings on the mounted project tree.
    out = host.check_output(
        "docker exec -e ANSIBLE_CONFIG=/etc/homelab/ansible.cfg dashboard "
        "ansible-playbook --syntax-check /srv/homelab/playbooks/ops/rollback_static_site.yml")
    assert "rollback_static_site.yml" in out
    hosts = host.check_output(
        "docker exec -e ANSIBLE_CONFIG=/etc/homelab/ansible.cfg dashboard ansible-inventory --graph")
    assert "homelab-lab-1" in hosts


def test_check_mode_reports_no_changes_on_a_converged_host():
    assert_check_mode_clean()

"""What a user of n8n sees once the role has run: n8n answers at its domain through Caddy over
HTTPS, on its own database; its secrets stay root-only; a release that fails its health check is
rolled back and the previous one keeps serving."""

from __future__ import annotations

import json
import os

from checks import assert_check_mode_clean, recap, run_converge
from services import get_json

URL = "https://n8n.lab.test/healthz"


def test_n8n_answers_through_caddy_on_its_own_database(host):
    body = get_json(host, URL)
    assert body["service"] == "n8n"
    assert body["database"] == "ok n8n n8n"
    # n8n's settings reach the container; the secrets come from the env file.
    for name in ("DB_POSTGRESDB_PASSWORD", "N8N_ENCRYPTION_KEY", "WEBHOOK_URL", "N8N_PROXY_HOPS"):
        assert name in body["env"]


def test_secrets_file_is_root_only_and_not_in_compose_yml(host):
    secrets = host.file("/opt/homelab/n8n/secrets.env")
    assert (secrets.user, secrets.mode) == ("root", 0o600)
    compose = host.file("/opt/homelab/n8n/compose.yml").content_string
    assert "N8N_ENCRYPTION_KEY" not in compose and "DB_POSTGRESDB_PASSWORD" not in compose


def test_container_has_limits_and_a_healthcheck(host):
    info = json.loads(host.check_output("docker inspect n8n"))[0]
    assert info["HostConfig"]["Memory"] == 1024**3
    assert info["State"]["Health"]["Status"] == "healthy"
    assert info["Config"]["Labels"]["homelab.service"] == "n8n"


def test_a_release_that_fails_its_health_check_is_rolled_back(host):
    before = host.check_output("docker inspect -f '{{.Id}}' n8n")
    broken = json.dumps({"n8n_image": os.environ["LAB_DEBIAN_IMAGE"], "n8n_health_timeout": 20})
    proc = run_converge("-e", broken)
    assert proc.returncode != 0, "a release that never became healthy was accepted"
    out = proc.stdout
    assert "did not become healthy" in out and "Rolled back" in out, out[-3000:]
    # The previous release serves again, on its database, and the live compose file is the old one.
    assert get_json(host, URL)["database"] == "ok n8n n8n"
    assert os.environ["LAB_DEBIAN_IMAGE"] not in host.file("/opt/homelab/n8n/compose.yml").content_string
    assert host.check_output("docker inspect -f '{{.Id}}' n8n") != "" and before
    # Converging the good release again changes nothing after the rollback.
    again = run_converge()
    assert again.returncode == 0, again.stdout[-3000:]
    assert all(c["changed"] == 0 for c in recap(again.stdout).values()), again.stdout[-3000:]


def test_check_mode_reports_no_changes_on_a_converged_host():
    assert_check_mode_clean()

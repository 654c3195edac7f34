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


def test_a_container_changed_by_hand_is_drift_and_a_converge_puts_it_back(host):
    # Outside compose: the labels and config hash stay, so `docker compose up` alone would keep it.
    host.check_output("docker update --restart=no --cpus 0.5 n8n")
    check = run_converge("--check", "--diff")
    assert check.returncode == 0, check.stdout[-3000:]
    assert recap(check.stdout)["molecule-n8n"]["changed"] >= 1, check.stdout[-3000:]
    out = check.stdout
    assert "Compare the running containers with the compose file (n8n)" in out
    assert "n8n: restart: no" in out and "n8n: restart: unless-stopped" in out, out[-3000:]
    assert "n8n: cpus: 0.5" in out and "n8n: cpus: 1" in out, out[-3000:]
    # Environment differences name the variable, never its value.
    secrets = dict(
        line.split("=", 1) for line in host.check_output("cat /opt/homelab/n8n/secrets.env").splitlines() if "=" in line
    )
    hidden = [v.strip("'") for k, v in secrets.items() if any(w in k for w in ("PASSWORD", "KEY", "SECRET"))]
    assert hidden and not any(v in out for v in hidden)
    # The dry run changed nothing on the host.
    assert host.check_output("docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' n8n") == "no"

    fixed = run_converge()
    assert fixed.returncode == 0, fixed.stdout[-3000:]
    assert recap(fixed.stdout)["molecule-n8n"]["changed"] >= 1
    policy, cpus = host.check_output(
        "docker inspect -f '{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.NanoCpus}}' n8n"
    ).split()
    assert (policy, cpus) == ("unless-stopped", str(10**9))
    assert get_json(host, URL)["database"] == "ok n8n n8n"
    # A container of the same name started by hand (no compose labels) is replaced as well.
    image = host.check_output("docker inspect -f '{{.Config.Image}}' n8n")
    host.check_output(f"docker rm -f n8n && docker run -d --name n8n --network homelab {image}")
    replaced = run_converge("--diff")
    assert replaced.returncode == 0, replaced.stdout[-3000:]
    assert "created by: hand" in replaced.stdout, replaced.stdout[-3000:]
    labels = json.loads(host.check_output("docker inspect -f '{{json .Config.Labels}}' n8n"))
    assert labels.get("com.docker.compose.project") == "n8n"
    assert get_json(host, URL)["database"] == "ok n8n n8n"
    again = run_converge()
    assert all(c["changed"] == 0 for c in recap(again.stdout).values()), again.stdout[-3000:]
    # Nothing for `up` to do on a converged host: the comparison says so and the task is skipped
    # (a skipped task prints no header here). A stopped container is not current: up runs again.
    up = "TASK [compose_service : Run the compose project health-gated (n8n)]"
    assert up not in again.stdout, again.stdout[-3000:]
    host.check_output("docker stop n8n")
    started = run_converge()
    assert started.returncode == 0 and up in started.stdout, started.stdout[-3000:]
    assert recap(started.stdout)["molecule-n8n"]["changed"] >= 1, started.stdout[-3000:]
    assert host.check_output("docker inspect -f '{{.State.Running}}' n8n") == "true"
    assert get_json(host, URL)["database"] == "ok n8n n8n"

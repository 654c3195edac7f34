"""The operations playbooks (playbooks/ops) run against the converged n8n lab host, each asserted
by its effect: restart_service brings a stopped service back, rollback_service swaps releases,
renew_certificates gives Caddy a new certificate, and unknown services are refused untouched."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from checks import recap, run_converge
from services import get_json

OPS = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "playbooks" / "ops"
URL = "https://n8n.lab.test/healthz"
CERT = "/opt/homelab/caddy/data/caddy/certificates/local/n8n.lab.test/n8n.lab.test.crt"


def ops(playbook: str, **params):
    return run_converge("-e", json.dumps(params), playbook=str(OPS / f"{playbook}.yml"))


def state(host) -> tuple[str, str]:
    return tuple(host.check_output("docker inspect -f '{{.State.Status}} {{.State.StartedAt}}' n8n").split())


def test_restart_service_starts_a_stopped_service(host):
    host.check_output("docker stop n8n")
    assert state(host)[0] == "exited"
    proc = ops("restart_service", service="n8n")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert state(host)[0] == "running"
    assert get_json(host, URL)["database"] == "ok n8n n8n"


def test_restart_service_restarts_a_running_service(host):
    before = state(host)
    proc = ops("restart_service", service="n8n")
    assert proc.returncode == 0, proc.stdout[-3000:]
    after = state(host)
    assert after[0] == "running" and after[1] != before[1]


def test_unknown_services_are_refused_before_any_host_is_touched(host):
    for bad in ("nope", "../../etc/passwd", "n8n; rm -rf /"):
        proc = ops("restart_service", service=bad)
        assert proc.returncode != 0
        assert "is not a service this homelab knows" in proc.stdout, proc.stdout[-2000:]
        assert "molecule-n8n" not in recap(proc.stdout) or recap(proc.stdout)["molecule-n8n"]["changed"] == 0


def test_renew_certificates_gives_caddy_a_new_certificate(host):
    old = hashlib.sha256(host.file(CERT).content).hexdigest()
    proc = ops("renew_certificates", domain="n8n.lab.test")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Renewed: n8n.lab.test" in proc.stdout
    assert hashlib.sha256(host.file(CERT).content).hexdigest() != old
    # The new certificate chains to the same internal CA: the route answers over HTTPS.
    assert get_json(host, URL)["service"] == "n8n"
    assert ops("renew_certificates", domain="unknown.lab.test").returncode != 0


def test_rollback_service_swaps_to_the_previous_release_and_back(host):
    release2 = run_converge("-e", json.dumps({"n8n_extra_env": {"LAB_RELEASE": "2"}}))
    assert release2.returncode == 0, release2.stdout[-3000:]
    assert "LAB_RELEASE" in get_json(host, URL)["env"]

    back = ops("rollback_service", service="n8n")
    assert back.returncode == 0, back.stdout[-3000:]
    assert "LAB_RELEASE" not in get_json(host, URL)["env"]

    forward = ops("rollback_service", service="n8n")
    assert forward.returncode == 0, forward.stdout[-3000:]
    assert "LAB_RELEASE" in get_json(host, URL)["env"]

    assert ops("rollback_service", service="caddy").returncode != 0
    # The inventory's release again, for the side effect that follows.
    assert run_converge().returncode == 0

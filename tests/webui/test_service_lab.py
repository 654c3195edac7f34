"""The service page against a real lab host (a Debian 13 systemd container with its own Docker
engine): n8n is a compose project there (/opt/homelab/n8n, container n8n, the lab's stand-in
image) serving HTTPS itself on a published port with a certificate made here, and printing a
planted secret (its DB_POSTGRESDB_PASSWORD, and a token=... line) when it starts. Everything runs
as in production: the app factory with a real store and the real catalog, real ansible-runner
jobs of playbooks/ops/logs.yml, facts.yml and restart_service.yml over the docker connection, and
the status cycle probing from this machine.

It proves: the status tile says up; the logs tail shows the container's last lines with both
secrets masked, and the secret is nowhere under var/ (store, job artifacts); the facts show the
container running with its image and the host's CPU, memory, disk, load and uptime; after
`docker stop n8n` by hand one probe cycle makes the tile "down" and the next facts say exited;
Restart (confirmed) through the service page brings it back and one cycle says "up" again.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from homelab.settings import Settings

from webui_helpers import ADMIN_PASSWORD, ROOT, csrf_from, wait_until

HOST = "homelab-svcpage-test"
DOMAIN = "n8n.svcpage.test"
pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("svcpage-lab")]

SERVE = r"""
import os, signal, ssl, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("n8n stand-in starting; the database password is " + os.environ["DB_POSTGRESDB_PASSWORD"], flush=True)
print("connecting to postgres with token=" + os.environ["PLANTED_TOKEN"], flush=True)
print("ready on 8443", flush=True)
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, fmt, *args):
        sys.stderr.write("request " + (fmt % args) + "\n")
        sys.stderr.flush()
class S(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        sys.stderr.write("a client closed its connection early\n")
srv = S(("0.0.0.0", 8443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/tls/n8n.crt", "/tls/n8n.key")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"""


def _sh(*argv: str, timeout: float = 120, check: bool = True) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {p.stdout}{p.stderr}")
    return p.stdout


def _in_host(*argv: str, timeout: float = 120) -> str:
    return _sh("docker", "exec", HOST, *argv, timeout=timeout)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, Any]]:
    from test_service_status import _ca, _leaf

    image, standin = os.environ["LAB_IMAGE"], os.environ["LAB_STANDIN_IMAGE"]
    lab_sh = str(ROOT / "lab" / "lab.sh")
    subprocess.run([lab_sh, "rm", HOST], check=False, timeout=120)
    started = time.monotonic()
    subprocess.run([lab_sh, "run", HOST], check=True, timeout=300, env={**os.environ, "LAB_IMAGE": image})
    try:
        for _ in range(60):
            if subprocess.run(["docker", "exec", HOST, "docker", "info"], capture_output=True).returncode == 0:
                break
            time.sleep(1)
        ca = _ca(tmp_path)
        _leaf(ca, [DOMAIN], 90, tmp_path, "n8n")
        password, token = f"Planted-{secrets.token_hex(8)}", f"tok{secrets.token_hex(8)}"
        _in_host("mkdir", "-p", "/srv/tls", "/srv/app", "/opt/homelab/n8n")
        for name in ("n8n.crt", "n8n.key"):
            _sh("docker", "cp", str(tmp_path / name), f"{HOST}:/srv/tls/{name}")
        (tmp_path / "serve.py").write_text(SERVE)
        _sh("docker", "cp", str(tmp_path / "serve.py"), f"{HOST}:/srv/app/serve.py")
        compose = {
            "services": {
                "n8n": {
                    "image": standin,
                    "container_name": "n8n",
                    "command": ["python3", "-u", "/app/serve.py"],
                    "environment": {"DB_POSTGRESDB_PASSWORD": password, "PLANTED_TOKEN": token},
                    "ports": ["8443:8443"],
                    "volumes": ["/srv/tls:/tls:ro", "/srv/app:/app:ro"],
                    "labels": {"homelab.service": "n8n"},
                }
            }
        }
        (tmp_path / "compose.yml").write_text(yaml.safe_dump(compose))
        _sh("docker", "cp", str(tmp_path / "compose.yml"), f"{HOST}:/opt/homelab/n8n/compose.yml")
        _in_host("docker", "compose", "--project-directory", "/opt/homelab/n8n", "up", "-d", timeout=180)
        ip = _sh("docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", HOST).strip()
        inventory = tmp_path / "inventory.yml"
        hostvars = {"ansible_connection": "docker", "ansible_user": "root", "n8n_enabled": True, "n8n_domain": DOMAIN}
        inventory.write_text(yaml.safe_dump({"all": {"children": {"homelab": {"hosts": {HOST: hostvars}}}}}))
        var = tmp_path / "var"
        var.mkdir()
        (tmp_path / "schedules.yml").write_text("schedules: []\n")
        env = {
            "HOMELAB_VAR_DIR": str(var),
            "HOMELAB_INVENTORY": str(inventory),
            "HOMELAB_CATALOG": str(ROOT / "playbooks" / "catalog.yml"),
            "HOMELAB_SCHEDULES": str(tmp_path / "schedules.yml"),
            "HOMELAB_SCHEDULER": "0",
            "HOMELAB_STATUS_CONNECT": f"{ip}:8443",
            "HOMELAB_STATUS_CA_FILE": str(ca[2]),
            "HOMELAB_STATUS_TIMEOUT": "3",
        }
        print(f"\nlab set-up: {time.monotonic() - started:.1f}s")
        yield {"settings": Settings.from_env(env), "password": password, "token": token, "var": var, "standin": standin}
    finally:
        subprocess.run([lab_sh, "rm", HOST], check=False, timeout=120)


@pytest.fixture
def app_client(lab: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    from homelab.web import create_app, stop_app

    monkeypatch.setenv("HOMELAB_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("HOMELAB_JARVIS", "0")
    monkeypatch.delenv("HOMELAB_SECRET_KEY", raising=False)
    app = create_app(lab["settings"])
    app.config["TESTING"] = True
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf_from(page)})
    try:
        yield app, client
    finally:
        stop_app(app, timeout=120)


def _tile(client: Any) -> str:
    home = client.get("/").get_data(as_text=True)
    found = re.findall(r'data-status-service="n8n" data-status="([a-z]+)"', home)
    assert len(found) == 1, home
    return str(found[0])


def _facts(h: Any) -> None:
    """Run the facts playbook and wait until its report is stored (engine.on_finished ingests it
    just after the job's final status is written)."""
    job = h.engine.wait(h.facts.start("admin", "web").id, 300)
    assert job.status == "successful", job.reason
    wait_until(lambda: any(x["job_id"] == job.id for x in h.facts.hosts()), 30, "the facts stored")


def _grep_var(var: Path, needle: str) -> list[str]:
    """Every file under var/ that holds the needle (the store, its WAL, job artifacts)."""
    hits = []
    for p in var.rglob("*"):
        if p.is_file():
            try:
                if needle.encode() in p.read_bytes():
                    hits.append(str(p.relative_to(var)))
            except OSError:
                continue
    return hits


def test_the_service_page_on_a_lab_host_status_logs_masked_facts_down_and_restart(lab, app_client) -> None:
    app, client = app_client
    h = app.extensions["homelab"]
    t0 = time.monotonic()
    [sample] = h.status.cycle()
    assert (sample.service, sample.status, sample.http_status) == ("n8n", "up", 200), sample.error
    assert _tile(client) == "up"

    # the logs tail: the container's last lines, both secrets masked, nowhere in var/
    token = csrf_from(client.get("/services/n8n").get_data(as_text=True))
    r = client.post("/services/n8n/logs", data={"lines": "50", "since": "1h", "csrf_token": token})
    assert r.status_code == 302, r.get_data(as_text=True)
    job_id = int(re.search(r"logs=(\d+)", r.headers["Location"]).group(1))  # type: ignore[union-attr]
    job = h.engine.wait(job_id, 300)
    assert job.status == "successful", job.reason
    page = client.get(f"/services/n8n?logs={job_id}").get_data(as_text=True)
    assert "n8n stand-in starting; the database password is ********" in page
    assert "connecting to postgres with token=********" in page and "ready on 8443" in page
    assert re.search(r'<pre class="terminal logs"[^>]*data-logs="n8n">\d{4}-\d\d-\d\dT', page), "docker's timestamps"
    assert lab["password"] not in page and lab["token"] not in page
    events = h.engine.events_after(job_id, 0, limit=100000)
    assert not any(lab["password"] in e.stdout or lab["token"] in e.stdout for e in events)
    assert _grep_var(lab["var"], lab["password"]) == [] and _grep_var(lab["var"], lab["token"]) == []
    t_logs = time.monotonic()

    # the facts: the container running with its image, the host's numbers
    _facts(h)
    [box] = h.facts.containers("n8n")
    assert (box["name"], box["state"], box["image"], box["host"]) == ("n8n", "running", lab["standin"], HOST)
    [host] = h.facts.hosts()
    assert host["host"] == HOST and host["error"] == ""
    assert 0 <= host["cpu_percent"] <= 100 and 0 < host["mem_percent"] < 100 and 0 < host["disk_percent"] < 100
    assert host["cpus"] >= 1 and host["uptime_seconds"] > 0 and host["load1"] >= 0 and host["mem_total"] > 0
    page = client.get("/services/n8n").get_data(as_text=True)
    assert 'data-container="n8n" data-state="running"' in page
    t_facts = time.monotonic()

    # stopped by hand: one probe cycle says down
    _in_host("docker", "stop", "n8n")
    [sample] = h.status.cycle()
    assert sample.status == "down" and "refused" in sample.error.lower(), sample.error
    assert _tile(client) == "down"
    assert 'data-tile="status" data-status="down"' in client.get("/services/n8n").get_data(as_text=True)
    _facts(h)
    assert [b["state"] for b in h.facts.containers("n8n")] == ["exited"]

    # Restart from the service page (confirmed), then one cycle says up
    token = csrf_from(client.get("/services/n8n").get_data(as_text=True))
    r = client.post("/services/n8n/run", data={"entry": "restart_service", "csrf_token": token})
    assert 'id="confirm"' in r.get_data(as_text=True)
    r = client.post("/services/n8n/run", data={"entry": "restart_service", "confirm": "1", "csrf_token": token})
    restart = h.engine.wait(int(r.headers["Location"].rsplit("/", 1)[1]), 300)
    assert (restart.playbook, restart.status) == ("restart_service", "successful"), restart.reason
    for _ in range(20):  # the server inside needs a moment after the container starts
        [sample] = h.status.cycle()
        if sample.status == "up":
            break
        time.sleep(0.5)
    assert sample.status == "up", sample.error
    # The tile counts the containers too, and the newest facts (taken before the restart) still say
    # exited: the next facts cycle sees the container running again and the tile turns up.
    _facts(h)
    assert [b["state"] for b in h.facts.containers("n8n")] == ["running"]
    assert _tile(client) == "up"
    print(
        f"\nlab phases: probe+logs {t_logs - t0:.1f}s, facts {t_facts - t_logs:.1f}s, "
        f"down+facts+restart+up {time.monotonic() - t_facts:.1f}s"
    )

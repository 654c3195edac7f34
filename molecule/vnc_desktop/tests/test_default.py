"""What a user of the VNC desktop sees once the role has run: noVNC answers at its domain through
Caddy over HTTPS, and its websocket reaches a VNC server that accepts the vault's password and
refuses any other; the password stays in the root-only env file."""

from __future__ import annotations

import json
import re
from pathlib import Path

from checks import assert_check_mode_clean
from services import CADDY_DATA, curl

DOMAIN = "vnc.lab.test"
PROBE = Path(__file__).with_name("rfb_probe.py")
CA = f"{CADDY_DATA}/caddy/pki/authorities/local/root.crt"


def _password(host) -> str:
    env = host.file("/opt/homelab/vnc_desktop/secrets.env").content_string
    return re.search(r"^VNC_PASSWORD='(.*)'$", env, re.M)[1]


def _probe(host, password: str, path: str = "websockify") -> dict:
    host.run(f"cat > /tmp/rfb_probe.py <<'PROBE'\n{PROBE.read_text()}\nPROBE")
    res = host.run(f"python3 /tmp/rfb_probe.py {DOMAIN} {CA} '{password}' {path}")
    assert res.rc == 0, res.stderr
    return json.loads(res.stdout)


def test_novnc_page_answers_through_caddy(host):
    res = curl(host, f"https://{DOMAIN}/vnc.html", "--fail-with-body")
    assert res.rc == 0, res.stderr
    assert "<title>noVNC</title>" in res.stdout


def test_websocket_through_caddy_reaches_the_vnc_server_with_the_vault_password(host):
    result = _probe(host, _password(host))
    assert result["status"] == 101, result
    assert result["banner"] == "RFB 003.008\n"
    assert result["security_types"] == [2]  # VNC authentication only: no unauthenticated access
    assert result["auth"] == "ok", result


def test_a_wrong_vnc_password_is_refused(host):
    wrong = "x" + _password(host)[1:] if not _password(host).startswith("x") else "y" + _password(host)[1:]
    result = _probe(host, wrong)
    assert result["banner"] == "RFB 003.008\n"
    assert result["auth"] == "failed", result


def test_password_is_root_only_and_never_in_compose_yml(host):
    secrets = host.file("/opt/homelab/vnc_desktop/secrets.env")
    assert (secrets.user, secrets.mode) == ("root", 0o600)
    compose = host.file("/opt/homelab/vnc_desktop/compose.yml").content_string
    assert "VNC_PASSWORD" not in compose and _password(host) not in compose
    # vncpasswd -f wrote the obfuscated form into the desktop user's home at start.
    passwd = host.file("/opt/homelab/vnc_desktop/home/.vnc/passwd")
    assert (passwd.uid, passwd.mode, passwd.size) == (1000, 0o600, 8)


def test_container_has_limits_a_healthcheck_and_runs_unprivileged(host):
    info = json.loads(host.check_output("docker inspect vnc-desktop"))[0]
    assert info["HostConfig"]["Memory"] == 512 * 1024**2
    assert info["HostConfig"]["NanoCpus"] == 10**9
    assert info["State"]["Health"]["Status"] == "healthy"
    assert info["Config"]["User"] == "desktop"


def test_only_novnc_is_reachable_on_the_network_not_the_vnc_port(host):
    # From Caddy's container on the homelab network: websockify answers, raw VNC (5900) is refused.
    assert host.run("docker exec caddy curl -sS --max-time 5 -o /dev/null http://vnc-desktop:6080/vnc.html").rc == 0
    refused = host.run("docker exec caddy curl -sS --max-time 5 telnet://vnc-desktop:5900 </dev/null")
    assert refused.rc == 7, (refused.rc, refused.stderr)  # 7: connection refused


def test_check_mode_reports_no_changes_on_a_converged_host():
    assert_check_mode_clean()

"""What a user of plex, home_assistant and twingate_connector sees once the roles have run.

Plex answers at its domain through Caddy with the media mounted read-only; Home Assistant runs on
the host's network behind ufw, answers through Caddy at host.docker.internal, trusts exactly
Caddy's network, and the user's own configuration.yaml survives; the Twingate Connector runs with
its tokens only in the root-only env file, and refuses to be enabled without them; code-server
answers through Caddy over the project tree, as the tree's owner.
"""

from __future__ import annotations

import json
import re

from checks import assert_check_mode_clean, recap, run_converge
from services import get_json, status

HA_CONFIG = "/opt/homelab/home_assistant/config/configuration.yaml"


def _inspect(host, name: str) -> dict:
    return json.loads(host.check_output(f"docker inspect {name}"))[0]


def _subnet(host) -> str:
    return host.check_output("docker network inspect homelab -f '{{(index .IPAM.Config 0).Subnet}}'")


# --- plex -----------------------------------------------------------------------------------------

def test_plex_answers_through_caddy(host):
    body = get_json(host, "https://plex.lab.test/identity")
    assert (body["service"], body["port"], body["path"]) == ("plex", 32400, "/identity")
    for name in ("PLEX_CLAIM", "PLEX_UID", "PLEX_GID", "TZ", "ADVERTISE_IP"):
        assert name in body["env"]


def test_plex_mounts_the_media_read_only_and_has_limits(host):
    info = _inspect(host, "plex")
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts["/data/movies"]["Source"] == "/srv/media/movies" and mounts["/data/movies"]["RW"] is False
    assert mounts["/config"]["RW"] is True and mounts["/transcode"]["RW"] is True
    assert info["HostConfig"]["Memory"] == 256 * 1024**2
    assert info["HostConfig"]["NanoCpus"] == 5 * 10**8
    assert info["State"]["Health"]["Status"] == "healthy"
    # Direct access is off by default: nothing is published, Plex is reached through Caddy only.
    assert not info["HostConfig"]["PortBindings"]
    # Read-only for real: the container cannot write into the library.
    assert host.run("docker exec plex touch /data/movies/x").rc != 0


def test_plex_claim_token_is_root_only_and_not_in_compose_yml(host):
    secrets = host.file("/opt/homelab/plex/secrets.env")
    assert (secrets.user, secrets.mode) == ("root", 0o600)
    token = re.search(r"^PLEX_CLAIM='(claim-\w+)'$", secrets.content_string, re.M)[1]
    compose = host.file("/opt/homelab/plex/compose.yml").content_string
    assert token not in compose and "PLEX_CLAIM" not in compose


# --- home_assistant -------------------------------------------------------------------------------

def test_home_assistant_answers_through_caddy_on_the_host_network(host):
    body = get_json(host, "https://home.lab.test/")
    assert (body["service"], body["port"]) == ("home-assistant", 8123)
    info = _inspect(host, "home-assistant")
    assert info["HostConfig"]["NetworkMode"] == "host"
    assert info["State"]["Health"]["Status"] == "healthy"
    assert info["HostConfig"]["Memory"] == 256 * 1024**2
    assert "host.docker.internal:host-gateway" in _inspect(host, "caddy")["HostConfig"]["ExtraHosts"]


def test_home_assistant_trusts_exactly_caddys_network(host):
    config = host.file(HA_CONFIG).content_string
    block = re.search(r"# BEGIN homelab: http behind Caddy.*?\n(.*?)# END homelab", config, re.S)[1]
    assert block.splitlines() == [
        "http:",
        "  server_port: 8123",
        "  use_x_forwarded_for: true",
        "  trusted_proxies:",
        f"    - {_subnet(host)}",
        "    - 127.0.0.1",
    ]
    assert "default_config:" in config  # Home Assistant's own defaults were written around it


def test_ufw_lets_only_the_homelab_network_reach_home_assistant(host):
    rules = host.check_output("ufw show added")
    assert f"ufw allow from {_subnet(host)} to any port 8123 proto tcp comment 'home_assistant via caddy'" in rules
    # Without the rule, Caddy's new connections to the host's port 8123 are dropped by ufw.
    rule = f"allow from {_subnet(host)} to any port 8123 proto tcp"
    host.check_output(f"ufw delete {rule}")
    try:
        host.check_output("docker restart home-assistant")  # no pooled connection survives
        assert status(host, "https://home.lab.test/") == 502
    finally:
        host.check_output(f"ufw {rule} comment 'home_assistant via caddy'")
    assert get_json(host, "https://home.lab.test/")["service"] == "home-assistant"


def test_the_users_own_configuration_survives_a_converge(host):
    host.check_output(f"printf 'homeassistant:\\n  name: Lab home\\n' >> {HA_CONFIG}")
    proc = run_converge("-e", "media_role=home_assistant", playbook="role.yml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert all(c["changed"] == 0 for c in recap(proc.stdout).values()), proc.stdout[-3000:]
    config = host.file(HA_CONFIG).content_string
    assert "  name: Lab home\n" in config and config.count("use_x_forwarded_for") == 1


def test_a_second_http_section_is_refused_and_the_file_left_alone(host):
    before = host.file(HA_CONFIG).content_string
    host.check_output(f"printf 'http:\\n  server_port: 9000\\n' >> {HA_CONFIG}")
    try:
        proc = run_converge("-e", "media_role=home_assistant", playbook="role.yml")
        assert proc.returncode != 0
        assert "has its own top-level http: section" in proc.stdout, proc.stdout[-3000:]
        assert "server_port: 9000" in host.file(HA_CONFIG).content_string
    finally:
        host.check_output(f"sed -i '/^http:$/{{N;/server_port: 9000/d}}' {HA_CONFIG}")
    assert host.file(HA_CONFIG).content_string == before


# --- twingate_connector ---------------------------------------------------------------------------

def test_twingate_connector_runs_with_its_tokens_only_in_the_env_file(host):
    info = _inspect(host, "twingate-connector")
    assert info["State"]["Running"] is True
    assert info["HostConfig"]["Sysctls"] == {"net.ipv4.ping_group_range": "0 2147483647"}
    names = {e.split("=", 1)[0] for e in info["Config"]["Env"]}
    assert {"TWINGATE_NETWORK", "TWINGATE_ACCESS_TOKEN", "TWINGATE_REFRESH_TOKEN", "TWINGATE_LABEL_HOSTNAME"} <= names
    secrets = host.file("/opt/homelab/twingate_connector/secrets.env")
    assert (secrets.user, secrets.group, secrets.mode) == ("root", "root", 0o600)
    tokens = re.findall(r"^TWINGATE_\w+_TOKEN='(\w+)'$", secrets.content_string, re.M)
    assert len(tokens) == 2 and all(len(t) == 40 for t in tokens)
    compose = host.file("/opt/homelab/twingate_connector/compose.yml").content_string
    assert "TOKEN" not in compose and not any(t in compose for t in tokens)
    # No route: the connector dials out, nothing is published or proxied.
    assert not host.file("/opt/homelab/caddy/config/sites/twingate_connector.caddy").exists
    assert not info["HostConfig"]["PortBindings"]


def test_enabling_twingate_without_tokens_is_refused_before_any_change(host):
    before = host.check_output("docker inspect -f '{{.Id}}' twingate-connector")
    secrets_before = host.file("/opt/homelab/twingate_connector/secrets.env").content_string
    proc = run_converge(
        "-e", '{"media_role": "twingate_connector", "twingate_connector_access_token": "", "twingate_connector_refresh_token": ""}',
        playbook="role.yml",
    )
    assert proc.returncode != 0
    assert "twingate_connector_access_token" in proc.stdout and "vault" in proc.stdout, proc.stdout[-3000:]
    assert re.search(r"ok=\d+\s+changed=0\s+unreachable=0\s+failed=1", proc.stdout), proc.stdout[-3000:]
    assert host.check_output("docker inspect -f '{{.Id}}' twingate-connector") == before
    assert host.file("/opt/homelab/twingate_connector/secrets.env").content_string == secrets_before


# --- code_server --------------------------------------------------------------------------------

def test_code_server_answers_through_caddy_over_the_project_tree_as_its_owner(host):
    body = get_json(host, "https://code.lab.test/healthz")
    assert (body["service"], body["port"], body["path"]) == ("code_server", 8080, "/healthz")
    assert "PASSWORD" in body["env"]
    info = _inspect(host, "code-server")
    assert info["Config"]["User"] == "1000:1000" and info["Config"]["WorkingDir"] == "/home/coder/project"
    assert info["HostConfig"]["Memory"] == 2 * 1024**3 and info["HostConfig"]["NanoCpus"] == 10**9
    # What the browser edits is git_sync's tree, and a new file keeps the tree's owner.
    assert host.check_output("docker exec code-server cat /home/coder/project/app/README.md") == "lab project"
    host.run_expect([0], "docker exec code-server sh -c 'echo edited > /home/coder/project/app/NOTES.md'")
    notes = host.file("/srv/projects/app/NOTES.md")
    assert (notes.uid, notes.gid, notes.content_string) == (1000, 1000, "edited\n")
    host.run_expect([0], "rm /srv/projects/app/NOTES.md")
    for d in ("config", "data"):
        f = host.file(f"/opt/homelab/code_server/{d}")
        assert (f.uid, f.gid, f.mode) == (1000, 1000, 0o750), d


def test_code_server_password_is_root_only_and_not_in_compose_yml(host):
    secrets = host.file("/opt/homelab/code_server/secrets.env")
    assert (secrets.user, secrets.group, secrets.mode) == ("root", "root", 0o600)
    [password] = re.findall(r"^PASSWORD='(\w+)'$", secrets.content_string, re.M)
    assert len(password) == 24
    assert password not in host.file("/opt/homelab/code_server/compose.yml").content_string


def test_code_server_without_a_password_is_refused_before_any_change(host):
    before = host.check_output("docker inspect -f '{{.Id}}' code-server")
    proc = run_converge("-e", '{"media_role": "code_server", "code_server_password": "short"}', playbook="role.yml")
    assert proc.returncode != 0
    assert "code_server_password (at least 12 characters) is not set" in proc.stdout, proc.stdout[-3000:]
    assert re.search(r"ok=\d+\s+changed=0\s+unreachable=0\s+failed=1", proc.stdout), proc.stdout[-3000:]
    assert host.check_output("docker inspect -f '{{.Id}}' code-server") == before


def test_check_mode_reports_no_changes_on_a_converged_host():
    assert_check_mode_clean()

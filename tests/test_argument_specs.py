"""Bad input stops a role before it touches a host, with a message naming the variable.

Each case applies one role, with one bad variable, to a fresh lab host. The run must fail, name
the variable, and change nothing on the host: argument_specs violations fail at the role's first
(validation) step, and what specs cannot express fails in the role's validate.yml, before install.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from labenv import ROOT, ansible_env

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHxwQ4u0R6yGZ0d8mXKxUjsQKo0cz1d0m2bJ2H0m8e9Z test@lab"

CASES = [
    # (role, bad variables, variable the message must name, text the message must contain)
    ("docker", {"docker_install_source": "sideload"}, "docker_install_source", "auto, docker, distro"),
    ("docker", {"docker_log_max_file": "many"}, "docker_log_max_file", "int"),
    ("docker", {"docker_daemon_options": ["debug"]}, "docker_daemon_options", "dict"),
    (
        "base",
        {"base_ssh_permit_root_login": "yes", "base_admin_ssh_keys": [KEY]},
        "base_ssh_permit_root_login",
        "prohibit-password",
    ),
    (
        "base",
        {"base_admin_ssh_keys": [KEY], "base_admin_user": "Evil User"},
        "base_admin_user",
        "not a valid login name",
    ),
    ("base", {"base_admin_user": "evin"}, "base_admin_ssh_keys", "required"),
    ("caddy", {"caddy_tls": "letsencrypt"}, "caddy_tls", "must be one of"),
    (
        "caddy",
        {"homelab_tls": "internal", "homelab_services": {"blog": {"domain": "my blog!", "upstream": "blog:80"}}},
        "caddy_sites['blog'].domain",
        "is not a domain name",
    ),
    (
        "caddy",
        {
            "homelab_tls": "internal",
            "homelab_services": {"blog": {"domain": "blog.example.org", "upstream": "blog; rm -rf /"}},
        },
        "caddy_sites['blog'].upstream",
        "is not host:port",
    ),
    ("postgres", {}, "postgres_superuser_password", "is not set"),
    (
        "postgres",
        {
            "postgres_superuser_password": "s3cret",
            "postgres_databases": [{"name": "n8n; DROP", "owner": "n8n", "password": "p"}],
        },
        "postgres_databases",
        "n8n; DROP",
    ),
    ("n8n", {"n8n_enabled": True}, "n8n_encryption_key", "vault"),
    ("n8n", {"n8n_cpus": "lots"}, "n8n_cpus", "float"),
    ("discord_bot", {"discord_bot_source": "zip"}, "discord_bot_source", "must be one of"),
    ("discord_bot", {"discord_bot_enabled": True}, "discord_bot_git_repo", "is empty"),
    (
        "stream_bot",
        {
            "stream_bot_enabled": True,
            "stream_bot_source": "image",
            "stream_bot_image": "bot:1",
            "stream_bot_postgres_password": "p",
        },
        "TWITCH_CLIENT_ID",
        "are not set",
    ),
    ("plex", {"plex_enabled": True, "plex_claim_token": "abc123"}, "plex_claim_token", "claim-XXXX"),
    (
        "plex",
        {"plex_enabled": True, "plex_media_dirs": [{"host": "/srv/no-such-media", "container": "/data/m"}]},
        "plex_media_dirs",
        "/srv/no-such-media",
    ),
    ("home_assistant", {"home_assistant_network_mode": "macvlan"}, "home_assistant_network_mode", "must be one of"),
    ("vnc_desktop", {"vnc_desktop_enabled": True}, "vnc_desktop_password", "vault"),
    ("twingate_connector", {"twingate_connector_enabled": True}, "twingate_connector_access_token", "vault"),
    ("preflight", {"preflight_min_free_gb": "plenty"}, "preflight_min_free_gb", "int"),
    ("adopt", {"adopt_overrides": ["code-server"]}, "adopt_overrides", "dict"),
    ("adopt", {"adopt_plan_only": "perhaps"}, "adopt_plan_only", "bool"),
]


@pytest.fixture(scope="module")
def lab_host() -> str:
    """A fresh lab host the roles are pointed at: anything a bad variable let through would show."""
    name = f"homelab-argspec-{os.getpid()}"
    subprocess.run([str(ROOT / "lab" / "lab.sh"), "run", name], check=True, capture_output=True, timeout=300)
    yield name
    subprocess.run([str(ROOT / "lab" / "lab.sh"), "rm", name], check=False, capture_output=True, timeout=120)


def _run_role(tmp_path: Path, host: str, role: str, variables: dict) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        textwrap.dedent(f"""\
        - hosts: target
          gather_facts: false
          roles:
            - role: {role}
        """)
    )
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    (tmp_path / "hosts.yml").write_text(
        f"all:\n  hosts:\n    target:\n      ansible_host: {host}\n      ansible_connection: community.docker.docker\n"
    )
    return subprocess.run(
        ["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(playbook), "-e", f"@{tmp_path / 'vars.json'}"],
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("role", "variables", "name", "hint"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_bad_variable_stops_the_role_before_any_task(
    tmp_path: Path, lab_host: str, role: str, variables: dict, name: str, hint: str
) -> None:
    before = _host_state(lab_host)
    proc = _run_role(tmp_path, lab_host, role, variables)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert name in out and hint in out, out[-3000:]
    assert re.search(r"target\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=1", out), out[-3000:]
    assert _host_state(lab_host) == before, "the host changed although the role refused its input"


def _host_state(host: str) -> str:
    """Files a role's install steps would touch first (configs, users, apt state, /opt/homelab)."""
    return subprocess.run(
        [
            "docker",
            "exec",
            host,
            "sh",
            "-c",
            "find /etc /opt /var/lib/dpkg/status /home -xdev -newer /etc/hostname "
            "-printf '%p %s %T@\\n' 2>/dev/null | sort",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout

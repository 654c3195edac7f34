"""Bad input stops a role before it touches a host, with a message naming the variable.

Each case applies one role to a throwaway inventory host with one bad variable. The run must
fail, name the variable, and change nothing: argument_specs violations fail at the role's first
(validation) step, and what specs cannot express fails in the role's validate.yml, before install.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, ansible_env

CASES = [
    # (role, bad variables, variable the message must name, text the message must contain)
    ("docker", {"docker_install_source": "sideload"}, "docker_install_source", "auto, docker, distro"),
    ("docker", {"docker_log_max_file": "many"}, "docker_log_max_file", "int"),
    ("docker", {"docker_daemon_options": ["debug"]}, "docker_daemon_options", "dict"),
]


def _run_role(tmp_path: Path, role: str, variables: dict) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(textwrap.dedent(f"""\
        - hosts: target
          gather_facts: false
          roles:
            - role: {role}
        """))
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    # A host that must never be reached: if validation let anything through, the run would fail
    # with "unreachable" instead of the validation message, and the test would say so.
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    target:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n")
    return subprocess.run(
        ["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(playbook), "-e", f"@{tmp_path / 'vars.json'}"],
        cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.mark.parametrize(("role", "variables", "name", "hint"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_bad_variable_stops_the_role_before_any_task(tmp_path: Path, role: str, variables: dict, name: str, hint: str) -> None:
    proc = _run_role(tmp_path, role, variables)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert name in out and hint in out, out[-3000:]
    assert "unreachable=0" in out, f"the role tried to reach the host:\n{out[-3000:]}"
    assert "changed=0" in out, out[-3000:]

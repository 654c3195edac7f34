"""Lab hosts for the lab tests and the benchmarks: an inventory of them, ansible-playbook runs
against it, lab/lab.sh, and commands inside a host."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from homelab.testing import ROOT


def lab_inventory(directory: Path, hosts: list[str]) -> Path:
    """An inventory of lab hosts using inventory/lab's group_vars, with the repository's lab secrets."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "group_vars").symlink_to(ROOT / "inventory" / "lab" / "group_vars")
    lines = ["all:", "  children:", "    homelab:", "      hosts:"]
    for h in hosts:  # a host var: beats group_vars/all/secrets.yml, which derives the path from the inventory's place
        lines += [f"        {h}:", f"          lab_secrets_dir: {ROOT / 'var' / 'lab-secrets'}"]
    # The short name, as inventory/lab: ansible routes it to community.docker.docker, and the opt-in
    # Mitogen strategy takes over only short names (lab/README.md).
    lines += ["      vars:", "        ansible_connection: docker", "        ansible_user: root"]
    (directory / "hosts.yml").write_text("\n".join(lines) + "\n")
    return directory


def ansible(inventory: Path, playbook: str, *extra: str, timeout: float = 900, strategy: str | None = None) -> float:
    """Run a playbook of the repository on the inventory (under ANSIBLE_STRATEGY=strategy when given,
    e.g. "mitogen_linear" for a test's set-up); its wall time. AssertionError when it fails."""
    env = {
        **os.environ,
        **({"ANSIBLE_STRATEGY": strategy} if strategy else {}),
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(ROOT / playbook), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"{playbook} failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def lab(*args: str) -> None:
    """lab/lab.sh with these arguments ("rm" never fails: the host may not exist)."""
    subprocess.run([str(ROOT / "lab" / "lab.sh"), *args], check=args[0] != "rm", timeout=300)


def in_host(host: str, script: str, check: bool = True) -> str:
    """A shell script run inside a lab host; its stdout."""
    return subprocess.run(
        ["docker", "exec", host, "sh", "-ec", script], check=check, capture_output=True, text=True, timeout=120
    ).stdout


def host_ip(host: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", host],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def container_state(host: str, name: str) -> str:
    """The state (running, exited...) of a container on the lab host's own Docker engine."""
    return in_host(host, f"docker inspect -f '{{{{.State.Status}}}}' {name}").strip()


def require_lab_images() -> None:
    assert os.environ.get("LAB_IMAGE") and os.environ.get("LAB_CADDY_IMAGE"), (
        "source var/lab-images.env (make test does)"
    )


def start_lab_with_caddy(host: str, inventory_dir: Path) -> Path:
    """A fresh lab host with its own Docker engine, the lab images, and Caddy deployed (roles/caddy)."""
    require_lab_images()
    inventory = lab_inventory(inventory_dir, [host])
    lab("rm", host)
    lab("run", host)
    ansible(inventory, "lab/prepare.yml")
    ansible(inventory, "playbooks/deploy-caddy.yml")
    return inventory

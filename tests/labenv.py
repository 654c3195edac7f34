"""What every test module may import by name: the repository root and the environment for an
ansible-playbook run from a test. (Not in conftest.py: several conftest.py files share that name.)"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent


def ansible_env(**extra: str) -> dict[str, str]:
    """The environment for an ansible-playbook run from a test: the repo's config, no colour."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="false",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
        PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    env.update(extra)
    return env


def inventory_copy(src: Path, dest: Path) -> Path:
    """A copy of an inventory to test against; a vault.yml.example beside it becomes its vault.yml
    (the production inventory's vault is not in git: the contract tests read the example's values)."""
    shutil.copytree(src, dest)
    example = dest / "group_vars" / "all" / "vault.yml.example"
    if example.exists():
        shutil.copy(example, example.with_name("vault.yml"))
    return dest


def resolve(inventory: Path, expr: str, root: Path = ROOT) -> Any:
    """What Ansible makes of an expression for the inventory's homelab host (a real ansible run,
    with root's ansible.cfg)."""
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible"), "homelab", "-i", str(inventory), "-c", "local"]
        + ["-m", "ansible.builtin.debug", "-a", f"msg={{{{ {expr} | to_json }}}}"],
        cwd=root,
        env=ansible_env(
            ANSIBLE_CONFIG=str(root / "ansible.cfg"),
            ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
            ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.json",
            ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [host] = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"].values()
    return json.loads(host["msg"])


def load_module(path: Path) -> ModuleType:
    """A plugin or script of the repository (plugins/modules/*.py, ...) imported from its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def postgres_container(
    name: str, user: str = "postgres", password: str = "pgtest", db: str = "postgres"
) -> Iterator[str]:
    """A fresh container of the lab's PostgreSQL image (LAB_POSTGRES_IMAGE, make test exports it) named
    name: yields its address once it accepts connections as user, and removes it (and its volume) after."""
    import psycopg

    subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
    env = ["-e", f"POSTGRES_USER={user}", "-e", f"POSTGRES_PASSWORD={password}", "-e", f"POSTGRES_DB={db}"]
    subprocess.run(
        ["docker", "run", "-d", "--name", name, *env, os.environ["LAB_POSTGRES_IMAGE"]],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        ip = subprocess.run(
            ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        deadline = time.monotonic() + 120
        while True:
            try:
                psycopg.connect(f"host={ip} user={user} password={password} dbname={db}", connect_timeout=3).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # polling for the server to accept connections
        yield ip
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, timeout=60)

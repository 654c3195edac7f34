"""What every test module may import by name: the repository root and the environment for an
ansible-playbook run from a test. (Not in conftest.py: several conftest.py files share that name.)"""

from __future__ import annotations

import os
from pathlib import Path

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

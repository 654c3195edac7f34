"""Shared fixtures: the repository root and an environment for running Ansible from tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: needs Docker and a lab host the test starts itself")
    config.addinivalue_line("markers", "browser: drives Debian's chromium through playwright")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


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

"""The repository passes yamllint and ansible-lint's production profile."""

from __future__ import annotations

import subprocess

from labenv import ROOT, ansible_env


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=ansible_env(NO_COLOR="1"), capture_output=True, text=True, timeout=600, check=False)


def test_yamllint_reports_nothing() -> None:
    proc = _run("yamllint", "-s", "-f", "parsable", ".")
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_ansible_lint_production_profile_passes() -> None:
    proc = _run("ansible-lint", "--profile", "production", "--nocolor")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]

"""The repository passes yamllint, ansible-lint's production profile, ruff (lint and format) and mypy
(pyproject.toml configures both), so `make test` holds the Python to what `make check` does."""

from __future__ import annotations

import subprocess

from labenv import ROOT, ansible_env


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=ROOT, env=ansible_env(NO_COLOR="1"), capture_output=True, text=True, timeout=600, check=False
    )


def test_yamllint_reports_nothing() -> None:
    proc = _run("yamllint", "-s", "-f", "parsable", ".")
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_ansible_lint_production_profile_passes() -> None:
    proc = _run("ansible-lint", "--profile", "production", "--nocolor")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]


def test_ruff_reports_nothing_and_the_python_is_formatted() -> None:
    lint = _run("ruff", "check", "--no-cache", ".")
    assert lint.returncode == 0, lint.stdout[-6000:] + lint.stderr[-2000:]
    fmt = _run("ruff", "format", "--check", "--no-cache", ".")
    assert fmt.returncode == 0, fmt.stdout[-6000:] + fmt.stderr[-2000:]


def test_mypy_reports_nothing() -> None:
    proc = _run("mypy")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]

"""Session-wide pytest set-up: the marks, and tests/ on sys.path so any test module can import
labenv (ROOT, ansible_env) whichever directory it lives in."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from labenv import ROOT  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: needs Docker and a lab host the test starts itself")
    config.addinivalue_line("markers", "browser: drives Debian's chromium through playwright")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT

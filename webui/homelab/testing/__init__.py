"""Test support shared by the test suite (tests/) and the benchmarks (bench/): lab hosts
(`homelab.testing.lab`) and real server processes (`homelab.testing.server`). Nothing in the
application imports it; it is part of the package so that tests and benchmarks import it by name,
without touching sys.path."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the repository checkout (webui/homelab/testing/ -> ../../..)

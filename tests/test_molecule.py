"""Every molecule scenario (create, converge, idempotence, verify, side effect, destroy) as a test.

pytest-xdist runs them in parallel, each on its own lab host; the full molecule log of each goes
to var/log/molecule-<scenario>.log and its tail into the failure message.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from conftest import ROOT, ansible_env

# Longest first, so the parallel workers finish together.
SCENARIOS = ["site", "caddy", "postgres", "base", "docker"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _scenarios() -> list[str]:
    present = {p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml")}
    missing = present - set(SCENARIOS)
    assert not missing, f"scenarios not run by the test suite: {sorted(missing)}"
    return [s for s in SCENARIOS if s in present]


@pytest.mark.parametrize("scenario", _scenarios())
def test_molecule_scenario(scenario: str) -> None:
    log_dir = ROOT / "var" / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"molecule-{scenario}.log"
    started = time.monotonic()
    proc = subprocess.run(
        ["molecule", "test", "-s", scenario],
        cwd=ROOT, env=ansible_env(ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks", PY_COLORS="0"),
        capture_output=True, text=True, timeout=1800, check=False,
    )
    text = ANSI.sub("", proc.stdout + proc.stderr)
    log.write_text(text)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"molecule test -s {scenario} failed after {elapsed:.0f}s; tail of {log}:\n{text[-8000:]}"
    # Idempotence is molecule's own check; assert the recap it printed so a skipped step cannot pass.
    assert "idempotence: Executed: Successful" in text, f"no successful idempotence step in {log}"
    assert re.search(r"verify: Executed: Successful", text), f"no successful verify step in {log}"

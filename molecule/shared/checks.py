"""Checks shared by every scenario's testinfra suite.

Drift detection runs playbooks in check + diff mode, so a converged host must report
changed=0 there too: a role with phantom changes would raise false drift alarms.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def run_converge(*extra: str, playbook: str = "converge.yml") -> subprocess.CompletedProcess[str]:
    """Run this scenario's converge playbook against its lab host with extra ansible-playbook args."""
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="false", ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(scenario / playbook), *extra],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )


def recap(output: str) -> dict[str, dict[str, int]]:
    """Per-host PLAY RECAP counters of an ansible-playbook run."""
    return {
        m[1]: {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]), "failed": int(m[5])}
        for m in _RECAP.finditer(output)
    }


def assert_check_mode_clean() -> None:
    """A converged host run with --check --diff reports changed=0 and fails nothing."""
    proc = run_converge("--check", "--diff")
    counters = recap(proc.stdout)
    assert proc.returncode == 0 and counters, proc.stdout[-4000:] + proc.stderr[-2000:]
    for host, c in counters.items():
        assert c["changed"] == 0 and c["failed"] == 0 and c["unreachable"] == 0, (
            f"{host} drifted in check mode: {c}\n{proc.stdout[-6000:]}"
        )


# The delivery pipeline (playbooks/ops/deliver.yml): the catalog's `deliver`, and its stages in order.
DELIVER = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "playbooks" / "ops" / "deliver.yml"
STAGES = ("Validate", "Test", "Build", "Deploy", "Verify")


def stages_run(output: str) -> list[str]:
    """The pipeline's stages that ran, in order: their marker tasks that reported ok (not skipped)."""
    chunks = output.split("\nTASK [")
    return [m[1] for c in chunks if (m := re.match(r"[^\]]*Stage: (\w+)\]", c)) and "\nok: [" in c]


"""Every molecule scenario (create, converge, idempotence, verify, side effect, destroy) as a test.

pytest-xdist runs them in parallel, each on its own lab host; the full molecule log of each goes
to var/log/molecule-<scenario>.log and its tail into the failure message.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from labenv import ROOT, ansible_env

# Longest first, so the parallel workers finish together; scenarios not named here run after these.
SCENARIOS = ["site", "bots", "backup", "n8n", "media", "static_site", "dashboard", "vnc_desktop", "git_sync",
             "ddclient", "caddy", "postgres", "base", "docker"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# profile_tasks prints, at the top of each run's TASKS RECAP: "<date> (<last task>)   H:MM:SS.fff"
RUN_TOTAL = re.compile(r"TASKS RECAP.*?\(\d+:\d\d:\d\d\.\d+\)\s+(\d+):(\d\d):(\d\d\.\d+)", re.S)
RECAP_LINE = re.compile(r"([\w.-]+)[ \t]+: (ok=\d+)[ \t]+(changed=\d+)[ \t]+(unreachable=\d+)[ \t]+(failed=\d+)")


def _step(text: str, step: str) -> str:
    """The output of one molecule step (between its 'Executing' line and the next step's)."""
    mark = rf"(?:➜ {step}:|> {step}\])"  # molecule's tty and non-tty log formats
    m = re.search(rf"{mark} Executing(.*?){mark} Executed", text, re.S)
    return m.group(1) if m else ""


def _report(scenario: str, text: str, elapsed: float) -> dict:
    """Wall times and recaps of converge and idempotence, kept in var/reports for the notes."""
    report: dict = {"scenario": scenario, "molecule_test_seconds": round(elapsed, 1)}
    for step in ("converge", "idempotence"):
        out = _step(text, step)
        total = RUN_TOTAL.search(out)
        report[f"{step}_seconds"] = (
            round(int(total[1]) * 3600 + int(total[2]) * 60 + float(total[3]), 1) if total else None
        )
        report[f"{step}_recap"] = [" ".join(m.groups()) + " " for m in RECAP_LINE.finditer(out)]
    out_dir = ROOT / "var" / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"molecule-{scenario}.json").write_text(json.dumps(report, indent=2))
    return report


def _scenarios() -> list[str]:
    present = {p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml")}
    return [s for s in SCENARIOS if s in present] + sorted(present - set(SCENARIOS))


@pytest.mark.parametrize("scenario", _scenarios())
def test_molecule_scenario(scenario: str) -> None:
    log_dir = ROOT / "var" / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"molecule-{scenario}.log"
    started = time.monotonic()
    proc = subprocess.run(
        ["molecule", "test", "-s", scenario],
        cwd=ROOT, env=ansible_env(ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks", PY_COLORS="0", PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800, check=False,
    )
    text = ANSI.sub("", proc.stdout)
    log.write_text(text)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"molecule test -s {scenario} failed after {elapsed:.0f}s; tail of {log}:\n{text[-8000:]}"
    # Idempotence is molecule's own check; assert the recap it printed so a skipped step cannot pass.
    assert "idempotence: Executed: Successful" in text, f"no successful idempotence step in {log}"
    assert "verify: Executed: Successful" in text, f"no successful verify step in {log}"
    report = _report(scenario, text, elapsed)
    assert report["idempotence_recap"] and all(" changed=0 " in r for r in report["idempotence_recap"]), report

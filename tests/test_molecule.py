"""Every molecule scenario (create, converge, idempotence, verify, side effect, destroy) as a test.

Each step is its own `molecule <step>` command, so each can run under its own execution strategy:
the platform scenarios' first converge under ansible's default one, every other step under the
opt-in Mitogen one (engine_for below; lab/README.md says why and what it saves).

pytest-xdist runs them in parallel, each on its own lab host; the full molecule log of each goes
to var/log/molecule-<scenario>.log (written as it runs) and its tail into the failure message.
Each molecule step is timed as its output streams by; var/reports/molecule-<scenario>.json holds
the step times and the recaps (tests/conftest.py folds them into the duration report). A scenario
that times out is killed with its whole process group and its lab host destroyed, and the failure
names the step it was in.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from labenv import ROOT, ansible_env

# Longest first (tests/conftest.py's scheduler orders by measured time; this is the fallback order).
SCENARIOS = [
    "site",
    "bots",
    "backup",
    "n8n",
    "media",
    "static_site",
    "dashboard",
    "vnc_desktop",
    "git_sync",
    "ddclient",
    "caddy",
    "postgres",
    "base",
    "docker",
]
# Steps that run under the opt-in Mitogen strategy (plugins/strategy): every step after the first
# converge. The idempotence run, the check-mode run and the verify steps' converges then prove both
# engines agree on a converged host.
MITOGEN_STEPS = {"idempotence", "verify", "side_effect"}
# Scenarios whose first converge runs under ansible's default linear strategy, as a user's first run
# does: the platform (base, docker, postgres and caddy, the last two through compose_service, the
# engine of every service role) and the host services. The service scenarios and site converge
# under Mitogen from the start: their roles are compose_service plus templates, which the linear
# scenarios above already run first, and site is the longest scenario (lab/README.md).
LINEAR_FIRST_CONVERGE = {"base", "docker", "postgres", "caddy", "ddclient", "git_sync"}
# MOLECULE_MITOGEN_STEPS=all (or =none, or a comma list of steps) overrides both, for every scenario.
# Seconds one scenario may take before it is killed (and its lab host destroyed).
TIMEOUT = float(os.environ.get("MOLECULE_TIMEOUT", "1800"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# profile_tasks prints, at the top of each run's TASKS RECAP: "<date> (<last task>)   H:MM:SS.fff"
RUN_TOTAL = re.compile(r"TASKS RECAP.*?\(\d+:\d\d:\d\d\.\d+\)\s+(\d+):(\d\d):(\d\d\.\d+)", re.S)
RECAP_LINE = re.compile(r"([\w.-]+)[ \t]+: (ok=\d+)[ \t]+(changed=\d+)[ \t]+(unreachable=\d+)[ \t]+(failed=\d+)")


@dataclass
class MoleculeRun:
    """What one `molecule test` did: its output, return code (None: killed) and each step's time."""

    text: str = ""
    returncode: int | None = None
    timed_out: bool = False
    steps: list[dict] = field(default_factory=list)  # [{"step", "seconds", "done"}] in the order they ran

    failed_step: str | None = None

    @property
    def current_step(self) -> str:
        """The step that failed, or the last one started (the one a timeout interrupted)."""
        if self.failed_step:
            return self.failed_step
        return self.steps[-1]["step"] if self.steps else "before the first step"


def _step(text: str, step: str) -> str:
    """The output of one molecule step (between its 'Executing' line and the next step's)."""
    mark = rf"(?:➜ {step}:|> {step}\])"
    m = re.search(rf"{mark} Executing(.*?){mark} Executed", text, re.S)
    return m.group(1) if m else ""


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop molecule and every ansible-playbook/testinfra process it started."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue


def _destroy(scenario: str, env: dict[str, str]) -> None:
    """Remove the scenario's lab host after molecule was killed: molecule's own destroy, then lab.sh as backstop."""
    subprocess.run(
        ["molecule", "destroy", "-s", scenario],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )
    subprocess.run([str(ROOT / "lab" / "lab.sh"), "rm", f"molecule-{scenario}"], timeout=120, check=False)


def steps_of(scenario: str) -> list[str]:
    """The scenario's steps: its own scenario.test_sequence, else the shared base config's."""
    for path in (ROOT / "molecule" / scenario / "molecule.yml", ROOT / ".config" / "molecule" / "config.yml"):
        sequence = (yaml.safe_load(path.read_text()) or {}).get("scenario", {}).get("test_sequence")
        if sequence:
            return list(sequence)
    raise AssertionError(f"no scenario.test_sequence for {scenario}")


def engine_for(scenario: str, step: str) -> str:
    """The execution strategy a step runs under: MOLECULE_MITOGEN_STEPS when set; else Mitogen for
    MITOGEN_STEPS, and for create, prepare and the first converge too unless the scenario is in
    LINEAR_FIRST_CONVERGE."""
    chosen = os.environ.get("MOLECULE_MITOGEN_STEPS")
    if chosen is None:
        first = {"create", "prepare", "converge"}  # molecule create runs prepare too
        steps = MITOGEN_STEPS | (first if scenario not in LINEAR_FIRST_CONVERGE else set())
    else:
        steps = {s.strip() for s in chosen.split(",") if s.strip()}
    return "mitogen_linear" if "all" in steps or step in steps else "linear"


def run_molecule(scenario: str, log: Path, timeout: float = TIMEOUT) -> MoleculeRun:
    """The scenario's test sequence, one `molecule <step> -s <scenario>` per step (each under the
    strategy engine_for() names), its output streamed to log and timed per step. A failed step ends
    the sequence, and the final destroy still runs; so does a timeout, after the process group is killed."""
    base_env = ansible_env(ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks", PY_COLORS="0", PYTHONUNBUFFERED="1")
    run = MoleculeRun()
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    sequence = steps_of(scenario)
    with log.open("w") as out:
        for i, step in enumerate(sequence):
            is_last_destroy = step == "destroy" and i == len(sequence) - 1
            if run.returncode not in (None, 0) and not is_last_destroy:
                continue  # a step failed: only the final destroy still runs
            env = dict(base_env, ANSIBLE_STRATEGY=engine_for(scenario, step))
            header = f"### molecule {step} -s {scenario} (strategy {env['ANSIBLE_STRATEGY']})\n"
            out.write(header)
            lines.append(header)
            started = time.monotonic()
            entry = {"step": step, "seconds": 0.0, "done": False, "strategy": env["ANSIBLE_STRATEGY"]}
            run.steps.append(entry)
            proc = subprocess.Popen(
                ["molecule", step.replace("_", "-"), "-s", scenario],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,
            )

            def read(proc: subprocess.Popen = proc) -> None:
                assert proc.stdout is not None
                for raw in proc.stdout:
                    line = ANSI.sub("", raw)
                    out.write(line)
                    out.flush()
                    lines.append(line)

            reader = threading.Thread(target=read, name=f"molecule-{scenario}-{step}", daemon=True)
            reader.start()
            try:
                rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                run.timed_out = True
                _kill_group(proc)
                entry["seconds"] = round(time.monotonic() - started, 1)
                reader.join(timeout=30)
                _destroy(scenario, base_env)
                break
            except BaseException:  # interrupted (Ctrl-C, pytest-timeout): leave nothing running
                _kill_group(proc)
                _destroy(scenario, base_env)
                raise
            reader.join(timeout=30)
            entry.update(seconds=round(time.monotonic() - started, 1), done=True)
            if run.returncode in (None, 0):
                run.returncode = rc
            if rc != 0:
                run.failed_step = step
    run.text = "".join(lines)
    return run


def _report(scenario: str, run: MoleculeRun, elapsed: float) -> dict:
    """Step times, wall times and recaps of converge and idempotence, kept in var/reports."""
    report: dict = {
        "scenario": scenario,
        "molecule_test_seconds": round(elapsed, 1),
        "outcome": "timeout" if run.timed_out else ("passed" if run.returncode == 0 else "failed"),
        "steps": run.steps,
    }
    for step in ("converge", "idempotence"):
        out = _step(run.text, step)
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
    run = run_molecule(scenario, log)
    elapsed = time.monotonic() - started
    report = _report(scenario, run, elapsed)
    assert not run.timed_out, (
        f"molecule test -s {scenario} timed out after {elapsed:.0f}s in step '{run.current_step}' "
        f"(killed, lab host destroyed); tail of {log}:\n{run.text[-8000:]}"
    )
    assert run.returncode == 0, (
        f"molecule test -s {scenario} failed after {elapsed:.0f}s in step '{run.current_step}'; "
        f"tail of {log}:\n{run.text[-8000:]}"
    )
    # Idempotence is molecule's own check; assert the recap it printed so a skipped step cannot pass.
    assert "idempotence: Executed: Successful" in run.text, f"no successful idempotence step in {log}"
    assert "verify: Executed: Successful" in run.text, f"no successful verify step in {log}"
    assert report["idempotence_recap"] and all(" changed=0 " in r for r in report["idempotence_recap"]), report

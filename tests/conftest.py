"""Session-wide pytest set-up: the marks (tests/ is on pytest's pythonpath, pyproject.toml,
so any test module can import labenv: ROOT, ansible_env), the xdist scheduler that starts the
longest work first, and the duration report (`--durations-report var/reports/durations`)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import pytest

from labenv import ROOT

# Seconds a test (or an xdist group) took, for a machine with no duration report yet (a fresh
# clone): measured on 2 cores with 3 workers (2026-12-02). A previous report's figures take precedence.
EXPECTED_SECONDS = {
    "tests/test_molecule.py::test_molecule_scenario[site]": 550,
    "tests/test_molecule.py::test_molecule_scenario[bots]": 390,
    "tests/test_molecule.py::test_molecule_scenario[backup]": 340,
    "tests/test_molecule.py::test_molecule_scenario[n8n]": 300,
    "tests/test_molecule.py::test_molecule_scenario[media]": 230,
    "tests/test_molecule.py::test_molecule_scenario[dashboard]": 220,
    "tests/test_molecule.py::test_molecule_scenario[static_site]": 210,
    "tests/test_molecule.py::test_molecule_scenario[base]": 200,
    "tests/test_molecule.py::test_molecule_scenario[postgres]": 135,
    "tests/test_molecule.py::test_molecule_scenario[ddclient]": 130,
    "tests/test_molecule.py::test_molecule_scenario[vnc_desktop]": 130,
    "tests/test_molecule.py::test_molecule_scenario[git_sync]": 120,
    "tests/test_molecule.py::test_molecule_scenario[caddy]": 115,
    "tests/test_molecule.py::test_molecule_scenario[docker]": 95,
    "tests/test_lint.py::test_ansible_lint_production_profile_passes": 140,
    "drift-lab": 450,
    "jarvis-lab": 130,
    "adopt-lab": 300,
}


# The browser tests' chromium: Debian's (make browser installs it), driven by playwright, never downloaded.
CHROMIUM = os.environ.get("HOMELAB_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless chromium for one test (tests marked `browser`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        yield b
        b.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--durations-report", metavar="PATH", default=None,
                     help="write PATH.json and PATH.txt: every test's and every molecule step's duration, "
                          "slowest first, and print the ten slowest at the end")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: needs Docker and a lab host the test starts itself")
    config.addinivalue_line("markers", "browser: drives Debian's chromium through playwright")
    report = config.getoption("--durations-report")
    if report and not hasattr(config, "workerinput"):  # the controller (or a run without xdist) reports
        config.pluginmanager.register(DurationReport(Path(report)), "homelab-durations")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def _previous_durations() -> dict[str, float]:
    path = ROOT / "var" / "reports" / "durations.json"
    try:
        return {t["nodeid"]: t["seconds"] for t in json.loads(path.read_text())["tests"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # noqa: ANN001, ANN201 (xdist's types)
    """loadgroup, but the longest work unit first (xdist orders by test count): the long molecule
    scenarios and lab groups start at once and the many short tests fill the gaps at the end."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    previous = _previous_durations()

    def expected(scope: str, nodeids: dict[str, bool]) -> float:
        if scope in EXPECTED_SECONDS and not any(n in previous for n in nodeids):
            return EXPECTED_SECONDS[scope]
        return sum(previous.get(n, previous.get(n.split("@")[0], EXPECTED_SECONDS.get(n.split("@")[0], 1.0))) for n in nodeids)

    class LongestFirst(LoadGroupScheduling):
        def _assign_work_unit(self, node) -> None:  # noqa: ANN001
            if not getattr(self, "_sorted", False):
                ordered = sorted(self.workqueue.items(), key=lambda kv: -expected(*kv))
                self.workqueue.clear()
                self.workqueue.update(ordered)
                self._sorted = True
            super()._assign_work_unit(node)

    return LongestFirst(config, log)


class DurationReport:
    """Collects each test's setup+call+teardown time (xdist sends the workers' reports to the
    controller) and the molecule step times the scenarios wrote, slowest first."""

    def __init__(self, path: Path) -> None:
        self.path = path if path.is_absolute() else ROOT / path
        self.started = time.time()
        self.seconds: dict[str, float] = defaultdict(float)
        self.outcome: dict[str, str] = {}
        self.tests: list[dict] = []
        self.steps: list[dict] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid] += report.duration
        if report.when == "call" or report.outcome != "passed":
            self.outcome[report.nodeid] = report.outcome if report.when == "call" else f"{report.outcome} ({report.when})"

    def _molecule(self) -> list[dict]:
        out = []
        for path in sorted((ROOT / "var" / "reports").glob("molecule-*.json")):
            if path.stat().st_mtime < self.started:
                continue  # a scenario this session did not run
            try:
                out.append(json.loads(path.read_text()))
            except ValueError:
                continue
        return out

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.tests = sorted(({"nodeid": n, "seconds": round(s, 1), "outcome": self.outcome.get(n, "?")}
                             for n, s in self.seconds.items()), key=lambda t: -t["seconds"])
        scenarios = self._molecule()
        self.steps = sorted(({"scenario": r["scenario"], "step": s["step"], "seconds": s["seconds"]}
                             for r in scenarios for s in r.get("steps", [])), key=lambda s: -s["seconds"])
        data = {"wall_seconds": round(time.time() - self.started, 1),
                "tests": self.tests,
                "molecule_scenarios": sorted(({"scenario": r["scenario"], "seconds": r["molecule_test_seconds"],
                                               "outcome": r.get("outcome"), "steps": r.get("steps", [])}
                                              for r in scenarios), key=lambda r: -r["seconds"]),
                "molecule_steps": self.steps}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
        lines = [f"pytest wall time: {data['wall_seconds']:.0f} s", "", "molecule scenarios (seconds, steps):"]
        for r in data["molecule_scenarios"]:
            steps = ", ".join(f"{s['step']} {s['seconds']:.0f}" for s in r["steps"])
            lines.append(f"{r['seconds']:8.1f}  {r['scenario']:<14} {r['outcome']:<8} {steps}")
        lines += ["", "molecule steps, slowest first:"]
        lines += [f"{s['seconds']:8.1f}  {s['scenario']} > {s['step']}" for s in self.steps]
        lines += ["", "tests (setup + call + teardown), slowest first:"]
        lines += [f"{t['seconds']:8.1f}  {t['outcome']:<8} {t['nodeid']}" for t in self.tests]
        self.path.with_suffix(".txt").write_text("\n".join(lines) + "\n")

    def pytest_terminal_summary(self, terminalreporter) -> None:  # noqa: ANN001
        tr = terminalreporter
        tr.section("ten slowest tests")
        for t in self.tests[:10]:
            tr.write_line(f"{t['seconds']:8.1f}s  {t['nodeid']}")
        if self.steps:
            tr.section("ten slowest molecule steps")
            for s in self.steps[:10]:
                tr.write_line(f"{s['seconds']:8.1f}s  {s['scenario']} > {s['step']}")
        tr.write_line(f"full report: {self.path.with_suffix('.txt')} (and .json)")

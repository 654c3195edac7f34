"""The correctness test on a real lab host converged with site.yml: a drift check reports clean
(no phantom changes), then several mutations behind ansible's back (a container changed by hand
outside compose among them) are each named by the next check, and after "fix drift" (the real
converge, limited to the host and the drifted roles' tags) the automatic re-check is clean again."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import select

from homelab.drift import DriftService
from homelab.jobs import JobEngine
from homelab.settings import Settings
from homelab.store import DriftRun, Job
from homelab.testing.lab import ansible, in_host, lab, lab_inventory

from drift_fixtures import *  # noqa: F401,F403 (the fixtures)
from drift_helpers import wait_until

HOST = "homelab-drift-test"
pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("drift-lab")]


@pytest.fixture(scope="module")
def converged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    assert os.environ.get("LAB_IMAGE") and os.environ.get("LAB_CADDY_IMAGE"), (
        "source var/lab-images.env (make test does)"
    )
    inventory = lab_inventory(tmp_path_factory.mktemp("drift-lab") / "inventory", [HOST])
    lab("rm", HOST)
    lab("run", HOST)
    try:
        # The set-up under Mitogen (the checks and the fix below run as the engine runs them: linear).
        ansible(inventory, "lab/prepare.yml", strategy="mitogen_linear")
        ansible(inventory, "playbooks/site.yml", strategy="mitogen_linear")
        yield inventory
    finally:
        lab("rm", HOST)


@pytest.fixture
def drift(converged: Path, tmp_path: Path) -> Iterator[DriftService]:
    var = tmp_path / "var"
    var.mkdir()
    settings = replace(
        Settings.from_env({"HOMELAB_VAR_DIR": str(var)}),
        inventory=converged,
        schedules=tmp_path / "schedules.yml",
        scheduler=False,
    )
    engine = JobEngine.for_settings(settings)
    engine.start()
    yield DriftService(settings, engine.store, engine.catalog, engine.inventory, engine)
    engine.stop(timeout=120)


def run_check(drift: DriftService) -> Any:
    job, started = drift.check("site", "", "test", "api")
    assert started
    done = drift.engine.wait(job.id, 600)

    def analyzed() -> bool:
        with drift.store.session() as s:
            return bool(s.get(DriftRun, job.id).analyzed_at)

    wait_until(analyzed, 60, "the drift result")
    [state] = [st for st in drift.states() if st.host == HOST]
    return done, state


def names(state: Any) -> dict[str, dict[str, Any]]:
    return {f"{t['role']} : {t['task']}": t for t in state.tasks}


def test_a_converged_lab_host_is_clean_each_mutation_is_named_and_fix_drift_makes_it_clean(drift: DriftService) -> None:
    job, state = run_check(drift)
    assert job.status == "successful", job.reason
    assert state.state == "clean", f"phantom drift on a freshly converged host: {sorted(names(state))} {state.reason}"

    in_host(
        HOST,
        "\n".join(
            [
                # a managed config file edited
                "echo 'MaxSessions 99' >> /etc/ssh/sshd_config.d/00-homelab-hardening.conf",
                "docker stop caddy >/dev/null",  # a service container stopped
                # a container changed by hand outside compose (its labels and config hash stay)
                "docker update --restart=no postgres >/dev/null",
                "sysctl -qw net.ipv4.tcp_syncookies=0",  # a managed kernel parameter changed
                "rm /home/labadmin/.ssh/authorized_keys",  # the admin's key removed
            ]
        ),
    )
    job, state = run_check(drift)
    assert state.state == "drifted", (state.state, state.reason)
    found = names(state)
    expected = {
        "base : Harden sshd (drop-in that sorts first, so its values win)": "-MaxSessions 99",
        "caddy : Run the compose project": None,
        "base : Set the kernel parameters (file and running kernel)": "# item changed: net.ipv4.tcp_syncookies=1",
        "base : Install the admin's SSH keys": None,
        "postgres : Compare the running container with the compose file": "+postgres: restart: unless-stopped",
    }
    for task, diff_line in expected.items():
        assert task in found, f"{task!r} not named; drifted tasks: {sorted(found)}"
        if diff_line:
            assert diff_line in found[task]["diff"], found[task]["diff"]
    extra = set(found) - set(expected)
    assert extra <= {"base : Reload sshd"}, f"drift beyond the mutations: {sorted(extra)}"
    assert "caddy" in in_host(HOST, "docker ps -a --filter name=caddy --format '{{.Names}} {{.State}}'")

    fix = drift.fix("site", [HOST], "test", "api")
    assert fix.hosts == [HOST] and fix.tags == ["base", "caddy", "postgres"] and not fix.check
    fixed = drift.engine.wait(fix.id, 600)
    assert fixed.status == "successful", fixed.reason

    def recheck() -> int | None:
        with drift.store.session() as s:
            return s.scalar(select(Job.id).join(DriftRun, DriftRun.job_id == Job.id).where(Job.id > fix.id))

    recheck_id = wait_until(recheck, 60, "the re-check after the fix")
    drift.engine.wait(recheck_id, 600)
    wait_until(
        lambda: next(st for st in drift.states() if st.host == HOST).last_job_id == recheck_id,
        60,
        "the re-check's result",
    )
    state = next(st for st in drift.states() if st.host == HOST)
    assert state.state == "clean", f"still drifted after the fix: {sorted(names(state))} {state.reason}"
    assert "running" in in_host(HOST, "docker inspect -f '{{.State.Status}}' caddy")
    assert in_host(HOST, "sysctl -n net.ipv4.tcp_syncookies").strip() == "1"
    assert in_host(HOST, "docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' postgres").strip() == "unless-stopped"
    [episode] = drift.history(HOST)
    assert episode.resolved_at and episode.resolution == "clean" and episode.roles == ["base", "caddy", "postgres"]

"""A real catalog playbook through the engine against a lab host (a Debian 13 systemd container)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace

import pytest

from homelab.settings import Settings

from webui_helpers import ROOT

HOST = "homelab-webui-test"


def _lab_image() -> str:
    """The lab host image lab/build-images.sh builds (make test exports its name)."""
    return os.environ["LAB_IMAGE"]


pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("webui-lab")]


@pytest.fixture
def lab_host():
    image = _lab_image()
    subprocess.run([str(ROOT / "lab" / "lab.sh"), "rm", HOST], check=False, timeout=120)
    subprocess.run(
        [str(ROOT / "lab" / "lab.sh"), "run", HOST], check=True, timeout=300, env={**os.environ, "LAB_IMAGE": image}
    )
    yield HOST
    subprocess.run([str(ROOT / "lab" / "lab.sh"), "rm", HOST], check=False, timeout=120)


def test_real_catalog_playbook_runs_on_a_lab_host(settings: Settings, make_engine, lab_host, tmp_path):
    inventory = tmp_path / "lab-inventory.yml"
    inventory.write_text(
        "all:\n  children:\n    homelab:\n      hosts:\n"
        f"        {lab_host}:\n      vars:\n"
        "        ansible_connection: community.docker.docker\n        ansible_user: root\n"
    )
    engine = make_engine(replace(settings, inventory=inventory, catalog=ROOT / "playbooks" / "catalog.yml"))
    spec = engine.catalog.prepare("ping", {}, "", inventory=engine.inventory)
    assert spec.hosts == (lab_host,)
    job = engine.wait(engine.submit(spec, "t").id, 300)
    assert job.status == "successful", job.reason
    recap = engine.recaps(job.id)
    assert (
        [r.host for r in recap] == [lab_host]
        and recap[0].ok == 3
        and recap[0].failed == 0
        and recap[0].unreachable == 0
    )
    said = [t.message for t in engine.task_results(job.id) if t.task == "Say what answered"]
    assert said == [f"{lab_host}: Debian 13"] or said[0].startswith(f"{lab_host}: Debian"), said

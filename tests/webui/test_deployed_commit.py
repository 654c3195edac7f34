"""Which commit each app runs, and its newest delivery, on the dashboard and the service page.

The collection is the real facts script (playbooks/ops/files/facts.py, what the `facts` playbook
runs on a host) with `docker` on its PATH answering as the docker CLI does: `ps -aq --no-trunc`
and `inspect` printing docker's JSON (trimmed to what the script reads, the labels the delivery
pipeline and compose set). Its report goes through the facts cycle's own ingest into a real store;
the app factory, the real catalog and the service registry resolved by Ansible from a real
inventory render the pages. Delivery jobs are stored as the engine stores them (a job row and its
task results), the engine not started: what is asserted is what the pages read of them."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from homelab.facts import deployed_commit
from homelab.store import ContainerSample, Job, TaskResult

from webui_helpers import PY, ROOT, logged_in_app, real_catalog_settings

SHA = "3f9c2e1a7b5d4c6e8f0a1b2c3d4e5f6a7b8c9d0e"
OLD = "aa11bb22cc33dd44ee55ff6677889900aabbccdd"
NEW = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"  # a delivery that failed Verify: SHA serves again
SCRIPT = ROOT / "playbooks" / "ops" / "files" / "facts.py"


def _inspect(name: str, image: str, labels: dict[str, str], status: str = "running") -> dict[str, Any]:
    """One container as `docker inspect` prints it (the fields facts.py reads, and a few it skips)."""
    return {
        "Id": f"{abs(hash(name)):064x}"[:64],
        "Created": "2026-12-04T18:00:00.000000000Z",
        "Name": f"/{name}",
        "RestartCount": 0,
        "State": {"Status": status, "Running": status == "running", "Health": {"Status": "healthy"}},
        "Config": {"Hostname": name, "Image": image, "Labels": labels},
    }


CONTAINERS = [
    _inspect(
        "discord-bot",
        f"homelab/discord_bot:{SHA[:12]}",
        {
            "com.docker.compose.project": "discord_bot",
            "com.docker.compose.service": "discord-bot",
            "homelab.commit": SHA,
        },
    ),
    # built by the pipeline before it set the label: the image tag still says the commit
    _inspect("stream-bot", f"homelab/stream_bot:{OLD[:12]}-0badc0de", {"com.docker.compose.project": "stream_bot"}),
    _inspect("n8n", "n8nio/n8n:1.70.1", {"com.docker.compose.project": "n8n"}),
    _inspect("stranger", "busybox:latest", {"homelab.commit": OLD}),  # no service of the registry's
]


@pytest.fixture
def docker_cli(tmp_path: Path) -> Path:
    """A directory with a `docker` that answers ps and inspect from CONTAINERS."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (tmp_path / "inspect.json").write_text(json.dumps(CONTAINERS))
    docker = bindir / "docker"
    docker.write_text(
        f"#!{PY}\n"
        "import json, sys\n"
        f"data = json.load(open({str(tmp_path / 'inspect.json')!r}))\n"
        "if sys.argv[1:3] == ['ps', '-aq']:\n"
        "    print('\\n'.join(c['Id'] for c in data))\n"
        "elif sys.argv[1] == 'inspect':\n"
        "    print(json.dumps([c for c in data if c['Id'] in sys.argv[2:]]))\n"
        "else:\n"
        "    sys.exit(f'unexpected docker {sys.argv[1:]}')\n"
    )
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    return bindir


def _collect(docker_cli: Path) -> dict[str, Any]:
    """What the facts script prints on a host whose docker runs CONTAINERS."""
    services = {
        "discord_bot": {"containers": ["discord-bot"], "project": "discord_bot"},
        "stream_bot": {"containers": ["stream-bot"], "project": "stream_bot"},
        "n8n": {"containers": ["n8n"], "project": "n8n"},
    }
    env = {
        **os.environ,
        "PATH": f"{docker_cli}:{os.environ['PATH']}",
        "HOMELAB_FACTS_CONFIG": json.dumps({"services": services, "cpu_sample_seconds": 0, "mounts": ["/"]}),
    }
    p = subprocess.run([PY, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(p.stdout)


def test_the_facts_script_reports_each_service_container_s_commit_label(docker_cli: Path) -> None:
    report = _collect(docker_cli)
    assert report["containers"]["error"] == ""
    items = {i["name"]: i for i in report["containers"]["items"]}
    assert set(items) == {"discord-bot", "stream-bot", "n8n"}, "only the registry's services' containers"
    assert items["discord-bot"]["commit"] == SHA and items["discord-bot"]["service"] == "discord_bot"
    assert items["stream-bot"]["commit"] == "" and items["n8n"]["commit"] == ""


def test_the_deployed_commit_comes_from_the_label_else_the_pipeline_s_image_tag() -> None:
    assert deployed_commit({"git_commit": SHA, "image": f"homelab/discord_bot:{OLD[:12]}"}) == SHA[:12]
    assert deployed_commit({"git_commit": "", "image": f"homelab/stream_bot:{OLD[:12]}"}) == OLD[:12]
    assert deployed_commit({"image": f"registry.lan/homelab/stream_bot:{OLD[:12]}-0badc0de"}) == OLD[:12]
    for image in ("n8nio/n8n:1.70.1", "homelab/discord_bot:latest", f"other/app:{OLD[:12]}", ""):
        assert deployed_commit({"git_commit": "", "image": image}) == "", image
    assert deployed_commit({"git_commit": "not-a-sha; <b>", "image": ""}) == ""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    inventory = tmp_path / "inventory.yml"
    hostvars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": PY,
        "discord_bot_enabled": True,
        "discord_bot_domain": "bot.page.test",
        "discord_bot_git_repo": "https://git.page.test/me/discord-bot.git",
        "stream_bot_enabled": True,
        "stream_bot_domain": "stream.page.test",
        "stream_bot_git_repo": "https://git.page.test/me/stream-bot.git",
        "n8n_enabled": True,
        "n8n_domain": "n8n.page.test",
    }
    inventory.write_text(yaml.safe_dump({"all": {"children": {"homelab": {"hosts": {"alpha": hostvars}}}}}))
    monkeypatch.setenv("HOMELAB_JARVIS", "0")
    with logged_in_app(real_catalog_settings(tmp_path, inventory), monkeypatch) as (app, client):
        yield app, client


def _delivery(store: Any, service: str, commit: str, status: str, failed_at: str = "") -> int:
    """A `deliver` job as the engine leaves it: its row and its stage markers' results (one failed stage)."""
    with store.session.begin() as s:
        job = Job(
            playbook="deliver",
            title="Deliver an app (pipeline)",
            params={"service": service, "commit": commit},
            hosts=["alpha"],
            status=status,
            created_by="admin",
            source="web",
        )
        s.add(job)
        s.flush()
        seq = 0
        for stage in ("Validate", "Test", "Build", "Deploy", "Verify"):
            seq += 1
            s.add(TaskResult(job_id=job.id, seq=seq, host="alpha", task=f"Stage: {stage}", status="ok", duration=0.1))
            if stage == failed_at:
                seq += 1
                s.add(
                    TaskResult(
                        job_id=job.id,
                        seq=seq,
                        host="alpha",
                        task="Verify the public route",
                        action="route_probe",
                        status="failed",
                        message="answered HTTP 502",
                    )
                )
                break
        return int(job.id)


def test_the_dashboard_and_service_page_show_the_commit_each_app_runs_and_its_newest_delivery(
    site: Any, docker_cli: Path
) -> None:
    app, client = site
    h = app.extensions["homelab"]
    h.facts.ingest(None, {"alpha": _collect(docker_cli)})
    with h.store.session() as s:
        stored = {c.name: c.git_commit for c in s.query(ContainerSample)}
    assert stored == {"discord-bot": SHA, "stream-bot": "", "n8n": ""}

    older = _delivery(h.store, "discord_bot", OLD, "successful")
    failed = _delivery(h.store, "discord_bot", NEW, "failed", failed_at="Verify")
    other = _delivery(h.store, "stream_bot", OLD, "successful")
    assert older < failed

    home = client.get("/").get_data(as_text=True)

    def row(name: str) -> str:
        m = re.search(rf'<tr data-service="{name}">(.*?)</tr>', home, re.S)
        assert m, name
        return m[1]

    bot, stream, n8n = row("discord_bot"), row("stream_bot"), row("n8n")
    commit = re.search(r'<td data-field="commit">(.*?)</td>', bot, re.S)[1]  # type: ignore[index]
    assert f'<code class="commit" data-commit="{SHA[:12]}" title="{SHA}">{SHA[:12]}</code>' in commit
    delivery = re.search(r'<td data-field="delivery">(.*?)</td>', bot, re.S)[1]  # type: ignore[index]
    assert f'href="/jobs/{failed}"' in delivery and f'href="/jobs/{older}"' not in delivery
    assert "failed</span> #" in delivery and "failed at Verify" in delivery and f"<code>{NEW[:12]}</code>" in delivery
    assert f'data-commit="{OLD[:12]}"' in stream and f'href="/jobs/{other}"' in stream, "from its image tag"
    assert "failed at" not in stream
    assert re.search(r'<td data-field="commit"><span class="muted">–</span></td>', n8n), "n8n is not delivered"

    page = client.get("/services/discord_bot").get_data(as_text=True)
    panel = re.search(r'<section class="panel" aria-labelledby="delivery-h" id="delivery">(.*?)</section>', page, re.S)
    assert panel, "no Delivery panel"
    assert f'title="{SHA}">{SHA[:12]}</code>' in panel[1]
    assert f'href="/jobs/{failed}"' in panel[1] and "failed at Verify" in panel[1] and NEW[:12] in panel[1]
    assert "https://git.page.test/me/discord-bot.git" in panel[1]
    assert re.search(
        rf'data-container="discord-bot".*?<code class="commit" title="{SHA}">{SHA[:12]}</code>', page, re.S
    )
    listed = re.findall(r'href="/jobs/(\d+)">#', page[page.index('id="service-jobs"') :])
    assert listed == [str(failed), str(older)], "its deliveries are among its recent jobs"
    assert 'id="delivery"' not in client.get("/services/n8n").get_data(as_text=True)

"""Jarvis and the delivery pipeline on a real lab host (Docker, Caddy, PostgreSQL, git sync, the
discord bot built from a local git repository), with the shipped rules (jarvis/rules.yml) and the
real catalog: a commit pushed and pulled by git sync is delivered by the pipeline (deliver-synced)
and goes live; a commit that dies right after its deploy is found as deploy.unhealthy and, once a
person approves, rolled back (rollback-after-deploy), and the release before it serves again; a
commit whose tests fail is not built, the failed pipeline is notified once (by the job engine,
so the deploy.failed rule notify-failed-pipeline stays quiet for it), and it is never retried."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from homelab.testing.lab import ansible, in_host, lab, lab_inventory, require_lab_images
from homelab.testing.server import wait_until

from jarvis_helpers import Receiver, lab_jarvis, write_rules

HOST = "homelab-jarvis-deliver" + (
    f"-{os.environ['PYTEST_XDIST_WORKER']}" if os.environ.get("PYTEST_XDIST_WORKER") else ""
)
pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("jarvis-deliver-lab")]
WORKTREE = "/srv/lab-bot"
CHECKOUT = "/srv/projects/discord-bot"
RECORD = "/var/lib/homelab/releases/discord_bot.json"
# What the lab host's inventory says beyond inventory/lab: the bot delivered from git sync's
# checkout of the lab repository (production's layout: the source is the checkout git sync keeps).
HOST_VARS = {
    "discord_bot_enabled": True,
    "discord_bot_git_repo": CHECKOUT,
    "discord_bot_auto_deploy": True,
    "discord_bot_health_timeout": 60,
    "discord_bot_test_command": "node --test",
    "git_sync_enabled": True,
    "git_sync_repositories": [
        {"name": "discord-bot", "url": "/srv/git/discord_bot.git", "branch": "main", "dest": CHECKOUT}
    ],
}


def shipped(rule_id: str, **override: Any) -> dict[str, Any]:
    from jarvis.config import DEFAULT_RULES

    [rule] = [r for r in yaml.safe_load(DEFAULT_RULES.read_text())["rules"] if r["id"] == rule_id]
    return {**rule, **override}


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_lab_images()
    inv = lab_inventory(tmp_path_factory.mktemp("jarvis-deliver") / "inventory", [HOST])
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    hosts["all"]["children"]["homelab"]["hosts"][HOST].update(HOST_VARS)
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    lab("rm", HOST)
    lab("run", HOST)
    saved = os.environ.get("LAB_EXTRA_IMAGES")
    os.environ["LAB_EXTRA_IMAGES"] = "LAB_NODE_IMAGE"
    try:
        fast = "mitogen_linear"
        ansible(inv, "lab/prepare.yml", strategy=fast)
        for playbook in ("playbooks/deploy-caddy.yml", "playbooks/deploy-postgres.yml", "molecule/bots/lab_repo.yml"):
            ansible(inv, playbook, strategy=fast)
        ansible(inv, "playbooks/ops/deploy_service.yml", "-e", "service=git_sync", strategy=fast)
        in_host(HOST, "systemctl start git-sync.service")  # the first pull, as the timer's would
        ansible(inv, "playbooks/ops/deploy_service.yml", "-e", "service=discord_bot", strategy=fast)
        yield inv
    finally:
        if saved is None:
            os.environ.pop("LAB_EXTRA_IMAGES", None)
        else:
            os.environ["LAB_EXTRA_IMAGES"] = saved
        lab("rm", HOST)


@pytest.fixture
def make(inventory: Path, tmp_path: Path, receiver: Receiver) -> Iterator[Any]:
    made: list[Any] = []

    def build(rules: list[dict[str, Any]], checks: dict[str, Any] | None = None) -> Any:
        path = write_rules(tmp_path / f"rules{len(made)}.yml", rules, None, checks)
        # As the web app composes them: a failed pipeline is told by the job engine (with its stage).
        made.append(
            lab_jarvis(inventory, tmp_path / f"var{len(made)}", path, receiver.url + "/hook", stage_alerts=True)
        )
        return made[-1]

    yield build
    for j in made:
        j.stop()
        j.engine.stop(timeout=120)


def push(message: str, script: str) -> str:
    """Commit a change of the lab bot's working tree to main (as the user's laptop would push), then
    run git sync once, as its timer does; the commit git sync now has checked out."""
    cmd = (
        f"set -e; cd {WORKTREE}; {script}; git add -A; git commit -q -m {shlex.quote(message)}; git push -q origin main"
    )
    in_host(HOST, f"bash -c {shlex.quote(cmd)}")
    in_host(HOST, "systemctl start git-sync.service")
    status = json.loads(in_host(HOST, "cat /var/lib/homelab/git-sync/status.json"))
    head = status["repos"]["discord-bot"]["head"]
    assert head == in_host(HOST, f"git -C {WORKTREE} rev-parse HEAD").strip(), status
    return head


def version(v: str) -> str:
    """The lab bot at version v, with a test (node --test) that wants that version."""
    test = (
        "const test = require('node:test'); const assert = require('node:assert');\n"
        f"test('version', () => assert.match(require('fs').readFileSync('server.js', 'utf8'), /VERSION = '{v}'/));\n"
    )
    return (
        f"sed -i \"s/^const VERSION = .*/const VERSION = '{v}';/\" server.js; mkdir -p test; "
        f"printf %s {shlex.quote(test)} > test/version.test.js"
    )


def running_commit(host: str = HOST) -> str:
    """The commit the bot's container runs: its homelab.commit label."""
    return in_host(host, "docker inspect -f '{{index .Config.Labels \"homelab.commit\"}}' discord-bot").strip()


def serving(host: str = HOST) -> tuple[str, str]:
    """The commit the bot's container runs and the version it answers."""
    commit = running_commit(host)
    body = in_host(
        host,
        "docker exec discord-bot node -e \"fetch('http://127.0.0.1:3000/').then(r => r.text()).then(console.log)\"",
    )
    return commit, json.loads(body)["version"]


def record() -> dict[str, Any]:
    return json.loads(in_host(HOST, f"cat {RECORD}"))


def test_a_pushed_commit_is_delivered_by_the_pipeline_once_and_goes_live(make: Any) -> None:
    j = make([shipped("deliver-synced")])
    before, _ = serving()
    head = push("lab bot v2", version("v2"))
    d = j.cycle("test")
    assert [(f.code, f.target) for f in d.findings] == [("deploy.behind", f"{HOST}/deploy:discord_bot@{head}")], [
        f.as_dict() for f in d.findings
    ]
    j.wait_idle()
    [a] = j.actions()
    assert (a.playbook, a.params, a.status) == ("deliver", {"service": "discord_bot", "commit": head}, "resolved"), (
        a.as_dict()
    )
    assert a.check_job_id is None, "the pipeline runs once, not in check mode first"
    job = j.engine.get(a.job_id)
    assert job.status == "successful"
    stages = [r.task for r in j.engine.task_results(a.job_id) if r.task.startswith("Stage: ") and r.status != "skipped"]
    assert stages == ["Stage: Validate", "Stage: Test", "Stage: Build", "Stage: Deploy", "Stage: Verify"]
    assert serving() == (head, "v2")
    rec = record()
    assert (rec["commit"], rec["previous_commit"], rec["last"]["outcome"]) == (head, before, "live")
    # Delivered: the next cycle finds nothing to do, and nothing runs again.
    assert [f.code for f in j.cycle("test").findings] == []
    assert len(j.actions()) == 1


def test_a_release_that_dies_right_after_its_deploy_is_rolled_back_once_a_person_approves(make: Any) -> None:
    """The commit passes every stage, then crashes 10 s after each start: docker restarts it again
    and again. Within the watch window after its deploy that is deploy.unhealthy, whose rule rolls back
    (approve), not restart-container's restart."""
    j = make(
        [shipped("deliver-synced"), shipped("rollback-after-deploy"), shipped("restart-container", throttle="0s")],
        checks={"host": {"restart_loop_count": 2}},
    )
    good, good_version = serving()
    head = push(
        "lab bot v3: dies after 10 s",
        version("v3") + "; sed -i '1a setTimeout(() => process.exit(1), 10000);' server.js",
    )
    j.cycle("test")
    j.wait_idle()
    [delivered] = j.actions()
    assert (delivered.playbook, delivered.status) == ("deliver", "resolved"), delivered.as_dict()
    assert running_commit() == head  # (it may be between two crashes: no request)
    wait_until(
        lambda: int(in_host(HOST, "docker inspect -f '{{.RestartCount}}' discord-bot").strip() or 0) >= 2,
        timeout=120,
        what="the new release to crash twice",
    )
    d = j.cycle("test")
    assert [(f.code, f.params.get("service")) for f in d.findings] == [("deploy.unhealthy", "discord_bot")], [
        f.as_dict() for f in d.findings
    ]
    pending = [a for a in j.actions() if a.status == "pending"]
    assert [(a.playbook, a.params) for a in pending] == [("rollback_service", {"service": "discord_bot"})]
    assert running_commit() == head, "approve mode rolled back without a person"
    j.approve(pending[0].id, "evin")
    j.wait_idle()
    [done] = [a for a in j.actions() if a.id == pending[0].id]
    assert done.status == "resolved", done.as_dict()
    assert serving() == (good, good_version)
    rec = record()
    assert (rec["commit"], rec["last"]["commit"], rec["last"]["outcome"]) == (good, head, "rolled_back")
    # The rolled-back commit is reported, not delivered again.
    d = j.cycle("test")
    assert [f.code for f in d.findings] == ["deploy.failed"], [f.as_dict() for f in d.findings]
    assert serving()[0] == good


def test_a_commit_whose_tests_fail_keeps_the_release_and_the_failed_pipeline_notifies_once(
    make: Any, receiver: Receiver
) -> None:
    j = make([shipped("deliver-synced"), shipped("notify-failed-pipeline")])
    live = serving()
    head = push("lab bot v4: its test wants v5", version("v4") + "; sed -i 's/v4/v5/' test/version.test.js")
    j.cycle("test")
    j.wait_idle()
    [a] = j.actions()
    assert (a.playbook, a.status) == ("deliver", "failed"), a.as_dict()
    stages = [r.task for r in j.engine.task_results(a.job_id) if r.task.startswith("Stage: ") and r.status != "skipped"]
    assert stages == ["Stage: Validate", "Stage: Test"], stages
    assert serving() == live
    assert (
        in_host(HOST, f"docker image inspect homelab/discord_bot:{head[:12]} >/dev/null 2>&1 || echo absent").strip()
        == "absent"
    )
    rec = record()
    assert (rec["last"]["commit"], rec["last"]["outcome"], rec["last"]["stage"]) == (head, "failed", "Test")
    d = j.cycle("test")
    assert [(f.code, f.target) for f in d.findings] == [("deploy.failed", f"{HOST}/deploy:discord_bot@{head}")]
    [finding] = [f for f in j.findings() if f.code == "deploy.failed"]
    assert f"job #{a.job_id}, which ran it here, notified when it failed" in finding.decision, finding.decision
    j.cycle("test")
    # One message for the failed pipeline, the job engine's, naming the stage: not a second one from
    # Jarvis's escalation of its action, nor a third from the deploy.failed rule.
    # (The commit the test before rolled back is reported by this new Jarvis too: not this one's.)
    hooks = [b for b in receiver.json_on("/hook") if head[:12] in json.dumps(b)]
    assert len(hooks) == 1 and "Test" in json.dumps(hooks[0]), (
        json.dumps(hooks, indent=1),
        [(f.code, f.status, f.decision) for f in j.findings(include_resolved=True)],
    )
    assert [x.playbook for x in j.actions()] == ["deliver"], "a failed commit is never delivered again"

"""The shortcuts a no-op converge takes (issue: converge the whole site in under a minute), each
held to what it replaces: `docker compose up` is skipped only when it would change nothing, apt
only when dpkg holds every package, and a role's install or uninstall path costs one task when its
condition is false while `--tags <service>` still selects it. The whole site converging clean and
idempotent with them is proved on lab hosts by molecule (site) and bench/converge.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from labenv import ROOT, ansible_env, load_module

drift = load_module(ROOT / "plugins" / "modules" / "compose_runtime_drift.py")
packages = load_module(ROOT / "plugins" / "filter" / "packages.py")

SERVICES = {"app": {"image": "example/app:1"}}
HASHES = {"app": "h1"}
IMAGES = {"example/app:1": "sha256:aaa"}


def container(**state: object) -> dict:
    health = state.pop("health", None)
    st: dict = {"Running": True, "Status": "running", **state}
    if health:
        st["Health"] = {"Status": health}
    return {
        "Name": "/app",
        "Image": "sha256:aaa",
        "State": st,
        "Config": {"Labels": {"com.docker.compose.config-hash": "h1"}},
    }


def test_up_is_skipped_only_when_every_container_runs_healthy_from_the_file_as_it_is() -> None:
    assert drift.not_current(SERVICES, {"app": [container()]}, HASHES, IMAGES, []) == []
    assert drift.not_current(SERVICES, {"app": [container(health="healthy")]}, HASHES, IMAGES, []) == []
    cases = {
        "app: created from another compose configuration": ({"app": [container()]}, {"app": "h2"}, IMAGES, []),
        "app: its image tag names another image now": (
            {"app": [container()]},
            HASHES,
            {"example/app:1": "sha256:b"},
            [],
        ),
        "app: exited": ({"app": [container(Running=False, Status="exited")]}, HASHES, IMAGES, []),
        "app: starting": ({"app": [container(health="starting")]}, HASHES, IMAGES, []),
        "app: unhealthy": ({"app": [container(health="unhealthy")]}, HASHES, IMAGES, []),
        "app: 0 containers": ({}, HASHES, IMAGES, []),
        "app: 2 containers": ({"app": [container(), container()]}, HASHES, IMAGES, []),
        "old: orphan container of this project": ({"app": [container()]}, HASHES, IMAGES, ["old"]),
    }
    for reason, (found, hashes, images, orphans) in cases.items():
        assert reason in drift.not_current(SERVICES, found, hashes, images, orphans), reason
    # An image the host does not hold (up would pull it) is never current.
    assert drift.not_current(SERVICES, {"app": [container()]}, HASHES, {}, [])
    # Built or scaled by compose: left to compose.
    built = {"app": {"build": {"context": "."}}}
    assert drift.not_current(built, {"app": [container()]}, HASHES, IMAGES, []) == ["app: built or scaled by compose"]


def test_packages_missing_reads_a_real_dpkg_query_and_counts_anything_unconfirmed_as_missing() -> None:
    names = ["dpkg", "no-such-package-homelab"]
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Package}\n", *names], capture_output=True, text=True, check=False
    )
    query = {"rc": proc.returncode, "stdout_lines": proc.stdout.splitlines()}
    assert packages.homelab_packages_missing(query, names) == ["no-such-package-homelab"]
    assert packages.homelab_packages_missing(query, "dpkg") == []
    # A failed or skipped query, a pinned version: apt decides, as before.
    assert packages.homelab_packages_missing({"rc": 2, "stdout_lines": []}, ["dpkg"]) == ["dpkg"]
    assert packages.homelab_packages_missing({"skipped": True}, ["dpkg"]) == ["dpkg"]
    assert packages.homelab_packages_missing(query, ["dpkg=1.0"]) == ["dpkg=1.0"]
    # Removed but its configuration kept ("rc"): missing.
    assert packages.homelab_packages_missing({"stdout_lines": ["rc dpkg"]}, ["dpkg"]) == ["dpkg"]


def _paths(role: Path) -> list[dict]:
    tasks = yaml.safe_load((role / "tasks" / "main.yml").read_text()) or []
    return [t for t in tasks if "when" in t and ("install" in t.get("name", "").lower())]


# The roles a person switches on and off (compose_service and node_app are task libraries they share).
SWITCHED = sorted(
    p.parent.parent.name for p in (ROOT / "roles").glob("*/tasks/main.yml") if "_enabled" in p.read_text()
)


def test_every_service_role_is_switched() -> None:
    assert {"n8n", "discord_bot", "caddy", "postgres", "backup", "git_sync", "static_site"} <= set(SWITCHED)


@pytest.mark.parametrize("role", SWITCHED)
def test_install_and_uninstall_paths_are_included_with_their_tags_applied(role: str) -> None:
    """A false condition costs one skipped include, not every task of the path; the include's tags
    and the tags it applies are the same, so `--tags <role>` or `install-<role>` runs the whole path."""
    paths = _paths(ROOT / "roles" / role)
    assert {"install.yml", "uninstall.yml"} <= {
        (t.get("ansible.builtin.include_tasks") or {}).get("file") for t in paths
    }, f"{role}: install/uninstall are not dynamic includes: {paths}"
    for task in paths:
        include = task["ansible.builtin.include_tasks"]
        assert include["apply"]["tags"] == task["tags"] and role in task["tags"], task


def test_tags_still_select_a_service_through_its_include() -> None:
    """`--tags n8n` (deploy_service, drift's fix) lists n8n's include and not another service's."""
    proc = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(ROOT / "inventory" / "production"),
            str(ROOT / "playbooks" / "site.yml"),
            "--list-tasks",
            "--tags",
            "n8n",
        ],
        capture_output=True,
        text=True,
        env=ansible_env(),
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "n8n : Install n8n" in proc.stdout and "n8n : Uninstall n8n" in proc.stdout, proc.stdout
    assert "plex : Install plex" not in proc.stdout and "caddy : Install Caddy" not in proc.stdout, proc.stdout


def test_files_state_counts_a_path_current_only_when_its_task_would_change_nothing(tmp_path: Path) -> None:
    """A real template task writes a file and a directory; files_state, given the checksum of the
    same template rendered by the lookup the roles use, calls both current; then a changed mode,
    owner, content or type each make exactly that path not current (its task runs again)."""
    (tmp_path / "t.j2").write_text(
        "# {{ ansible_managed }}\n{% for k, v in env | dictsort %}\n{{ k }}='{{ v }}'\n{% endfor %}\n"
    )
    playbook = tmp_path / "pb.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "vars": {
                        "env": {"B": "2", "A": "it's"},
                        "d": str(tmp_path / "d"),
                        "f": str(tmp_path / "d" / "f"),
                        "t": str(tmp_path / "t.j2"),
                    },
                    "tasks": [
                        {"ansible.builtin.file": {"path": "{{ d }}", "state": "directory", "mode": "0750"}},
                        {
                            "ansible.builtin.template": {
                                "src": str(tmp_path / "t.j2"),
                                "dest": "{{ f }}",
                                "mode": "0600",
                            }
                        },
                        {
                            "files_state": {
                                "paths": [
                                    {"path": "{{ d }}", "state": "directory", "owner": "root", "mode": "0750"},
                                    {
                                        "path": "{{ f }}",
                                        "mode": "0600",
                                        "group": "0",
                                        "checksum": "{{ lookup('ansible.builtin.template', t) | hash('sha1') }}",
                                    },
                                ]
                            },
                            "register": "state",
                        },
                        {
                            "ansible.builtin.copy": {
                                "content": "{{ state | to_json }}",
                                "dest": str(tmp_path / "state.json"),
                            }
                        },
                    ],
                }
            ]
        )
    )
    files = load_module(ROOT / "plugins" / "modules" / "files_state.py")

    def run(*extra: str) -> dict:
        proc = subprocess.run(
            [
                "ansible-playbook",
                "-i",
                "localhost,",
                "-c",
                "local",
                "-e",
                "ansible_python_interpreter={{ ansible_playbook_python }}",
                str(playbook),
                *extra,
            ],
            cwd=ROOT,
            env=ansible_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        return json.loads((tmp_path / "state.json").read_text())

    state = run()
    assert sorted(state["current"]) == sorted([str(tmp_path / "d"), str(tmp_path / "d" / "f")]), state["differs"]
    assert not state["changed"]

    f, d = tmp_path / "d" / "f", tmp_path / "d"
    spec = {"path": str(f), "mode": "0600", "checksum": files._sha1(str(f))}
    assert files.judge(spec) is None
    f.chmod(0o644)
    assert files.judge(spec) == "mode"
    f.chmod(0o600)
    assert files.judge({**spec, "owner": "65534"}) == "owner"
    assert files.judge({**spec, "checksum": "0" * 40}) == "content"
    assert files.judge({**spec, "checksum": None}) == "no checksum to compare"
    assert files.judge({"path": str(d), "state": "directory", "mode": "0750"}) is None
    assert files.judge({"path": str(f), "state": "directory"}) == "not a directory"
    assert files.judge({"path": str(d), "mode": "0750", "checksum": "x"}) == "not a regular file"
    assert files.judge({"path": str(tmp_path / "nope")}) == "missing"

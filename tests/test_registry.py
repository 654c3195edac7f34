"""The service registry: one list of services, declared by the roles, read by every consumer.

Contract tests load the user's own inventory (inventory/production, with vault.yml.example's
values as the vault) and the lab's, and check what each consumer sees: Jarvis's DNS/TLS/HTTP
targets, the backups, the dashboard, the catalog's service enums and the ops playbooks' allow-list.
A fixture service role added to a temporary copy of the project reaches all of them with no other
file edited, and malformed entries are refused before any task runs, naming the service and field.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from homelab.catalog import Catalog
from homelab.registry import Registry, RegistryError, check_entries, data_dirs

from labenv import ROOT, ansible_env, inventory_copy, resolve

SEED_DOMAINS = {
    "bot.rig-city.com",
    "stream.rig-city.com",
    "plex.evindrake.net",
    "n8n.evindrake.net",
    "scarletredjoker.com",
    "www.scarletredjoker.com",
    "vnc.evindrake.net",
    "code.evindrake.net",
    "host.evindrake.net",
    "home.evindrake.net",
}
# not services: included by other roles, a check, or an operation with its own catalog entries
INTERNAL_ROLES = {"compose_service", "node_app", "preflight", "adopt"}


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return inventory_copy(ROOT / "inventory" / "production", tmp_path_factory.mktemp("prod") / "production")


def _dashboard(inventory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The dashboard's home page of the real app on this inventory, logged in."""
    from homelab.settings import Settings
    from homelab.web import create_app, stop_app

    monkeypatch.setenv("HOMELAB_ADMIN_PASSWORD", "correct horse battery staple")
    (tmp_path / "var").mkdir()
    app = create_app(
        Settings.from_env(
            {
                "HOMELAB_VAR_DIR": str(tmp_path / "var"),
                "HOMELAB_INVENTORY": str(inventory),
                "HOMELAB_SCHEDULER": "0",
                "HOMELAB_JARVIS": "0",
                "HOMELAB_SCHEDULES": str(tmp_path / "schedules.yml"),
            }
        ),
        start_engine=False,
    )
    try:
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
        client.post(
            "/login", data={"username": "admin", "password": "correct horse battery staple", "csrf_token": csrf}
        )
        return client.get("/").get_data(as_text=True)
    finally:
        stop_app(app, timeout=10)


def test_production_is_the_users_homelab_and_jarvis_checks_every_domain(production: Path) -> None:
    from jarvis import netchecks
    from jarvis.config import DEFAULT_RULES, load_rules

    services = Registry(production).union()
    enabled = {n: s for n, s in services.items() if s.enabled}
    assert {d for s in enabled.values() for d in s.domains} == SEED_DOMAINS
    checks = load_rules(DEFAULT_RULES, env={}).checks
    ts = netchecks.targets(checks, netchecks.service_targets(services.values()))
    for kind in ("dns", "tls"):
        assert {t.name for t in ts if t.kind == kind} == SEED_DOMAINS, kind
    http = {t.name: t.spec["url"] for t in ts if t.kind == "http"}
    assert set(http) == {n for n, s in enabled.items() if s.domains}
    for name, url in http.items():  # on its health path, through its route
        s = enabled[name]
        assert url == f"https://{s.domains[0]}{s.health.get('path', '/')}", name
    main = yaml.safe_load((production / "group_vars" / "all" / "main.yml").read_text())
    assert main["homelab_projects_root"] == "/home/evin/contain"
    assert "25.10" in (production / "group_vars" / "all" / "main.yml").read_text()


@pytest.mark.parametrize("inventory", ["production", "lab"])
def test_backups_cover_every_enabled_service_s_data_and_databases(inventory: str, production: Path) -> None:
    path = production if inventory == "production" else ROOT / "inventory" / "lab"
    services = Registry(path).union()
    got = resolve(
        path,
        "{'dirs': backup_data_dirs, 'excludes': backup_data_excludes, "
        "'databases': backup_postgres_databases, 'exclude_db': backup_postgres_exclude}",
    )
    want = {path_ for s in services.values() if s.enabled for path_ in s.data}
    assert set(got["dirs"].values()) == want and got["dirs"] == data_dirs(services)
    # every database is dumped ([] = all but the templates), so every service's database is in it
    assert got["databases"] == [] and not {d for s in services.values() for d in s.databases} & set(got["exclude_db"])
    if inventory == "production":
        assert {"plex", "dashboard", "vnc_desktop", "n8n", "home_assistant", "discord_bot", "stream_bot"} <= set(
            got["dirs"]
        )
        assert any("Cache" in p for p in got["excludes"]["plex"])


@pytest.mark.parametrize("inventory", ["production", "lab"])
def test_the_catalog_s_service_enums_are_the_registry(inventory: str, production: Path) -> None:
    path = production if inventory == "production" else ROOT / "inventory" / "lab"
    reg = Registry(path)
    cat = Catalog(ROOT / "playbooks" / "catalog.yml", registry=reg)
    services = reg.union()
    for entry_id, cap in (
        ("deploy_service", "deploy"),
        ("check_service", "deploy"),
        ("restart_service", "restart"),
        ("rollback_service", "rollback"),
        ("deliver", "deliver"),
    ):
        [param] = [p for p in cat.entries[entry_id].parameters if p.name == "service"]
        assert set(param.enum) == {n for n, s in services.items() if cap in s.ops}, entry_id


def test_every_service_has_a_role_in_the_site_and_tags_its_tasks_with_its_name() -> None:
    services = Registry(ROOT / "inventory" / "lab").union()
    site = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
    site_roles = {r["role"] if isinstance(r, dict) else r for play in site for r in play.get("roles") or []}
    roles = {p.parent.parent.name for p in (ROOT / "roles").glob("*/tasks/main.yml")} - INTERNAL_ROLES
    assert set(services) == roles == site_roles, "a role without a registry entry, or an entry without a role"
    for name in services:  # drift fixes a service with --tags <name>
        text = (ROOT / "roles" / name / "tasks" / "main.yml").read_text()
        assert re.search(rf"tags:\s*\[[^\]]*\b{name}\b", text), f"roles/{name} does not tag its tasks {name}"


def test_the_dashboard_lists_exactly_the_enabled_services_with_their_urls(
    production: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    html = _dashboard(production, tmp_path, monkeypatch)
    shown = set(re.findall(r'<tr data-service="([a-z0-9_]+)">', html))
    services = Registry(production).union()
    assert shown == {n for n, s in services.items() if s.enabled}
    for d in SEED_DOMAINS:
        assert f'href="https://{d}/"' in html, d
    for internal in ("compose_service", "node_app", "twingate_connector"):
        assert f'data-service="{internal}"' not in html


def test_the_ops_playbooks_refuse_what_the_registry_does_not_allow(production: Path) -> None:
    def run(playbook: str, service: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(ROOT / ".venv" / "bin" / "ansible-playbook"),
                "-i",
                str(production),
                str(ROOT / "playbooks" / "ops" / playbook),
                "-e",
                f"service={service}",
                "--check",
            ],
            cwd=ROOT,
            env=ansible_env(),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    unknown = run("restart_service.yml", "no_such_service")
    assert unknown.returncode != 0 and "is not a service this homelab knows" in unknown.stdout
    known = re.search(r"known services: ([a-z0-9_, \n]+)\.", unknown.stdout)[1]
    assert {s.strip() for s in known.replace("\n", " ").split(",")} == set(Registry(production).union())
    no_rollback = run("rollback_service.yml", "postgres")
    assert no_rollback.returncode != 0 and "postgres does not allow rollback" in no_rollback.stdout
    assert (
        "203.0.113.10" not in no_rollback.stdout.split("does not allow")[0][-400:]
    )  # refused before a host is reached


FIXTURE_DEFAULTS = """---
hello_web_enabled: false
hello_web_domain: hello.example.org
hello_web_path: "{{ homelab_root | default('/opt/homelab') }}/hello_web"
hello_web_registry:
  name: hello_web
  title: Hello web
  kind: container
  enabled: "{{ hello_web_enabled }}"
  domains: ["{{ hello_web_domain }}"]
  upstream: hello_web:8080
  health: {path: /ping, status: [200]}
  project: hello_web
  containers: [hello_web]
  databases: [hello_web]
  data: ["{{ hello_web_path }}/data"]
  ops: [deploy, restart, rollback]
"""


def test_adding_a_service_is_one_role_and_one_inventory_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("roles", "plugins", "playbooks", "inventory", "jarvis"):
        shutil.copytree(ROOT / name, root / name, symlinks=True)
    shutil.copy(ROOT / "ansible.cfg", root / "ansible.cfg")
    before = {p.relative_to(root) for p in root.rglob("*")}
    # the two files: the role (its defaults, with its registry entry; tasks as any role) and its settings
    (root / "roles" / "hello_web" / "defaults").mkdir(parents=True)
    (root / "roles" / "hello_web" / "defaults" / "main.yml").write_text(FIXTURE_DEFAULTS)
    (root / "inventory" / "lab" / "group_vars" / "all" / "hello_web.yml").write_text(
        "---\nhello_web_enabled: true\nhello_web_domain: hello.lab.test\n"
    )
    added = {p.relative_to(root) for p in root.rglob("*")} - before
    assert {str(p) for p in added if (root / p).is_file()} == {
        "roles/hello_web/defaults/main.yml",
        "inventory/lab/group_vars/all/hello_web.yml",
    }
    inventory = root / "inventory" / "lab"
    reg = Registry(inventory, roles=root / "roles")
    services = reg.union()
    assert services["hello_web"].enabled and services["hello_web"].domains == ("hello.lab.test",)
    # the ops playbooks' allow-list and the backups (Ansible, through the copy's vars plugin)
    assert resolve(inventory, "homelab_registry | list", root=root) == sorted(services)
    assert resolve(inventory, "backup_data_dirs", root=root)["hello_web"] == "/opt/homelab/hello_web/data"
    # Caddy's route: what the role's route is built from (roles/<service>/vars: domains | first, upstream)
    assert resolve(inventory, "[hello_web_registry.domains | first, hello_web_registry.upstream]", root=root) == [
        "hello.lab.test",
        "hello_web:8080",
    ]
    # the catalog's enums
    cat = Catalog(root / "playbooks" / "catalog.yml", registry=reg)
    for entry_id in ("deploy_service", "restart_service", "rollback_service"):
        assert "hello_web" in next(p for p in cat.entries[entry_id].parameters if p.name == "service").enum
    # Jarvis's targets
    from jarvis import netchecks
    from jarvis.config import Checks

    ts = netchecks.targets(Checks(), netchecks.service_targets(services.values()))
    assert ("dns", "hello.lab.test") in {(t.kind, t.name) for t in ts}
    assert {"url": "https://hello.lab.test/ping", "expect": (200,)} in [t.spec for t in ts if t.kind == "http"]
    # the dashboard
    html = _dashboard(inventory, tmp_path, monkeypatch)
    assert '<tr data-service="hello_web">' in html and 'href="https://hello.lab.test/"' in html


@pytest.mark.parametrize(
    "entry, field, message",
    [
        ({"name": "x", "domains": ["not a domain"]}, "domains", "is not a domain name"),
        ({"name": "x", "domains": ["-bad-.example.org"]}, "domains", "is not a domain name"),
        ({"name": "x", "health": {"path": "healthz"}}, "health", "must start with '/'"),
        ({"name": "x", "ops": ["deploy", "reboot"]}, "ops", "'reboot' is not a capability"),
        ({"name": "x", "kind": "vm"}, "kind", "must be one of"),
        ({"name": "x", "upstream": "x"}, "upstream", "is not host:port"),
        ({"name": "x", "data": ["relative/path"]}, "data", "must be an absolute path"),
        ({"name": "x", "colour": "red"}, "colour", "is not a registry field"),
        ({"name": "x", "redis": "perhaps"}, "redis", "must be true or false"),
        ({"name": "x", "branch": "main; rm -rf /"}, "branch", "is not a git branch name"),
        ({"name": "x", "branch": "../up"}, "branch", "is not a git branch name"),
        (
            {"name": "x", "auto_deploy": True, "kind": "host", "ops": ["deploy"]},
            "auto_deploy",
            "only a service the pipeline delivers",
        ),
    ],
)
def test_a_malformed_entry_is_refused_naming_the_service_and_field(
    entry: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(RegistryError) as exc:
        check_entries([entry])
    assert exc.value.service == "x" and exc.value.field == field and message in str(exc.value)


def test_a_domain_claimed_by_two_enabled_services_is_refused() -> None:
    with pytest.raises(RegistryError, match=r"b\.domains: a\.example\.org is already claimed by a"):
        check_entries(
            [
                {"name": "a", "enabled": True, "domains": ["a.example.org"]},
                {"name": "b", "enabled": True, "domains": ["a.example.org"]},
            ]
        )


def test_the_site_refuses_a_bad_entry_before_any_task_runs(tmp_path: Path) -> None:
    """A real site.yml run on the production inventory where two services claim one domain: the
    first play stops, naming the service and field, before any host is contacted."""
    inv = inventory_copy(ROOT / "inventory" / "production", tmp_path / "production")
    (inv / "group_vars" / "all" / "zz-broken.yml").write_text(
        "---\nn8n_domain: plex.evindrake.net\n"
    )  # two services, one domain
    proc = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(inv),
            str(ROOT / "playbooks" / "site.yml"),
            "--check",
        ],
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(
        r"service registry: (plex|n8n)\.domains: plex\.evindrake\.net is already claimed by (n8n|plex)", out
    ), out[-3000:]
    assert "Gathering Facts" not in out and "TASK [base" not in out, "a task ran before the registry was checked"


def test_where_says_where_every_enabled_service_answers(production: Path, tmp_path: Path) -> None:
    """playbooks/where.yml on the production inventory, run against this machine (read-only: it
    lists the Caddy site files, of which there are none here)."""
    import sys

    inv = inventory_copy(ROOT / "inventory" / "production", tmp_path / "production")
    (inv / "host_vars").mkdir()
    (inv / "host_vars" / "homelab-server.yml").write_text(
        yaml.safe_dump(
            {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "ansible_become": False,
                "homelab_root": str(tmp_path / "nothing-here"),
            }
        )
    )
    proc = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(inv),
            "-e",
            "ansible_become=false",
            str(ROOT / "playbooks" / "where.yml"),
        ],
        cwd=ROOT,
        env=ansible_env(
            ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.json"
        ),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    tasks = json.loads(proc.stdout)["plays"][0]["tasks"]
    [lines] = [
        t["hosts"]["homelab-server"]["msg"]
        for t in tasks
        if t["task"]["name"] == "Say where each enabled service answers"
    ]
    assert isinstance(lines, list) and len(lines) == len(SEED_DOMAINS)
    for d in SEED_DOMAINS:
        assert any(
            line.split(": ", 1)[1].startswith(f"https://{d}/ ") and line.endswith("[not routed yet]") for line in lines
        ), d


def test_a_broken_registry_leaves_the_catalog_loaded_and_its_service_choices_refused(tmp_path: Path) -> None:
    from homelab.catalog import ValidationError

    inv = inventory_copy(ROOT / "inventory" / "production", tmp_path / "production")
    (inv / "group_vars" / "all" / "zz-broken.yml").write_text("---\nn8n_domain: not a domain\n")
    cat = Catalog(ROOT / "playbooks" / "catalog.yml", registry=Registry(inv))
    assert "n8n.domains: 'not a domain' is not a domain name" in cat.registry_error
    with pytest.raises(ValidationError, match="nothing to choose from: the service registry cannot be read") as exc:
        cat.prepare("restart_service", {"service": "n8n"}, "")
    assert exc.value.status == 409
    assert "site" in cat.entries  # the rest of the catalog still works


def test_production_status_cycle_probes_every_enabled_service_with_a_domain(
    production: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the status cycle (homelab.status) would probe on the user's homelab: the target list
    only, with every socket refused, so no probe can leave this machine."""
    import socket

    from homelab.settings import Settings
    from homelab.status import StatusService, status_targets
    from homelab.store import Store
    from jarvis import netchecks
    from jarvis.config import DEFAULT_RULES, load_rules

    services = Registry(production).union()
    enabled = {n: s for n, s in services.items() if s.enabled and s.domains}

    def no_network(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the target list needs no network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    targets = StatusService(Settings(), Store(f"sqlite:///{tmp_path / 's.db'}"), lambda: services.values()).targets()
    assert targets == status_targets(services.values())
    probed = {
        "code_server",
        "dashboard",
        "discord_bot",
        "home_assistant",
        "n8n",
        "plex",
        "static_site",
        "stream_bot",
        "vnc_desktop",
    }
    assert {t.name for t in targets} == set(enabled) == probed
    assert {t.domain for t in targets} | {"www.scarletredjoker.com"} == SEED_DOMAINS
    for t in targets:  # its health path through its route, its expected statuses, its first domain's TLS
        s = enabled[t.name]
        assert t.probe_url == f"https://{s.domains[0]}{s.health.get('path', '/')}", t.name
        assert t.expect == tuple(s.health["status"]) and t.url == f"https://{s.domains[0]}/", t.name
    # the same URLs Jarvis's HTTP checks use: one list, one probe code
    checks = load_rules(DEFAULT_RULES, env={}).checks
    jarvis = netchecks.targets(checks, netchecks.service_targets(services.values()))
    jarvis_http = {t.name: t.spec["url"] for t in jarvis if t.kind == "http"}
    assert jarvis_http == {t.name: t.probe_url for t in targets}
    monkeypatch.undo()

    html = _dashboard(production, tmp_path, monkeypatch)
    tiles = re.findall(r'data-status-service="([a-z0-9_]+)" data-status="([a-z]+)"', html)
    assert tiles == [(t.name, "unknown") for t in targets], "before any probe, each tile says unknown"


@pytest.mark.parametrize("inventory", ["production", "lab"])
def test_the_apps_built_from_git_are_delivered_by_the_pipeline(inventory: str, production: Path) -> None:
    """What the pipeline, the catalog's `deliver` and Jarvis's deliver-synced rule see: the apps built
    from git, each with its branch; in production both bots follow main from their checkouts in the
    project tree git sync keeps, and deploy each commit it pulls."""
    path = production if inventory == "production" else ROOT / "inventory" / "lab"
    services = Registry(path).union()
    delivered = {n: s for n, s in services.items() if "deliver" in s.ops}
    if inventory == "production":
        # The static site is built from its checkout too (static_site_repo), delivered on demand.
        assert set(delivered) == {"discord_bot", "stream_bot", "static_site"}
        for name in ("discord_bot", "stream_bot"):
            s = delivered[name]
            assert s.branch == "main" and s.auto_deploy, name
            assert s.source == f"/home/evin/contain/{name.replace('_', '-')}", name
        site = delivered["static_site"]
        assert site.branch == "main" and not site.auto_deploy
        assert site.source == "/home/evin/contain/scarletredjoker.com"
    else:  # the lab's stream bot runs from an image and its site from a directory: nothing to deliver
        assert set(delivered) == {"discord_bot"}
        assert (
            delivered["discord_bot"].branch == "main" and delivered["discord_bot"].source == "/srv/git/discord_bot.git"
        )
        assert "deliver" not in services["stream_bot"].ops and not services["stream_bot"].auto_deploy

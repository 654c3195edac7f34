"""The service registry: the one list of the homelab's services, contributed by their roles.

Each role declares its entry once, in its defaults, as `<role>_registry` (roles/n8n/defaults/
main.yml). The vars plugin plugins/vars/homelab_roles.py puts every role's defaults in the
inventory and defines `homelab_registry`, which the filter plugins/filter/registry.py builds with
`check_entries` below. So Ansible (Caddy routes, the ops playbooks' allow-list, backups, where.yml)
and Python (the catalog's service enums, Jarvis's targets, the dashboard, drift) read the same
entries, resolved by Ansible from the same inventory: nobody keeps a copy.

An entry (every field but name is optional):
  name        the service, and the role that deploys it
  title       what a person calls it
  kind        container (a compose project), host (a host service: timer, daemon), platform
              (PostgreSQL, Caddy: what the services stand on)
  enabled     whether the inventory switches it on
  domains     every domain it answers on (Caddy routes them; Jarvis checks DNS, TLS and HTTP)
  upstream    host:port Caddy proxies to
  health      {path: /healthz, status: [200]} (HTTP through its route) or {command: ...}
  project     its compose project directory under homelab_root
  containers  its container names
  databases   its databases on the shared PostgreSQL
  data        directories to back up; data_exclude: patterns left out of the archive
  source      the git repository it is built from
  redis       true when it uses the shared Redis (roles/redis): a user of its name, allowed only the
              keys and channels under "<name>:", and REDIS_URL in its environment
  branch      the branch of `source` it is delivered from (the delivery pipeline, playbooks/ops/deliver.yml)
  auto_deploy true: when git sync fast-forwards `source` on `branch`, Jarvis runs the pipeline on the new
              commit (rule deliver-synced); false: only "Deploy" (the catalog's `deliver`) does
  ops         what the operations playbooks may do with it: deploy, restart, rollback, deliver (the pipeline:
              validate, test, build, deploy, verify, roll back on failure)
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("container", "host", "platform")
CAPABILITIES = ("deploy", "restart", "rollback", "deliver")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(?!-)([a-z0-9-]{1,63}(?<!-)\.)+[a-z]{2,63}$")
UPSTREAM_RE = re.compile(r"^[A-Za-z0-9_.-]+:[0-9]{1,5}$")
DB_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
BRANCH_RE = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}(?<![./])$")
CONTAINER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
DERIVED = ("url", "health_url")  # what as_dict adds: accepted back, never trusted (recomputed)
FIELDS = (
    "name",
    "title",
    "kind",
    "enabled",
    "domains",
    "upstream",
    "health",
    "project",
    "containers",
    "databases",
    "data",
    "data_exclude",
    "source",
    "redis",
    "branch",
    "auto_deploy",
    "ops",
)


class RegistryError(ValueError):
    """An entry is wrong; the message names the service and the field."""

    def __init__(self, service: str, field_name: str, message: str) -> None:
        super().__init__(f"service registry: {service}.{field_name}: {message}")
        self.service = service
        self.field = field_name


@dataclass(frozen=True)
class Service:
    name: str
    title: str
    kind: str
    enabled: bool
    domains: tuple[str, ...] = ()
    upstream: str = ""
    health: dict[str, Any] = field(default_factory=dict)
    project: str = ""
    containers: tuple[str, ...] = ()
    databases: tuple[str, ...] = ()
    data: tuple[str, ...] = ()
    data_exclude: tuple[str, ...] = ()
    source: str = ""
    redis: bool = False
    branch: str = ""
    auto_deploy: bool = False
    ops: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"https://{self.domains[0]}/" if self.domains else ""

    @property
    def health_url(self) -> str:
        path = self.health.get("path")
        return f"https://{self.domains[0]}{path}" if self.domains and path else ""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(url=self.url, health_url=self.health_url)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


def _strings(service: str, name: str, value: Any, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise RegistryError(service, name, f"must be a list of text, not {type(value).__name__}")
    out = []
    for v in value:
        if v is None or v == "":
            continue
        if not isinstance(v, str):
            raise RegistryError(service, name, f"{v!r} is not text")
        if pattern is not None and not pattern.match(v):
            raise RegistryError(service, name, f"{v!r} is not valid (expected {pattern.pattern})")
        out.append(v)
    return tuple(out)


def _bool(service: str, value: Any, field_name: str = "enabled") -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on", "false", "no", "0", "off", ""):
        return value.strip().lower() in ("true", "yes", "1", "on")
    raise RegistryError(service, field_name, f"must be true or false, not {value!r}")


def check_entry(raw: Any) -> Service:
    """One resolved entry as a Service, or RegistryError naming the service and the field."""
    if not isinstance(raw, dict):
        raise RegistryError("?", "entry", f"must be a mapping, not {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RegistryError(str(name), "name", f"must match {NAME_RE.pattern}")
    unknown = sorted(set(raw) - set(FIELDS) - set(DERIVED))
    if unknown:
        raise RegistryError(name, unknown[0], f"is not a registry field (fields: {', '.join(FIELDS)})")
    kind = raw.get("kind", "container")
    if kind not in KINDS:
        raise RegistryError(name, "kind", f"must be one of {', '.join(KINDS)}, not {kind!r}")
    domains = tuple(d.lower() for d in _strings(name, "domains", raw.get("domains")))
    for d in domains:
        if not DOMAIN_RE.match(d):
            raise RegistryError(name, "domains", f"{d!r} is not a domain name")
    upstream = raw.get("upstream") or ""
    if upstream and (not isinstance(upstream, str) or not UPSTREAM_RE.match(upstream)):
        raise RegistryError(name, "upstream", f"{upstream!r} is not host:port")
    health = raw.get("health") or {}
    if not isinstance(health, dict) or set(health) - {"path", "status", "command"}:
        raise RegistryError(name, "health", "must be {path, status} or {command}")
    if "path" in health:
        path = health["path"]
        if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
            raise RegistryError(name, "health", f"path {path!r} must start with '/' and hold no spaces")
        status = health.get("status", [200])
        status = [status] if isinstance(status, int) else status
        if (
            not isinstance(status, list)
            or not status
            or not all(isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in status)
        ):
            raise RegistryError(name, "health", f"status {status!r} must be a list of HTTP statuses")
        health = {"path": path, "status": status}
    elif "command" in health:
        if not isinstance(health["command"], str) or not health["command"].strip():
            raise RegistryError(name, "health", "command must be text")
        health = {"command": health["command"]}
    ops = _strings(name, "ops", raw.get("ops"))
    for op in ops:
        if op not in CAPABILITIES:
            raise RegistryError(name, "ops", f"{op!r} is not a capability ({', '.join(CAPABILITIES)})")
    project = raw.get("project") or ""
    if project and (not isinstance(project, str) or not NAME_RE.match(project)):
        raise RegistryError(name, "project", f"{project!r} must match {NAME_RE.pattern}")
    if ops and kind == "container" and not project:
        raise RegistryError(name, "project", "a container service the ops may act on needs its compose project")
    data = _strings(name, "data", raw.get("data"))
    for d in data:
        if not d.startswith("/") or "/../" in d + "/" or any(c in d for c in "\n\0"):
            raise RegistryError(name, "data", f"{d!r} must be an absolute path")
    source = raw.get("source") or ""
    if not isinstance(source, str):
        raise RegistryError(name, "source", "must be a git URL or path")
    branch = raw.get("branch") or ""
    if not isinstance(branch, str) or (branch and not BRANCH_RE.match(branch)):
        raise RegistryError(name, "branch", f"{branch!r} is not a git branch name")
    auto_deploy = _bool(name, raw.get("auto_deploy", False), "auto_deploy")
    if auto_deploy and "deliver" not in ops:
        raise RegistryError(name, "auto_deploy", "only a service the pipeline delivers (ops: deliver) can auto-deploy")
    title = raw.get("title") or name.replace("_", " ").title()
    return Service(
        name=name,
        title=str(title),
        kind=kind,
        enabled=_bool(name, raw.get("enabled", False)),
        domains=domains,
        upstream=upstream,
        health=health,
        project=project,
        containers=_strings(name, "containers", raw.get("containers"), CONTAINER_RE),
        databases=_strings(name, "databases", raw.get("databases"), DB_RE),
        data=data,
        data_exclude=_strings(name, "data_exclude", raw.get("data_exclude")),
        source=source,
        redis=_bool(name, raw.get("redis", False), "redis"),
        branch=branch,
        auto_deploy=auto_deploy,
        ops=ops,
    )


def _plain(value: Any) -> Any:
    """Plain Python data (Ansible hands over lazy containers and tagged strings)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def check_entries(entries: Any) -> dict[str, Service]:
    """Every entry checked; names unique; no domain claimed by two enabled services."""
    entries = _plain(entries)
    if isinstance(entries, dict):
        entries = list(entries.values())
    if not isinstance(entries, (list, tuple)):
        raise RegistryError("?", "entries", "the registry must be a list of entries")
    out: dict[str, Service] = {}
    claimed: dict[str, str] = {}
    for raw in entries:
        s = check_entry(raw)
        if s.name in out:
            raise RegistryError(s.name, "name", "is declared twice")
        out[s.name] = s
        if s.enabled:
            for d in s.domains:
                if d in claimed:
                    raise RegistryError(s.name, "domains", f"{d} is already claimed by {claimed[d]}")
                claimed[d] = s.name
    return dict(sorted(out.items()))


def as_ansible(services: dict[str, Service]) -> dict[str, dict[str, Any]]:
    """The checked registry as Ansible sees it (homelab_registry): name -> entry with lists."""
    return {name: s.as_dict() for name, s in services.items()}


def data_dirs(services: dict[str, Service]) -> dict[str, str]:
    """What backups archive: name -> path for each data directory of each enabled service."""
    out: dict[str, str] = {}
    for name, s in services.items():
        if s.enabled:
            for i, path in enumerate(s.data):
                out[name if i == 0 else f"{name}_{i + 1}"] = path
    return out


def redis_users(services: dict[str, Service]) -> list[str]:
    """The enabled services that use the shared Redis: each gets a user of its name (roles/redis)."""
    return [name for name, s in services.items() if s.enabled and s.redis]


def data_excludes(services: dict[str, Service]) -> dict[str, list[str]]:
    """name -> exclude patterns (relative to the directory) for the archives of data_dirs."""
    return {name: list(s.data_exclude) for name, s in services.items() if s.enabled and s.data and s.data_exclude}


# ------------------------------------------------------------------------------ the reader
class Registry:
    """The registry of an inventory, resolved by Ansible itself (inventory, group_vars, role
    defaults through the vars plugin, templated values), per host; cached until a file of the
    inventory or a role's defaults changes."""

    def __init__(self, inventory: Path, roles: Path | None = None, group: str = "homelab") -> None:
        self.inventory = Path(inventory)
        self.roles = roles or Path(__file__).resolve().parents[2] / "roles"
        self.group = group
        self._lock = threading.Lock()
        self._cache: tuple[float, dict[str, dict[str, Service]]] | None = None

    def _stamp(self) -> float:
        newest = 0.0
        paths = [self.inventory] + list(self.roles.glob("*/defaults/main.yml"))
        if not self.inventory.is_dir():  # a file inventory: Ansible reads the group_vars/ and host_vars/ beside it
            paths += [self.inventory.parent / "group_vars", self.inventory.parent / "host_vars"]
        for base in paths:
            files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()] if base.is_dir() else []
            for f in files:
                try:
                    newest = max(newest, f.stat().st_mtime)
                except OSError:
                    continue
        return newest + len(paths)

    def by_host(self) -> dict[str, dict[str, Service]]:
        """host -> service name -> Service, for every host of the group (else every host)."""
        with self._lock:
            stamp = self._stamp()
            if self._cache is None or self._cache[0] != stamp:
                self._cache = (stamp, _resolve(self.inventory, self.group))
            return self._cache[1]

    def union(self) -> dict[str, Service]:
        """Every host's services, by name (the first host's entry wins; enabled if enabled anywhere)."""
        out: dict[str, Service] = {}
        hosts = self.by_host()  # once: each call stats the inventory and every role's defaults
        for host in sorted(hosts):
            for name, s in hosts[host].items():
                if name not in out or (s.enabled and not out[name].enabled):
                    out[name] = s
        return out


_PLUGINS_READY = threading.Lock()
_plugins_ready = False


def _init_plugins() -> None:
    """Ansible's plugin loader, once per process (lookups and the registry's filter need it)."""
    global _plugins_ready
    with _PLUGINS_READY:
        if not _plugins_ready:
            from ansible.plugins.loader import init_plugin_loader

            init_plugin_loader()
            _plugins_ready = True


def _resolve(inventory: Path, group: str) -> dict[str, dict[str, Service]]:
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template
    from ansible.vars.manager import VariableManager

    _init_plugins()
    loader = DataLoader()
    vault_file = os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")
    if vault_file:
        from ansible.parsing.vault import get_file_vault_secret

        secret = get_file_vault_secret(filename=vault_file, loader=loader)
        secret.load()
        loader.set_vault_secrets([("default", secret)])
    im = InventoryManager(loader=loader, sources=[str(inventory)])
    vm = VariableManager(loader=loader, inventory=im)
    hosts = im.get_hosts(group) if group in im.groups else im.get_hosts()
    out: dict[str, dict[str, Service]] = {}
    for h in hosts:
        variables = vm.get_vars(host=h, include_hostvars=False)
        raw = Templar(loader=loader, variables=variables).template(trust_as_template("{{ homelab_registry }}"))
        out[h.name] = check_entries(list(raw.values()) if isinstance(raw, dict) else raw)
    return out

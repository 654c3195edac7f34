#!/usr/bin/python
"""Compare the containers of a compose project with what its compose file declares.

`docker compose up` recreates a container when its compose configuration changes, but not when
the container was changed by hand outside compose: `docker update --restart no`, a new memory or
CPU limit, `docker network disconnect`, or a container of the same name started by `docker run`.
A check run would not see any of those. This module reads the project's resolved configuration
(`docker compose config --format json`) and each container's `docker inspect`, and reports every
runtime setting that differs: image, environment (names only, never values), restart policy,
memory and CPU limits, networks, published ports and healthcheck. With fix=true (and not in check
mode) it removes the containers that differ, so the compose task that follows creates them again,
health-gated, from the compose file.
"""

from __future__ import annotations

import json

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: compose_runtime_drift
short_description: Report (and optionally remove) containers that differ from their compose file
options:
  project_src:
    description: The compose project's directory (holding compose.yml).
    type: path
    required: true
  fix:
    description: Remove the containers that differ (not in check mode), for compose to recreate.
    type: bool
    default: false
"""

RETURN = r"""
drifted:
  description: Service name to the list of settings that differ.
  type: dict
  returned: always
"""


def _run(module: AnsibleModule, *argv: str) -> str:
    rc, out, err = module.run_command(list(argv), check_rc=False)
    if rc != 0:
        module.fail_json(msg=f"{' '.join(argv[:4])} failed: {err.strip() or out.strip()}")
    return out


def _memory(value) -> int:
    """Compose resolves mem_limit to bytes (as a string); no limit is 0, as docker inspect says."""
    if value in (None, "", 0, "0"):
        return 0
    return int(value)


def _nano_cpus(value) -> int:
    return int(round(float(value) * 1e9)) if value not in (None, "", 0) else 0


def _ports(declared: list[dict]) -> set[tuple[str, str, str]]:
    out = set()
    for p in declared or []:
        host_ip = p.get("host_ip") or ""
        out.add(
            (
                f"{p['target']}/{p.get('protocol') or 'tcp'}",
                "" if host_ip == "0.0.0.0" else host_ip,
                str(p.get("published") or ""),
            )
        )
    return out


def _running_ports(bindings: dict | None) -> set[tuple[str, str, str]]:
    out = set()
    for port, binds in (bindings or {}).items():
        for b in binds or []:
            host_ip = b.get("HostIp") or ""
            out.add((port, "" if host_ip == "0.0.0.0" else host_ip, str(b.get("HostPort") or "")))
    return out


def _fmt_ports(ports: set[tuple[str, str, str]]) -> str:
    return ", ".join(sorted(f"{ip + ':' if ip else ''}{pub}->{target}" for target, ip, pub in ports)) or "none"


def compare(name: str, svc: dict, networks: dict, container: dict | None) -> list[tuple[str, str, str]]:
    """(setting, running, declared) for every setting of one service's container that differs."""
    if container is None:
        return []  # a missing container is compose's own business: `up` creates it
    labels = container["Config"].get("Labels") or {}
    host = container["HostConfig"]
    diffs: list[tuple[str, str, str]] = []
    project = svc.get("_project")
    if labels.get("com.docker.compose.project") != project or labels.get("com.docker.compose.service") != name:
        diffs.append(("created by", "hand (not by this compose project)", f"compose project {project}"))
    if svc.get("image") and container["Config"].get("Image") != svc["image"]:
        diffs.append(("image", container["Config"].get("Image", ""), svc["image"]))
    running_env = dict(e.split("=", 1) for e in container["Config"].get("Env") or [] if "=" in e)
    for key, value in sorted((svc.get("environment") or {}).items()):
        if value is None:
            continue
        if key not in running_env:
            diffs.append((f"environment {key}", "unset", "set (value not shown)"))
        elif running_env[key] not in (str(value), str(value).replace("$$", "$")):  # compose config re-escapes $
            diffs.append((f"environment {key}", "a different value (not shown)", "the declared value (not shown)"))
    restart = svc.get("restart") or "no"
    running_restart = (host.get("RestartPolicy") or {}).get("Name") or "no"
    if running_restart != restart:
        diffs.append(("restart", running_restart, restart))
    limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    memory = _memory(svc.get("mem_limit") or limits.get("memory"))
    if int(host.get("Memory") or 0) != memory:
        diffs.append(("memory limit", str(host.get("Memory") or 0), str(memory)))
    cpus = _nano_cpus(svc.get("cpus") or limits.get("cpus"))
    if int(host.get("NanoCpus") or 0) != cpus:
        diffs.append(("cpus", f"{int(host.get('NanoCpus') or 0) / 1e9:g}", f"{cpus / 1e9:g}"))
    if svc.get("network_mode"):
        # service:<name> and container:<id> modes name their peer differently in docker inspect.
        if svc["network_mode"] in ("host", "none", "bridge") and host.get("NetworkMode") != svc["network_mode"]:
            diffs.append(("network mode", host.get("NetworkMode", ""), svc["network_mode"]))
    else:
        want = {(networks.get(key) or {}).get("name") or f"{project}_{key}" for key in (svc.get("networks") or {})}
        have = set((container.get("NetworkSettings") or {}).get("Networks") or {})
        if want and have != want:
            diffs.append(("networks", ", ".join(sorted(have)) or "none", ", ".join(sorted(want))))
    want_ports, have_ports = _ports(svc.get("ports")), _running_ports(host.get("PortBindings"))
    if want_ports != have_ports:
        diffs.append(("published ports", _fmt_ports(have_ports), _fmt_ports(want_ports)))
    health = svc.get("healthcheck") or {}
    if health.get("test") and not health.get("disable"):
        have_test = ((container["Config"].get("Healthcheck") or {}).get("Test")) or []
        want_test = health["test"] if isinstance(health["test"], list) else ["CMD-SHELL", health["test"]]
        if have_test != want_test:
            diffs.append(("healthcheck", " ".join(have_test) or "none", " ".join(want_test)))
    return diffs


def main() -> None:
    module = AnsibleModule(
        argument_spec={"project_src": {"type": "path", "required": True}, "fix": {"type": "bool", "default": False}},
        supports_check_mode=True,
    )
    src = module.params["project_src"]
    config = json.loads(
        _run(
            module,
            "docker",
            "compose",
            "--project-directory",
            src,
            "-f",
            f"{src}/compose.yml",
            "config",
            "--format",
            "json",
        )
    )
    project = config["name"]
    networks = config.get("networks") or {}
    drifted: dict[str, list[str]] = {}
    remove: list[str] = []
    before, after = [], []
    for name, svc in sorted((config.get("services") or {}).items()):
        svc = dict(svc, _project=project)
        ids = _run(
            module,
            "docker",
            "ps",
            "-aq",
            "--filter",
            f"label=com.docker.compose.project={project}",
            "--filter",
            f"label=com.docker.compose.service={name}",
        ).split()
        if not ids and svc.get("container_name"):
            # A container of the declared name that compose did not create (e.g. `docker run --name`).
            ids = _run(module, "docker", "ps", "-aq", "--filter", f"name=^/{svc['container_name']}$").split()
        containers = json.loads(_run(module, "docker", "inspect", *ids)) if ids else [None]
        for container in containers:
            diffs = compare(name, svc, networks, container)
            if not diffs:
                continue
            label = container["Name"].lstrip("/")
            drifted.setdefault(name, []).extend(
                f"{setting}: {have} (declared: {want})" for setting, have, want in diffs
            )
            before += [f"{label}: {setting}: {have}" for setting, have, _ in diffs]
            after += [f"{label}: {setting}: {want}" for setting, _, want in diffs]
            remove.append(container["Id"])
    result = {"changed": bool(drifted), "drifted": drifted}
    if drifted:
        result["diff"] = {
            "before": "\n".join(before) + "\n",
            "after": "\n".join(after) + "\n",
            "before_header": f"{project}: running containers",
            "after_header": f"{src}/compose.yml",
        }
        result["msg"] = "; ".join(f"{svc}: " + ", ".join(d) for svc, d in drifted.items())
        if module.params["fix"] and not module.check_mode:
            _run(module, "docker", "rm", "-f", *remove)
            result["removed"] = sorted(drifted)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

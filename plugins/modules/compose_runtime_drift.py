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

It also says whether `docker compose up` would have anything to do (`current`): every declared
service has its one container, created by this project from the compose file as it is now (its
config-hash label equals `docker compose config --hash`), on the image the tag names now, running
and healthy, with no runtime difference and no orphan container beside them. The roles skip their
health-gated `up` when it is current, which on a converged host is most of a no-op converge's time.
"""

from __future__ import annotations

import json
import os
import tempfile

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
current:
  description: True when `docker compose up` would change nothing (see the module's description).
  type: bool
  returned: always
not_current:
  description: Why `up` is needed, one reason per service (empty when current).
  type: list
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


def _image_ids(module: AnsibleModule, images: set[str]) -> dict[str, str]:
    """Tag -> image ID of the images present (a missing image is simply not in the result)."""
    if not images:
        return {}
    _rc, out, _err = module.run_command(["docker", "image", "inspect", *sorted(images)], check_rc=False)
    try:
        found = json.loads(out or "[]")
    except ValueError:
        return {}
    ids: dict[str, str] = {}
    for image in found:
        for tag in image.get("RepoTags") or []:
            ids[tag] = image["Id"]
        ids[image["Id"]] = image["Id"]
    for name in images:  # "caddy:2" is stored as "caddy:2", "caddy" as "caddy:latest"
        if name not in ids and ":" not in name.rsplit("/", 1)[-1] and f"{name}:latest" in ids:
            ids[name] = ids[f"{name}:latest"]
    return ids


def not_current(
    services: dict,
    containers: dict[str, list[dict]],
    hashes: dict[str, str],
    image_ids: dict[str, str],
    orphans: list[str],
) -> list[str]:
    """Why `docker compose up` would do something, one reason per service; empty when it would not."""
    reasons = [f"{name}: orphan container of this project" for name in orphans]
    for name, svc in sorted(services.items()):
        found = containers.get(name) or []
        if svc.get("build") or int((svc.get("deploy") or {}).get("replicas") or 1) != 1:
            reasons.append(f"{name}: built or scaled by compose")
        elif len(found) != 1:
            reasons.append(f"{name}: {len(found)} containers")
        else:
            c = found[0]
            labels = c["Config"].get("Labels") or {}
            state = c.get("State") or {}
            health = (state.get("Health") or {}).get("Status")
            if labels.get("com.docker.compose.config-hash") != hashes.get(name):
                reasons.append(f"{name}: created from another compose configuration")
            elif image_ids.get(svc.get("image", "")) != c.get("Image"):
                reasons.append(f"{name}: its image tag names another image now")
            elif not state.get("Running") or state.get("Paused") or state.get("Restarting"):
                reasons.append(f"{name}: {state.get('Status', 'not running')}")
            elif health not in (None, "healthy"):
                reasons.append(f"{name}: {health}")
    return reasons


def config_hashes(module: AnsibleModule, src: str, config: dict) -> dict[str, str]:
    """Service -> the hash `up` writes to its containers' com.docker.compose.config-hash label.

    `docker compose config --hash` hashes the project as `config` loads it, which keeps each
    env_file entry beside the environment read from it; `up` loads it without them (compose
    2.24+), so for a service with an env_file the two differ. Hashing the resolved configuration
    with env_file dropped (its environment stays, resolved) gives up's value. The copy holds the
    secrets' values, so it is written 0600 next to the secrets file and removed at once."""
    resolved = json.loads(json.dumps(config))
    for svc in (resolved.get("services") or {}).values():
        svc.pop("env_file", None)
    fd, path = tempfile.mkstemp(prefix=".config-hash-", suffix=".json", dir=src)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(resolved, f)
        out = _run(module, "docker", "compose", "--project-directory", src, "-f", path, "config", "--hash", "*")
    finally:
        os.unlink(path)
    # "<service> <hash>" per line.
    return dict(line.split(None, 1) for line in out.splitlines() if line.strip())


def main() -> None:
    module = AnsibleModule(
        argument_spec={"project_src": {"type": "path", "required": True}, "fix": {"type": "bool", "default": False}},
        supports_check_mode=True,
    )
    src = module.params["project_src"]
    compose = ["docker", "compose", "--project-directory", src, "-f", f"{src}/compose.yml"]
    config = json.loads(_run(module, *compose, "config", "--format", "json"))
    project = config["name"]
    networks = config.get("networks") or {}
    services = config.get("services") or {}
    hashes = config_hashes(module, src, config)
    ids = _run(module, "docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").split()
    by_service: dict[str, list[dict]] = {}
    orphans: list[str] = []
    for container in json.loads(_run(module, "docker", "inspect", *ids)) if ids else []:
        labels = container["Config"].get("Labels") or {}
        if labels.get("com.docker.compose.oneoff") == "True":
            continue  # `docker compose run` leaves these; neither up nor remove_orphans touches them
        service = labels.get("com.docker.compose.service", "")
        if service in services:
            by_service.setdefault(service, []).append(container)
        else:
            orphans.append(container["Name"].lstrip("/"))
    drifted: dict[str, list[str]] = {}
    remove: list[str] = []
    before, after = [], []
    for name, svc in sorted(services.items()):
        svc = dict(svc, _project=project)
        if not by_service.get(name) and svc.get("container_name"):
            # A container of the declared name that compose did not create (e.g. `docker run --name`).
            hand = _run(module, "docker", "ps", "-aq", "--filter", f"name=^/{svc['container_name']}$").split()
            if hand:
                by_service[name] = json.loads(_run(module, "docker", "inspect", *hand))
        for container in by_service.get(name) or [None]:
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
    reasons = [f"{svc}: differs from its compose file" for svc in sorted(drifted)]
    if not drifted:
        images = {svc["image"] for svc in services.values() if svc.get("image")}
        reasons = not_current(services, by_service, hashes, _image_ids(module, images), orphans)
    result = {"changed": bool(drifted), "drifted": drifted, "current": not reasons, "not_current": reasons}
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

"""Adopting a homelab run by hand: the plan that maps an old compose file onto the service registry.

The user's stack is one compose file (docker-compose.unified.yml) under his project tree. roles/adopt
reads it as YAML (data, never a template) and hands it here with the registry, the adopt role's table
of what each registry service looks like in an old stack (`adopt_known`: images, names, where its data
and database live) and the inventory's overrides. The plan says, for each old service, which registry
service takes it over, which of its databases on the old PostgreSQL are dumped into which new database
and owner, which of its directories are copied where, and which old container stops; or why it is not
adopted. Pure: no host is read here, so the same plan is shown in plan-only mode, run, and tested.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

PLATFORM = ("postgres", "caddy")
# Environment names that say which database a service uses, as the upstream images read them.
DB_NAME_ENV = ("DB_POSTGRESDB_DATABASE", "POSTGRES_DB", "DB_NAME", "DATABASE_NAME")
DB_HOST_ENV = ("DB_POSTGRESDB_HOST", "POSTGRES_HOST", "DB_HOST", "DATABASE_HOST", "PGHOST")
DB_URL_ENV = ("DATABASE_URL", "POSTGRES_URL", "DB_URL")


class AdoptError(ValueError):
    """The compose file or an override cannot be planned; the message says which and why."""


def image_repo(image: str) -> str:
    """The repository of an image reference without tag, digest or Docker Hub's implicit prefixes:
    docker.io/library/postgres:16-alpine -> postgres, docker.n8n.io/n8nio/n8n@sha256:.. -> docker.n8n.io/n8nio/n8n."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)
    if ":" in last[-1]:
        ref = ref[: ref.rfind(":")]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
    if ref.startswith("library/"):
        ref = ref[len("library/") :]
    return ref.lower()


def _norm(name: str) -> str:
    return name.lower().replace("-", "_")


def project_name(compose: Mapping[str, Any], project_dir: str) -> str:
    """The compose project's name as docker compose derives it: `name:`, else the directory's basename."""
    name = str(compose.get("name") or posixpath.basename(project_dir.rstrip("/")))
    return re.sub(r"[^a-z0-9_-]", "", name.lower())


def _env(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        out = {}
        for item in raw:
            k, _, v = str(item).partition("=")
            out[k] = v
        return out
    if isinstance(raw, Mapping):
        return {str(k): "" if v is None else str(v) for k, v in raw.items()}
    return {}


def _mounts(
    service: Mapping[str, Any], project_dir: str, project: str, top_volumes: Mapping[str, Any]
) -> list[dict[str, str]]:
    """Each volume of a service as {source (a host path), target, kind: bind | volume}."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, Mapping):
            source, target, kind = str(v.get("source", "")), str(v.get("target", "")), str(v.get("type", "volume"))
        else:
            parts = str(v).split(":")
            if len(parts) == 1:
                continue  # an anonymous volume holds nothing worth carrying
            source, target = parts[0], parts[1]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        if not source or not target:
            continue
        if kind == "bind":
            path = posixpath.normpath(posixpath.join(project_dir, source)) if not source.startswith("/") else source
        elif kind == "volume":
            spec = top_volumes.get(source) or {}
            vol = str(spec.get("name") or (source if spec.get("external") else f"{project}_{source}"))
            path = f"/var/lib/docker/volumes/{vol}/_data"
        else:
            continue
        out.append({"source": path, "target": target.rstrip("/") or "/", "kind": kind})
    return out


def _database(env: Mapping[str, str]) -> tuple[str, str]:
    """(database, host) a service's environment names, or ('', '')."""
    for key in DB_URL_ENV:
        if env.get(key):
            url = urlparse(env[key])
            if url.scheme.startswith("postgres"):
                return url.path.lstrip("/").split("?")[0], url.hostname or ""
    name = next((env[k] for k in DB_NAME_ENV if env.get(k)), "")
    host = next((env[k] for k in DB_HOST_ENV if env.get(k)), "")
    return name, host


def _match(
    name: str, image: str, registry: Mapping[str, Mapping[str, Any]], known: Mapping[str, Mapping[str, Any]]
) -> tuple[str, str]:
    """(registry service, how) for an old service, by image then by name; ('', '') when nothing fits."""
    repo = image_repo(image) if image else ""
    if repo:
        for svc, spec in known.items():
            if repo in {image_repo(i) for i in spec.get("images", [])}:
                return svc, f"image {image}"
    for svc, entry in registry.items():
        names = {_norm(svc), *(_norm(c) for c in entry.get("containers", []))}
        names |= {_norm(n) for n in (known.get(svc) or {}).get("names", [])}
        if _norm(name) in names:
            return svc, f"name {name}"
    return "", ""


def plan(
    compose: Any,
    registry: Mapping[str, Mapping[str, Any]],
    known: Mapping[str, Mapping[str, Any]],
    overrides: Mapping[str, Any] | None = None,
    compose_file: str = "/docker-compose.yml",
) -> dict[str, Any]:
    """The adoption plan for one compose file (see the module's docstring); `lines` is what is printed."""
    if not isinstance(compose, Mapping) or not isinstance(compose.get("services"), Mapping):
        raise AdoptError(f"{compose_file}: not a compose file (no services: mapping at its top)")
    overrides = overrides or {}
    project_dir = posixpath.dirname(compose_file) or "/"
    project = project_name(compose, project_dir)
    top_volumes = compose.get("volumes") or {}
    for old_name, target in overrides.items():
        if target not in (False, None, "") and target not in registry:
            raise AdoptError(f"adopt_overrides.{old_name}: {target!r} is not a service of the registry")

    old: dict[str, dict[str, Any]] = {}
    for name, svc in compose["services"].items():
        svc = svc or {}
        name = str(name)
        image = str(svc.get("image") or "")
        if name in overrides:
            target = overrides[name]
            svc_name, how = (str(target), "adopt_overrides") if target not in (False, None, "") else ("", "override")
        else:
            svc_name, how = _match(name, image, registry, known)
        old[name] = {
            "old": name,
            "image": image,
            "container": str(svc.get("container_name") or f"{project}-{name}-1"),
            "service": svc_name,
            "how": how,
            "env": _env(svc),
            "mounts": _mounts(svc, project_dir, project, top_volumes),
            "networks": sorted(svc["networks"]) if isinstance(svc.get("networks"), (list, Mapping)) else ["default"],
        }

    pg = next((o for o in old.values() if o["service"] == "postgres"), None)
    caddy = next((o for o in old.values() if o["service"] == "caddy"), None)
    pg_names = {pg["old"], pg["container"]} if pg else set()
    net_names = {
        n: str(((compose.get("networks") or {}).get(n) or {}).get("name") or f"{project}_{n}")
        for o in old.values()
        for n in o["networks"]
    }

    services: list[dict[str, Any]] = []
    not_adopted: list[dict[str, Any]] = []
    taken: dict[str, str] = {}
    for o in old.values():
        if o["service"] in PLATFORM:
            continue
        why = ""
        entry = registry.get(o["service"]) if o["service"] else None
        spec = known.get(o["service"]) or {}
        if not o["service"]:
            why = (
                "listed as not adopted (adopt_overrides)"
                if o["how"] == "override"
                else "no registry service matches its image or name"
            )
        elif entry is None:
            why = f"{o['service']} is not in the registry"
        elif not entry.get("enabled"):
            why = f"{o['service']}_enabled is false in the inventory (set it to adopt {o['old']})"
        elif o["service"] in taken:
            why = f"{o['service']} already adopts {taken[o['service']]}"
        if why or entry is None:
            db_name, db_host = _database(o["env"])
            uses_pg = bool(pg and db_name and (not db_host or db_host in pg_names))
            not_adopted.append(
                {
                    "old": o["old"],
                    "container": o["container"],
                    "image": o["image"],
                    "why": why,
                    "uses_postgres": uses_pg,
                }
            )
            continue
        taken[o["service"]] = o["old"]
        dbs = []
        db_name, db_host = _database(o["env"])
        wanted = spec.get("database") or {}
        if db_name and pg and (not db_host or db_host in pg_names):
            dbs.append(
                {
                    "old": db_name,
                    "new": str(wanted.get("name") or db_name),
                    "owner": str(wanted.get("owner") or db_name),
                }
            )
        data, skipped = [], []
        targets = spec.get("mounts") or {}
        for m in o["mounts"]:
            if m["target"] in targets:
                data.append({"from": m["source"], "to": str(targets[m["target"]]), "target": m["target"]})
            else:
                skipped.append(m["source"])
        upstream = str(entry.get("upstream") or "")
        services.append(
            {
                "old": o["old"],
                "container": o["container"],
                "image": o["image"],
                "how": o["how"],
                "service": o["service"],
                "role": o["service"],
                "containers": list(entry.get("containers") or []),
                "domains": list(entry.get("domains") or []),
                "port": upstream.rpartition(":")[2] if upstream else "",
                "networks": [net_names[n] for n in o["networks"]],
                "databases": dbs,
                "data": data,
                "not_copied": skipped,
                "db_elsewhere": db_host if db_name and db_host and db_host not in pg_names else "",
            }
        )

    pg_out: dict[str, Any] | None = None
    if pg:
        pg_out = {
            "old": pg["old"],
            "container": pg["container"],
            "superuser": pg["env"].get("POSTGRES_USER") or "postgres",
            "keep": [n["old"] for n in not_adopted if n["uses_postgres"]],
        }
    caddy_out: dict[str, Any] | None = None
    if caddy:
        data_dir = next((m["source"] for m in caddy["mounts"] if m["target"] == "/data"), "")
        caddy_out = {"old": caddy["old"], "container": caddy["container"], "data": data_dir}
    out: dict[str, Any] = {
        "compose_file": compose_file,
        "project": project,
        "project_dir": project_dir,
        "postgres": pg_out,
        "caddy": caddy_out,
        "services": services,
        "not_adopted": not_adopted,
    }
    out["lines"] = lines(out)
    return out


def lines(p: Mapping[str, Any]) -> list[str]:
    """The plan in words, one line per step, in the order adopt runs them."""
    out = [f"adopt plan for compose project {p['project']} ({p['compose_file']}); it is read and copied, never changed"]
    c = p["caddy"]
    if c:
        certs = (
            f"its storage {c['data']}/caddy (certificates, its CA, the ACME account) is copied into the new Caddy's"
            if c["data"]
            else "no /data volume: no certificate to carry"
        )
        out.append(
            f"caddy: {certs}; the old container {c['container']} stops and roles/caddy takes ports 80/443,"
            " routing each old service to its old container until it is adopted"
        )
    for s in p["services"]:
        steps = [f"{s['old']} -> {s['service']} (by {s['how']})"]
        for d in s["databases"]:
            steps.append(
                f"dump database {d['old']} from {p['postgres']['container']} into {d['new']} (owner {d['owner']})"
            )
        if s["db_elsewhere"]:
            steps.append(f"its database is on {s['db_elsewhere']}, not the old PostgreSQL: not dumped")
        for d in s["data"]:
            steps.append(f"copy {d['from']} -> {d['to']}")
        for path in s["not_copied"]:
            steps.append(
                f"NOT copied: {path} (roles/{s['role']} mounts no data directory there: copy it by hand, or mount it"
                " through the role's settings)"
            )
        steps.append(f"deploy roles/{s['role']} health-gated")
        steps.append(f"then stop the old container {s['container']}")
        out.append("; ".join(steps))
    for n in p["not_adopted"]:
        out.append(f"{n['old']} ({n['container']}): not adopted, keeps running as it is: {n['why']}")
    if p["postgres"]:
        dbs = ", ".join(d["old"] for s in p["services"] for d in s["databases"]) or "none"
        pg = p["postgres"]
        if pg["keep"]:
            out.append(
                f"postgres: the old container {pg['container']} keeps running:"
                f" {', '.join(pg['keep'])} (not adopted) use it"
            )
        else:
            out.append(
                f"postgres: the old container {pg['container']} stops once every service is adopted"
                f" (databases dumped: {dbs}); its data stays"
            )
    out.append("until adopt_confirm runs, adopt_rollback starts the old containers again exactly as they were")
    return out

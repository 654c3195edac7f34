#!/usr/bin/env python3
"""Reclaim Docker disk space without touching the homelab's services.

Run by playbooks/ops/prune_docker.yml on the host (Docker SDK for Python, which the docker role
installs); prints one JSON report. Config in PRUNE_CONFIG (JSON): homelab_root, images
(dangling | all), containers, build_cache, volumes (bools), check (bool: report only).

- Stopped containers (exited, created, dead) are removed unless they belong to a homelab compose
  project: a `homelab.service` label, a compose project whose working directory is under
  homelab_root, or a compose project named like a directory of homelab_root holding a compose file.
- Images: dangling ones (untagged, unused) by default; with images=all also every image no
  container (running or stopped) uses, except the images named in homelab compose files
  (compose.yml and compose.prev.yml, which rollbacks start without pulling).
- Build cache: every entry not in use. Volumes: only when asked (unused anonymous volumes, as
  `docker volume prune` does).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import docker
from docker.errors import APIError, NotFound

CFG = json.loads(os.environ.get("PRUNE_CONFIG", "{}"))
ROOT = str(CFG.get("homelab_root", "/opt/homelab")).rstrip("/")
CHECK = bool(CFG.get("check"))
IMAGE_LINE = re.compile(r"""^\s*image:\s*['"]?([^'"\s#]+)""", re.M)


def homelab_projects() -> tuple[set[str], set[str]]:
    """Compose project names under homelab_root and the images their compose files name."""
    projects, images = set(), set()
    root = Path(ROOT)
    if root.is_dir():
        for d in root.iterdir():
            files = [d / f for f in ("compose.yml", "compose.prev.yml", "compose.yaml", "docker-compose.yml")]
            present = [f for f in files if f.is_file()]
            if present:
                projects.add(d.name)
            for f in present:
                images.update(IMAGE_LINE.findall(f.read_text(errors="replace")))
    return projects, images


def is_homelab(labels: dict, projects: set[str]) -> bool:
    wd = labels.get("com.docker.compose.project.working_dir", "")
    return ("homelab.service" in labels or wd == ROOT or wd.startswith(ROOT + "/")
            or labels.get("com.docker.compose.project") in projects)


def main() -> int:
    client = docker.from_env(timeout=600)
    projects, protected_refs = homelab_projects()
    report: dict = {"check": CHECK, "images_mode": CFG.get("images", "dangling"), "containers": {}, "images": {},
                    "build_cache": {}, "volumes": {}}
    before = client.df()

    # Stopped containers that are not the homelab's.
    removed, kept, cbytes = [], [], 0
    if CFG.get("containers", True):
        sizes = {c["Id"]: c.get("SizeRw") or 0 for c in client.api.containers(all=True, size=True)}
        for c in client.containers.list(all=True, filters={"status": ["exited", "created", "dead"]}):
            name = c.name
            if is_homelab(c.labels or {}, projects):
                kept.append(name)
                continue
            size = sizes.get(c.id, 0)
            if not CHECK:
                c.remove()
            removed.append(name)
            cbytes += size
    report["containers"] = {"removed": removed, "kept_homelab": kept, "bytes": cbytes}

    # Images: what no container uses (after the removals above), never a homelab compose image.
    used = {c.attrs.get("Image") for c in client.containers.list(all=True)} if not CHECK else {
        c.attrs.get("Image") for c in client.containers.list(all=True) if c.name not in removed}
    imgs, ibytes, skipped = [], 0, []
    for img in client.images.list(all=False):
        tags = img.tags
        dangling = not tags
        if img.id in used:
            continue
        if not dangling and CFG.get("images", "dangling") != "all":
            continue
        refs = set(tags) | {t[:-7] for t in tags if t.endswith(":latest")}
        if refs & protected_refs:
            skipped.append(tags[0])
            continue
        try:
            if not CHECK:
                if dangling:
                    client.images.remove(img.id, noprune=False)
                else:
                    for t in tags:
                        client.images.remove(t, noprune=False)
            imgs.append(tags[0] if tags else img.short_id)
            ibytes += img.attrs.get("Size") or 0
        except (APIError, NotFound) as exc:  # in use by a container started meanwhile
            skipped.append(f"{tags[0] if tags else img.short_id} ({exc.explanation if hasattr(exc, 'explanation') else exc})")
    report["images"] = {"removed": imgs, "kept_homelab_compose": skipped, "bytes": ibytes}

    # Build cache not in use.
    if CFG.get("build_cache", True):
        if CHECK:
            cache = [b for b in before.get("BuildCache") or [] if not b.get("InUse")]
            report["build_cache"] = {"entries": len(cache), "bytes": sum(b.get("Size") or 0 for b in cache)}
        else:
            res = client.api.prune_builds()
            report["build_cache"] = {"entries": len(res.get("CachesDeleted") or []), "bytes": res.get("SpaceReclaimed") or 0}

    # Volumes only when asked.
    if CFG.get("volumes", False):
        if CHECK:
            # Upper bound: docker volume prune removes only the anonymous ones among these.
            vols = [v for v in before.get("Volumes") or [] if (v.get("UsageData") or {}).get("RefCount", 1) == 0]
            report["volumes"] = {"removed": [v["Name"] for v in vols], "bytes": sum((v.get("UsageData") or {}).get("Size", 0) for v in vols)}
        else:
            res = client.volumes.prune()
            report["volumes"] = {"removed": res.get("VolumesDeleted") or [], "bytes": res.get("SpaceReclaimed") or 0}

    if not CHECK:
        after = client.df()
        # Image sizes share layers: what the engine's layer store actually shrank by is the truth.
        report["images"]["bytes"] = max(0, (before.get("LayersSize") or 0) - (after.get("LayersSize") or 0))
    report["total_bytes"] = sum(report[k].get("bytes", 0) for k in ("containers", "images", "build_cache", "volumes"))
    report["changed"] = bool(report["containers"]["removed"] or report["images"]["removed"]
                             or report["build_cache"].get("entries") or report["volumes"].get("removed"))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # noqa: BLE001 - one readable line for the playbook
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        sys.exit(1)

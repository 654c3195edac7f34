#!/usr/bin/env python3
"""Read-only facts about one homelab host for the dashboard, printed as one JSON document.

Runs on the managed host (ansible.builtin.script, standard library only), every few minutes from
the facts cycle (webui/homelab/facts.py): CPU, memory, disk of the data root, load, uptime, and the
state, health, restart count, image and commit (label homelab.commit) of every container that
belongs to a service of the registry. It changes nothing and judges nothing; a section that fails reports its error instead
of taking the others down. Configuration comes as JSON in the HOMELAB_FACTS_CONFIG variable.
"""

import json
import os
import subprocess
import time

CONFIG = json.loads(os.environ.get("HOMELAB_FACTS_CONFIG") or "{}")
TIMEOUT = float(CONFIG.get("timeout", 15))


def cpu_times():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields), idle


def cpu():
    total0, idle0 = cpu_times()
    time.sleep(float(CONFIG.get("cpu_sample_seconds", 0.5)))
    total1, idle1 = cpu_times()
    busy = (total1 - total0) - (idle1 - idle0)
    pct = round(100.0 * busy / (total1 - total0), 1) if total1 > total0 else 0.0
    return {"cpu_percent": pct, "cpus": os.cpu_count() or 1}


def memory():
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            info[k] = int(v.split()[0]) * 1024
    total, avail = info.get("MemTotal", 0), info.get("MemAvailable", info.get("MemFree", 0))
    return {"mem_total": total, "mem_percent": round(100.0 * (total - avail) / total, 1) if total else None}


def disk():
    mount = next((m for m in CONFIG.get("mounts") or [] if os.path.isdir(m)), "/")
    st = os.statvfs(mount)
    free = st.f_bavail * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return {"disk_mount": mount, "disk_free": free, "disk_percent": round(100.0 * used / (used + free), 1) if used + free else None}


def load_uptime():
    with open("/proc/loadavg") as f:
        l1, l5, l15 = (float(x) for x in f.read().split()[:3])
    with open("/proc/uptime") as f:
        up = float(f.read().split()[0])
    return {"load1": l1, "load5": l5, "load15": l15, "uptime_seconds": round(up)}


def service_of(name, labels, services):
    """The registry service a container belongs to: its homelab.service label, its name in an
    entry's containers, or its compose project being an entry's project; "" when none."""
    if labels.get("homelab.service") in services:
        return labels["homelab.service"]
    project = labels.get("com.docker.compose.project", "")
    for svc, entry in services.items():
        if name in (entry.get("containers") or []):
            return svc
    for svc, entry in services.items():
        if project and project == entry.get("project"):
            return svc
    return ""


def containers():
    services = CONFIG.get("services") or {}
    try:
        p = subprocess.run(["docker", "ps", "-aq", "--no-trunc"], capture_output=True, text=True, timeout=TIMEOUT)
    except FileNotFoundError:
        return {"available": False, "error": "docker is not installed", "items": []}
    if p.returncode != 0:
        return {"available": False, "error": f"docker ps failed: {p.stderr.strip()[-300:]}", "items": []}
    ids = p.stdout.split()
    items = []
    if ids:
        p = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, timeout=TIMEOUT)
        if p.returncode != 0:
            return {"available": True, "error": f"docker inspect failed: {p.stderr.strip()[-300:]}", "items": []}
        for c in json.loads(p.stdout or "[]"):
            name = str(c.get("Name", "")).lstrip("/")
            cfg = c.get("Config") or {}
            labels = cfg.get("Labels") or {}
            svc = service_of(name, labels, services)
            if not svc:
                continue  # not a homelab service's container
            st = c.get("State") or {}
            items.append({
                "name": name, "service": svc, "state": st.get("Status", ""),
                "health": (st.get("Health") or {}).get("Status", ""),
                "restart_count": int(c.get("RestartCount") or 0), "image": str(cfg.get("Image", "")),
                "commit": str(labels.get("homelab.commit", "")),  # the delivery pipeline's label: its full sha
            })
    return {"available": True, "error": "", "items": sorted(items, key=lambda i: (i["service"], i["name"]))}


def main():
    host, errors = {}, []
    for fn in (cpu, memory, disk, load_uptime):
        try:
            host.update(fn())
        except Exception as exc:  # a failing section is reported, never fatal
            errors.append(f"{fn.__name__}: {type(exc).__name__}: {exc}"[:300])
    try:
        boxes = containers()
    except Exception as exc:
        boxes = {"available": False, "error": f"{type(exc).__name__}: {exc}"[:300], "items": []}
    print(json.dumps({"host": host, "errors": errors, "containers": boxes}))


if __name__ == "__main__":
    main()

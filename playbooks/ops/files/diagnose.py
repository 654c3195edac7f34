#!/usr/bin/env python3
"""Read-only facts about one homelab host, printed as one JSON document for Jarvis.

Runs on the managed host (ansible.builtin.script, standard library only). It never changes
anything and never decides anything: thresholds and verdicts live in Jarvis (jarvis/hostchecks.py),
so they are tested and configured in one place. Every section is collected on its own with a
timeout; a section that fails reports its error instead of taking the others down.
Configuration comes as JSON in the JARVIS_DIAG_CONFIG environment variable.
"""

import datetime as dt
import json
import os
import subprocess
import sys
import time

CONFIG = json.loads(os.environ.get("JARVIS_DIAG_CONFIG") or "{}")
TIMEOUT = float(CONFIG.get("timeout", 15))


def now_iso():
    return dt.datetime.now(dt.timezone.utc).isoformat()


def run(argv, timeout=TIMEOUT):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    return p.returncode, p.stdout, p.stderr.strip()[-500:]


def section(fn):
    try:
        return fn()
    except Exception as exc:  # a failing section is reported, never fatal
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}


def service_of(name, labels, services):
    label = (labels or {}).get("homelab.service")
    if label:
        return label
    for svc in services:
        base = svc.replace("_", "-")
        if name == base or name.startswith(base + "-"):
            return svc
    return ""


def containers():
    if not CONFIG.get("docker", True):
        return {"available": False, "error": "", "items": []}
    services = CONFIG.get("services") or []
    try:
        rc, out, err = run(["docker", "ps", "-aq", "--no-trunc"])
    except FileNotFoundError:
        return {"available": False, "error": "docker is not installed", "items": []}
    if rc != 0:
        return {"available": False, "error": f"docker ps failed: {err}", "items": []}
    ids = out.split()
    items = []
    if ids:
        rc, out, err = run(["docker", "inspect", *ids])
        if rc != 0:
            return {"available": True, "error": f"docker inspect failed: {err}", "items": []}
        for c in json.loads(out or "[]"):
            name = str(c.get("Name", "")).lstrip("/")
            labels = (c.get("Config") or {}).get("Labels") or {}
            svc = service_of(name, labels, services)
            if not svc:
                continue  # not a homelab service (lab helpers, build containers, ...)
            st = c.get("State") or {}
            health = st.get("Health") or {}
            log = health.get("Log") or []
            items.append({
                "name": name, "service": svc, "state": st.get("Status", ""), "running": bool(st.get("Running")),
                "restarting": bool(st.get("Restarting")), "exit_code": st.get("ExitCode"),
                "health": health.get("Status", ""), "health_output": (log[-1].get("Output", "") if log else "")[-300:],
                "failing_streak": health.get("FailingStreak", 0), "restart_count": c.get("RestartCount", 0),
                "started_at": st.get("StartedAt", ""), "finished_at": st.get("FinishedAt", ""),
                "error": st.get("Error", ""), "project": labels.get("com.docker.compose.project", ""),
                "commit": labels.get("homelab.commit", ""),
            })
    return {"available": True, "error": "", "items": items}


def disk():
    out = []
    for mount in CONFIG.get("mounts") or ["/"]:
        try:
            st = os.statvfs(mount)
        except OSError as exc:
            out.append({"mount": mount, "error": str(exc)})
            continue
        total = st.f_blocks * st.f_frsize
        free = st.f_bavail * st.f_frsize
        used = total - st.f_bfree * st.f_frsize
        pct = round(100.0 * used / (used + free), 1) if used + free else 0.0
        inodes = round(100.0 * (st.f_files - st.f_ffree) / st.f_files, 1) if st.f_files else 0.0
        out.append({"mount": mount, "total": total, "free": free, "percent": pct, "inodes_percent": inodes})
    return out


def memory():
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            info[k] = int(v.split()[0]) * 1024
    total, avail = info.get("MemTotal", 0), info.get("MemAvailable", info.get("MemFree", 0))
    return {"total": total, "available": avail, "percent": round(100.0 * (total - avail) / total, 1) if total else 0.0}


def load():
    with open("/proc/loadavg") as f:
        l1, l5, l15 = (float(x) for x in f.read().split()[:3])
    return {"load1": l1, "load5": l5, "load15": l15, "cpus": os.cpu_count() or 1}


def git_running():
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "git":
                        return True
            except OSError:
                continue
    return False


def lock_files(repo):
    """*.lock files under the repository's .git (object store excluded), with their age."""
    gitdir = os.path.join(repo, ".git")
    found = []
    for base, dirs, files in os.walk(gitdir):
        if base == gitdir and "objects" in dirs:
            dirs.remove("objects")
        for name in files:
            if name.endswith(".lock"):
                path = os.path.join(base, name)
                try:
                    age = time.time() - os.stat(path).st_mtime
                except OSError:
                    continue
                found.append({"path": path, "age_seconds": round(age, 1)})
    return found


def git_sync():
    path = CONFIG.get("git_status") or "/var/lib/homelab/git-sync/status.json"
    if not os.path.exists(path):
        return {"present": False, "path": path}
    with open(path) as f:
        data = json.load(f)
    locks = []
    for name, repo in sorted((data.get("repos") or {}).items()):
        if isinstance(repo, dict) and repo.get("path"):
            for lock in lock_files(repo["path"]):
                locks.append({"repo": name, **lock})
    return {"present": True, "path": path, "age_seconds": round(time.time() - os.stat(path).st_mtime, 1),
            "data": data, "locks": locks, "git_running": git_running()}


def ddclient():
    path = CONFIG.get("ddclient_cache") or "/var/cache/ddclient/ddclient.cache"
    if not os.path.exists(path):
        return {"present": False, "path": path}
    entries = {}
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields, _, host = line.rpartition(" ")
            values = dict(kv.split("=", 1) for kv in fields.split(",") if "=" in kv)
            entries[host] = {k: values[k] for k in ("status", "status-ipv4", "status-ipv6", "ip", "ipv4", "mtime", "atime", "wtime")
                             if k in values}
    return {"present": True, "path": path, "age_seconds": round(time.time() - os.stat(path).st_mtime, 1), "entries": entries}


def backup():
    path = CONFIG.get("backup_status") or "/var/lib/homelab/backup/status.json"
    if not os.path.exists(path):
        return {"present": False, "path": path}
    with open(path) as f:
        data = json.load(f)
    return {"present": True, "path": path, "data": data}


def releases():
    """The delivery pipeline's release records, one <service>.json each; no directory: none yet."""
    path = CONFIG.get("releases_dir") or "/var/lib/homelab/releases"
    if not os.path.isdir(path):
        return {}
    out = {}
    for name in sorted(os.listdir(path)):
        if name.startswith(".") or not name.endswith(".json"):
            continue  # the pipeline's temporary files while it writes one
        try:
            with open(os.path.join(path, name)) as f:
                record = json.load(f)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            record = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        out[name[:-5]] = record
    return out


def postgres():
    name = CONFIG.get("postgres_container") or "postgres"
    if not CONFIG.get("docker", True):
        return {"checked": False}
    try:
        rc, out, err = run(["docker", "inspect", "-f", "{{.State.Running}}", name])
    except FileNotFoundError:
        return {"checked": False}
    if rc != 0:
        return {"checked": False}  # no postgres container on this host
    if out.strip() != "true":
        return {"checked": True, "reachable": False, "error": f"the {name} container is not running"}
    try:
        rc, out, err = run(["docker", "exec", name, "pg_isready", "-q", "-t", "5"], timeout=10)
    except subprocess.TimeoutExpired:
        return {"checked": True, "reachable": False, "error": "pg_isready timed out"}
    return {"checked": True, "reachable": rc == 0, "error": "" if rc == 0 else f"pg_isready exit {rc} {err}".strip()}


def main():
    started = time.monotonic()
    report = {"collected_at": now_iso()}
    for key, fn in (("containers", containers), ("disk", disk), ("memory", memory), ("load", load),
                    ("git_sync", git_sync), ("ddclient", ddclient), ("backup", backup), ("postgres", postgres),
                    ("releases", releases)):
        report[key] = section(fn)
    report["seconds"] = round(time.monotonic() - started, 3)
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()

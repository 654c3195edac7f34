"""Stale git lock files of the synced repositories: find them, and remove them when asked.

Run by playbooks/ops/clear_git_locks.yml with JSON in GIT_LOCKS_CONFIG:
{"repos": [{"name", "path"}], "max_age_seconds": int, "remove": bool}. A lock is stale when it is
older than max_age_seconds and no git process works on that repository (its working directory or
command line is inside it); a younger lock, or one of a busy repository, is kept. The object store
is not searched (git keeps no lock files there). Prints JSON: per repository its locks and what
happened to each; removed/kept lists for the report.
"""

from __future__ import annotations

import json
import os
import sys
import time


def git_processes() -> list[dict]:
    procs = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm", encoding="utf-8") as f:
                comm = f.read().strip()
            if comm != "git" and not comm.startswith("git-"):
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        procs.append({"pid": int(pid), "comm": comm, "cwd": cwd, "argv": argv})
    return procs


def inside(path: str, repo: str) -> bool:
    path, repo = os.path.realpath(path), os.path.realpath(repo)
    return path == repo or path.startswith(repo.rstrip("/") + "/")


def busy_pids(repo: str, procs: list[dict]) -> list[int]:
    out = []
    for p in procs:
        args = [a.split("=", 1)[-1] for a in p["argv"][1:]]
        if inside(p["cwd"], repo) or any(a.startswith("/") and inside(a, repo) for a in args):
            out.append(p["pid"])
    return out


def lock_files(gitdir: str) -> list[str]:
    found = []
    for base, dirs, files in os.walk(gitdir):
        if base == gitdir and "objects" in dirs:
            dirs.remove("objects")
        for name in files:
            path = os.path.join(base, name)
            if name.endswith(".lock") and os.path.isfile(path) and not os.path.islink(path):
                found.append(path)
    return sorted(found)


def main() -> None:
    cfg = json.loads(os.environ["GIT_LOCKS_CONFIG"])
    max_age, remove = int(cfg["max_age_seconds"]), bool(cfg["remove"])
    procs = git_processes()
    report = {"repos": {}, "removed": [], "kept": [], "remove": remove}
    for repo in cfg["repos"]:
        name, path = repo["name"], repo["path"]
        gitdir = os.path.join(path, ".git")
        entry = {"path": path, "locks": [], "busy_pids": []}
        report["repos"][name] = entry
        if not os.path.isdir(gitdir):
            entry["note"] = "no checkout here (yet)"
            continue
        entry["busy_pids"] = busy_pids(path, procs)
        for lock in lock_files(gitdir):
            try:
                age = time.time() - os.lstat(lock).st_mtime
            except FileNotFoundError:
                continue  # its git process finished meanwhile
            item = {"repo": name, "path": lock, "age_minutes": round(age / 60, 1)}
            if age < max_age:
                item["action"] = "kept: younger than the maximum age"
            elif entry["busy_pids"]:
                item["action"] = f"kept: git is running on this repository (pid {', '.join(map(str, entry['busy_pids']))})"
            elif not remove:
                item["action"] = "would remove (check mode)"
            else:
                try:
                    os.unlink(lock)
                    item["action"] = "removed"
                except FileNotFoundError:
                    item["action"] = "gone already"
            entry["locks"].append(item)
            stale = item["action"] in ("removed", "would remove (check mode)")
            (report["removed"] if stale else report["kept"]).append(item)
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""git-sync: keep checkouts of the user's project repositories up to date, fast-forward only.

Installed by the Ansible role git_sync and run by git-sync.service (started by git-sync.timer).
Why it is shaped this way:
- one run at a time: an exclusive flock on the lock file; a second run exits 75 at once, so a
  slow fetch never piles up runs behind it (the unit treats 75 as success);
- a failing repository is retried after base * 2^(failures-1) seconds, capped, so a dead remote
  is not hammered every five minutes (--force ignores the backoff for a manual run);
- it never merges, rebases, resets or discards anything: a checkout that has diverged from its
  remote is reported in the status file and left for a person;
- the status file (JSON, written atomically) is what diagnostics (Jarvis) read. Per repository:
  path, last_attempt, last_success, last_error, consecutive_failures, next_attempt_after, head.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Any

EX_LOCKED = 75
CREDENTIALS_RE = re.compile(r"(\w+://)[^/@\s]+@")  # https://user:token@host -> https://***@host


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def iso(t: dt.datetime) -> str:
    return t.isoformat()


def parse_time(raw: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(raw)) if raw else None
    except ValueError:
        return None


class GitError(Exception):
    """A git command failed; the message is what a person needs to act on it."""


def scrub(text: str) -> str:
    return CREDENTIALS_RE.sub(r"\1***@", text)


def git(args: list[str], cwd: str | None, env: dict[str, str], timeout: int) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} timed out after {timeout}s") from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise GitError(scrub(f"git {args[0]} failed: " + " | ".join(detail[-4:])))
    return proc.stdout.strip()


def git_env(repo: dict[str, Any], cfg: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "USER")}
    env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    env.setdefault("HOME", cfg.get("home", "/root"))
    env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password on a TTY that is not there
    env["LC_ALL"] = "C"                # messages the status file and Jarvis can match
    ssh = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={cfg.get('connect_timeout', 20)}"]
    if cfg.get("known_hosts"):
        ssh += ["-o", f"UserKnownHostsFile={cfg['known_hosts']}", "-o", "StrictHostKeyChecking=yes"]
    else:  # trust on first use, remembered in the state directory (ssh ignores $HOME)
        ssh += ["-o", f"UserKnownHostsFile={cfg.get('tofu_known_hosts', '/dev/null')}",
                "-o", "StrictHostKeyChecking=accept-new"]
    if repo.get("ssh_key_file"):
        ssh += ["-i", repo["ssh_key_file"], "-o", "IdentitiesOnly=yes"]
    env["GIT_SSH_COMMAND"] = " ".join(ssh)
    return env


def sync_one(repo: dict[str, Any], cfg: dict[str, Any]) -> tuple[str, str]:
    """Clone or fast-forward one repository; returns (head, note). Raises GitError."""
    dest, branch, url = repo["dest"], repo["branch"], repo["url"]
    env = git_env(repo, cfg)
    timeout = int(cfg.get("git_timeout", 300))
    if not os.path.exists(dest) or (os.path.isdir(dest) and not os.listdir(dest)):
        os.makedirs(os.path.dirname(dest.rstrip("/")) or "/", exist_ok=True)
        git(["clone", "--branch", branch, "--", url, dest], None, env, timeout)
        return git(["rev-parse", "HEAD"], dest, env, 30), "cloned"
    if not os.path.isdir(os.path.join(dest, ".git")):
        raise GitError(f"{dest} exists and is not a git checkout; not touching it")
    current = git(["config", "--get", "remote.origin.url"], dest, env, 30) if _has_origin(dest, env) else ""
    if current != url:
        if current:
            git(["remote", "set-url", "origin", url], dest, env, 30)
        else:
            git(["remote", "add", "origin", url], dest, env, 30)
    checked_out = git(["symbolic-ref", "--quiet", "--short", "HEAD"], dest, env, 30) if _on_branch(dest, env) else ""
    if checked_out != branch:
        raise GitError(f"{dest} has {checked_out or 'a detached HEAD'} checked out, not {branch}; "
                       "not switching branches for you")
    git(["fetch", "--prune", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}"], dest, env, timeout)
    remote = f"refs/remotes/origin/{branch}"
    head = git(["rev-parse", "HEAD"], dest, env, 30)
    theirs = git(["rev-parse", remote], dest, env, 30)
    if head == theirs:
        return head, "up to date"
    if _is_ancestor(head, theirs, dest, env):
        git(["merge", "--ff-only", "--quiet", remote], dest, env, timeout)
        return git(["rev-parse", "HEAD"], dest, env, 30), "fast-forwarded"
    ahead, behind = git(["rev-list", "--left-right", "--count", f"HEAD...{remote}"], dest, env, 30).split()
    if int(behind) == 0:
        return head, f"{ahead} local commit(s) not on the remote; nothing to pull"
    raise GitError(f"diverged: {branch} has {ahead} local and {behind} remote commit(s) the other side "
                   "lacks; not possible to fast-forward. Nothing was merged or reset: resolve it by hand")


def _has_origin(dest: str, env: dict[str, str]) -> bool:
    return subprocess.run(["git", "config", "--get", "remote.origin.url"], cwd=dest, env=env,
                          capture_output=True, check=False).returncode == 0


def _on_branch(dest: str, env: dict[str, str]) -> bool:
    return subprocess.run(["git", "symbolic-ref", "--quiet", "HEAD"], cwd=dest, env=env,
                          capture_output=True, check=False).returncode == 0


def _is_ancestor(a: str, b: str, dest: str, env: dict[str, str]) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", a, b], cwd=dest, env=env,
                          capture_output=True, check=False).returncode == 0


def load_status(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_status(path: str, status: dict[str, Any]) -> None:
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".status.", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(status, f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def run(cfg: dict[str, Any], force: bool, only: str | None) -> int:
    status_path = cfg["status_file"]
    old = load_status(status_path).get("repos") or {}
    base, cap = int(cfg.get("backoff_base_seconds", 60)), int(cfg.get("backoff_max_seconds", 3600))
    repos: dict[str, Any] = {}
    failed = 0
    for repo in cfg.get("repositories", []):
        name = repo["name"]
        entry = {"path": repo["dest"], "last_attempt": None, "last_success": None, "last_error": None,
                 "consecutive_failures": 0, "next_attempt_after": None, "head": None}
        previous = old.get(name) if isinstance(old.get(name), dict) else {}
        entry.update({k: previous[k] for k in entry if k in previous and k != "path"})
        entry["branch"], entry["url"] = repo["branch"], scrub(repo["url"])
        repos[name] = entry
        now = utcnow()
        wait_until = parse_time(entry["next_attempt_after"])
        if only and name != only:
            continue
        if not force and wait_until and now < wait_until:
            print(f"{name}: backing off until {entry['next_attempt_after']} "
                  f"after {entry['consecutive_failures']} failure(s)")
            continue
        entry["last_attempt"] = iso(now)
        try:
            head, note = sync_one(repo, cfg)
        except (GitError, OSError) as exc:
            failed += 1
            entry["consecutive_failures"] = int(entry["consecutive_failures"] or 0) + 1
            delay = min(base * 2 ** (entry["consecutive_failures"] - 1), cap)
            entry["next_attempt_after"] = iso(now + dt.timedelta(seconds=delay))
            entry["last_error"] = str(exc)[:2000]
            try:
                entry["head"] = git(["rev-parse", "HEAD"], repo["dest"], git_env(repo, cfg), 30)
            except (GitError, OSError):
                pass
            print(f"{name}: FAILED ({entry['consecutive_failures']} in a row, next attempt after "
                  f"{entry['next_attempt_after']}): {entry['last_error']}", file=sys.stderr)
            continue
        entry.update(last_success=iso(utcnow()), last_error=None, consecutive_failures=0,
                     next_attempt_after=None, head=head)
        print(f"{name}: {note} at {head[:12]}")
    write_status(status_path, {"updated_at": iso(utcnow()), "repos": repos})
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="/etc/homelab/git-sync/config.json")
    parser.add_argument("--force", action="store_true", help="ignore the backoff of failing repositories")
    parser.add_argument("--repo", help="sync only this repository (by name)")
    args = parser.parse_args()
    with open(args.config, encoding="utf-8") as f:
        cfg = json.load(f)
    names = [r["name"] for r in cfg.get("repositories", [])]
    if args.repo and args.repo not in names:
        print(f"unknown repository {args.repo!r}; configured: {', '.join(names) or 'none'}", file=sys.stderr)
        return 2
    lock = open(cfg["lock_file"], "a", encoding="utf-8")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another git-sync run holds the lock; not starting a second one", file=sys.stderr)
        return EX_LOCKED
    os.umask(0o022)
    return run(cfg, args.force, args.repo)


if __name__ == "__main__":
    sys.exit(main())

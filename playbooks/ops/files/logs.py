#!/usr/bin/env python3
"""The last lines of one service's containers, secrets masked on the host, as one JSON document.

Runs on the managed host (ansible.builtin.script, standard library only) for the read-only `logs`
catalog entry. Its containers are those of the registry entry (homelab.service label, the
entry's container names, or its compose project), read with `docker logs --tail N [--since S]
--timestamps`. Before anything leaves the host, every value of a container environment variable
whose name says it is a secret (the same name pattern as webui/homelab/masking.py SECRET_KEY_RE:
that is how a service's vault values reach it, through its env file) and every `password=...`
style assignment is replaced by ********; the job engine masks the result again when it stores it.
Configuration comes as JSON in the HOMELAB_LOGS_CONFIG variable.
"""

import json
import os
import re
import subprocess

CONFIG = json.loads(os.environ.get("HOMELAB_LOGS_CONFIG") or "{}")
TIMEOUT = float(CONFIG.get("timeout", 30))
MASK = "********"
# Kept equal to homelab.masking.SECRET_KEY_RE and _INLINE_RE (tests/webui/test_service_page.py compares them).
SECRET_KEY_RE = re.compile(r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|credential|vault)", re.I)
INLINE_RE = re.compile(
    r"(?P<k>\b[\w.-]*(?:password|passwd|secret|token|api[_-]?key)[\w.-]*\b\s*[=:]\s*)(?P<q>['\"]?)(?P<v>[^\s'\",}\x1b]+)",
    re.I,
)
MIN_SECRET = 4  # shorter values would mask ordinary text
MAX_LINE = 2000


def docker(*argv):
    return subprocess.run(["docker", *argv], capture_output=True, text=True, timeout=TIMEOUT, errors="replace")


def containers(service, entry):
    p = docker("ps", "-aq", "--no-trunc")
    if p.returncode != 0:
        raise RuntimeError(f"docker ps failed: {p.stderr.strip()[-300:]}")
    ids = p.stdout.split()
    if not ids:
        return []
    p = docker("inspect", *ids)
    if p.returncode != 0:
        raise RuntimeError(f"docker inspect failed: {p.stderr.strip()[-300:]}")
    out = []
    for c in json.loads(p.stdout or "[]"):
        name = str(c.get("Name", "")).lstrip("/")
        cfg = c.get("Config") or {}
        labels = cfg.get("Labels") or {}
        project = labels.get("com.docker.compose.project", "")
        if (
            labels.get("homelab.service") == service
            or name in (entry.get("containers") or [])
            or (project and project == entry.get("project"))
        ):
            out.append((name, c))
    return sorted(out, key=lambda nc: nc[0])


def secret_values(c):
    values = set()
    for item in (c.get("Config") or {}).get("Env") or []:
        k, _, v = item.partition("=")
        if SECRET_KEY_RE.search(k) and len(v) >= MIN_SECRET:
            values.add(v)
    return sorted(values, key=len, reverse=True)


def masked(line, secrets):
    for s in secrets:
        line = line.replace(s, MASK)
    return INLINE_RE.sub(lambda m: f"{m.group('k')}{m.group('q')}{MASK}", line)


def main():
    service = str(CONFIG.get("service", ""))
    entry = CONFIG.get("entry") or {}
    lines = max(1, min(int(CONFIG.get("lines", 200)), 2000))
    since = str(CONFIG.get("since") or "")
    result = {"service": service, "lines": lines, "since": since, "containers": [], "error": ""}
    try:
        found = containers(service, entry)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        result["error"] = str(exc)[:300]
        print(json.dumps(result))
        return
    for name, c in found:
        argv = ["logs", "--tail", str(lines), "--timestamps"] + (["--since", since] if since else []) + [name]
        p = docker(*argv)
        secrets = secret_values(c)
        text = p.stdout + p.stderr  # docker logs writes the container's stderr to its own stderr
        got = [masked(ln[:MAX_LINE], secrets) for ln in text.splitlines()]
        got.sort(key=lambda ln: ln[:35])  # stdout and stderr interleaved again by their timestamps
        result["containers"].append({
            "name": name,
            "state": (c.get("State") or {}).get("Status", ""),
            "lines": got[-lines:],
            "error": "" if p.returncode == 0 else masked(p.stderr.strip()[-300:], secrets),
        })
    if not found:
        result["error"] = f"no container of {service} on this host"
    print(json.dumps(result))


if __name__ == "__main__":
    main()

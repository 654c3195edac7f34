"""Host-side checks: the facts the read-only `diagnose` playbook collected, judged as findings.

The playbook only reports (playbooks/ops/files/diagnose.py); the thresholds and the verdicts are
here, so they are configured in the rules file and tested without a host.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Mapping

from jarvis.config import Checks
from jarvis.findings import Finding

DIVERGED_RE = re.compile(r"diverg|non-fast-forward|not possible to fast-forward|have diverged|refusing to merge", re.I)
DDCLIENT_AUTH = {"badauth", "badagent", "!donator", "nochg-badauth", "unauthorized", "auth"}
DDCLIENT_OK = {"good", "nochg", "noconnect-ok", ""}
COMMIT_RE = re.compile(r"^[0-9a-f]{7,40}$")  # what the catalog's `deliver` accepts as a commit
URL_USER_RE = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@\s]*@", re.I)  # git sync writes https://***@host/...
FAILED_OUTCOMES = ("failed", "rolled_back")


def _age_hours(iso: Any, now: dt.datetime) -> float | None:
    if not iso:
        return None
    try:
        t = dt.datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return (now - t).total_seconds() / 3600


def _same_commit(a: Any, b: Any) -> bool:
    """Two commit ids name the same commit (either may be abbreviated to 7 or more hex digits)."""
    a, b = str(a or "").lower(), str(b or "").lower()
    return bool(a and b and len(min(a, b, key=len)) >= 7 and (a.startswith(b) or b.startswith(a)))


def _last(record: dict[str, Any]) -> dict[str, Any]:
    """A release record's last attempt ({} when it records none)."""
    last = record.get("last")
    return last if isinstance(last, dict) else {}


def _repo_url(url: Any) -> str:
    """A git URL as compared between the registry's `source` and git sync's status file: without
    user or token (git sync scrubs them), a trailing slash or `.git`, and case."""
    u = URL_USER_RE.sub(r"\1", str(url or "").strip()).rstrip("/")
    return (u[:-4] if u.endswith(".git") else u).lower()


def unreachable(host: str, reason: str) -> Finding:
    return Finding(
        "host.unreachable",
        "critical",
        f"{host}/host",
        f"{host}: diagnosis did not run ({reason[:200]})",
        {"reason": reason[:1000]},
        host=host,
        scope=f"reach:{host}",
    )


def judge(
    host: str,
    facts: dict[str, Any],
    checks: Checks,
    now: dt.datetime | None = None,
    services: Mapping[str, Any] | None = None,
) -> list[Finding]:
    """Findings for one host's facts (now: naive UTC); services: this host's service registry
    (homelab.registry.Service by name), which says what follows a git branch (deploy.behind)."""
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    scope = f"host:{host}"
    out: list[Finding] = []

    def add(code: str, severity: str, what: str, summary: str, evidence: dict[str, Any], **params: str) -> None:
        out.append(
            Finding(
                code,
                severity,
                f"{host}/{what}",
                summary,
                evidence,
                host=host,
                params={"host": host, **params},
                scope=scope,
            )
        )

    th = checks.threshold
    releases = facts.get("releases") or {}
    if isinstance(releases.get("error"), str):  # the section itself failed (an unreadable directory)
        add("check.error", "warning", "releases", f"release records unreadable: {releases['error']}", releases)
        releases = {}
    records: dict[str, dict[str, Any]] = {}
    for svc, rec in sorted(releases.items()):
        if not isinstance(rec, dict):
            continue
        if rec.get("error"):
            add("check.error", "warning", f"release:{svc}", f"release record of {svc} unreadable: {rec['error']}", rec)
        else:
            records[svc] = rec
    watch = float(th("deploy_watch_minutes"))
    after_deploy: dict[str, list[dict[str, Any]]] = {}  # service -> its failing containers, just after a deploy

    def just_deployed(svc: str) -> bool:
        """Deployed within the watch window, by a release that went live: after the pipeline's own
        rollback a second rollback would go forward to the release that just failed."""
        rec = records.get(svc) or {}
        if _last(rec).get("outcome") == "rolled_back":
            return False
        age = _age_hours(rec.get("deployed_at"), now)
        return age is not None and age * 60 <= watch

    c = facts.get("containers") or {}
    if c.get("error") and not c.get("items"):
        add("docker.unavailable", "critical", "docker", f"{host}: {c['error'][:200]}", {"error": c["error"]})
    for item in c.get("items") or []:
        svc, name = item.get("service", ""), item.get("name", "")
        ev = {
            k: item.get(k)
            for k in (
                "name",
                "state",
                "health",
                "exit_code",
                "restart_count",
                "started_at",
                "finished_at",
                "health_output",
                "error",
                "commit",
            )
        }
        started = _age_hours(item.get("started_at"), now)
        looping = int(item.get("restart_count") or 0) >= th("restart_loop_count") and (
            started is not None and started < 0.25
        )
        failing = bool(
            item.get("restarting")
            or item.get("state") == "restarting"
            or not item.get("running")
            or item.get("health") == "unhealthy"
            or looping  # up between its crashes: a release that dies after each start
        )
        if failing and svc and just_deployed(svc):
            after_deploy.setdefault(svc, []).append(ev)  # a rollback, not a restart: reported once per service
        elif item.get("restarting") or item.get("state") == "restarting":
            add(
                "container.restart_loop",
                "critical",
                f"container:{name}",
                f"{name} keeps restarting ({item.get('restart_count', 0)} restarts)",
                ev,
                service=svc,
                container=name,
            )
        elif not item.get("running"):
            add(
                "container.down",
                "critical",
                f"container:{name}",
                f"{name} is {item.get('state') or 'not running'} (exit code {item.get('exit_code')})",
                ev,
                service=svc,
                container=name,
            )
        elif item.get("health") == "unhealthy":
            add(
                "container.unhealthy",
                "critical",
                f"container:{name}",
                f"{name} is unhealthy: {str(item.get('health_output', '')).strip()[:160]}",
                ev,
                service=svc,
                container=name,
            )
        elif looping and started is not None:
            add(
                "container.restart_loop",
                "warning",
                f"container:{name}",
                f"{name} restarted {item.get('restart_count')} times, last {started * 60:.0f} min ago",
                ev,
                service=svc,
                container=name,
            )
    for svc, evs in sorted(after_deploy.items()):
        rec = records[svc]
        commit, previous = str(rec.get("commit") or ""), str(rec.get("previous_commit") or "")
        age = (_age_hours(rec.get("deployed_at"), now) or 0.0) * 60
        states = ", ".join(
            f"{e['name']} {'unhealthy' if e.get('health') == 'unhealthy' else e.get('state')}" for e in evs
        )
        back = f"the previous release is {previous[:12]}" if previous else "no previous release is recorded"
        add(
            "deploy.unhealthy",
            "critical",
            f"deploy:{svc}",
            f"{svc} failed {age:.0f} min after {commit[:12] or 'a release'} was deployed ({states}); {back}",
            {"containers": evs, "commit": commit, "previous_commit": previous, "deployed_at": rec.get("deployed_at")},
            service=svc,
            commit=commit,
            previous_commit=previous,
        )
    for svc, rec in sorted(records.items()):
        last = _last(rec)
        if last.get("outcome") not in FAILED_OUTCOMES:
            continue
        tried, stage = str(last.get("commit") or ""), str(last.get("stage") or "?")
        how = "was rolled back" if last["outcome"] == "rolled_back" else "failed"
        add(
            "deploy.failed",
            "warning",
            f"deploy:{svc}@{tried}",
            f"{svc}: delivering {tried[:12] or '?'} {how} at {stage}: {str(last.get('message') or '')[:160]}; "
            f"{str(rec.get('commit') or '')[:12] or 'no recorded release'} serves",
            {"last": last, "commit": rec.get("commit"), "deployed_at": rec.get("deployed_at")},
            service=svc,
            commit=tried,
            outcome=str(last["outcome"]),
            stage=stage,
        )

    for d in facts.get("disk") or []:
        if d.get("error"):
            add(
                "check.error",
                "warning",
                f"disk:{d.get('mount')}",
                f"disk check of {d.get('mount')} failed: {d['error']}",
                d,
            )
            continue
        pct = float(d.get("percent") or 0)
        if pct >= th("disk_critical_percent") or pct >= th("disk_warn_percent"):
            sev = "critical" if pct >= th("disk_critical_percent") else "warning"
            add("disk.full", sev, f"disk:{d['mount']}", f"{d['mount']} is {pct:.0f}% full", d, mount=str(d["mount"]))
    mem = facts.get("memory") or {}
    if mem.get("percent") is not None and float(mem["percent"]) >= th("memory_warn_percent"):
        add("memory.high", "warning", "memory", f"memory {float(mem['percent']):.0f}% used", mem)
    load = facts.get("load") or {}
    if load.get("load5") is not None and float(load["load5"]) / max(int(load.get("cpus") or 1), 1) >= th(
        "load_per_cpu_warn"
    ):
        add("load.high", "warning", "load", f"load {load['load5']} on {load.get('cpus')} CPU(s)", load)

    g = facts.get("git_sync") or {}
    if g.get("error"):
        add("check.error", "warning", "git-sync", f"git sync status unreadable: {g['error']}", g)
    elif g.get("present"):
        if g.get("age_seconds") is not None and g["age_seconds"] / 60 > th("git_status_max_minutes"):
            add(
                "gitsync.status_stale",
                "warning",
                "git-sync",
                f"git sync has not reported for {g['age_seconds'] / 60:.0f} min",
                {"path": g.get("path"), "age_seconds": g["age_seconds"]},
            )
        for name, repo in sorted(((g.get("data") or {}).get("repos") or {}).items()):
            if not isinstance(repo, dict):
                continue
            ev = {
                k: repo.get(k)
                for k in ("path", "last_attempt", "last_success", "last_error", "consecutive_failures", "head")
            }
            err = str(repo.get("last_error") or "")
            fails = int(repo.get("consecutive_failures") or 0)
            if err and DIVERGED_RE.search(err):
                add(
                    "gitsync.diverged",
                    "warning",
                    f"repo:{name}",
                    f"{name} diverged from its remote: {err[:160]}",
                    ev,
                    repo=name,
                )
            since = _age_hours(repo.get("last_success"), now)
            if fails >= th("git_failures") or (since is not None and since > th("git_success_max_hours") and fails):
                add(
                    "gitsync.failing",
                    "warning",
                    f"repo:{name}",
                    f"{name}: {fails} failed sync(s) in a row; {err[:120] or 'no error recorded'}",
                    ev,
                    repo=name,
                )
        repos = [r for r in ((g.get("data") or {}).get("repos") or {}).values() if isinstance(r, dict)]
        labels = {
            i.get("service"): i.get("commit") for i in (c.get("items") or []) if i.get("service") and i.get("commit")
        }
        for name, entry in sorted((services or {}).items()):
            if not (getattr(entry, "enabled", False) and getattr(entry, "auto_deploy", False) and entry.source):
                continue
            want = (_repo_url(entry.source), getattr(entry, "branch", ""))
            # The source is the repository's URL, or (production) the checkout git sync keeps on the host.
            repo = next(
                (
                    r
                    for r in repos
                    if want[1]
                    and r.get("branch") == want[1]
                    and want[0] in (_repo_url(r.get("url")), _repo_url(r.get("path")))
                ),
                None,
            )
            head = str((repo or {}).get("head") or "").lower()
            if repo is None or not COMMIT_RE.match(head):
                continue  # git sync does not follow this source and branch, or has never checked it out
            rec = records.get(name) or {}
            serving = str(rec.get("commit") or labels.get(name) or "")
            last = _last(rec)
            if _same_commit(serving, head) or (
                _same_commit(last.get("commit"), head) and last.get("outcome") != "live"
            ):
                continue  # up to date, or this very commit already failed (deploy.failed says so)
            add(
                "deploy.behind",
                "info",
                f"deploy:{name}@{head}",
                f"{name} serves {serving[:12] or 'an unknown commit'}; git sync has {head[:12]} on {want[1]}",
                {"url": repo.get("url"), "branch": want[1], "head": head, "serving": serving, "last": last},
                service=name,
                commit=head,
            )
        by_repo: dict[str, list[dict[str, Any]]] = {}
        for lock in g.get("locks") or []:
            if float(lock.get("age_seconds") or 0) >= th("git_lock_minutes") * 60:
                by_repo.setdefault(lock["repo"], []).append(lock)
        for name, locks in sorted(by_repo.items()):
            if g.get("git_running"):
                continue  # a git process may own the lock: not stale
            oldest = max(float(x["age_seconds"]) for x in locks)
            add(
                "gitsync.stale_lock",
                "warning",
                f"repo:{name}",
                f"{name}: {len(locks)} lock file(s), the oldest {oldest / 60:.0f} min old, no git process running",
                {"locks": locks},
                repo=name,
                max_age_minutes=str(th("git_lock_minutes")),
            )

    dd = facts.get("ddclient") or {}
    if dd.get("error"):
        add("check.error", "warning", "ddclient", f"ddclient cache unreadable: {dd['error']}", dd)
    elif dd.get("present"):
        for name, e in sorted((dd.get("entries") or {}).items()):
            # Legacy protocols such as ZoneEdit's (ddclient 3.11) record the outcome in `status`
            # and leave `status-ipv4` at "noconnect" even after a good update.
            v4 = str(e.get("status-ipv4") or "")
            status = v4 if v4 not in ("", "noconnect") else str(e.get("status") or v4)
            if status.lower() in DDCLIENT_AUTH:
                add(
                    "ddclient.auth_error",
                    "critical",
                    f"ddclient:{name}",
                    f"ddclient: the provider refused the credentials for {name} ({status})",
                    {"name": name, **e},
                    name=name,
                )
            elif status.lower() not in DDCLIENT_OK:
                add(
                    "ddclient.update_failed",
                    "warning",
                    f"ddclient:{name}",
                    f"ddclient: last update of {name} ended '{status}'",
                    {"name": name, **e},
                    name=name,
                )
        max_h = th("ddclient_max_age_hours")
        if max_h and dd.get("age_seconds") is not None and dd["age_seconds"] / 3600 > max_h:
            add(
                "ddclient.stale",
                "warning",
                "ddclient",
                f"ddclient has not run for {dd['age_seconds'] / 3600:.0f} h",
                {"path": dd.get("path"), "age_seconds": dd["age_seconds"]},
            )

    b = facts.get("backup") or {}
    if b.get("error"):
        add("check.error", "warning", "backup", f"backup status unreadable: {b['error']}", b)
    elif b.get("present"):
        data = b.get("data") or {}
        since = _age_hours(data.get("last_success"), now)
        if data.get("status") == "failed":
            add(
                "backup.failed",
                "critical",
                "backup",
                f"the last backup failed: {str(data.get('error') or '')[:160]}",
                data,
            )
        elif since is None or since > th("backup_max_age_hours"):
            add(
                "backup.stale",
                "warning",
                "backup",
                f"no successful backup for {since:.0f} h" if since is not None else "no successful backup recorded",
                data,
            )
        for what in ("check", "drill"):
            run = data.get(f"offsite_{what}") or {}
            if run.get("status") == "failed":
                add(
                    "backup.offsite_failed",
                    "critical",
                    f"backup:offsite_{what}",
                    f"the off-host backup {what} failed: {str(run.get('error') or '')[:160]}",
                    {"at": run.get("at"), "error": run.get("error")},
                    step=what,
                )
    elif th("backup_expected"):
        add("backup.missing", "warning", "backup", f"no backup status at {b.get('path')}", {"path": b.get("path")})

    pg = facts.get("postgres") or {}
    if pg.get("error") and "checked" not in pg:
        add("check.error", "warning", "postgres", f"PostgreSQL check failed: {pg['error']}", pg)
    elif pg.get("checked") and not pg.get("reachable"):
        add(
            "postgres.unreachable",
            "critical",
            "postgres",
            f"PostgreSQL does not accept connections: {pg.get('error', '')[:160]}",
            pg,
            service="postgres",
        )
    for key in ("memory", "load"):
        sec = facts.get(key) or {}
        if isinstance(sec, dict) and sec.get("error"):
            add("check.error", "warning", key, f"{key} check failed: {sec['error']}", sec)
    return out

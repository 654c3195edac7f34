"""What the dashboard and a service page say of an app the delivery pipeline ships: the commit its
containers run (homelab.facts.deployed_commit: their label homelab.commit, else the image tag the
pipeline gives them) and its newest `deliver` job with the stage it is at or failed at
(homelab.jobs.stages). Both read what is stored (the facts cycle's samples, the jobs): nothing here
asks a host."""

from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import select

from homelab.facts import deployed_commit
from homelab.jobs.stages import DELIVER, failed_stage, job_stages
from homelab.store import Job
from homelab.web.context import homelab


def deployed(containers: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The commits a service's containers run, each once: {commit (12 hex), sha (full, when a label
    said it), hosts}. More than one when hosts (or containers) run different releases."""
    out: dict[str, dict[str, Any]] = {}
    for c in containers:
        short = deployed_commit(c)
        if not short:
            continue
        row = out.setdefault(short, {"commit": short, "sha": "", "hosts": []})
        row["sha"] = row["sha"] or (c.get("git_commit") or "")
        if c.get("host") and c["host"] not in row["hosts"]:
            row["hosts"].append(c["host"])
    return list(out.values())


def latest_deliveries(service: str | None = None, limit: int = 500) -> dict[str, dict[str, Any]]:
    """service -> its newest `deliver` job (live or ended), as delivery() shows it (of one service, when named)."""
    h = homelab()
    with h.store.session() as s:
        rows = list(s.scalars(select(Job).where(Job.playbook == DELIVER).order_by(Job.id.desc()).limit(limit)))
    newest: dict[str, Job] = {}
    for j in rows:
        name = str((j.params or {}).get("service") or "")
        if name and name not in newest and (service is None or name == service):
            newest[name] = j
    return {name: delivery(j) for name, j in newest.items()}


def delivery(job: Job) -> dict[str, Any]:
    """A delivery as a page shows it: the job, the commit it delivers (12 hex) and the stage it is at:
    the failed one, or the running one; "" when it succeeded or has no stages."""
    stages = job_stages(homelab().engine.task_results(job.id), job.status, job.reason)
    at = failed_stage(stages) or next((s for s in stages if s.status == "running"), None)
    commit = str((job.params or {}).get("commit") or "")
    return {"job": job, "commit": commit[:12], "at": at.name if at is not None else ""}


def containers_by_service() -> dict[str, list[dict[str, Any]]]:
    """Every service's containers in each host's newest facts ({} when the facts cycle is not part of this server)."""
    facts = getattr(homelab(), "facts", None)
    out: dict[str, list[dict[str, Any]]] = {}
    if facts is None:
        return out
    for c in facts.containers():
        out.setdefault(c["service"], []).append(c)
    return out

"""The backups the controller knows, for the Restore and Verify forms to offer (`suggest: backups` in
the catalog): it never reads a host's backup directory itself, only what finished jobs reported.

A `list_backups` job reports each host's complete list (the backup script's `list`), so for a host it
replaces what was known; a later `backup` job adds the backup it made and drops the ones its
retention removed. Backups the daily timer made since the newest list are unknown until the next
list: the form says when its list is from, and the id stays free text ("latest" included),
validated as before."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from homelab.store import Job, Store

LIST, BACKUP = "list_backups", "backup"
ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z$")  # as the backup script names them (and the catalog's pattern)


@dataclass(frozen=True)
class KnownBackup:
    id: str
    hosts: tuple[str, ...]
    created: str = ""
    size: int | None = None
    job_id: int = 0  # the job that last reported it


@dataclass(frozen=True)
class Known:
    backups: tuple[KnownBackup, ...]  # newest first
    list_job: Job | None  # the newest successful list, if any


def _entries(value: Any) -> list[dict[str, Any]]:
    return (
        [b for b in value if isinstance(b, dict) and ID_RE.match(str(b.get("id") or ""))]
        if isinstance(value, list)
        else []
    )


def known_backups(store: Store, limit: int = 500) -> Known:
    """What the newest lists and the backups made since say each host holds."""
    with store.session() as s:
        jobs = list(
            s.scalars(
                select(Job)
                .where(Job.playbook.in_((LIST, BACKUP)), Job.status == "successful", Job.check.is_(False))
                .order_by(Job.id.desc())
                .limit(limit)
            )
        )
    per_host: dict[str, dict[str, tuple[dict[str, Any], int]]] = {}
    for job in reversed(jobs):  # oldest first: a newer report wins
        data = job.artifact_data or {}
        if job.playbook == LIST:
            for host, items in (data.get("backups") or {}).items():
                per_host[str(host)] = {str(b["id"]): (b, job.id) for b in _entries(items)}
        else:
            for host, status in (data.get("backup") or {}).items():
                if not isinstance(status, dict):
                    continue
                have = per_host.setdefault(str(host), {})
                for gone in status.get("removed") or []:
                    have.pop(str(gone), None)
                if ID_RE.match(str(status.get("id") or "")):
                    have[str(status["id"])] = ({"id": status["id"], "size": status.get("size")}, job.id)
    merged: dict[str, KnownBackup] = {}
    for host, have in sorted(per_host.items()):
        for bid, (b, job_id) in have.items():
            prev = merged.get(bid)
            size = b.get("size") if isinstance(b.get("size"), int) and not isinstance(b.get("size"), bool) else None
            merged[bid] = KnownBackup(
                id=bid,
                hosts=(prev.hosts if prev else ()) + (host,),
                created=str(b.get("created") or (prev.created if prev else "") or ""),
                size=size if size is not None else (prev.size if prev else None),
                job_id=max(job_id, prev.job_id if prev else 0),
            )
    lists = [j for j in jobs if j.playbook == LIST]
    return Known(tuple(sorted(merged.values(), key=lambda b: b.id, reverse=True)), lists[0] if lists else None)

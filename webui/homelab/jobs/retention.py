"""Retention of the jobs' private data dirs (var/jobs/NNNNNN): the store keeps the output; the
directories go after an age or beyond a count, never while their job is queued or running."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Iterable

from sqlalchemy import select

from homelab.settings import Settings
from homelab.states import LIVE_STATES
from homelab.store import Job, Store


def prune_artifacts(settings: Settings, store: Store, active: Iterable[int] = ()) -> list[Path]:
    """Drop private data dirs older than the age limit or beyond the count; never a live job's."""
    base = settings.jobs_dir
    if not base.is_dir():
        return []
    with store.session() as s:
        live = {j for (j,) in s.execute(select(Job.id).where(Job.status.in_(LIVE_STATES)))}
    live |= set(active)
    dirs = []
    for d in base.iterdir():
        if d.is_dir() and d.name.isdigit():
            dirs.append((d.stat().st_mtime, int(d.name), d))
    dirs.sort(reverse=True)
    cutoff = time.time() - settings.artifact_max_age_days * 86400
    removed = []
    kept = 0
    for mtime, job_id, d in dirs:
        if job_id in live:
            continue
        kept += 1
        if mtime < cutoff or kept > settings.artifact_max_count:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed

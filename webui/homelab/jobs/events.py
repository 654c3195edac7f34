"""Runner events to store rows: what the engine's writer thread does with each batch it drains.

Kept apart from launching jobs (AWX keeps its runner callback apart from job launch the same way):
this module turns ansible-runner events into masked rows (job_events, task_results, host_recaps)
and writes one batch in one transaction; it knows nothing about queues, threads or processes.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import insert, update

from homelab.masking import mask, mask_text
from homelab.store import HostRecap, Job, JobEvent, Store, TaskResult, table, utcnow

RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}
RECAP_KEYS = {
    "ok": "ok",
    "changed": "changed",
    "failures": "failed",
    "dark": "unreachable",
    "skipped": "skipped",
    "rescued": "rescued",
    "ignored": "ignored",
}


def render_diff(diff: Any) -> str:
    """Ansible's diff structure (dict or list of dicts) as unified text."""
    items = diff if isinstance(diff, list) else [diff]
    out: list[str] = []
    for d in items:
        if not isinstance(d, dict):
            continue
        if "prepared" in d:
            out.append(str(d["prepared"]))
            continue
        before, after = d.get("before", ""), d.get("after", "")
        if isinstance(before, (dict, list)) or isinstance(after, (dict, list)):
            before = json.dumps(before, indent=2, sort_keys=True, default=str)
            after = json.dumps(after, indent=2, sort_keys=True, default=str)
        out.extend(
            difflib.unified_diff(
                str(before).splitlines(),
                str(after).splitlines(),
                fromfile=str(d.get("before_header", "before")),
                tofile=str(d.get("after_header", "after")),
                lineterm="",
            )
        )
    return "\n".join(out)


def _result_diff(res: dict[str, Any]) -> str:
    """A task's diff; for a loop, each changed item's diff under its label (or the label alone,
    for modules that return no diff), so a drift report names the item (sysctl key, port) that changed."""
    if res.get("diff"):
        return render_diff(res["diff"])
    items = res.get("results")
    if not isinstance(items, list):
        return ""
    out: list[str] = []
    for item in items:
        if not isinstance(item, dict) or not item.get("changed"):
            continue
        label = item.get("_ansible_item_label", item.get("item", ""))
        if not isinstance(label, str):
            label = json.dumps(label, sort_keys=True, default=str)
        out.append(f"# item changed: {label}")
        if item.get("diff"):
            out.append(render_diff(item["diff"]))
    return "\n".join(out)


@dataclass
class Rows:
    """One batch, as rows for the store."""

    events: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    recaps: list[dict[str, Any]] = field(default_factory=list)
    finishes: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    counts: dict[int, int] = field(default_factory=dict)
    artifacts: dict[int, Any] = field(default_factory=dict)  # set_stats data of a job's playbook_on_stats event


def rows_of(batch: list[tuple[str, int, Any]], secrets_of: Callable[[int], tuple[str, ...]]) -> Rows:
    """The queue items ("event" and "finish"; others are ignored) as rows, every text masked with the job's secrets."""
    out = Rows()
    for kind, job_id, payload in batch:
        if kind == "event":
            _add_event(out, job_id, payload, secrets_of(job_id))
        elif kind == "finish":
            out.finishes.append((job_id, payload))
    return out


def _add_event(out: Rows, job_id: int, ev: dict[str, Any], secrets: tuple[str, ...]) -> None:
    ed = ev.get("event_data") or {}
    seq = int(ev.get("counter") or 0)
    out.counts[job_id] = max(out.counts.get(job_id, 0), seq)
    out.events.append(
        {
            "job_id": job_id,
            "seq": seq,
            "event": str(ev.get("event", ""))[:64],
            "host": str(ed.get("host") or "")[:200],
            "task": str(ed.get("task") or ""),
            "stdout": mask_text(str(ev.get("stdout") or ""), secrets),
            "created": str(ev.get("created", ""))[:40],
        }
    )
    name = ev.get("event")
    if name in RESULT_EVENTS and ed.get("host"):
        res = mask(ed.get("res") or {}, secrets)
        status = RESULT_EVENTS[name]
        if status == "ok" and res.get("changed"):
            status = "changed"
        if status == "failed" and ed.get("ignore_errors"):
            status = "ignored"
        msg = res.get("msg") or res.get("stderr") or res.get("reason") or ""
        out.results.append(
            {
                "job_id": job_id,
                "seq": seq,
                "host": str(ed["host"])[:200],
                "task": str(ed.get("task") or ""),
                "action": str(ed.get("task_action") or "")[:120],
                "status": status,
                "message": mask_text(str(msg)[:4000], secrets),
                "diff": mask_text(_result_diff(res), secrets),
                "duration": ed.get("duration") if isinstance(ed.get("duration"), (int, float)) else None,
                "role": str(ed.get("role") or "")[:120],
            }
        )
    elif name == "playbook_on_stats":
        if ed.get("artifact_data"):
            out.artifacts[job_id] = mask(ed["artifact_data"], secrets)
        hosts: set[str] = set()
        for k in RECAP_KEYS:
            hosts |= set((ed.get(k) or {}).keys())
        for h in sorted(hosts):
            out.recaps.append(
                {
                    "job_id": job_id,
                    "host": h,
                    **{col: int((ed.get(k) or {}).get(h, 0)) for k, col in RECAP_KEYS.items()},
                }
            )


def write_rows(store: Store, rows: Rows) -> None:
    """One transaction for the whole batch (SQLAlchemy Core: no ORM bookkeeping per event)."""
    jobs = table(Job)
    with store.engine.begin() as conn:
        if rows.events:
            conn.execute(insert(table(JobEvent)), rows.events)
        if rows.results:
            conn.execute(insert(table(TaskResult)), rows.results)
        if rows.recaps:
            conn.execute(insert(table(HostRecap)), rows.recaps)
        for job_id, n in rows.counts.items():
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(event_count=n))
        for job_id, data in rows.artifacts.items():
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(artifact_data=data))
        for job_id, p in rows.finishes:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(status=p["status"], rc=p["rc"], reason=p["reason"], finished_at=utcnow())
            )

"""Server-Sent Events for one job: output as it is persisted, status changes, then an end marker."""

from __future__ import annotations

import json
import time
from typing import Iterator

from homelab.ansi import ansi_to_html
from homelab.joboutput import SkipNoise
from homelab.jobs import JobEngine
from homelab.states import FINAL_STATES


def sse(event: str, data: object, id_: int | None = None) -> str:
    head = f"id: {id_}\n" if id_ is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def stream_job(
    engine: JobEngine, job_id: int, after: int = 0, heartbeat: float = 15.0, html: bool = True
) -> Iterator[str]:
    """Every event after `after`, in order, then `end` once the job is final and all is sent. For the
    job page (html) the events without output and the bare timestamp lines of skipped tasks are left
    out (homelab.joboutput.SkipNoise); the API's stream sends every event as stored."""
    noise = SkipNoise() if html else None
    last_status = None
    last_beat = time.monotonic()
    version = engine.version
    yield "retry: 2000\n\n"
    while True:
        job = engine.get(job_id)  # read the status first: events written before it are then visible
        events = engine.events_after(job_id, after, limit=2000)
        for ev in noise.feed(events) if noise is not None else events:
            payload = ev.as_dict()
            if html:
                payload["html"] = ansi_to_html(ev.stdout)
            yield sse("output", payload, ev.seq)
        if events:
            after = events[-1].seq
        if job.status != last_status:
            last_status = job.status
            yield sse("status", job.as_dict())
        if job.status in FINAL_STATES and len(events) < 2000:
            # one more read: the final status is committed together with or after the last events
            if not engine.events_after(job_id, after, limit=1):
                yield sse("end", {"status": job.status, "last_seq": after})
                return
            continue
        if events:
            continue
        if time.monotonic() - last_beat > heartbeat:
            last_beat = time.monotonic()
            yield ": keep-alive\n\n"
        version = engine.wait_for_change(version, 1.0)

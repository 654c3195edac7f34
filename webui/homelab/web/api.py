"""REST API (JSON) over the same engine, and its OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context
from sqlalchemy import select

from homelab.catalog import ValidationError, require_confirm
from homelab.refused import refused_outcome, refused_params
from homelab.states import STATES
from homelab.store import Job
from homelab.web.auth import audit, current_user, request_source
from homelab.web.context import homelab
from homelab.web.inputs import json_body, refused, whole_number
from homelab.web.jobstream import stream_job
from homelab.web.openapi import document, enforce, groups_of, json_numbers, start_job_schema

bp = Blueprint("api", __name__, url_prefix="/api/v1")
START_KEYS = {"playbook", "params", "limit", "check", "diff", "confirm"}


bp.register_error_handler(ValidationError, refused)


@bp.get("/catalog")
def catalog() -> Any:
    return jsonify([e.as_dict() for e in homelab().catalog.entries.values()])


@bp.get("/catalog/<entry_id>")
def catalog_entry(entry_id: str) -> Any:
    return jsonify(homelab().catalog.get(entry_id).as_dict())


@bp.post("/jobs")
def start_job() -> Any:
    h = homelab()
    body = json_body()
    if not isinstance(body, dict):
        raise ValidationError(
            'send a JSON object: {"playbook": id, "params": {}, "limit": "", "check": false, "diff": false}'
        )
    unknown = sorted(set(body) - START_KEYS)
    if unknown:
        raise ValidationError(f"unknown field(s): {', '.join(map(str, unknown))[:80]}")
    limit = body.get("limit") or ""
    playbook = body.get("playbook")
    params = json_numbers(h.catalog.entries.get(playbook) if isinstance(playbook, str) else None, body.get("params"))
    entry = h.catalog.entries.get(playbook) if isinstance(playbook, str) else None
    if entry is not None and not entry.parameters and not params and (body.get("check") is True or entry.forced_check):
        return _start_check(entry.id, body)
    try:
        spec = h.catalog.prepare(
            playbook, params, limit, check=body.get("check", False), diff=body.get("diff", False), inventory=h.inventory
        )
        require_confirm(spec.entry, body.get("confirm", False))  # said plainly, before the schema's words
        # what the catalog is lenient about (text for numbers, null for absent) the document is not;
        # a former id (a catalog alias) is checked as the id it stands for
        enforce(
            start_job_schema(spec.entry, groups_of(h.inventory)),
            {**body, "playbook": spec.entry.id},
            frozenset(p.name for p in spec.entry.parameters if p.secret),
        )
    except ValidationError as exc:
        audit(
            "job.start",
            str(playbook)[:60],
            {"params": refused_params(h.catalog, playbook, params), "limit": limit},
            outcome=refused_outcome(h.catalog, playbook, params, exc),
        )
        raise
    job = h.engine.submit(
        spec, current_user() or "", request_source(), requested_limit=limit if isinstance(limit, str) else ""
    )
    audit(
        "job.start",
        f"job {job.id} ({spec.entry.id})",
        {"params": job.params, "limit": limit, "check": spec.check, "diff": spec.diff}
        | ({"confirmed": True} if spec.entry.needs_confirm else {}),
    )
    return jsonify(job.as_dict()), 201, {"Location": f"/api/v1/jobs/{job.id}"}


def _start_check(entry_id: str, body: dict[str, Any]) -> Any:
    """A check of a catalog entry is a drift check, as from a schedule (homelab.drift): its result
    reaches the Drift page; a check already running on these hosts is answered with 200."""
    h = homelab()
    enforce(start_job_schema(h.catalog.get(entry_id), groups_of(h.inventory)), {**body, "playbook": entry_id})
    limit = body.get("limit") or ""
    try:
        job, started = h.drift.check(entry_id, limit, current_user() or "", request_source())
    except ValidationError as exc:
        audit("drift.check", entry_id, {"limit": limit}, outcome=f"refused: {exc}"[:200])
        raise
    audit(
        "drift.check",
        f"job {job.id} ({entry_id})",
        {"limit": limit},
        outcome="ok" if started else f"already running as job {job.id}",
    )
    return jsonify(job.as_dict()), 201 if started else 200, {"Location": f"/api/v1/jobs/{job.id}"}


@bp.get("/jobs")
def list_jobs() -> Any:
    h = homelab()
    q = select(Job)
    status = request.args.get("status")
    if status is not None:  # present but empty is a wrong status, not "any"
        if status not in STATES:
            raise ValidationError(f"status must be one of {', '.join(STATES)}")
        q = q.where(Job.status == status)
    if request.args.get("playbook"):
        q = q.where(Job.playbook == request.args["playbook"])
    limit = whole_number(request.args.get("limit"), "limit", 50, minimum=1, maximum=500)
    with h.store.session() as s:
        rows = list(s.scalars(q.order_by(Job.id.desc()).limit(limit)))
    return jsonify([j.as_dict() for j in rows])


@bp.get("/jobs/<int:job_id>")
def job(job_id: int) -> Any:
    h = homelab()
    j = h.engine.get(job_id)
    return jsonify(
        {
            **j.as_dict(),
            "recap": [r.as_dict() for r in h.engine.recaps(job_id)],
            "tasks": [t.as_dict() for t in h.engine.task_results(job_id)],
        }
    )


@bp.get("/jobs/<int:job_id>/events")
def events(job_id: int) -> Any:
    h = homelab()
    h.engine.get(job_id)
    after = whole_number(request.args.get("after"), "after", 0)
    return jsonify([e.as_dict() for e in h.engine.events_after(job_id, after, limit=5000)])


@bp.get("/jobs/<int:job_id>/stream")
def stream(job_id: int) -> Any:
    h = homelab()
    h.engine.get(job_id)
    after = whole_number(request.headers.get("Last-Event-ID") or request.args.get("after"), "after", 0)
    html = request.args.get("html", "0") == "1"
    return Response(
        stream_with_context(stream_job(h.engine, job_id, after, html=html)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@bp.post("/jobs/<int:job_id>/cancel")
def cancel(job_id: int) -> Any:
    h = homelab()
    was = h.engine.cancel(job_id, current_user() or "")
    audit("job.cancel", f"job {job_id}", outcome=f"was {was}")
    return jsonify({"id": job_id, "was": was, "status": h.engine.get(job_id).status}), 202


@bp.post("/jobs/<int:job_id>/rerun")
def rerun(job_id: int) -> Any:
    h = homelab()
    new = h.engine.rerun(job_id, current_user() or "", request_source())
    audit("job.rerun", f"job {new.id} (re-run of {job_id})", {"params": new.params})
    return jsonify(new.as_dict()), 201


@bp.get("/openapi.json")
def openapi() -> Any:
    return jsonify(openapi_document())


def openapi_document() -> dict[str, Any]:
    h = homelab()
    return document(list(h.catalog.entries.values()), groups_of(h.inventory))

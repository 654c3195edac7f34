"""REST API (JSON) over the same engine, and its OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context
from sqlalchemy import select

from homelab import __version__
from homelab.catalog import ValidationError
from homelab.store import STATES, Job
from homelab.web import homelab
from homelab.web.auth import audit, current_user
from homelab.web.jobstream import stream_job

bp = Blueprint("api", __name__, url_prefix="/api/v1")
START_KEYS = {"playbook", "params", "limit", "check", "diff"}


@bp.errorhandler(ValidationError)
def _refused(exc: ValidationError) -> Any:
    body: dict[str, Any] = {"error": str(exc)}
    if exc.field:
        body["field"] = exc.field
    return jsonify(body), exc.status


def _source() -> str:
    src = request.headers.get("X-Homelab-Client", "api")
    return src if src in ("api", "cli", "jarvis", "schedule") else "api"


@bp.get("/catalog")
def catalog() -> Any:
    return jsonify([e.as_dict() for e in homelab().catalog.entries.values()])


@bp.get("/catalog/<entry_id>")
def catalog_entry(entry_id: str) -> Any:
    return jsonify(homelab().catalog.get(entry_id).as_dict())


@bp.post("/jobs")
def start_job() -> Any:
    h = homelab()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError("send a JSON object: {\"playbook\": id, \"params\": {}, \"limit\": \"\", \"check\": false, \"diff\": false}")
    unknown = sorted(set(body) - START_KEYS)
    if unknown:
        raise ValidationError(f"unknown field(s): {', '.join(map(str, unknown))[:80]}")
    limit = body.get("limit") or ""
    try:
        spec = h.catalog.prepare(body.get("playbook"), body.get("params"), limit, body.get("check", False),
                                 body.get("diff", False), h.inventory)
    except ValidationError as exc:
        audit("job.start", str(body.get("playbook"))[:60], {"params": body.get("params"), "limit": limit}, outcome=f"refused: {exc}")
        raise
    job = h.engine.submit(spec, current_user() or "", _source(), requested_limit=limit if isinstance(limit, str) else "")
    audit("job.start", f"job {job.id} ({spec.entry.id})", {"params": job.params, "limit": limit, "check": spec.check, "diff": spec.diff})
    return jsonify(job.as_dict()), 201, {"Location": f"/api/v1/jobs/{job.id}"}


@bp.get("/jobs")
def list_jobs() -> Any:
    h = homelab()
    q = select(Job)
    status = request.args.get("status")
    if status:
        if status not in STATES:
            raise ValidationError(f"status must be one of {', '.join(STATES)}")
        q = q.where(Job.status == status)
    if request.args.get("playbook"):
        q = q.where(Job.playbook == request.args["playbook"])
    try:
        limit = min(max(int(request.args.get("limit", 50)), 1), 500)
    except ValueError:
        raise ValidationError("limit must be a number") from None
    with h.store.session() as s:
        rows = list(s.scalars(q.order_by(Job.id.desc()).limit(limit)))
    return jsonify([j.as_dict() for j in rows])


@bp.get("/jobs/<int:job_id>")
def job(job_id: int) -> Any:
    h = homelab()
    j = h.engine.get(job_id)
    return jsonify({**j.as_dict(), "recap": [r.as_dict() for r in h.engine.recaps(job_id)],
                    "tasks": [t.as_dict() for t in h.engine.task_results(job_id)]})


@bp.get("/jobs/<int:job_id>/events")
def events(job_id: int) -> Any:
    h = homelab()
    h.engine.get(job_id)
    after = request.args.get("after", "0")
    if not after.isdigit():
        raise ValidationError("after must be a whole number")
    return jsonify([e.as_dict() for e in h.engine.events_after(job_id, int(after), limit=5000)])


@bp.get("/jobs/<int:job_id>/stream")
def stream(job_id: int) -> Any:
    h = homelab()
    h.engine.get(job_id)
    after = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
    html = request.args.get("html", "0") == "1"
    return Response(stream_with_context(stream_job(h.engine, job_id, int(after) if after.isdigit() else 0, html=html)),
                    mimetype="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@bp.post("/jobs/<int:job_id>/cancel")
def cancel(job_id: int) -> Any:
    h = homelab()
    was = h.engine.cancel(job_id, current_user() or "")
    audit("job.cancel", f"job {job_id}", outcome=f"was {was}")
    return jsonify({"id": job_id, "was": was, "status": h.engine.get(job_id).status}), 202


@bp.post("/jobs/<int:job_id>/rerun")
def rerun(job_id: int) -> Any:
    h = homelab()
    new = h.engine.rerun(job_id, current_user() or "", _source())
    audit("job.rerun", f"job {new.id} (re-run of {job_id})", {"params": new.params})
    return jsonify(new.as_dict()), 201


@bp.get("/openapi.json")
def openapi() -> Any:
    return jsonify(openapi_document())


def openapi_document() -> dict[str, Any]:
    h = homelab()
    job_schema = {"type": "object", "properties": {
        k: {"type": t} for k, t in (("id", "integer"), ("playbook", "string"), ("status", "string"),
                                    ("reason", "string"), ("limit", "string"), ("check", "boolean"),
                                    ("diff", "boolean"), ("created_by", "string"), ("created_at", "string"))}}
    job_schema["properties"]["status"]["enum"] = list(STATES)
    err = {"description": "refused", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    start_variants = []
    for e in h.catalog.entries.values():
        start_variants.append({"type": "object", "additionalProperties": False, "required": ["playbook"], "properties": {
            "playbook": {"const": e.id},
            "params": {"type": "object", "additionalProperties": False,
                       "properties": {p.name: p.as_schema() for p in e.parameters},
                       "required": [p.name for p in e.parameters if p.required and p.default is None]},
            "limit": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*(,[A-Za-z0-9][A-Za-z0-9_.-]*)*$",
                      "description": f"host or group names within {', '.join(e.targets)}"},
            "check": {"type": "boolean"}, "diff": {"type": "boolean"}}})
    jid = [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "integer"}}]
    ok_job = {"description": "the job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "homelab job API", "version": __version__,
                 "description": "Every run goes through one job engine. Authenticate with `Authorization: Bearer <token>` (tokens: /tokens)."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Job": job_schema, "Error": {"type": "object", "properties": {"error": {"type": "string"}, "field": {"type": "string"}}},
                        "StartJob": {"oneOf": start_variants}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/catalog": {"get": {"summary": "Runnable playbooks and their parameter schemas", "responses": {"200": {"description": "catalog"}}}},
            "/api/v1/catalog/{entry_id}": {"get": {"summary": "One catalog entry", "parameters": [{"name": "entry_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                                                   "responses": {"200": {"description": "entry"}, "404": err}}},
            "/api/v1/jobs": {
                "get": {"summary": "Job history", "parameters": [
                    {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(STATES)}},
                    {"name": "playbook", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 500}}],
                    "responses": {"200": {"description": "jobs, newest first"}}},
                "post": {"summary": "Start a catalog playbook (validated before anything runs)",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StartJob"}}}},
                         "responses": {"201": ok_job, "400": err, "404": err, "409": err}}},
            "/api/v1/jobs/{job_id}": {"get": {"summary": "Status, per-host recap and task results", "parameters": jid, "responses": {"200": ok_job, "404": err}}},
            "/api/v1/jobs/{job_id}/events": {"get": {"summary": "Output events after a sequence number", "parameters": jid + [
                {"name": "after", "in": "query", "schema": {"type": "integer"}}], "responses": {"200": {"description": "events"}}}},
            "/api/v1/jobs/{job_id}/stream": {"get": {"summary": "Live output as Server-Sent Events (output, status, end)", "parameters": jid,
                                                     "responses": {"200": {"description": "text/event-stream"}}}},
            "/api/v1/jobs/{job_id}/cancel": {"post": {"summary": "Cancel a queued or running job", "parameters": jid, "responses": {"202": {"description": "cancel requested"}, "404": err}}},
            "/api/v1/jobs/{job_id}/rerun": {"post": {"summary": "Run again with the same parameters", "parameters": jid, "responses": {"201": ok_job, "404": err, "409": err}}},
            "/api/v1/drift": {"get": {"summary": "Drift state per host and playbook (drifted, clean, unknown) with the drifted tasks",
                                      "responses": {"200": {"description": "summary and states"}}}},
            "/api/v1/drift/history": {"get": {"summary": "Drift episodes: when each started and was resolved", "parameters": [
                {"name": "host", "in": "query", "schema": {"type": "string"}}], "responses": {"200": {"description": "episodes, newest first"}}}},
            "/api/v1/drift/checks/{job_id}": {"get": {"summary": "Per-host result of one drift check", "parameters": jid,
                                                      "responses": {"200": {"description": "results"}}}},
            "/api/v1/drift/schedules": {"get": {"summary": "Drift schedules and their next run", "responses": {"200": {"description": "schedules"}}}},
            "/api/v1/drift/check": {"post": {"summary": "Run a drift check now: {schedule} or {playbook, limit}",
                                             "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "properties": {
                                                 "schedule": {"type": "string"}, "playbook": {"type": "string"}, "limit": {"type": "string"}}}}}},
                                             "responses": {"201": ok_job, "200": ok_job, "400": err, "404": err, "409": err}}},
            "/api/v1/drift/fix": {"post": {"summary": "Converge exactly the drifted hosts (tags of the drifted roles when known)",
                                           "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "properties": {
                                               "playbook": {"type": "string"}, "hosts": {"type": "array", "items": {"type": "string"}}}}}}},
                                           "responses": {"201": ok_job, "400": err, "404": err, "409": err}}},
        },
    }

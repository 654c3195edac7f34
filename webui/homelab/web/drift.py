"""Drift pages and API: current state per host, diffs, history, schedules (editable), run now, fix."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, redirect, render_template, request, url_for

from homelab.catalog import ValidationError
from homelab.schedule.definitions import Schedule, ScheduleError, parse_schedule
from homelab.store import iso_z
from homelab.web import openapi
from homelab.web.auth import audit, current_user, request_source
from homelab.web.context import homelab
from homelab.web.inputs import json_body, refused

bp = Blueprint("drift", __name__)
api_bp = Blueprint("drift_api", __name__, url_prefix="/api/v1/drift")


def _state_dict(st: Any) -> dict[str, Any]:
    iso = iso_z
    return {
        "host": st.host,
        "playbook": st.playbook,
        "state": st.state,
        "reason": st.reason,
        "since": iso(st.since),
        "checked_at": iso(st.checked_at),
        "job_id": st.last_job_id,
        "fingerprint": st.fingerprint,
        "tasks": st.tasks or [],
    }


def _episode_dict(e: Any) -> dict[str, Any]:
    iso = iso_z
    return {
        "id": e.id,
        "host": e.host,
        "playbook": e.playbook,
        "fingerprint": e.fingerprint,
        "roles": e.roles,
        "tasks": [t.get("task") for t in e.tasks or []],
        "started_at": iso(e.started_at),
        "started_job": e.started_job,
        "resolved_at": iso(e.resolved_at),
        "resolved_job": e.resolved_job,
        "resolution": e.resolution,
    }


def _load_schedules() -> tuple[list[Schedule], str]:
    try:
        return homelab().schedules.load(), ""
    except ScheduleError as exc:
        return [], str(exc)


def _start_check(body: dict[str, Any], source: str) -> tuple[Any, bool, str]:
    """A check from a schedule id (its playbook and limit) or from a catalog id and limit."""
    h = homelab()
    schedule_id = str(body.get("schedule") or "")
    if schedule_id:
        try:
            s = h.schedules.get(schedule_id)
        except ScheduleError as exc:
            raise ValidationError(str(exc), status=409) from None
        playbook, limit = s.playbook, s.limit
        if s.action == "run":  # a maintenance run, for real, as the scheduler would start it
            job_id = h.scheduler.launch(s)
            assert job_id is not None, "a run schedule always starts a job"
            return h.engine.get(job_id), True, s.id
        if s.action != "check":
            raise ValidationError(f"schedule '{s.id}' is a {s.action} schedule: start it from its own page", status=409)
    else:
        playbook, limit = body.get("playbook") or "", body.get("limit") or ""
        if not isinstance(limit, str):
            raise ValidationError("limit must be text", field="limit")
        if not playbook:
            raise ValidationError("say which schedule or catalog playbook to check", field="playbook")
    job, started = h.drift.check(playbook, limit, current_user() or "", source, schedule_id=schedule_id)
    return job, started, schedule_id or playbook


# ---------------------------------------------------------------------- pages
@bp.get("/drift")
def page() -> Any:
    h = homelab()
    schedules, error = _load_schedules()
    states = h.drift.states()
    return render_template(
        "drift.html",
        states=states,
        schedules=schedules,
        schedules_error=error or h.scheduler.error,
        history=h.drift.history(limit=100),
        checks=h.drift.recent_checks(15),
        next_runs=h.scheduler.next_runs(),
        lease=h.scheduler.lease_holder(),
        leading=h.scheduler.leading,
        channels=h.drift.notifier.channels,
        failures=h.drift.notifier.failures,
        drifted=[st for st in states if st.fingerprint],
        entries=sorted(h.catalog.entries.values(), key=lambda e: e.id),
    )


@bp.post("/drift/check")
def check() -> Any:
    try:
        job, started, what = _start_check(dict(request.form), request_source())
    except ValidationError as exc:
        audit(
            "drift.check",
            str(request.form.get("schedule") or request.form.get("playbook"))[:60],
            outcome=f"refused: {exc}",
        )
        abort(exc.status, description=str(exc))
    audit(
        "drift.check",
        f"job {job.id} ({what})",
        {"limit": job.requested_limit},
        outcome="ok" if started else f"already running as job {job.id}",
    )
    return redirect(url_for("views.job", job_id=job.id))


@bp.post("/drift/fix")
def fix() -> Any:
    h = homelab()
    playbook = request.form.get("playbook", "")
    hosts = [x for x in request.form.getlist("host") if x]
    try:
        job = h.drift.fix(playbook, hosts or None, current_user() or "", request_source())
    except ValidationError as exc:
        audit("drift.fix", playbook[:60], {"hosts": hosts}, outcome=f"refused: {exc}")
        abort(exc.status, description=str(exc))
    audit("drift.fix", f"job {job.id} ({job.playbook})", {"hosts": job.hosts, "tags": job.tags or []})
    return redirect(url_for("views.job", job_id=job.id))


@bp.route("/drift/schedules", methods=["GET", "POST"])
def schedules() -> Any:
    h = homelab()
    current, error = _load_schedules()
    rows = [s.as_yaml() for s in current]
    saved = request.args.get("saved") == "1"
    status = 200
    if request.method == "POST":
        rows, error = _rows_from_form(request.form)
        if not error:
            try:
                kept = {s.id: s.params for s in current if s.params}  # params are edited in the file, not the form
                new = [
                    parse_schedule(
                        {**r, "params": kept.get(str(r.get("id") or "").strip()) or {}}
                        if str(r.get("action") or "") == "run"
                        else r,
                        f"row {i + 1}",
                    )
                    for i, r in enumerate(rows)
                ]
                h.schedules.save(new)
            except ScheduleError as exc:
                error = str(exc)
            else:
                audit(
                    "schedules.edit",
                    h.schedules.path.name,
                    {"before": [s.as_yaml() for s in current], "after": [s.as_yaml() for s in new]},
                )
                h.scheduler.reload()
                return redirect(url_for("drift.schedules", saved=1))
        audit("schedules.edit", h.schedules.path.name, {"rows": rows}, outcome=f"refused: {error}"[:200])
        status = 400
    return render_template(
        "drift_schedules.html",
        rows=rows,
        error=error,
        saved=saved,
        entries=sorted(h.catalog.entries),
        path=h.schedules.path,
    ), status


def _rows_from_form(form: Any) -> tuple[list[dict[str, Any]], str]:
    """Form rows (id-N, playbook-N, kind-N, when-N, limit-N, enabled-N, delete-N) as schedule mappings."""
    try:
        count = min(int(form.get("rows", "0")), 100)
    except ValueError:
        return [], "the form is malformed (rows)"
    rows = []
    for i in range(count + 1):  # the last row is the empty "add a schedule" row
        sid = (form.get(f"id-{i}") or "").strip()
        if not sid or form.get(f"delete-{i}"):
            continue
        kind = form.get(f"kind-{i}", "cron")
        when = (form.get(f"when-{i}") or "").strip()
        row: dict[str, Any] = {"id": sid, "playbook": (form.get(f"playbook-{i}") or "").strip()}
        row["cron" if kind == "cron" else "interval"] = when
        row["limit"] = (form.get(f"limit-{i}") or "").strip()
        row["enabled"] = bool(form.get(f"enabled-{i}"))
        if form.get(f"action-{i}", "check") != "check":
            row["action"] = form.get(f"action-{i}")
        rows.append(row)
    return rows, ""


# ---------------------------------------------------------------------- API
api_bp.register_error_handler(ValidationError, refused)


@api_bp.get("")
def api_state() -> Any:
    h = homelab()
    return jsonify({"summary": h.drift.summary(), "states": [_state_dict(st) for st in h.drift.states()]})


@api_bp.get("/history")
def api_history() -> Any:
    h = homelab()
    return jsonify([_episode_dict(e) for e in h.drift.history(request.args.get("host") or None)])


@api_bp.get("/checks/<int:job_id>")
def api_check(job_id: int) -> Any:
    h = homelab()
    return jsonify(
        [
            {"host": r.host, "state": r.state, "reason": r.reason, "fingerprint": r.fingerprint, "tasks": r.tasks}
            for r in h.drift.results(job_id)
        ]
    )


@api_bp.get("/schedules")
def api_schedules() -> Any:
    h = homelab()
    schedules, error = _load_schedules()
    nxt = h.scheduler.next_runs()
    return jsonify(
        {"error": error, "schedules": [{**s.as_dict(), "next_run": iso_z(nxt.get(s.id))} for s in schedules]}
    )


@api_bp.post("/check")
def api_check_start() -> Any:
    body = json_body()
    if not isinstance(body, dict) or set(body) - {"schedule", "playbook", "limit"}:
        raise ValidationError('send {"schedule": id} or {"playbook": id, "limit": ""}')
    openapi.enforce_drift_check(body, homelab().catalog.entries, openapi.groups_of(homelab().inventory))
    try:
        job, started, what = _start_check(body, request_source())
    except ValidationError as exc:
        audit("drift.check", str(body.get("schedule") or body.get("playbook"))[:60], outcome=f"refused: {exc}")
        raise
    audit(
        "drift.check",
        f"job {job.id} ({what})",
        {"limit": job.requested_limit},
        outcome="ok" if started else f"already running as job {job.id}",
    )
    return jsonify({**job.as_dict(), "started": started}), 201 if started else 200


@api_bp.post("/fix")
def api_fix() -> Any:
    h = homelab()
    body = json_body()
    if not isinstance(body, dict) or set(body) - {"playbook", "hosts"}:
        raise ValidationError('send {"playbook": id, "hosts": [names]} (hosts optional: every drifted host)')
    hosts = body.get("hosts") or []
    if not isinstance(hosts, list) or not all(isinstance(x, str) for x in hosts):
        raise ValidationError("hosts must be a list of host names", field="hosts")
    try:
        job = h.drift.fix(str(body.get("playbook") or ""), hosts or None, current_user() or "", request_source())
    except ValidationError as exc:
        audit("drift.fix", str(body.get("playbook"))[:60], {"hosts": hosts}, outcome=f"refused: {exc}")
        raise
    audit("drift.fix", f"job {job.id} ({job.playbook})", {"hosts": job.hosts, "tags": job.tags or []})
    return jsonify(job.as_dict()), 201

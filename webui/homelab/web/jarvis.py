"""Jarvis's pages and API: findings, approvals waiting for a person, remediation history, the
circuit breakers, and the chat. Registered by the app factory (homelab.web.create_app) when Jarvis
is on; the web layer imports Jarvis, never the other way round."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, redirect, render_template, request, url_for

from homelab.catalog import ValidationError
from homelab.store import iso_z
from homelab.web.auth import current_user
from homelab.web.context import homelab
from homelab.web.inputs import json_body, refused

bp = Blueprint("jarvis", __name__, url_prefix="/jarvis")
api_bp = Blueprint("jarvis_api", __name__, url_prefix="/api/v1/jarvis")
HISTORY_STATES = (
    "resolved",
    "escalated",
    "failed",
    "rejected",
    "refused",
    "obsolete",
    "queued",
    "checking",
    "running",
    "verifying",
)


def _jarvis() -> Any:
    j = homelab().jarvis
    if j is None:
        abort(404, description="Jarvis is turned off on this server (HOMELAB_JARVIS=0)")
    return j


def summary_for_dashboard() -> dict[str, Any] | None:
    """For the dashboard panel (a template global): None when Jarvis is off."""
    j = homelab().jarvis
    return j.summary() if j is not None else None


def _finding_dict(r: Any) -> dict[str, Any]:
    iso = iso_z
    return {
        "code": r.code,
        "severity": r.severity,
        "target": r.target,
        "host": r.host,
        "summary": r.summary,
        "status": r.status,
        "evidence": r.evidence,
        "decision": r.decision,
        "first_seen": iso(r.first_seen),
        "last_seen": iso(r.last_seen),
        "resolved_at": iso(r.resolved_at),
        "occurrences": r.occurrences,
    }


# ---------------------------------------------------------------------- pages
@bp.get("")
def page() -> Any:
    j = _jarvis()
    return render_template(
        "jarvis/index.html",
        s=j.summary(),
        findings=j.findings(),
        resolved=[r for r in j.findings(include_resolved=True, limit=300) if r.status == "resolved"][:30],
        pending=j.actions(("pending",)),
        history=j.actions(HISTORY_STATES, 100),
        breakers=j.breakers(),
        rules=j.rules,
        catalog=homelab().catalog.entries,
        llm=j.assistant.describe(),
        llm_enabled=j.assistant.enabled,
    )


@bp.post("/diagnose")
def diagnose() -> Any:
    _jarvis().trigger(current_user() or "")
    return redirect(url_for("jarvis.page", started=1))


@bp.post("/actions/<int:action_id>/approve")
def approve(action_id: int) -> Any:
    try:
        _jarvis().approve(action_id, current_user() or "")
    except ValidationError as exc:
        abort(exc.status, description=str(exc))
    return redirect(url_for("jarvis.page") + f"#action-{action_id}")


@bp.post("/actions/<int:action_id>/reject")
def reject(action_id: int) -> Any:
    try:
        _jarvis().reject(action_id, current_user() or "", request.form.get("why", ""))
    except ValidationError as exc:
        abort(exc.status, description=str(exc))
    return redirect(url_for("jarvis.page") + f"#action-{action_id}")


@bp.post("/breakers/<rule_id>/reset")
def reset_breaker(rule_id: str) -> Any:
    if not _jarvis().reset_breaker(rule_id[:64], current_user() or ""):
        abort(409, description=f"rule {rule_id[:64]} has no open breaker")
    return redirect(url_for("jarvis.page"))


@bp.route("/chat", methods=["GET", "POST"])
def chat() -> Any:
    j = _jarvis()
    error, status = "", 200
    if request.method == "POST":
        try:
            j.assistant.chat(current_user() or "", request.form.get("message", ""))
        except ValidationError as exc:
            error, status = str(exc), 400
        else:
            return redirect(url_for("jarvis.chat") + "#end")
    pending = {a.id: a for a in j.actions(("pending",))}
    return render_template(
        "jarvis/chat.html",
        messages=j.chat_history(current_user() or "", 100),
        llm=j.assistant.describe(),
        llm_enabled=j.assistant.enabled,
        error=error,
        pending=pending,
    ), status


# ---------------------------------------------------------------------- API
api_bp.register_error_handler(ValidationError, refused)


@api_bp.get("")
def api_state() -> Any:
    j = _jarvis()
    s = j.summary()
    s = {k: v for k, v in s.items() if k not in ("top", "last")}
    return jsonify({**s, "findings": [_finding_dict(r) for r in j.findings()]})


@api_bp.get("/actions")
def api_actions() -> Any:
    j = _jarvis()
    status = tuple(x for x in request.args.get("status", "").split(",") if x) or None
    return jsonify([a.as_dict() for a in j.actions(status, 200)])


@api_bp.post("/diagnose")
def api_diagnose() -> Any:
    _jarvis().trigger(current_user() or "")
    return jsonify({"started": True}), 202


@api_bp.post("/actions/<int:action_id>/approve")
def api_approve(action_id: int) -> Any:
    return jsonify(_jarvis().approve(action_id, current_user() or "").as_dict())


@api_bp.post("/actions/<int:action_id>/reject")
def api_reject(action_id: int) -> Any:
    body = json_body()
    body = body if isinstance(body, dict) else {}
    return jsonify(_jarvis().reject(action_id, current_user() or "", str(body.get("why", ""))[:300]).as_dict())

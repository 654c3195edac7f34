"""HTML pages: dashboard, catalog and its forms, job pages with live output, history, audit log."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from homelab.backups import LIST as LIST_BACKUPS
from homelab.backups import known_backups
from homelab.catalog import CATEGORIES, ValidationError, require_confirm
from homelab.joboutput import shown_output
from homelab.jobs.stages import job_stages
from homelab.refused import refused_outcome, refused_params
from homelab.states import FINAL_STATES, STATES
from homelab.store import AuditEntry, DriftRun, Job
from homelab.web.auth import audit, current_user, request_source
from homelab.web.context import homelab
from homelab.web.deliveries import containers_by_service, deployed, latest_deliveries
from homelab.web.inputs import whole_number
from homelab.web.jobstream import stream_job

bp = Blueprint("views", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    h = homelab()
    with h.store.session() as s:
        s.execute(select(1))
    return jsonify(status="ok", running=len(h.engine.active_ids()))


@bp.get("/")
def dashboard() -> Any:
    h = homelab()
    try:
        hosts = h.inventory.hosts()
        inventory_error = None
    except Exception as exc:  # a broken inventory must not take the dashboard down
        hosts, inventory_error = [], str(exc)
    with h.store.session() as s:
        recent = list(s.scalars(select(Job).order_by(Job.id.desc()).limit(8)))
        finished = list(
            s.scalars(
                select(Job).where(Job.status.in_(FINAL_STATES), Job.check.is_(False)).order_by(Job.id.desc()).limit(500)
            )
        )
    services, registry_error = _services(finished)
    status_rows, status_error = _status_rows()
    # the next drift check: only schedules whose action is a check (not Jarvis cycles or maintenance runs)
    try:
        checks = {s.id for s in h.schedules.load() if s.action == "check" and s.enabled} if h.schedules else set()
    except Exception:  # a broken schedules file is reported on the Drift page
        checks = set()
    nexts = [t for sid, t in h.scheduler.next_runs().items() if t and sid in checks] if h.scheduler else []
    return render_template(
        "dashboard.html",
        hosts=hosts,
        inventory_error=inventory_error,
        recent=recent,
        services=services,
        registry_error=registry_error,
        status_rows=status_rows,
        status_error=status_error,
        status_interval=h.settings.status_interval,
        facts_fresh_minutes=h.status.facts_fresh_seconds // 60 if h.status else 0,
        drift_states=h.drift.states() if h.drift else [],
        drift_summary=h.drift.summary() if h.drift else {},
        drift_next=min(nexts) if nexts else None,
    )


def _status_rows() -> tuple[list[dict[str, Any]], str]:
    """The status tiles: each service with a status (homelab.status.judge_service), problems first."""
    from homelab.status import for_tiles

    h = homelab()
    if h.status is None:
        return [], ""
    try:
        rows = h.status.current()
    except Exception as exc:  # a broken registry is said once, by the Services panel
        return [], str(exc)
    return [for_tiles(r) for r in rows], ""


# Catalog playbooks that deploy one service (named by their `service` parameter) or every enabled one.
DEPLOYS_ONE = ("deploy_service", "rollback_service", "deliver")
DEPLOYS_ALL = ("site",)


def _services(jobs: list[Job]) -> tuple[list[dict[str, Any]], str]:
    """The enabled services of the service registry, with their URL and their last deploy: the
    newest finished real run that deployed them (the site, Deploy a service, a roll back, a delivery,
    by anyone: the web, a schedule, Jarvis); the commit their containers run and their newest
    delivery (homelab.web.deliveries). Returns (rows, why the registry could not be read)."""
    h = homelab()
    try:
        services = h.inventory.registry.union()
    except Exception as exc:  # a broken inventory or registry entry must not take the dashboard down
        return [], str(exc)
    boxes = containers_by_service()
    deliveries = latest_deliveries()
    out = []
    for name, svc in services.items():
        if not svc.enabled:
            continue
        last = next(
            (
                j
                for j in jobs
                if j.playbook in DEPLOYS_ALL or (j.playbook in DEPLOYS_ONE and (j.params or {}).get("service") == name)
            ),
            None,
        )
        out.append(
            {
                "name": name,
                "title": svc.title,
                "kind": svc.kind,
                "url": svc.url,
                "domains": list(svc.domains),
                "last": last,
                "deployed": deployed(boxes.get(name, [])),
                "delivers": "deliver" in svc.ops,
                "delivery": deliveries.get(name),
            }
        )
    return out, ""


@bp.get("/catalog")
def catalog() -> Any:
    h = homelab()
    by_cat = {c: [e for e in h.catalog.entries.values() if e.category == c] for c in CATEGORIES}
    return render_template("catalog.html", by_category=by_cat)


@bp.route("/catalog/<entry_id>", methods=["GET", "POST"])
def entry(entry_id: str) -> Any:
    h = homelab()
    try:
        e = h.catalog.get(entry_id)
    except ValidationError as exc:
        abort(404, description=str(exc))
    error, values = None, {}
    if request.method == "POST":
        values = {
            p.name: (request.form.get(p.name) if p.type != "boolean" else bool(request.form.get(p.name)))
            for p in e.parameters
        }
        params = {k: v for k, v in values.items() if v not in (None, "")}
        limit = request.form.get("limit", "")
        check, diff = bool(request.form.get("check")), bool(request.form.get("diff"))
        confirmed = bool(request.form.get("confirm"))
        if not e.parameters and (check or e.forced_check):
            return _start_check(e.id, limit)
        try:
            spec = h.catalog.prepare(e.id, params, limit, check=check, diff=diff, inventory=h.inventory)
            require_confirm(e, confirmed)
        except ValidationError as exc:
            audit(
                "job.start",
                e.id,
                {"params": refused_params(h.catalog, e.id, params), "limit": limit},
                outcome=refused_outcome(h.catalog, e.id, params, exc),
            )
            error = str(exc)
        else:
            job = h.engine.submit(spec, current_user() or "", request_source(), requested_limit=limit)
            audit(
                "job.start",
                f"job {job.id} ({e.id})",
                {"params": job.params, "limit": limit, "check": spec.check, "diff": spec.diff}
                | ({"confirmed": True} if e.needs_confirm else {}),
            )
            return redirect(url_for("views.job", job_id=job.id))
    return render_template(
        "entry.html", e=e, error=error, values=values, groups=_groups_for(e), suggested=_suggestions(e)
    ), 400 if error else 200


def _suggestions(e: Any) -> dict[str, Any]:
    """parameter name -> what its form offers (`suggest:` in the catalog): the known backups, and the
    newest list_backups job they come from, with the entry that refreshes it."""
    out: dict[str, Any] = {}
    for p in e.parameters:
        if p.suggest == "backups":
            known = known_backups(homelab().store)
            out[p.name] = {
                "options": known.backups,
                "list_job": known.list_job,
                "refresh": homelab().catalog.entries.get(LIST_BACKUPS),
            }
    return out


def _start_check(entry_id: str, limit: str) -> Any:
    """A check from the catalog ("Check site (dry run)", or any entry with "Check only") is a drift
    check like a scheduled one: its result reaches the Drift page; one already running there is shown."""
    h = homelab()
    try:
        job, started = h.drift.check(entry_id, limit, current_user() or "", request_source())
    except ValidationError as exc:
        audit("drift.check", entry_id, {"limit": limit}, outcome=f"refused: {exc}"[:200])
        e = h.catalog.get(entry_id)
        return render_template("entry.html", e=e, error=str(exc), values={}, groups=_groups_for(e)), exc.status
    audit(
        "drift.check",
        f"job {job.id} ({entry_id})",
        {"limit": limit},
        outcome="ok" if started else f"already running as job {job.id}",
    )
    return redirect(url_for("views.job", job_id=job.id))


def _groups_for(e: Any) -> list[str]:
    try:
        groups = homelab().inventory.groups()
    except Exception:
        return []
    names = set()
    for t in e.targets:
        names.add(t)
        names.update(groups.get(t, []))
    return sorted(names)


@bp.get("/jobs")
def jobs() -> Any:
    h = homelab()
    f = {k: request.args.get(k, "").strip() for k in ("status", "playbook", "user", "host", "source")}
    q = select(Job)
    if f["status"] in STATES:
        q = q.where(Job.status == f["status"])
    if f["playbook"]:
        q = q.where(Job.playbook == f["playbook"])
    if f["user"]:
        q = q.where(Job.created_by == f["user"])
    if f["source"]:
        q = q.where(Job.source == f["source"])
    with h.store.session() as s:
        rows = list(s.scalars(q.order_by(Job.id.desc()).limit(1000)))
    if f["host"]:
        rows = [r for r in rows if f["host"] in (r.hosts or [])]
    rows = rows[:200]
    return render_template("jobs.html", jobs=rows, f=f, states=STATES, playbooks=sorted(h.catalog.entries))


@bp.get("/jobs/<int:job_id>")
def job(job_id: int) -> Any:
    h = homelab()
    try:
        j = h.engine.get(job_id)
    except ValidationError as exc:
        abort(404, description=str(exc))
    with h.store.session() as s:
        drift_run = s.get(DriftRun, job_id)
    return render_template(
        "job.html",
        drift_run=drift_run,
        # without the bare timestamp lines skipped tasks leave (homelab.joboutput)
        events=shown_output(h.engine.events_after(job_id, 0, limit=100000)) if j.status in FINAL_STATES else [],
        **_summary(j),
    )


@bp.get("/jobs/<int:job_id>/summary")
def job_summary(job_id: int) -> Any:
    return render_template("_summary.html", **_summary(homelab().engine.get(job_id)))


def _summary(j: Job) -> dict[str, Any]:
    """What _summary.html shows (the job page, and again live): the stages (a job whose tasks mark
    them, homelab.jobs.stages), the recap and the task results."""
    h = homelab()
    results = h.engine.task_results(j.id)
    return {
        "job": j,
        "stages": job_stages(results, j.status, j.reason),
        "recaps": h.engine.recaps(j.id),
        "results": results,
    }


@bp.get("/jobs/<int:job_id>/stream")
def job_stream(job_id: int) -> Any:
    h = homelab()
    try:
        h.engine.get(job_id)
    except ValidationError as exc:
        abort(404, description=str(exc))
    after_i = whole_number(request.headers.get("Last-Event-ID") or request.args.get("after"), "after", 0)
    return Response(
        stream_with_context(stream_job(h.engine, job_id, after_i)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@bp.post("/jobs/<int:job_id>/cancel")
def job_cancel(job_id: int) -> Any:
    h = homelab()
    try:
        was = h.engine.cancel(job_id, current_user() or "")
    except ValidationError as exc:
        abort(exc.status, description=str(exc))
    audit("job.cancel", f"job {job_id}", outcome=f"was {was}")
    return redirect(url_for("views.job", job_id=job_id))


@bp.post("/jobs/<int:job_id>/rerun")
def job_rerun(job_id: int) -> Any:
    h = homelab()
    try:
        new = h.engine.rerun(job_id, current_user() or "", request_source())
    except ValidationError as exc:
        audit("job.rerun", f"job {job_id}", outcome=f"refused: {exc}")
        abort(exc.status, description=str(exc))
    audit("job.rerun", f"job {new.id} (re-run of {job_id})", {"params": new.params, "limit": new.requested_limit})
    return redirect(url_for("views.job", job_id=new.id))


@bp.get("/audit")
def audit_log() -> Any:
    h = homelab()
    with h.store.session() as s:
        rows = list(s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(300)))
    return render_template("audit.html", rows=rows)


@bp.app_errorhandler(HTTPException)
def error_page(exc: HTTPException) -> Any:
    """Every HTTP error (4xx, and 500 after Flask logged the traceback): JSON for the API, a page otherwise."""
    code = exc.code or 500
    message = exc.description if code != 500 else "Something went wrong on the server; the log says what."
    if request.path.startswith("/api/"):
        resp = jsonify(error=message)
    else:
        resp = make_response(render_template("error.html", code=code, message=message))
    resp.status_code = code
    headers = dict(exc.get_headers())
    for name in ("Allow", "Retry-After"):  # a 405 says what is allowed; a 429 when to come back
        if name in headers:
            resp.headers[name] = headers[name]
    return resp


@bp.app_errorhandler(ValidationError)
def refused(exc: ValidationError) -> Any:
    """A request the catalog, engine or a route refused, outside a blueprint with its own handler."""
    if request.path.startswith("/api/"):
        return jsonify({"error": str(exc), **({"field": exc.field} if exc.field else {})}), exc.status
    return render_template("error.html", code=exc.status, message=str(exc)), exc.status

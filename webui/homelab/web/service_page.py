"""A service's own page, /services/<name>: its status tiles, its containers and the commit they run
(with its newest delivery, homelab.web.deliveries), the buttons that apply to it (deploy, check,
restart, roll back: catalog entries through the one engine, a disruptive one only once confirmed),
its history charts (response time, up/down, its containers' restarts), its logs tail (the read-only
`logs` catalog entry), its recent jobs, its drift and Jarvis's findings about it, and its on/off
switch (`<role>_enabled` in the inventory, homelab.switch; switching off asks first). The name is
looked up in the service registry and is only ever data: an unknown one is a 404, and nothing from
the request reaches a template as template text."""

from __future__ import annotations

import time
from typing import Any, Iterator

from flask import Blueprint, Response, abort, redirect, render_template, request, stream_with_context, url_for
from sqlalchemy import select

from homelab.catalog import ValidationError
from homelab.facts import deployed_commit
from homelab.history import RANGES, host_history, service_history
from homelab.jobs.stages import DELIVER
from homelab.refused import refused_outcome, refused_params
from homelab.registry import Service
from homelab.states import FINAL_STATES
from homelab.status import age_text, for_tiles
from homelab.store import Job
from homelab.switch import SwitchError, inventory_base, not_switchable, switch, target, variable
from homelab.web.auth import audit, current_user, request_source
from homelab.web.context import homelab
from homelab.web.deliveries import deployed, latest_deliveries
from homelab.web.jobstream import sse

bp = Blueprint("service_page", __name__, url_prefix="/services")
# (catalog entry, the registry capability it needs, the button's words)
ACTIONS = (
    ("deploy_service", "deploy", "Deploy"),
    ("check_service", "deploy", "Check (dry run)"),
    ("restart_service", "restart", "Restart"),
    ("rollback_service", "rollback", "Roll back"),
    ("deliver", "deliver", "Deliver (pipeline)"),
)
LOGS = "logs"
ONE_SERVICE = ("deploy_service", "check_service", "restart_service", "rollback_service", "deliver", LOGS)
EVERY_SERVICE = ("site", "site_check")  # runs that deploy (or check) every enabled service


@bp.app_context_processor
def _platform() -> dict[str, Any]:
    """platform_hosts() for the dashboard's platform tiles: each host's newest facts, with their age."""

    def platform_hosts() -> list[dict[str, Any]] | None:
        facts = getattr(homelab(), "facts", None)
        if facts is None:
            return None
        return [{**r, "age": age_text(r["age_seconds"])} for r in facts.hosts()]

    return {
        "platform_hosts": platform_hosts,
        "bytes_text": bytes_text,
        "uptime_text": uptime_text,
        "host_charts": host_charts,
        "chart_rows": chart_rows,
    }


def _num(v: float | None, digits: int) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _when(iso: str) -> str:
    return iso[:16].replace("T", " ")


def chart_rows(kind: str, data: dict[str, Any]) -> list[list[str]]:
    """A chart's text alternative, row by row: what static/charts.js writes into the same table."""
    b = data["buckets"]
    if kind == "response":
        return [
            [_when(x["start"]), str(x["samples"]), _num(x["response_ms_mean"], 1), _num(x["response_ms_max"], 1)]
            for x in b
        ]
    if kind == "up":
        return [
            [
                _when(x["start"]),
                str(x["samples"]),
                _num(None if x["up_fraction"] is None else x["up_fraction"] * 100, 0),
                x["status"],
            ]
            for x in b
        ]
    if kind == "restarts":
        rows = [
            [_when(x["start"]), f"{c['name']} on {c['host']}", str(x["restart_count"])]
            for c in data["containers"]
            for x in c["buckets"]
        ]
        return sorted(rows, key=lambda r: r[0])
    return [
        [_when(x["start"]), _num(x["cpu_percent"], 1), _num(x["mem_percent"], 1), _num(x["disk_percent"], 1)] for x in b
    ]


def host_charts() -> list[dict[str, Any]]:
    """The dashboard's host charts: each host with facts, its last 24 h (the API's answer for range=24h)."""
    h = homelab()
    facts = getattr(h, "facts", None)
    if facts is None:
        return []
    now = facts.clock()
    return [{"host": r["host"], "history": host_history(h.store, r["host"], RANGES["24h"], now)} for r in facts.hosts()]


def bytes_text(n: int | None) -> str:
    """1.5 GiB, 320 MiB: what a person reads of a byte count; – when unknown."""
    if n is None:
        return "–"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" or size >= 100 else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def uptime_text(seconds: float | None) -> str:
    """3 d 2 h, 5 h 10 min, 12 min; – when unknown."""
    if seconds is None:
        return "–"
    s = int(seconds)
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    return f"{d} d {h} h" if d else (f"{h} h {m} min" if h else f"{m} min")


def _service(name: str) -> Service:
    try:
        services = homelab().inventory.registry.union()
    except Exception as exc:  # a broken inventory: say why, never a traceback
        abort(409, description=f"the service registry cannot be read: {str(exc)[:300]}")
    svc = services.get(name)
    if svc is None:
        abort(404, description=f"'{name[:64]}' is not a service of this homelab")
    return svc


def _actions(svc: Service) -> list[dict[str, Any]]:
    """The buttons that apply: catalog entries present, allowed by the service's registry entry."""
    h = homelab()
    out = []
    for entry_id, cap, label in ACTIONS:
        e = h.catalog.entries.get(entry_id)
        if e is None or cap not in svc.ops or not svc.enabled:
            continue
        out.append(
            {
                "id": e.id,
                "label": label,
                "risk": e.risk,
                "disruptive": e.risk == "disruptive",
                "interrupts": getattr(e, "interrupts", "")
                or f"{svc.title}'s containers stop for a moment; open connections are cut.",
                "description": e.description,
            }
        )
    return out


def _jobs(name: str) -> list[Job]:
    """The newest jobs that acted on this service: its own operations, and site-wide runs."""
    with homelab().store.session() as s:
        rows = list(
            s.scalars(
                select(Job).where(Job.playbook.in_(ONE_SERVICE + EVERY_SERVICE)).order_by(Job.id.desc()).limit(500)
            )
        )
    return [j for j in rows if j.playbook in EVERY_SERVICE or (j.params or {}).get("service") == name][:15]


def _logs_job(name: str, jobs: list[Job]) -> tuple[Job | None, list[dict[str, Any]]]:
    """The newest logs tail of this service (or the one ?logs= names, when it is one) and its lines by host."""
    wanted = request.args.get("logs", "")
    job = None
    if wanted.isascii() and wanted.isdigit() and len(wanted) < 12:
        with homelab().store.session() as s:
            job = s.get(Job, int(wanted))
        if job is None or job.playbook != LOGS or (job.params or {}).get("service") != name:
            job = None
    if job is None:
        job = next((j for j in jobs if j.playbook == LOGS), None)
    if job is None or job.status not in FINAL_STATES:
        return job, []
    report = (job.artifact_data or {}).get("homelab_logs") or {}
    hosts = []
    for host, data in sorted(report.items()):
        if isinstance(data, dict):
            boxes = [c for c in data.get("containers") or [] if isinstance(c, dict)]
            hosts.append({"host": host, "error": str(data.get("error") or ""), "containers": boxes})
    return job, hosts


def _drift(name: str) -> list[dict[str, Any]]:
    """Each host's drift state as it concerns this service: its own drifted tasks (by role)."""
    h = homelab()
    if h.drift is None:
        return []
    out = []
    for st in h.drift.states():
        mine = [t for t in st.tasks or [] if t.get("role") == name]
        state = "drifted" if mine else ("unknown" if st.state == "unknown" else "clean")
        out.append(
            {"host": st.host, "playbook": st.playbook, "state": state, "tasks": mine, "checked_at": st.checked_at}
        )
    return out


def _findings(svc: Service) -> list[Any] | None:
    """Jarvis's open findings about this service (its containers, domains, HTTP route); None when Jarvis is off."""
    h = homelab()
    if h.jarvis is None:
        return None
    from jarvis.models import JarvisFinding

    targets = {f"http:{svc.name}"} | {f"{k}:{d}" for d in svc.domains for k in ("dns", "tls", "http")}
    with h.store.session() as s:
        rows = list(
            s.scalars(select(JarvisFinding).where(JarvisFinding.status != "resolved").order_by(JarvisFinding.id.desc()))
        )
    return [
        r
        for r in rows
        if (r.params or {}).get("service") == svc.name
        or r.target in targets
        or any(r.target.endswith(f"/container:{c}") for c in svc.containers)
    ][:50]


def _switch(svc: Service) -> dict[str, Any]:
    """The on/off switch as the page shows it: whether it applies, the variable and the file it writes."""
    registry = homelab().inventory.registry
    path = target(registry.inventory, svc)
    base = inventory_base(registry.inventory)
    return {
        "why_not": not_switchable(svc, registry.roles),
        "variable": variable(svc),
        "file": str(path.relative_to(base)) if path.is_relative_to(base) else path.name,
        "inventory": registry.inventory.name,
        "stops": ", ".join(svc.containers) or svc.project or svc.name,
        "keeps": ", ".join([*svc.data, *(f"database {d}" for d in svc.databases)]),
    }


def _page(
    svc: Service,
    confirm: dict[str, Any] | None = None,
    logs_error: str = "",
    code: int = 200,
    confirm_off: bool = False,
) -> Any:
    h = homelab()
    status = h.status.one(svc.name) if h.status is not None and svc.enabled else None
    if status is not None:
        status = for_tiles(status)
    jobs = _jobs(svc.name)
    logs_job, logs = _logs_job(svc.name, jobs)
    facts = getattr(h, "facts", None)
    containers = (
        [{**c, "commit": deployed_commit(c)} for c in facts.containers(svc.name)] if facts is not None else None
    )
    logs_entry = h.catalog.entries.get(LOGS)
    history = None
    if h.status is not None:
        history = service_history(h.store, svc.name, RANGES["24h"], h.status.clock())
    return (
        render_template(
            "service.html",
            svc=svc,
            status=status,
            containers=containers,
            deployed=deployed(containers or []),
            delivers="deliver" in svc.ops,
            delivery=latest_deliveries(svc.name).get(svc.name),
            deliver_entry=h.catalog.entries.get(DELIVER),
            actions=_actions(svc),
            confirm=confirm,
            jobs=jobs,
            logs_entry=logs_entry,
            logs_job=logs_job,
            logs=logs,
            logs_error=logs_error,
            logs_values={k: request.form.get(k, "") for k in ("lines", "since")} if request.method == "POST" else {},
            drift=_drift(svc.name),
            findings=_findings(svc),
            switch=_switch(svc),
            confirm_off=confirm_off,
            switched=request.args.get("switched") if request.args.get("switched") in ("on", "off") else None,
            site_entry=h.catalog.entries.get("site"),
            history=history,
        ),
        code,
    )


def tiles_now() -> dict[str, Any]:
    """What the live tiles show: every probed service's current status and every host's newest facts."""
    h = homelab()
    services = [for_tiles(r) for r in h.status.current()] if h.status else []  # in the tiles' order
    facts = getattr(h, "facts", None)
    hosts = [{**r, "age": age_text(r["age_seconds"])} for r in facts.hosts()] if facts is not None else []
    return {"services": services, "hosts": hosts}


def stream_tiles(read: Any, poll: float = 2.0, lifetime: float = 600.0, heartbeat: float = 15.0) -> Iterator[str]:
    """A `tiles` event at once and whenever a new sample changes what they show (ages aside); the
    stream ends after `lifetime` seconds and the browser's EventSource connects again (retry)."""
    yield "retry: 2000\n\n"
    started = last_beat = time.monotonic()
    sent = None
    while time.monotonic() - started < lifetime:
        data = read()
        key = [
            {k: v for k, v in r.items() if k not in ("age", "age_seconds")} for r in data["services"] + data["hosts"]
        ]
        if key != sent:
            sent = key
            last_beat = time.monotonic()
            yield sse("tiles", data)
        elif time.monotonic() - last_beat > heartbeat:
            last_beat = time.monotonic()
            yield sse("tiles", data)  # the ages move on
        time.sleep(poll)


@bp.get("/stream")
def stream() -> Any:
    """Server-Sent Events for the dashboard's and the service pages' tiles (static/live.js)."""

    def read() -> dict[str, Any]:
        try:
            return tiles_now()
        except Exception as exc:  # a broken registry: the tiles stay as they are
            return {"services": [], "hosts": [], "error": str(exc)[:300]}

    return Response(
        stream_with_context(stream_tiles(read)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@bp.get("/<name>")
def page(name: str) -> Any:
    return _page(_service(name))


@bp.post("/<name>/run")
def run(name: str) -> Any:
    """Start one of the service's buttons; a disruptive one asks first (confirm=1 starts it)."""
    h = homelab()
    svc = _service(name)
    entry_id = request.form.get("entry", "")
    action = next((a for a in _actions(svc) if a["id"] == entry_id), None)
    if action is None:
        abort(400, description=f"'{entry_id[:64]}' is not an operation {svc.title} allows here")
    if action["disruptive"] and request.form.get("confirm") != "1":
        return _page(svc, confirm=action)
    params = {"service": svc.name}
    try:
        spec = h.catalog.prepare(action["id"], params, "", inventory=h.inventory)
    except ValidationError as exc:
        audit(
            "job.start",
            action["id"],
            {"params": refused_params(h.catalog, action["id"], params), "limit": ""},
            outcome=refused_outcome(h.catalog, action["id"], params, exc),
        )
        abort(exc.status, description=str(exc))
    job = h.engine.submit(spec, current_user() or "", request_source())
    audit(
        "job.start",
        f"job {job.id} ({action['id']})",
        {"params": job.params, "limit": "", "check": spec.check, "from": f"service page {svc.name}"},
    )
    return redirect(url_for("views.job", job_id=job.id))


@bp.post("/<name>/logs")
def logs(name: str) -> Any:
    """Start the read-only logs tail of this service; the page shows its lines when it ends."""
    h = homelab()
    svc = _service(name)
    if LOGS not in h.catalog.entries:
        abort(404, description="the catalog has no logs entry")
    params: dict[str, Any] = {"service": svc.name}
    for key in ("lines", "since"):
        raw = request.form.get(key, "")
        if raw != "":
            params[key] = raw
    try:
        spec = h.catalog.prepare(LOGS, params, "", inventory=h.inventory)
    except ValidationError as exc:
        audit(
            "job.start",
            LOGS,
            {"params": refused_params(h.catalog, LOGS, params), "limit": ""},
            outcome=refused_outcome(h.catalog, LOGS, params, exc),
        )
        return _page(svc, logs_error=str(exc), code=400)
    job = h.engine.submit(spec, current_user() or "", request_source())
    audit(
        "job.start", f"job {job.id} ({LOGS})", {"params": job.params, "limit": "", "from": f"service page {svc.name}"}
    )
    return redirect(url_for("service_page.page", name=svc.name, logs=job.id, _anchor="logs"))


@bp.post("/<name>/enabled")
def enabled(name: str) -> Any:
    """Switch the service on or off in the inventory (value=true|false); off asks first (confirm=1 writes).
    Nothing runs: the page then offers the deploy that applies it."""
    h = homelab()
    svc = _service(name)
    raw = request.form.get("value", "")
    if raw not in ("true", "false"):
        audit("service.switch", svc.name, {"value": raw[:20]}, outcome="refused: the value must be true or false")
        abort(400, description="the value must be true or false")
    why = not_switchable(svc, h.inventory.registry.roles)
    if why:
        audit("service.switch", svc.name, {"value": raw}, outcome=f"refused: {why}"[:200])
        abort(409, description=why)
    if raw == "false" and request.form.get("confirm") != "1":
        return _page(svc, confirm_off=True)
    try:
        done = switch(h.inventory.registry, svc.name, raw)
    except SwitchError as exc:
        audit("service.switch", svc.name, {"value": raw}, outcome=f"refused: {exc}"[:300])
        abort(exc.status, description=str(exc))
    base = inventory_base(h.inventory.registry.inventory)
    audit(
        "service.switch",
        f"{svc.name} {'on' if done.value else 'off'}",
        {
            "variable": done.variable,
            "value": done.value,
            "before": done.before,
            "file": str(done.path.relative_to(base)) if done.path.is_relative_to(base) else done.path.name,
            "created": done.created,
        },
    )
    h.catalog.refresh()
    return redirect(url_for("service_page.page", name=svc.name, switched="on" if done.value else "off"))

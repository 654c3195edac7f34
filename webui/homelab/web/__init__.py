"""Flask application factory: the web UI and REST API over the one job engine. This is where the
parts are composed: the core and the engine, the drift service, the alerts of a failed pipeline
(homelab.jobs.stages), the status cycle, the scheduler (each action registered by the part that
handles it) and, unless HOMELAB_JARVIS=0, Jarvis and its pages."""

from __future__ import annotations

import os
import secrets
import sys
from typing import Any

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from markupsafe import Markup
from werkzeug.middleware.proxy_fix import ProxyFix

from homelab import joboutput
from homelab.ansi import ansi_to_html
from homelab.catalog import Catalog
from homelab.drift import DriftService
from homelab.facts import FactsService
from homelab.inventory import Inventory
from homelab.jobs import JobEngine
from homelab.jobs.stages import StageAlerts
from homelab.notify import Notifier
from homelab.schedule.definitions import Schedules
from homelab.schedule.runner import Scheduler, run_playbook_handler
from homelab.settings import Settings
from homelab.status import StatusService
from homelab.store import Store
from homelab.web import api, auth, service_page, services, settings_page, views
from homelab.web import drift as drift_views
from homelab.web.context import Homelab, homelab  # noqa: F401 (re-exported)
from homelab.web.inputs import IdConverter


class _Sessions(SecureCookieSessionInterface):
    """Secure cookies: HttpOnly and SameSite=Lax always, Secure on HTTPS (or always, by setting)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        mode = app.config.get("HOMELAB_COOKIE_SECURE", "auto")
        if mode in ("1", "true", "yes"):
            return True
        if mode in ("0", "false", "no"):
            return False
        try:
            return request.is_secure
        except RuntimeError:
            return False


def _secret_key(settings: Settings) -> str:
    if os.environ.get("HOMELAB_SECRET_KEY"):
        return os.environ["HOMELAB_SECRET_KEY"]
    path = settings.var_dir / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def create_app(
    settings: Settings | None = None,
    start_engine: bool = True,
    engine_kwargs: dict[str, Any] | None = None,
    scheduler_kwargs: dict[str, Any] | None = None,
) -> Flask:
    settings = settings or Settings.from_env()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=_secret_key(settings),
        SESSION_COOKIE_NAME="homelab_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=12 * 3600,
        HOMELAB_COOKIE_SECURE=settings.cookie_secure,
        MAX_CONTENT_LENGTH=256 * 1024,
        JSON_SORT_KEYS=False,
    )
    app.session_interface = _Sessions()
    app.url_map.converters["int"] = IdConverter  # before any route: ids beyond SQLite's range are 404s
    if settings.trust_proxy:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]

    engine = JobEngine.for_settings(settings, **(engine_kwargs or {}))
    store, inventory, catalog = engine.store, engine.inventory, engine.catalog
    schedules = Schedules(settings.schedules, catalog, inventory)
    notifier = Notifier.from_env(schedules.notify_config())
    drift = DriftService(settings, store, catalog, inventory, engine, notifier)
    StageAlerts(engine, notifier, settings.public_url)  # a delivery (a job with stages) that fails is told
    scheduler = Scheduler(
        store,
        schedules,
        engine.wait,
        **{
            "lease_seconds": settings.scheduler_lease_seconds,
            "tick": settings.scheduler_lease_seconds / 6,
            **(scheduler_kwargs or {}),
        },
    )
    scheduler.register("check", drift.check_schedule)
    scheduler.register("run", run_playbook_handler(engine))
    status = StatusService(
        settings, store, lambda: inventory.registry.union().values(), hosts=lambda: inventory.registry.by_host()
    )
    status.register(scheduler)  # the "status" cycle, every HOMELAB_STATUS_INTERVAL seconds
    facts = FactsService(settings, store, catalog, inventory, engine)
    facts.register(scheduler)  # the "facts" cycle (the read-only facts playbook), every HOMELAB_FACTS_INTERVAL
    jarvis = _jarvis(settings, store, catalog, inventory, engine, notifier, scheduler)
    app.extensions["homelab"] = Homelab(
        settings, store, catalog, inventory, engine, auth.LoginLimiter(), schedules, drift, scheduler, jarvis, status
    )
    app.extensions["homelab"].facts = facts

    generated = auth.ensure_admin(store)
    if generated:
        print(f"homelab: first start, the admin password is (shown once): {generated}", file=sys.stderr, flush=True)

    app.register_blueprint(auth.bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(services.api_bp)
    app.register_blueprint(service_page.bp)
    app.register_blueprint(settings_page.bp)
    app.register_blueprint(drift_views.bp)
    app.register_blueprint(drift_views.api_bp)
    from homelab.web import jarvis as jarvis_views

    app.register_blueprint(jarvis_views.bp)
    app.register_blueprint(jarvis_views.api_bp)
    app.jinja_env.globals.update(jarvis_summary=jarvis_views.summary_for_dashboard)
    app.before_request(auth.guard)
    app.after_request(_security_headers)
    app.jinja_env.globals.update(csrf_token=auth.csrf_token, current_user=auth.current_user)
    app.jinja_env.globals.update(group_results=joboutput.group_results, seconds_text=joboutput.seconds_text)
    app.jinja_env.filters["ansi"] = lambda text: Markup(ansi_to_html(text))  # ansi_to_html escapes everything

    if start_engine:
        engine.start()
        if jarvis is not None:
            jarvis.start()
        if settings.scheduler:
            scheduler.start()
    return app


def _jarvis(
    settings: Settings,
    store: Store,
    catalog: Catalog,
    inventory: Inventory,
    engine: JobEngine,
    notifier: Notifier,
    scheduler: Scheduler,
) -> Any:
    """Jarvis (jarvis/), unless HOMELAB_JARVIS=0; its diagnosis cycles fire on `jarvis` schedules."""
    from jarvis.config import JarvisSettings

    js = JarvisSettings.from_env()
    if not js.enabled:
        return None
    from jarvis.service import Jarvis

    jarvis = Jarvis(settings, store, catalog, inventory, engine, notifier, js)
    jarvis.register(scheduler)
    return jarvis


def stop_app(app: Flask, timeout: float = 30.0) -> None:
    """Stop the scheduler (releasing its lease for another worker), then the engine."""
    h: Homelab = app.extensions["homelab"]
    if h.scheduler is not None:
        h.scheduler.stop()
    if h.jarvis is not None:
        h.jarvis.stop(timeout)
    h.engine.stop(timeout)


def _security_headers(resp: Any) -> Any:
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    )
    return resp

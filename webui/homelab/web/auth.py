"""Login, sessions, CSRF, API tokens, login rate limiting and the audit trail."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import deque
from typing import Any

from flask import Blueprint, abort, g, jsonify, make_response, redirect, render_template, request, session, url_for
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from homelab.store import ApiToken, Store, User, utcnow

bp = Blueprint("auth", __name__)
PUBLIC_ENDPOINTS = {"auth.login", "views.healthz", "static"}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
TOKEN_PREFIX = "hl_"


class LoginLimiter:
    """At most `limit` failed logins per `window` seconds per client address and per user name."""

    def __init__(self, limit: int = 5, window: float = 300.0) -> None:
        self.limit, self.window = limit, window
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, *keys: str) -> int:
        now = time.monotonic()
        with self._lock:
            wait = 0.0
            for k in keys:
                q = self._fails.get(k)
                while q and q[0] < now - self.window:
                    q.popleft()
                if q and len(q) >= self.limit:
                    wait = max(wait, q[0] + self.window - now)
            return int(wait) + 1 if wait else 0

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for k in keys:
                self._fails.setdefault(k, deque()).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._fails.pop(k, None)


def ensure_admin(store: Store) -> str | None:
    """The admin account: password from HOMELAB_ADMIN_PASSWORD, else generated once; returns a generated one."""
    env_pw = os.environ.get("HOMELAB_ADMIN_PASSWORD", "")
    with store.session.begin() as s:
        admin = s.scalar(select(User).where(User.username == "admin"))
        if admin is None:
            pw = env_pw or secrets.token_urlsafe(15)
            s.add(User(username="admin", password_hash=generate_password_hash(pw)))
            return None if env_pw else pw
        if env_pw and not check_password_hash(admin.password_hash, env_pw):
            admin.password_hash = generate_password_hash(env_pw)
    return None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(store: Store, username: str, name: str) -> str:
    """A new API token; only its hash is stored, the token itself is shown once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with store.session.begin() as s:
        s.add(ApiToken(name=name[:120], username=username, prefix=token[:10], token_hash=hash_token(token)))
    return token


def user_for_token(store: Store, token: str) -> tuple[str, str] | None:
    """(user name, token name) of a valid token, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with store.session.begin() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token), ApiToken.revoked.is_(False)))
        if row is None:
            return None
        row.last_used_at = utcnow()
        return row.username, row.name


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def current_user() -> str | None:
    return g.get("user")


def client_ip() -> str:
    return request.remote_addr or ""


def audit(action: str, target: str = "", params: dict[str, Any] | None = None, outcome: str = "ok",
          actor: str | None = None) -> None:
    from homelab.web import homelab
    who = actor or current_user() or "anonymous"
    if actor is None and g.get("token_name"):
        who = f"{who} (token '{g.token_name}')"
    homelab().store.audit(who, action, target, params, client_ip(), outcome)


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def guard() -> Any:
    """Every request: who is this (session or bearer token), and is a state change CSRF-safe."""
    from homelab.web import homelab
    g.user, g.via_token, g.token_name = None, False, None
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        found = user_for_token(homelab().store, header[7:].strip())
        if found is None:
            return jsonify(error="the API token is unknown or revoked"), 401
        g.user, g.token_name = found
        g.via_token = True
    elif session.get("user"):
        g.user = session["user"]
    if request.endpoint in PUBLIC_ENDPOINTS:
        if request.method in UNSAFE_METHODS and not g.via_token:
            _check_csrf()
        return None
    if g.user is None:
        if _wants_json() or request.accept_mimetypes.best == "text/event-stream":
            return jsonify(error="log in or send an API token (Authorization: Bearer ...)"), 401
        return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
    if request.method in UNSAFE_METHODS and not g.via_token:
        _check_csrf()
    return None


def _check_csrf() -> None:
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token", "")
    expected = session.get("csrf", "")
    if not expected or not sent or not hmac.compare_digest(sent, expected):
        if _wants_json():
            abort(make_response(jsonify(error="missing or wrong CSRF token (send the X-CSRF-Token header)"), 403))
        abort(403, description="The form expired or did not come from this site (CSRF check failed). Reload the page and try again.")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    from homelab.web import homelab
    error = None
    status = 200
    nxt = request.values.get("next") or ""
    if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        nxt = url_for("views.dashboard")
    if request.method == "POST":
        username = request.form.get("username", "")[:64]
        password = request.form.get("password", "")
        keys = (f"ip:{client_ip()}", f"user:{username}")
        limiter = homelab().limiter
        wait = limiter.retry_after(*keys)
        if wait:
            audit("login", username, outcome="rate limited", actor=username or "anonymous")
            return render_template("login.html", error=f"Too many failed logins. Try again in {wait} seconds.", next=nxt), 429, {"Retry-After": str(wait)}
        with homelab().store.session() as s:
            user = s.scalar(select(User).where(User.username == username))
        if user and check_password_hash(user.password_hash, password):
            limiter.succeeded(*keys)
            session.clear()
            session.permanent = True
            session["user"] = user.username
            csrf_token()
            audit("login", username, actor=username)
            return redirect(nxt)
        limiter.failed(*keys)
        audit("login", username, outcome="wrong user name or password", actor=username or "anonymous")
        error, status = "Wrong user name or password.", 401
    return render_template("login.html", error=error, next=nxt), status


@bp.post("/logout")
def logout() -> Any:
    audit("logout")
    session.clear()
    return redirect(url_for("auth.login"))


@bp.route("/tokens", methods=["GET", "POST"])
def tokens() -> Any:
    from homelab.web import homelab
    store = homelab().store
    new_token = None
    if request.method == "POST":
        if request.form.get("revoke"):
            with store.session.begin() as s:
                row = s.get(ApiToken, int(request.form["revoke"]))
                if row is not None and row.username == current_user():
                    row.revoked = True
                    audit("token.revoke", row.name)
        else:
            name = (request.form.get("name") or "unnamed").strip()[:120]
            new_token = create_token(store, current_user() or "", name)
            audit("token.create", name)
    with store.session() as s:
        rows = list(s.scalars(select(ApiToken).where(ApiToken.username == current_user()).order_by(ApiToken.id.desc())))
    return render_template("tokens.html", tokens=rows, new_token=new_token)

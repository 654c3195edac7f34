"""Login, sessions, CSRF, API tokens, login rate limiting and the audit trail."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import secrets
import threading
import time
import unicodedata
from collections import OrderedDict
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import delete, select
from werkzeug.security import check_password_hash, generate_password_hash

from homelab.states import TOKEN_KINDS
from homelab.store import ApiToken, Store, User, WebSession, rowcount, utcnow
from homelab.web.inputs import whole_number

bp = Blueprint("auth", __name__)
PUBLIC_ENDPOINTS = {"auth.login", "views.healthz", "static"}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
TOKEN_PREFIX = "hl_"


class LoginLimiter:
    """Failed logins slow down the address they come from, and only that address.

    The first `free` failures cost nothing; after them an address must wait base * 2**(n - free)
    seconds after its n-th failure (at most `cap`) before it may try again. Guessing from one address
    soon costs a quarter of an hour a try, while the owner, from any other address, logs in at once:
    a stranger cannot lock the account (there is no per-user lock). The key is request.remote_addr
    (an IPv6 /64 counts as one address), which is the reverse proxy's address unless
    HOMELAB_TRUST_PROXY lets ProxyFix take it from X-Forwarded-For. An address is forgotten `forget`
    seconds after its last failure or at its first success; at most `max_addresses` are remembered.
    """

    def __init__(
        self,
        free: int = 5,
        base: float = 5.0,
        cap: float = 900.0,
        forget: float = 86400.0,
        max_addresses: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free, self.base, self.cap, self.forget, self.max_addresses = free, base, cap, forget, max_addresses
        self.clock = clock
        self._fails: OrderedDict[str, tuple[int, float]] = OrderedDict()  # key -> (failures, last failure)
        self._lock = threading.Lock()

    @staticmethod
    def key(address: str) -> str:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return address[:64]
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip)

    def retry_after(self, address: str) -> int:
        """Seconds this address must still wait before its next attempt (0: it may try now)."""
        now = self.clock()
        with self._lock:
            n, last = self._fails.get(self.key(address), (0, now))
            if n and now - last > self.forget:
                self._fails.pop(self.key(address), None)
                return 0
            if n < self.free:
                return 0
            wait = min(self.cap, self.base * 2 ** (n - self.free)) - (now - last)
            return math.ceil(wait) if wait > 0 else 0

    def failed(self, address: str) -> None:
        key = self.key(address)
        with self._lock:
            n, _ = self._fails.pop(key, (0, 0.0))
            self._fails[key] = (n + 1, self.clock())
            while len(self._fails) > self.max_addresses:
                self._fails.popitem(last=False)  # the address that failed longest ago

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._fails.pop(self.key(address), None)


def ensure_admin(store: Store) -> str | None:
    """The admin account: password from HOMELAB_ADMIN_PASSWORD, else generated once; returns a generated one."""
    env_pw = os.environ.get("HOMELAB_ADMIN_PASSWORD", "")
    with store.session.begin() as s:
        admin = s.scalar(select(User).where(User.username == "admin"))
        if admin is None:
            pw = env_pw or secrets.token_urlsafe(15)
            s.add(User(username="admin", password_hash=generate_password_hash(pw)))
            return None if env_pw else pw
        changed = bool(env_pw) and not check_password_hash(admin.password_hash, env_pw)
        if changed:
            admin.password_hash = generate_password_hash(env_pw)
    if changed:
        end_all_sessions(store, "admin")  # a new password logs the old one's sessions out
    return None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(store: Store, username: str, name: str, kind: str = "api") -> str:
    """A new API token; only its hash is stored, the token itself is shown once. `kind` ("api" or
    "cli") is the source recorded on the jobs it starts."""
    if kind not in TOKEN_KINDS:
        raise ValueError(f"token kind must be one of {', '.join(TOKEN_KINDS)}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with store.session.begin() as s:
        s.add(ApiToken(name=name[:120], username=username, prefix=token[:10], token_hash=hash_token(token), kind=kind))
    return token


def user_for_token(store: Store, token: str) -> tuple[str, str, str] | None:
    """(user name, token name, token kind) of a valid token, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with store.session.begin() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token), ApiToken.revoked.is_(False)))
        if row is None:
            return None
        row.last_used_at = utcnow()
        return row.username, row.name, row.kind if row.kind in TOKEN_KINDS else "api"


def start_session(store: Store, username: str) -> None:
    """Log this browser in: a fresh signed cookie (no fixation) naming a new server-side session."""
    sid = secrets.token_urlsafe(32)
    now = utcnow()
    with store.session.begin() as s:
        s.execute(delete(WebSession).where(WebSession.expires_at < now))
        s.add(
            WebSession(
                id_hash=hash_token(sid), username=username, expires_at=now + current_app.permanent_session_lifetime
            )
        )
    session.clear()
    session.permanent = True
    session["user"] = username
    session["sid"] = sid
    csrf_token()


def session_user(store: Store) -> str | None:
    """The user of this browser's cookie, only while its server-side session exists and is unexpired."""
    user, sid = session.get("user"), session.get("sid")
    if not isinstance(user, str) or not isinstance(sid, str):
        return None
    with store.session() as s:
        row = s.get(WebSession, hash_token(sid))
    if row is None or row.username != user or row.expires_at <= utcnow():
        return None
    return user


def end_session(store: Store) -> None:
    sid = session.get("sid")
    if isinstance(sid, str):
        with store.session.begin() as s:
            s.execute(delete(WebSession).where(WebSession.id_hash == hash_token(sid)))
    session.clear()


def end_all_sessions(store: Store, username: str) -> int:
    """Log a user out everywhere (after a password change); returns how many sessions ended."""
    with store.session.begin() as s:
        return rowcount(s.execute(delete(WebSession).where(WebSession.username == username)))


def request_source() -> str:
    """Where a job request came from, decided by its credential, never by a header: "web" for a
    browser session, the token's kind ("api", or "cli" for the CLI's own token) for a bearer token.
    Schedules and Jarvis start jobs in Python and pass their source there."""
    return g.token_kind if g.get("via_token") else "web"


def safe_next(raw: str | None) -> str | None:
    """Where to send a browser after login: a path on this site, else None.

    Browsers drop tabs and line breaks anywhere in a URL, strip leading spaces and control
    characters, and read '\\' as '/': '/\\t/evil.com', '/\\evil.com' or ' //evil.com' all become
    '//evil.com', another site. So anything with a control, format or space character or a
    backslash is refused outright rather than cleaned, and what is left must parse as a bare path.
    """
    if not isinstance(raw, str) or not raw or len(raw) > 2048:
        return None
    if "\\" in raw or any(unicodedata.category(c)[0] in "CZ" for c in raw):
        return None
    if not raw.startswith("/") or raw.startswith("//"):
        return None
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    return raw


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def current_user() -> str | None:
    return g.get("user")


def client_ip() -> str:
    return request.remote_addr or ""


def audit(
    action: str, target: str = "", params: dict[str, Any] | None = None, outcome: str = "ok", actor: str | None = None
) -> None:
    from homelab.web.context import homelab

    who = actor or current_user() or "anonymous"
    if actor is None and g.get("token_name"):
        who = f"{who} (token '{g.token_name}')"
    homelab().store.audit(who, action, target, params, client_ip(), outcome)


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def guard() -> Any:
    """Every request: who is this (session or bearer token), and is a state change CSRF-safe."""
    from homelab.web.context import homelab

    g.user, g.via_token, g.token_name, g.token_kind = None, False, None, None
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        found = user_for_token(homelab().store, header[7:].strip())
        if found is None:
            return jsonify(error="the API token is unknown or revoked"), 401
        g.user, g.token_name, g.token_kind = found
        g.via_token = True
    elif session.get("user"):
        g.user = session_user(homelab().store)
        if g.user is None:  # logged out (or expired) on the server: this cookie no longer counts
            session.pop("user", None)
            session.pop("sid", None)
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
        abort(
            403,
            description="The form expired or did not come from this site (CSRF check failed). "
            "Reload the page and try again.",
        )


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    from homelab.web.context import homelab

    error = None
    status = 200
    nxt = safe_next(request.values.get("next")) or url_for("views.dashboard")
    if request.method == "POST":
        username = request.form.get("username", "")[:64]
        password = request.form.get("password", "")
        limiter = homelab().limiter
        wait = limiter.retry_after(client_ip())
        if wait:
            audit("login", username, outcome="rate limited", actor=username or "anonymous")
            return (
                render_template("login.html", error=f"Too many failed logins. Try again in {wait} seconds.", next=nxt),
                429,
                {"Retry-After": str(wait)},
            )
        with homelab().store.session() as s:
            user = s.scalar(select(User).where(User.username == username))
        if user and check_password_hash(user.password_hash, password):
            limiter.succeeded(client_ip())
            start_session(homelab().store, user.username)
            audit("login", username, actor=username)
            return redirect(nxt)
        limiter.failed(client_ip())
        audit("login", username, outcome="wrong user name or password", actor=username or "anonymous")
        error, status = "Wrong user name or password.", 401
    return render_template("login.html", error=error, next=nxt), status


@bp.post("/logout")
def logout() -> Any:
    from homelab.web.context import homelab

    audit("logout")
    end_session(homelab().store)
    return redirect(url_for("auth.login"))


@bp.route("/tokens", methods=["GET", "POST"])
def tokens() -> Any:
    from homelab.web.context import homelab

    store = homelab().store
    new_token = None
    if request.method == "POST":
        if request.form.get("revoke"):
            with store.session.begin() as s:
                row = s.get(ApiToken, whole_number(request.form["revoke"], "revoke", 0))
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

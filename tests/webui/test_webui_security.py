"""The web UI and API against hostile input: redirects after login, secrets of refused requests,
malformed ids, numbers and bodies, logout, login throttling and who a job says started it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from homelab.catalog import ValidationError
from homelab.masking import MASK
from homelab.settings import Settings
from homelab.store import AuditEntry, Job
from homelab.web.auth import LoginLimiter, create_token

from webui_helpers import ADMIN_PASSWORD, HERE, csrf_from, write_inventory


def _h(app: Any) -> Any:
    return app.extensions["homelab"]


def _token(app: Any, kind: str = "api") -> dict[str, str]:
    return {"Authorization": "Bearer " + create_token(_h(app).store, "admin", f"test-{kind}", kind=kind)}


def _login(client: Any, password: str = ADMIN_PASSWORD, **data: str) -> Any:
    page = client.get("/login").get_data(as_text=True)
    return client.post(
        "/login", data={"username": "admin", "password": password, "csrf_token": csrf_from(page), **data}
    )


def _csrf(client: Any) -> str:
    return csrf_from(client.get("/tokens").get_data(as_text=True))


def _finished_job(app: Any) -> int:
    with _h(app).store.session.begin() as s:
        job = Job(playbook="hello", status="successful")
        s.add(job)
        s.flush()
        return job.id


def _audit_rows(app: Any, action: str) -> list[AuditEntry]:
    with _h(app).store.session() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


# ------------------------------------------------------------------ 1. redirect after login
HOSTILE_NEXT = [
    "/\t/evil.com",
    "/\\evil.com",
    "\\\\evil.com",
    " //evil.com",
    "//evil.com",
    "///evil.com",
    "/\r\n//evil.com",
    "\r\n//evil.com",
    "/\n/evil.com",
    "/\x00/evil.com",
    "\x01//evil.com",
    "/\x7f/evil.com",
    "/\u2028/evil.com",
    "/\u00a0/evil.com",
    "/\ufeff/evil.com",
    "https://evil.com",
    "http:/evil.com",
    "javascript:alert(1)",
    "evil.com",
    "/jobs\r\nSet-Cookie: x=1",
]


@pytest.mark.parametrize("nxt", HOSTILE_NEXT, ids=repr)
def test_login_never_redirects_to_another_site_whatever_next_holds(client: Any, nxt: str) -> None:
    page = client.get("/login", query_string={"next": nxt}).get_data(as_text=True)
    assert 'name="next" value="/"' in page
    r = _login(client, next=nxt)
    assert r.status_code == 302, r.get_data(as_text=True)
    assert r.headers["Location"] == "/"


@pytest.mark.parametrize("nxt", ["/jobs?status=failed", "/catalog/hello", "/%2F%2Fevil.com", "/jobs/1#x"])
def test_login_returns_to_a_path_of_this_site(client: Any, nxt: str) -> None:
    r = _login(client, next=nxt)
    assert r.status_code == 302
    loc = urlsplit(r.headers["Location"])
    assert not loc.scheme and not loc.netloc and r.headers["Location"] == nxt


# ------------------------------------------------------------------ 2. refused requests in the audit log
SECRETS = ("mauve-sekrit-1", "12x4-sekrit-2", "bogus-sekrit-3", "hunter2-sekrit-4")


@pytest.fixture
def vault_settings(tmp_path: Path) -> Settings:
    """A catalog whose secrets have innocent names (`colour`, `pin`): masking must follow the schema."""
    var = tmp_path / "var"
    var.mkdir()
    catalog = tmp_path / "catalog.yml"
    catalog.write_text(f"""---
playbook_dir: {HERE / "playbooks"}
playbooks:
  - id: vault
    title: Vault
    category: diagnose
    risk: read-only
    playbook: hello.yml
    targets: [lab]
    parameters:
      colour: {{type: string, secret: true}}
      pin: {{type: integer, secret: true}}
      flavour: {{type: enum, enum: [plain, fancy], default: plain}}
      greeting: {{type: string, pattern: "^[a-z]+$"}}
""")
    return Settings.from_env(
        {
            "HOMELAB_VAR_DIR": str(var),
            "HOMELAB_CATALOG": str(catalog),
            "HOMELAB_SCHEDULER": "0",
            "HOMELAB_INVENTORY": str(write_inventory(tmp_path / "inventory.yml")),
        }
    )


@pytest.fixture
def vault_app(vault_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Any:
    from homelab.web import create_app, stop_app

    monkeypatch.setenv("HOMELAB_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("HOMELAB_JARVIS", "1")
    app = create_app(vault_settings)
    yield app
    stop_app(app, timeout=60)


def test_a_refused_request_never_stores_or_shows_its_secret_parameters(vault_app: Any) -> None:
    app, client = vault_app, vault_app.test_client()
    hdr = _token(app)
    bodies = [
        # pin is refused, and the catalog's message quotes the value it refuses
        {"playbook": "vault", "params": {"colour": SECRETS[0], "pin": SECRETS[1], "greeting": "hi"}},
        # refused for an undeclared name: a misspelt secret is still a secret
        {"playbook": "vault", "params": {"colour": SECRETS[0], "colur": SECRETS[2]}},
        # refused for another parameter; the secrets were valid
        {"playbook": "vault", "params": {"colour": SECRETS[0], "pin": 1234, "flavour": "spicy"}},
        {"playbook": "no-such-entry", "params": {"colour": SECRETS[3]}},
        {"playbook": "vault", "params": [SECRETS[3]]},
    ]
    for body in bodies:
        r = client.post("/api/v1/jobs", json=body, headers=hdr)
        assert r.status_code in (400, 404), r.get_json()
    login = app.test_client()
    assert _login(login).status_code == 302
    form = login.get("/catalog/vault").get_data(as_text=True)
    r = login.post(
        "/catalog/vault",
        data={"csrf_token": csrf_from(form), "colour": SECRETS[0], "pin": SECRETS[1], "flavour": "plain"},
    )
    assert r.status_code == 400 and SECRETS[0] not in r.get_data(as_text=True)
    with pytest.raises(ValidationError):
        _h(app).jarvis.propose("vault", {"colour": SECRETS[3], "flavour": "spicy"}, "", "test", "admin")

    rows = _audit_rows(app, "job.start") + _audit_rows(app, "jarvis.proposal")
    assert len(rows) == len(bodies) + 2 and all(r.outcome.startswith("refused") for r in rows)
    first = rows[0].params["params"]
    assert first == {"colour": MASK, "pin": MASK, "greeting": "hi"}
    assert rows[2].params["params"]["flavour"] == "spicy" and rows[2].params["params"]["pin"] == MASK
    page = login.get("/audit").get_data(as_text=True)
    stored = (_h(app).settings.var_dir / "homelab.db").read_bytes()
    wal = _h(app).settings.var_dir / "homelab.db-wal"
    stored += wal.read_bytes() if wal.exists() else b""
    for secret in SECRETS:
        assert secret not in page, secret
        assert secret.encode() not in stored, secret
        for r in rows:
            assert secret not in json.dumps(r.params) and secret not in r.outcome


# ------------------------------------------------------------------ 3. malformed input is a 4xx, never a 500
TOO_BIG = [str(2**63), str(2**64), "9" * 40, "١٢", "²"]


def test_ids_beyond_sqlite_or_in_other_scripts_are_404_on_every_route(client: Any, app: Any) -> None:
    assert _login(client).status_code == 302
    token = _token(app)
    csrf = _csrf(client)
    api = [
        ("GET", "/api/v1/jobs/{}"),
        ("GET", "/api/v1/jobs/{}/events"),
        ("GET", "/api/v1/jobs/{}/stream"),
        ("POST", "/api/v1/jobs/{}/cancel"),
        ("POST", "/api/v1/jobs/{}/rerun"),
        ("GET", "/api/v1/drift/checks/{}"),
        ("POST", "/api/v1/jarvis/actions/{}/approve"),
        ("POST", "/api/v1/jarvis/actions/{}/reject"),
    ]
    web = [
        ("GET", "/jobs/{}"),
        ("GET", "/jobs/{}/summary"),
        ("GET", "/jobs/{}/stream"),
        ("POST", "/jobs/{}/cancel"),
        ("POST", "/jobs/{}/rerun"),
        ("POST", "/jarvis/actions/{}/approve"),
        ("POST", "/jarvis/actions/{}/reject"),
    ]
    for job_id in TOO_BIG:
        for method, path in api:
            r = client.open(path.format(job_id), method=method, headers=token)
            assert r.status_code == 404 and "error" in r.get_json(), (method, path, job_id, r.status_code)
        for method, path in web:
            r = client.open(path.format(job_id), method=method, data={"csrf_token": csrf})
            assert r.status_code == 404 and "<h1>404</h1>" in r.get_data(as_text=True), (
                method,
                path,
                job_id,
                r.status_code,
            )
    largest = str(2**63 - 1)  # still an id SQLite can look up: no such job, but no overflow either
    for method, path in api:
        r = client.open(path.format(largest), method=method, headers=token)
        assert r.status_code in (200, 404, 409) and r.is_json, (method, path, r.status_code)
    for method, path in web:
        assert client.open(path.format(largest), method=method, data={"csrf_token": csrf}).status_code in (404, 409), (
            path
        )


@pytest.mark.parametrize("after", ["١٢", "²", "12 ", "-1", "1e3", "0x10", "9" * 19, "9" * 5000])
def test_after_must_be_plain_ascii_digits_on_every_route_that_takes_it(client: Any, app: Any, after: str) -> None:
    assert _login(client).status_code == 302
    job_id = _finished_job(app)
    token = _token(app)
    for path in (f"/api/v1/jobs/{job_id}/events", f"/api/v1/jobs/{job_id}/stream"):
        r = client.get(path, query_string={"after": after}, headers=token)
        assert r.status_code == 400 and "after" in r.get_json()["error"], (path, r.status_code)
        r = client.get(path, headers={**token, "Last-Event-ID": after})
        assert r.status_code == 400 or path.endswith("/events"), (path, r.status_code)
    r = client.get(f"/jobs/{job_id}/stream", query_string={"after": after})
    assert r.status_code == 400 and "after must be" in r.get_data(as_text=True)
    assert client.get(f"/api/v1/jobs/{job_id}/events?after=0", headers=token).status_code == 200


def _nested(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


@pytest.mark.parametrize(
    "body",
    [
        _nested(10000, "list"),
        _nested(10000, "dict"),
        _nested(200, "list"),
        '{"playbook": "hello", "params": {"greeting": "\\ud800"}}',
        '{"playbook": "hello", "params": {"\\udfff": "x"}}',
        '{"playbook": "hel\\ud83dlo"}',
    ],
    ids=["list10k", "dict10k", "list200", "value", "key", "id"],
)
def test_deep_or_non_unicode_json_bodies_are_400_everywhere(client: Any, app: Any, body: str) -> None:
    token = {**_token(app), "Content-Type": "application/json"}
    for path in ("/api/v1/jobs", "/api/v1/drift/check", "/api/v1/drift/fix", "/api/v1/jarvis/actions/1/reject"):
        r = client.post(path, data=body, headers=token)
        assert r.status_code == 400, (path, r.status_code, r.get_data(as_text=True)[:300])
        assert "nested" in r.get_json()["error"] or "Unicode" in r.get_json()["error"]
    with _h(app).store.session() as s:
        assert s.scalars(select(Job)).first() is None
    assert _login(client).status_code == 302
    assert client.get("/audit").status_code == 200


def test_a_body_over_the_size_limit_is_413_json(client: Any, app: Any) -> None:
    body = json.dumps({"playbook": "hello", "params": {"greeting": "a" * (app.config["MAX_CONTENT_LENGTH"] + 1)}})
    r = client.post("/api/v1/jobs", data=body, headers={**_token(app), "Content-Type": "application/json"})
    assert r.status_code == 413 and "error" in r.get_json()


@pytest.mark.parametrize("revoke", ["abc", "١", "9" * 40, str(2**63), "-1"])
def test_revoking_a_token_by_a_malformed_id_is_a_400_page(client: Any, app: Any, revoke: str) -> None:
    assert _login(client).status_code == 302
    r = client.post("/tokens", data={"revoke": revoke, "csrf_token": _csrf(client)})
    assert r.status_code == 400 and "revoke must be a whole number" in r.get_data(as_text=True)


def test_a_lone_surrogate_in_a_form_or_query_never_breaks_a_page(client: Any, app: Any) -> None:
    assert _login(client).status_code == 302
    form = client.get("/catalog/hello").get_data(as_text=True)
    # %ED%A0%80 is a surrogate encoded as UTF-8: not valid UTF-8, decoded with replacement characters
    r = client.post(
        "/catalog/hello",
        data=f"csrf_token={csrf_from(form)}&greeting=%ED%A0%80",
        content_type="application/x-www-form-urlencoded",
    )
    assert r.status_code == 400
    assert client.get("/jobs?playbook=%ED%A0%80").status_code == 200
    assert client.get("/audit").status_code == 200


# ------------------------------------------------------------------ 4. logout ends the session on the server
def test_a_cookie_captured_before_logout_stops_working_after_it(app: Any) -> None:
    browser, other = app.test_client(), app.test_client()
    assert _login(browser).status_code == 302 and _login(other).status_code == 302
    captured = browser.get_cookie("homelab_session").value
    assert browser.get("/").status_code == 200
    assert browser.post("/logout", data={"csrf_token": _csrf(browser)}).status_code == 302

    thief = app.test_client()
    thief.set_cookie("homelab_session", captured)
    r = thief.get("/")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert thief.get("/api/v1/jobs").status_code == 401
    assert thief.get("/audit").status_code == 302
    assert other.get("/").status_code == 200, "logging out one browser must not end the others"


def test_a_new_admin_password_ends_every_session(app: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from homelab.web import create_app

    browser = app.test_client()
    assert _login(browser).status_code == 302
    monkeypatch.setenv("HOMELAB_ADMIN_PASSWORD", "a brand new password")
    create_app(settings, start_engine=False)  # ensure_admin sees the new password
    assert browser.get("/").status_code == 302


# ------------------------------------------------------------------ 5. login throttling per address
def test_login_delay_doubles_per_failure_from_one_address_and_spares_others() -> None:
    now = [1000.0]
    limiter = LoginLimiter(free=3, base=2.0, cap=60.0, clock=lambda: now[0])
    waits = []
    for _ in range(10):
        waits.append(limiter.retry_after("203.0.113.9"))
        now[0] += waits[-1]
        limiter.failed("203.0.113.9")
    assert waits == [0, 0, 0, 2, 4, 8, 16, 32, 60, 60]
    assert limiter.retry_after("203.0.113.9") == 60
    assert limiter.retry_after("198.51.100.7") == 0
    # one IPv6 /64 is one address; another /64 is not
    for _ in range(3):
        limiter.failed("2001:db8:1:2::1")
    assert limiter.retry_after("2001:db8:1:2:ffff::9") == 2 and limiter.retry_after("2001:db8:1:3::1") == 0
    limiter.succeeded("203.0.113.9")
    assert limiter.retry_after("203.0.113.9") == 0


def test_a_stranger_failing_logins_cannot_lock_the_owner_out(app: Any) -> None:
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    codes = [_login(attacker, password=f"guess {i}").status_code for i in range(12)]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
    r = _login(attacker)  # even the right password waits while the address is held back
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    forged = attacker.post(
        "/login",
        headers={"X-Forwarded-For": "198.51.100.7"},
        data={
            "username": "admin",
            "password": ADMIN_PASSWORD,
            "csrf_token": csrf_from(attacker.get("/login").get_data(as_text=True)),
        },
    )
    assert forged.status_code == 429, "X-Forwarded-For is not trusted without HOMELAB_TRUST_PROXY"

    owner = app.test_client()
    owner.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    r = _login(owner)
    assert r.status_code == 302 and owner.get("/").status_code == 200


# ------------------------------------------------------------------ 6. the source of a job comes from its credential
def test_the_job_source_comes_from_the_credential_never_from_a_header(app: Any) -> None:
    client = app.test_client()
    spoof = {"X-Homelab-Client": "jarvis"}
    r = client.post("/api/v1/jobs", json={"playbook": "hello", "limit": "alpha"}, headers={**_token(app), **spoof})
    assert r.status_code == 201 and r.get_json()["source"] == "api"
    r = client.post(
        "/api/v1/jobs",
        json={"playbook": "hello", "limit": "alpha"},
        headers={**_token(app, "cli"), "X-Homelab-Client": "schedule"},
    )
    assert r.get_json()["source"] == "cli"
    assert _login(client).status_code == 302
    r = client.post(
        "/api/v1/jobs", json={"playbook": "hello", "limit": "beta"}, headers={"X-CSRF-Token": _csrf(client), **spoof}
    )
    assert r.status_code == 201 and r.get_json()["source"] == "web"
    first = r.get_json()["id"]
    _h(app).engine.wait(first, 180)
    rerun = client.post(f"/api/v1/jobs/{first}/rerun", headers={**_token(app), "X-Homelab-Client": "schedule"})
    assert rerun.status_code == 201 and rerun.get_json()["source"] == "api"
    check = client.post(
        "/api/v1/drift/check", json={"playbook": "hello", "limit": "alpha"}, headers={**_token(app), **spoof}
    )
    assert check.status_code in (200, 201) and check.get_json()["source"] == "api"
    with _h(app).store.session() as s:
        sources = {j.source for j in s.scalars(select(Job))}
    assert sources <= {"api", "cli", "web"}, sources
    for j in [first, rerun.get_json()["id"], check.get_json()["id"]]:
        _h(app).engine.wait(j, 180)

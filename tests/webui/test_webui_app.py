"""The Flask app: auth, CSRF, tokens, rate limiting, audit, pages, REST API and its validation."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from homelab.store import ApiToken, AuditEntry, Job
from homelab.web.auth import create_token

from webui_helpers import ADMIN_PASSWORD, csrf_from


def _h(app):
    return app.extensions["homelab"]


def _token(app) -> dict[str, str]:
    return {"Authorization": "Bearer " + create_token(_h(app).store, "admin", "test")}


def _no_job_started(app) -> None:
    with _h(app).store.session() as s:
        assert s.scalars(select(Job)).first() is None
    assert not _h(app).settings.jobs_dir.exists() or list(_h(app).settings.jobs_dir.iterdir()) == []


def test_only_healthz_and_login_are_public(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/login").status_code == 200
    assert client.get("/static/cosmic.css").status_code == 200
    for path in ("/", "/catalog", "/jobs", "/audit", "/tokens", "/catalog/hello"):
        r = client.get(path)
        assert r.status_code == 302 and "/login" in r.headers["Location"], path
    for path in ("/api/v1/catalog", "/api/v1/jobs", "/api/v1/openapi.json"):
        assert client.get(path).status_code == 401, path


def test_login_sets_a_hardened_session_cookie_and_logout_ends_it(client):
    page = client.get("/login").get_data(as_text=True)
    r = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf_from(page)})
    assert r.status_code == 302
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get("/").status_code == 200
    https = client.get("/", base_url="https://localhost")
    assert https.status_code in (200, 302)
    page = client.get("/").get_data(as_text=True)
    assert client.post("/logout", data={"csrf_token": csrf_from(page)}).status_code == 302
    assert client.get("/").status_code == 302


def test_session_cookie_is_secure_over_https(app):
    c = app.test_client()
    page = c.get("/login", base_url="https://lab.example").get_data(as_text=True)
    r = c.post(
        "/login",
        base_url="https://lab.example",
        data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf_from(page)},
    )
    assert "Secure" in r.headers["Set-Cookie"]


def test_login_is_rate_limited_and_audited(client, app):
    page = client.get("/login").get_data(as_text=True)
    token = csrf_from(page)
    codes = [
        client.post("/login", data={"username": "admin", "password": "wrong", "csrf_token": token}).status_code
        for _ in range(6)
    ]
    assert codes[:5] == [401] * 5 and codes[5] == 429
    # even the right password is refused while limited
    r = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    with _h(app).store.session() as s:
        outcomes = [a.outcome for a in s.scalars(select(AuditEntry).where(AuditEntry.action == "login"))]
    assert outcomes.count("wrong user name or password") == 5 and "rate limited" in outcomes


def test_forms_without_the_csrf_token_are_refused(logged_in, app):
    assert logged_in.post("/catalog/hello", data={"greeting": "hi"}).status_code == 403
    assert logged_in.post("/catalog/hello", data={"greeting": "hi", "csrf_token": "forged"}).status_code == 403
    r = logged_in.post("/api/v1/jobs", json={"playbook": "hello"})
    assert r.status_code == 403 and "CSRF" in r.get_json()["error"]
    _no_job_started(app)


def test_api_tokens_are_stored_hashed_and_can_be_revoked(logged_in, app):
    page = logged_in.get("/tokens").get_data(as_text=True)
    r = logged_in.post("/tokens", data={"name": "laptop", "csrf_token": csrf_from(page)})
    token = r.get_data(as_text=True).split('id="new-token">')[1].split("<")[0]
    assert token.startswith("hl_")
    with _h(app).store.session() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.name == "laptop"))
    assert token not in row.token_hash and len(row.token_hash) == 64
    assert token.encode() not in (_h(app).settings.var_dir / "homelab.db").read_bytes()
    fresh = app.test_client()
    assert fresh.get("/api/v1/catalog", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    page = logged_in.get("/tokens").get_data(as_text=True)
    logged_in.post("/tokens", data={"revoke": str(row.id), "csrf_token": csrf_from(page)})
    assert fresh.get("/api/v1/catalog", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert fresh.get("/api/v1/catalog", headers={"Authorization": "Bearer hl_made-up"}).status_code == 401


def test_catalog_page_has_a_button_and_a_schema_form_per_playbook(logged_in):
    html = logged_in.get("/catalog").get_data(as_text=True)
    for entry in ("hello", "sleep", "events", "fail"):
        assert f'href="/catalog/{entry}"' in html
    form = logged_in.get("/catalog/hello").get_data(as_text=True)
    assert '<select id="p-flavour" name="flavour">' in form and '<option value="fancy"' in form
    assert 'name="greeting"' in form and 'value="hello"' in form
    assert 'name="api_password" type="password"' in form
    assert 'name="limit"' in form and 'name="check"' in form and 'name="diff"' in form


def test_web_form_starts_a_job_and_the_job_page_streams_it(logged_in, app):
    page = logged_in.get("/catalog/hello").get_data(as_text=True)
    r = logged_in.post(
        "/catalog/hello",
        data={"greeting": "Hello web", "flavour": "fancy", "limit": "beta", "csrf_token": csrf_from(page)},
    )
    assert r.status_code == 302
    job_id = int(r.headers["Location"].rsplit("/", 1)[1])
    job = _h(app).engine.wait(job_id, 180)
    assert job.status == "successful" and job.hosts == ["beta"] and job.source == "web"
    stream = logged_in.get(f"/jobs/{job_id}/stream").get_data(as_text=True)
    assert "event: output" in stream and "Hello web from beta" in stream and "event: end" in stream
    assert '<span class=\\"ansi-fg-green\\">' in stream or "ansi-fg-green" in stream
    html = logged_in.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "Recap" in html and '<th scope="row">beta</th>' in html
    assert '<span class="ansi-fg-green">' in html and "&lt;span" not in html, "stored output must render as HTML once"
    with _h(app).store.session() as s:
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "job.start"))
    assert entry.actor == "admin" and entry.params["params"]["greeting"] == "Hello web"


def test_history_filters(logged_in, app):
    h = _h(app)
    a = h.engine.submit(h.catalog.prepare("hello", {}, "alpha", inventory=h.inventory), "admin")
    b = h.engine.submit(h.catalog.prepare("fail", {}, "beta", inventory=h.inventory), "admin")
    h.engine.wait(a.id, 180), h.engine.wait(b.id, 180)
    only_failed = logged_in.get("/jobs?status=failed").get_data(as_text=True)
    assert f'href="/jobs/{b.id}"' in only_failed and f'href="/jobs/{a.id}"' not in only_failed
    on_alpha = logged_in.get("/jobs?host=alpha").get_data(as_text=True)
    assert f'href="/jobs/{a.id}"' in on_alpha and f'href="/jobs/{b.id}"' not in on_alpha
    assert [j["id"] for j in logged_in.get("/api/v1/jobs?playbook=hello").get_json()] == [a.id]


def test_dashboard_shows_real_data_and_honest_placeholders(logged_in):
    html = logged_in.get("/").get_data(as_text=True)
    assert "alpha" in html and "beta" in html
    assert "Drift" in html and 'id="jarvis-panel"' in html and "Not built yet" not in html


def test_api_starts_follows_cancels_and_reruns_jobs(client, app):
    hdr = _token(app)
    r = client.post(
        "/api/v1/jobs", json={"playbook": "hello", "params": {"greeting": "via api"}, "limit": "alpha"}, headers=hdr
    )
    assert r.status_code == 201, r.get_json()
    job = r.get_json()
    assert job["status"] in ("queued", "running") and job["source"] == "api"
    _h(app).engine.wait(job["id"], 180)
    detail = client.get(f"/api/v1/jobs/{job['id']}", headers=hdr).get_json()
    assert detail["status"] == "successful" and detail["recap"][0]["host"] == "alpha"
    events = client.get(f"/api/v1/jobs/{job['id']}/events?after=0", headers=hdr).get_json()
    assert any("via api from alpha" in e["stdout"] for e in events)
    rerun = client.post(f"/api/v1/jobs/{job['id']}/rerun", headers=hdr).get_json()
    assert "rerun_of" in rerun, rerun
    assert rerun["rerun_of"] == job["id"] and rerun["params"]["greeting"] == "via api"
    long = client.post("/api/v1/jobs", json={"playbook": "sleep", "limit": "beta"}, headers=hdr).get_json()
    c = client.post(f"/api/v1/jobs/{long['id']}/cancel", headers=hdr)
    assert c.status_code == 202
    assert _h(app).engine.wait(long["id"], 60).status == "canceled"
    _h(app).engine.wait(rerun["id"], 180)
    with _h(app).store.session() as s:
        actions = [(a.actor, a.action) for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert ("admin (token 'test')", "job.start") in actions and ("admin (token 'test')", "job.cancel") in actions
    assert ("admin (token 'test')", "job.rerun") in actions


@pytest.mark.parametrize(
    "body,status,needle",
    [
        ({"playbook": "hello", "params": {"flavour": "spicy"}}, 400, "must be one of"),
        ({"playbook": "hello", "params": {"greeting": "{{ lookup('pipe','id') }}"}}, 400, "template markers"),
        ({"playbook": "hello", "params": {"greeting": "{% raw %}x"}}, 400, "template markers"),
        ({"playbook": "hello", "params": {"hello_dir": "/tmp/$(id)"}}, 400, "does not match"),
        ({"playbook": "hello", "params": {"ansible_python_interpreter": "/bin/sh"}}, 400, "takes no parameter"),
        ({"playbook": "hello", "params": ["greeting"]}, 400, "params must be an object"),
        ({"playbook": "hello", "limit": "alpha:!beta"}, 400, "no patterns"),
        ({"playbook": "hello", "limit": "all,&beta"}, 400, "no patterns"),
        ({"playbook": "hello", "limit": "alpha -e @/etc/shadow"}, 400, "no patterns"),
        ({"playbook": "hello", "limit": "~.*"}, 400, "no patterns"),
        ({"playbook": "hello", "limit": ["alpha"]}, 400, "limit must be text"),
        ({"playbook": "hello", "limit": "nosuchhost"}, 400, "neither a host nor a group"),
        ({"playbook": "hello", "check": "yes"}, 400, "check must be true or false"),
        ({"playbook": "hello", "extra_vars": {"x": 1}}, 400, "unknown field"),
        ({"playbook": "nope"}, 404, "is not in the catalog"),
        ({"playbook": "../../../etc/passwd"}, 404, "is not in the catalog"),
        ({"playbook": "..%2F..%2Fsite.yml"}, 404, "is not in the catalog"),
        ({"playbook": "/work/main/playbooks/site.yml"}, 404, "is not in the catalog"),
        ({"playbook": None}, 404, "is not in the catalog"),
    ],
)
def test_api_refuses_invalid_jobs_with_4xx_and_starts_nothing(client, app, body, status, needle):
    r = client.post("/api/v1/jobs", json=body, headers=_token(app))
    assert r.status_code == status, r.get_json()
    assert needle in r.get_json()["error"]
    _no_job_started(app)


def test_path_traversal_in_urls_is_refused(logged_in, app):
    for path in ("/catalog/..%2F..%2Fetc%2Fpasswd", "/catalog/../../etc/passwd", "/api/v1/catalog/..%2Fsite.yml"):
        assert logged_in.get(path).status_code == 404, path
    assert (
        logged_in.post(
            "/api/v1/jobs", data="not json", headers={**_token(app), "Content-Type": "application/json"}
        ).status_code
        == 400
    )
    _no_job_started(app)


def test_openapi_document_describes_the_api_and_the_catalog_schemas(client, app):
    doc = client.get("/api/v1/openapi.json", headers=_token(app)).get_json()
    assert doc["openapi"].startswith("3.")
    for path in (
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/cancel",
        "/api/v1/jobs/{job_id}/stream",
        "/api/v1/catalog",
    ):
        assert path in doc["paths"]
    variants = {v["properties"]["playbook"]["const"]: v for v in doc["components"]["schemas"]["StartJob"]["oneOf"]}
    assert variants["hello"]["properties"]["params"]["properties"]["flavour"]["enum"] == ["plain", "fancy"]
    json.dumps(doc)


def test_without_a_password_in_the_environment_one_is_generated_and_printed_once(settings, monkeypatch, capsys):
    from homelab.web import create_app

    monkeypatch.delenv("HOMELAB_ADMIN_PASSWORD", raising=False)
    first = create_app(settings, start_engine=False)
    err = capsys.readouterr().err
    assert "shown once" in err
    password = err.split("shown once): ")[1].split()[0]
    c = first.test_client()
    page = c.get("/login").get_data(as_text=True)
    assert (
        c.post("/login", data={"username": "admin", "password": password, "csrf_token": csrf_from(page)}).status_code
        == 302
    )
    with _h(first).store.session() as s:
        from homelab.store import User

        stored = s.scalar(select(User)).password_hash
    assert password not in stored and stored.startswith(("scrypt:", "pbkdf2:"))
    create_app(settings, start_engine=False)
    assert "shown once" not in capsys.readouterr().err

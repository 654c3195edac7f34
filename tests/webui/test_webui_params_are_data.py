"""Parameters are data, never templates: every value from outside reaches ansible as unsafe text.

A playbook that would reveal evaluation (tests/webui/playbooks/reveal.yml: set_fact, debug, copy)
receives many encodings of template syntax, including ones that redefine Jinja's delimiters with
a `#jinja2:` header, in plain and secret parameters, through the engine, the REST API, the web
form and a schedule (a Jarvis rule: tests/jarvis/test_jarvis_params_are_data.py). Each payload would
`touch` a marker file if ansible evaluated it; the value must come back byte for byte and no marker may appear.

The catalog's blocklist of template markers is a second layer: to prove the first layer alone
holds, these tests switch the blocklist off (catalog.JINJA_RE never matches) for the run, and a
last test shows the blocklist's clear 400 when it is on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from homelab import catalog as catalog_mod
from homelab.settings import Settings
from homelab.store import AuditEntry, Job, JobEvent, TaskResult
from homelab.web.auth import create_token

from webui_helpers import ADMIN_PASSWORD, HERE, csrf_from, write_inventory

PLAIN = [f"v{i:02d}" for i in range(1, 17)]
SECRET = [f"s{i:02d}" for i in range(1, 5)]


def payloads(marker: Path) -> list[str]:
    """Template syntax in many encodings; each would create `marker` if it were evaluated."""
    t = f"touch {marker}"
    return [
        f"{{{{ lookup('pipe', '{t}') }}}}",
        f"{{% set x = lookup('pipe', '{t}') %}}done",
        f"{{{{ query('ansible.builtin.pipe', '{t}') }}}}",
        f"#jinja2:variable_start_string:'[[', variable_end_string:']]'\n[[ lookup('pipe', '{t}') ]]",
        f"#jinja2:block_start_string:'<%', block_end_string:'%>'\n<% set x = lookup('pipe', '{t}') %>x",
        f"#jinja2:variable_start_string:'((',variable_end_string:'))'\n(( lookup('pipe','{t}') ))",
        f"#jinja2:line_statement_prefix:'%'\n% set x = lookup('pipe', '{t}')\nline",
        f"#jinja2:variable_start_string:\"<<\", variable_end_string:\">>\"\n<< lookup('pipe', '{t}') >>",
        f"{{%- if lookup('pipe', '{t}') -%}}{{%- endif -%}}",
        f"{{{{\nlookup('pipe',\n'{t}')\n}}}}",
        f"\ufeff{{{{ lookup('pipe', '{t}') }}}}",
        f"{{# a comment #}}{{{{ lookup('pipe', '{t}') }}}}",
        f"${{{{ lookup('pipe', '{t}') }}}} and {{{{ v01 }}}}",
        f"{{{{ '{{{{' }}}}{{{{ lookup('pipe', '{t}') }}}}",
        f"{{{{ lookup('pipe', '{t}') | b64encode }}}}",
        "plain text, 100% {not a template} \\n 'quoted' \"double\" ünïcödé",
    ]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """As conftest's, with a schedules file of the test's own (never the repository's)."""
    var = tmp_path / "var"
    var.mkdir()
    return Settings.from_env(
        {
            "HOMELAB_VAR_DIR": str(var),
            "HOMELAB_INVENTORY": str(write_inventory(tmp_path / "inventory.yml")),
            "HOMELAB_CATALOG": str(HERE / "catalog.yml"),
            "HOMELAB_SCHEDULES": str(tmp_path / "schedules.yml"),
            "HOMELAB_SCHEDULER": "0",
        }
    )


@pytest.fixture
def no_blocklist(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second layer off: what is left to stop a template is the unsafe data path alone."""
    monkeypatch.setattr(catalog_mod, "JINJA_RE", re.compile(r"(?!x)x"))


def _params(marker: Path, reveal_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    ps = payloads(marker)
    plain = dict(zip(PLAIN, ps))
    # the same payloads with another marker path, so no secret shares a line with a plain value
    secret_ps = payloads(marker.with_name(marker.name + "-secret"))
    secret = {name: f"secret-{i}-" + secret_ps[i] for i, name in enumerate(SECRET)}
    return {"reveal_dir": str(reveal_dir), **plain}, secret


def _assert_data(
    store: Any, job_id: int, marker: Path, reveal_dir: Path, plain: dict[str, str], secret: dict[str, str], host: str
) -> None:
    with store.session() as s:
        job = s.get(Job, job_id)
        results = list(s.scalars(select(TaskResult).where(TaskResult.job_id == job_id)))
        events = "".join(e.stdout for e in s.scalars(select(JobEvent).where(JobEvent.job_id == job_id)))
    assert job.status == "successful", (job.status, job.reason, [r.message for r in results if r.status == "failed"])
    assert not marker.exists(), "a parameter was evaluated as a template: the marker file exists"
    assert not marker.with_name(marker.name + "-secret").exists(), "a secret parameter was evaluated as a template"
    for name, value in {**plain, **secret}.items():
        if name == "reveal_dir":
            continue
        written = (reveal_dir / f"{name}-{host}.txt").read_bytes().decode("utf-8")
        assert written == value, f"{name} did not reach the playbook literally: {written!r} != {value!r}"
    printed = json.loads(next(r.message for r in results if r.task == "Print the plain values"))
    for name, value in plain.items():
        if name != "reveal_dir":
            assert printed[name] == value, f"{name} was not printed literally: {printed[name]!r}"
    for value in secret.values():
        assert value not in events and value not in json.dumps([r.message + r.diff for r in results])
        assert value not in json.dumps(job.params)


def test_the_engine_passes_every_parameter_as_unsafe_data(engine, tmp_path: Path, no_blocklist: None) -> None:
    marker, out = tmp_path / "MARKER-engine", tmp_path / "out"
    out.mkdir()
    plain, secret = _params(marker, out)
    spec = engine.catalog.prepare("reveal", {**plain, **secret}, "alpha", inventory=engine.inventory)
    job = engine.wait(engine.submit(spec, "tester").id, 180)
    _assert_data(engine.store, job.id, marker, out, plain, secret, "alpha")
    # the vars file on disk is unsafe YAML; the secret one is gone after the run
    text = (Path(job.artifacts_dir) / "extra-vars.yml").read_text()
    assert all(line.startswith("!unsafe ") for line in text.splitlines()), text[:300]
    assert not (Path(job.artifacts_dir) / "secret-vars.yml").exists()
    command = json.loads((Path(job.artifacts_dir) / "artifacts" / str(job.id) / "command").read_text())["command"]
    assert not [v for v in {**plain, **secret}.values() if any(v in arg for arg in command)], command
    assert command[1:4] == ["-m", "homelab.supervise", "--"], "the job does not run under its supervisor"


def test_the_api_and_the_web_form_pass_parameters_as_data(app, client, tmp_path: Path, no_blocklist: None) -> None:
    h = app.extensions["homelab"]
    hdr = {"Authorization": "Bearer " + create_token(h.store, "admin", "test")}
    marker, out = tmp_path / "MARKER-api", tmp_path / "out-api"
    out.mkdir()
    plain, secret = _params(marker, out)
    r = client.post(
        "/api/v1/jobs", headers=hdr, json={"playbook": "reveal", "params": {**plain, **secret}, "limit": "alpha"}
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    job = h.engine.wait(r.get_json()["id"], 180)
    _assert_data(h.store, job.id, marker, out, plain, secret, "alpha")

    marker, out = tmp_path / "MARKER-form", tmp_path / "out-form"
    out.mkdir()
    plain, secret = _params(marker, out)
    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf_from(page)})
    page = client.get("/catalog/reveal").get_data(as_text=True)
    r = client.post("/catalog/reveal", data={**plain, **secret, "limit": "beta", "csrf_token": csrf_from(page)})
    assert r.status_code == 302, r.get_data(as_text=True)
    job = h.engine.wait(int(r.headers["Location"].rsplit("/", 1)[1]), 180)
    _assert_data(h.store, job.id, marker, out, plain, secret, "beta")
    with h.store.session() as s:
        audit = json.dumps([a.params for a in s.scalars(select(AuditEntry))])
    for value in secret.values():
        assert json.dumps(value)[1:-1] not in audit, "a secret parameter reached the audit log"


def test_a_schedule_passes_its_parameters_as_data(app, tmp_path: Path, no_blocklist: None) -> None:
    h = app.extensions["homelab"]
    assert h.schedules.path == tmp_path / "schedules.yml"
    marker, out = tmp_path / "MARKER-schedule", tmp_path / "out-schedule"
    out.mkdir()
    plain, _ = _params(marker, out)
    h.schedules.path.write_text(
        "---\n"
        + yaml.safe_dump(
            {
                "schedules": [
                    {
                        "id": "reveal-nightly",
                        "playbook": "reveal",
                        "cron": "0 3 * * *",
                        "limit": "alpha",
                        "action": "run",
                        "params": plain,
                    }
                ]
            }
        )
    )
    job_id = h.scheduler.fire("reveal-nightly")
    assert job_id is not None, "the schedule was refused"
    _assert_data(h.store, job_id, marker, out, plain, {}, "alpha")


def test_a_schedule_may_not_hold_a_secret_parameter(app, tmp_path: Path) -> None:
    from homelab.schedule.definitions import ScheduleError

    h = app.extensions["homelab"]
    assert h.schedules.path == tmp_path / "schedules.yml"
    h.schedules.path.write_text(
        "---\n"
        + yaml.safe_dump(
            {
                "schedules": [
                    {
                        "id": "leak",
                        "playbook": "reveal",
                        "cron": "0 3 * * *",
                        "action": "run",
                        "params": {"reveal_dir": str(tmp_path), "s01": "a-secret-in-git"},
                    }
                ]
            }
        )
    )
    with pytest.raises(ScheduleError, match="s01 is a secret parameter"):
        h.schedules.load()


@pytest.mark.parametrize(
    "value",
    [
        "{{ lookup('pipe', 'id') }}",
        "{% if 1 %}x{% endif %}",
        "a {# c #}",
        "#jinja2:variable_start_string:'[[', variable_end_string:']]'\n[[ 1 ]]",
    ],
)
def test_the_blocklist_still_refuses_obvious_template_markers_with_a_clear_400(client, app, tmp_path, value) -> None:
    h = app.extensions["homelab"]
    hdr = {"Authorization": "Bearer " + create_token(h.store, "admin", "test")}
    for params in (
        {"reveal_dir": str(tmp_path), "v01": value},
        {"reveal_dir": str(tmp_path), "s01": "secret-" + value},
    ):
        r = client.post("/api/v1/jobs", headers=hdr, json={"playbook": "reveal", "params": params, "limit": "alpha"})
        assert r.status_code == 400 and "template markers" in r.get_json()["error"], r.get_data(as_text=True)
    with h.store.session() as s:
        assert s.scalars(select(Job)).first() is None


def test_editing_schedules_in_the_web_ui_keeps_a_run_schedule_s_params(app, client, tmp_path: Path) -> None:
    h = app.extensions["homelab"]
    h.schedules.path.write_text(
        "---\n"
        + yaml.safe_dump(
            {
                "schedules": [
                    {
                        "id": "reveal-nightly",
                        "playbook": "reveal",
                        "cron": "0 3 * * *",
                        "limit": "alpha",
                        "action": "run",
                        "params": {"reveal_dir": str(tmp_path), "v01": "kept"},
                    }
                ]
            }
        )
    )
    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf_from(page)})
    page = client.get("/drift/schedules").get_data(as_text=True)
    r = client.post(
        "/drift/schedules",
        data={
            "rows": "1",
            "id-0": "reveal-nightly",
            "playbook-0": "reveal",
            "kind-0": "cron",
            "when-0": "30 3 * * *",
            "limit-0": "alpha",
            "enabled-0": "on",
            "action-0": "run",
            "csrf_token": csrf_from(page),
        },
    )
    assert r.status_code == 302, r.get_data(as_text=True)
    [s] = h.schedules.load()
    assert s.cron == "30 3 * * *" and s.params == {"reveal_dir": str(tmp_path), "v01": "kept"}

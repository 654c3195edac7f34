"""The store's schema through Alembic migrations (homelab.migrations): a store the previous release
made is upgraded in place by the path `homelab serve` takes, losing no row; an empty one is created by
the migrations, to exactly the schema of the models; a store at the head is left alone."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import test_webui_postgres
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select

import homelab.migrations as migrations
from homelab.migrations import schema
from homelab.settings import Settings
from homelab.store import ApiToken, AuditEntry, DriftEpisode, Job, JobEvent, Store, TaskResult
from jarvis.models import JarvisAction, JarvisFinding

postgres_url = test_webui_postgres.postgres_url  # the fixture: a PostgreSQL server in a container (lab)
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store-d5ce24b.sql"  # make_previous_store.py wrote it
# The columns Store() used to add to older stores (_add_missing_columns): migration 0002 adds them now.
ADDED_AT_OPEN = {"jobs": ["tags", "artifact_data"], "task_results": ["role"], "api_tokens": ["kind"]}
# The tables the revisions after the baseline create (0003: the status cycle's samples; 0004: the
# facts cycle's host and container samples).
NEW_SINCE_BASELINE = {"service_samples", "host_samples", "container_samples"}


def _load(db: Path) -> None:
    con = sqlite3.connect(db)
    con.executescript(FIXTURE.read_text())
    con.close()


def _rows(db: Path) -> dict[str, set[tuple[Any, ...]]]:
    """Every row of every table but alembic's, as SQLite holds it."""
    con = sqlite3.connect(db)
    names = [
        n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'alembic_version'")
    ]
    rows = {n: set(con.execute(f'SELECT * FROM "{n}"').fetchall()) for n in names}
    con.close()
    return rows


def _diffs(store: Store) -> list[Any]:
    """What alembic's autogenerate sees between the database and the models (the scheduler's table aside)."""
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_name": schema.include_name, "compare_type": True})
        return list(compare_metadata(ctx, schema.metadata()))


def _revision(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return migrations.current(conn)


@pytest.fixture
def serve_settings(settings: Settings) -> Settings:
    return replace(settings, scheduler=False)


def _serve_store(settings: Settings) -> Store:
    """Open the store the way `homelab serve` does: create_app (engine not started, so no job is touched)."""
    from homelab.web import create_app

    app = create_app(settings, start_engine=False)
    store: Store = app.extensions["homelab"].store
    return store


def test_previous_release_store_upgrades_in_place_keeping_every_row(serve_settings, monkeypatch):
    monkeypatch.delenv("HOMELAB_ADMIN_PASSWORD", raising=False)  # it would reset the admin's password
    db = serve_settings.var_dir / "homelab.db"
    _load(db)
    before = _rows(db)
    assert "alembic_version" not in before and len(before["jobs"]) == 5 and len(before["job_events"]) == 20

    store = _serve_store(serve_settings)

    assert _revision(store) == migrations.head()
    after = _rows(db)
    # none dropped (apscheduler_jobs included: the scheduler's table is not ours to drop), only the new ones added
    assert set(after) == set(before) | NEW_SINCE_BASELINE
    assert all(not after[name] for name in NEW_SINCE_BASELINE)
    for name, rows in before.items():
        assert rows <= after[name], f"{name}: rows lost or changed"
    counts = {n: len(r) for n, r in before.items()}
    assert counts["audit_log"] == 4 and counts["drift_episodes"] == 2 and counts["drift_results"] == 2
    assert counts["jarvis_chat"] == 1 and counts["apscheduler_jobs"] == 0
    assert _diffs(store) == []
    with store.session() as s:
        job5 = s.get(Job, 5)
        assert job5 is not None and job5.artifact_data == {"diagnosis": {"ok": True}} and job5.status == "running"
        job2 = s.get(Job, 2)
        assert job2 is not None and job2.tags == ["dns"] and job2.requested_limit == "web1"
        assert (
            s.scalar(select(JobEvent.stdout).where(JobEvent.job_id == 3, JobEvent.seq == 4)) == "ok: [web1] 3.4 ünïcode"
        )
        assert s.scalar(select(TaskResult.role).where(TaskResult.job_id == 1)) == "caddy"
        assert s.scalar(select(ApiToken.kind)) == "cli"
        resolved = s.scalars(select(DriftEpisode).where(DriftEpisode.resolution == "clean")).one()
        assert (resolved.started_job, resolved.resolved_job, resolved.roles) == (1, 3, ["caddy"])
        audit = s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert audit[0].params == {"password": "********", "n": 1} and audit[-1].outcome == "denied: bad password"
        action = s.scalars(select(JarvisAction)).one()
        assert (action.rule_id, action.finding_id, action.status, action.job_id) == ("restart-caddy", 1, "resolved", 3)
        assert s.scalars(select(JarvisFinding.occurrences)).one() == 3

    # the models work on the upgraded store: a new job, its events, and the foreign keys still enforced
    with store.session.begin() as s:
        job = Job(playbook="site", title="after the upgrade", tags=["x"])
        s.add(job)
        s.flush()
        s.add(JobEvent(job_id=job.id, seq=1, event="playbook_on_start"))
        new_id = job.id
    store.audit("admin", "job.start", target=f"job:{new_id}")
    assert new_id == 6
    with store.session() as s:
        again = s.get(Job, new_id)
        assert again is not None and again.as_dict()["tags"] == ["x"] and again.status == "queued"
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    with store.session.begin() as s:
        s.delete(s.get(Job, 1))
    with store.session() as s:
        assert s.scalars(select(JobEvent).where(JobEvent.job_id == 1)).all() == []  # cascaded, as before


def test_store_older_than_the_baseline_gets_the_columns_once_added_at_open(tmp_path):
    db = tmp_path / "homelab.db"
    _load(db)
    con = sqlite3.connect(db)
    for name, columns in ADDED_AT_OPEN.items():
        for column in columns:
            con.execute(f'ALTER TABLE "{name}" DROP COLUMN "{column}"')
    con.commit()
    con.close()
    before = _rows(db)

    store = Store(f"sqlite:///{db}")

    assert _revision(store) == migrations.head()
    assert _diffs(store) == []
    insp = inspect(store.engine)
    for name, columns in ADDED_AT_OPEN.items():
        assert set(columns) <= {c["name"] for c in insp.get_columns(name)}
    after = _rows(db)
    for name, rows in before.items():
        assert len(after[name]) == len(rows), name
    with store.session() as s:
        assert s.get(Job, 2).tags is None  # type: ignore[union-attr]


def test_an_empty_database_is_created_by_the_migrations_to_the_models_schema(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'homelab.db'}")
    assert _revision(store) == migrations.head()
    assert _diffs(store) == []
    assert set(inspect(store.engine).get_table_names()) == set(schema.metadata().tables) | {"alembic_version"}


def test_opening_a_store_at_the_head_changes_nothing(tmp_path, monkeypatch):
    db = tmp_path / "homelab.db"
    Store(f"sqlite:///{db}").engine.dispose()
    con = sqlite3.connect(db)
    schema = con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    con.close()

    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("a store at the head is not migrated again")

    monkeypatch.setattr(migrations.command, "upgrade", refuse)
    monkeypatch.setattr(migrations.command, "stamp", refuse)
    store = Store(f"sqlite:///{db}")
    assert _revision(store) == migrations.head()
    con = sqlite3.connect(db)
    assert con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall() == schema
    con.close()


@pytest.mark.lab
@test_webui_postgres.POSTGRES_GROUP
def test_a_postgresql_store_from_before_migrations_is_upgraded_in_place(postgres_url):
    """On PostgreSQL: the tables as the previous release's create_all made them (the models' schema,
    equal to the baseline), one nullable column from before then, rows in them; Store() upgrades it."""
    from sqlalchemy import create_engine, insert, text

    from homelab.store import table

    old = create_engine(postgres_url)
    schema.metadata().create_all(old)
    with old.begin() as conn:
        conn.execute(insert(table(Job)), [{"id": i, "playbook": "site", "params": {}, "hosts": []} for i in (1, 2)])
        conn.execute(
            insert(table(JobEvent)), [{"job_id": 1, "seq": s, "event": "runner_on_ok", "stdout": "ü"} for s in (1, 2)]
        )
        conn.execute(insert(table(AuditEntry)), [{"actor": "admin", "action": "login", "params": {"n": 1}}])
        conn.execute(insert(table(DriftEpisode)), [{"host": "web1", "playbook": "site", "fingerprint": "fp"}])
        conn.execute(text("ALTER TABLE jobs DROP COLUMN tags"))  # from before that column
    old.dispose()

    store = Store(postgres_url)
    assert store.engine.dialect.name == "postgresql"
    assert _revision(store) == migrations.head()
    assert _diffs(store) == []
    with store.session() as s:
        assert [j.id for j in s.scalars(select(Job).order_by(Job.id))] == [1, 2]
        assert s.scalars(select(JobEvent.stdout).where(JobEvent.job_id == 1)).all() == ["ü", "ü"]
        assert s.scalars(select(AuditEntry.params)).one() == {"n": 1}
        assert s.scalars(select(DriftEpisode.fingerprint)).one() == "fp"
    with store.session.begin() as s:
        s.add(Job(id=3, playbook="site", tags=["x"]))
    store.engine.dispose()
    again = Store(postgres_url)  # at the head: nothing to do
    with again.session() as s:
        assert s.get(Job, 3).tags == ["x"]  # type: ignore[union-attr]


def test_a_store_with_samples_that_lost_its_version_is_upgraded_again_keeping_them(tmp_path):
    """0003, 0004 and 0005 create only what is missing, like the baseline: a store at the head whose
    alembic_version is gone runs every revision again and keeps the status and facts cycles' samples
    (a rollup's columns too)."""
    from homelab.store import ContainerSample, HostSample, ServiceSample

    url = f"sqlite:///{tmp_path / 'homelab.db'}"
    store = Store(url)
    with store.session.begin() as s:
        s.add(ServiceSample(service="n8n", status="up", http_status=200, response_ms=12.5, tls_days_left=60.0))
        s.add(ServiceSample(service="plex", status="down", samples=5, up_samples=4, response_ms_max=99.0))
        s.add(HostSample(host="alpha", cpu_percent=7.5, mem_total=16 * 2**30, disk_free=5 * 2**40))
        s.add(ContainerSample(host="alpha", service="n8n", name="n8n", state="running", image="n8nio/n8n:1"))
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")
    store.engine.dispose()

    again = Store(url)
    assert _revision(again) == migrations.head() and _diffs(again) == []
    with again.session() as s:
        [row, rollup] = s.scalars(select(ServiceSample).order_by(ServiceSample.id)).all()
        assert (row.service, row.status, row.http_status, row.response_ms) == ("n8n", "up", 200, 12.5)
        assert (rollup.samples, rollup.up_samples, rollup.response_ms_max) == (5, 4, 99.0)
        [host] = s.scalars(select(HostSample)).all()
        assert (host.host, host.cpu_percent, host.mem_total, host.disk_free) == ("alpha", 7.5, 16 * 2**30, 5 * 2**40)
        [box] = s.scalars(select(ContainerSample)).all()
        assert (box.service, box.state, box.image, box.restart_count) == ("n8n", "running", "n8nio/n8n:1", 0)


def test_a_store_at_0004_gets_the_rollup_columns_keeping_its_samples_as_one_probe_each(tmp_path):
    """0005 adds the service samples' rollup columns (NULL: a probe's own row); the samples of a store
    at 0004 stay what they were, one probe each, and a rollup can be stored next to them."""
    import datetime as dt

    from sqlalchemy import create_engine

    from homelab.history import RANGES, service_history
    from homelab.store import ServiceSample

    url = f"sqlite:///{tmp_path / 'homelab.db'}"
    old = create_engine(url)
    with old.begin() as conn:
        migrations.command.upgrade(migrations.config(conn), "0004")
        conn.exec_driver_sql(
            "INSERT INTO service_samples (service, at, status, url, http_status, response_ms, error) "
            "VALUES ('n8n', '2026-12-02 10:00:10', 'up', 'https://n8n.test/', 200, 40.0, ''), "
            "('n8n', '2026-12-02 10:01:10', 'down', 'https://n8n.test/', NULL, NULL, 'refused')"
        )
    assert {c["name"] for c in inspect(old).get_columns("service_samples")}.isdisjoint({"samples", "up_samples"})
    old.dispose()

    store = Store(url)

    assert _revision(store) == migrations.head() and _diffs(store) == []
    columns = {c["name"] for c in inspect(store.engine).get_columns("service_samples")}
    assert {"samples", "up_samples", "response_samples", "response_ms_max"} <= columns
    with store.session.begin() as s:
        rows = s.scalars(select(ServiceSample).order_by(ServiceSample.id)).all()
        assert [(r.status, r.samples, r.as_dict()["samples"]) for r in rows] == [("up", None, 1), ("down", None, 1)]
        s.add(
            ServiceSample(
                service="n8n",
                at=dt.datetime(2026, 12, 2, 10, 5),
                status="up",
                response_ms=30.0,
                samples=5,
                up_samples=5,
                response_samples=5,
                response_ms_max=70.0,
            )
        )
    [hour] = service_history(store, "n8n", RANGES["7d"], dt.datetime(2026, 12, 2, 12, 0))["buckets"]
    assert (hour["samples"], hour["up_fraction"], hour["status"]) == (7, round(6 / 7, 4), "down")
    assert (hour["response_ms_mean"], hour["response_ms_max"]) == (round((40 + 5 * 30) / 6, 2), 70.0)


def test_a_store_at_0005_gets_the_container_commit_column_keeping_its_container_samples(tmp_path):
    """0006 adds container_samples.git_commit (the label homelab.commit the facts cycle reads): a sample
    stored before has none (NULL, as_dict says ""), and one with a commit can be stored next to it."""
    from sqlalchemy import create_engine

    from homelab.facts import deployed_commit
    from homelab.store import ContainerSample

    url = f"sqlite:///{tmp_path / 'homelab.db'}"
    old = create_engine(url)
    with old.begin() as conn:
        migrations.command.upgrade(migrations.config(conn), "0005")
        conn.exec_driver_sql(
            "INSERT INTO container_samples (host, at, service, name, state, health, restart_count, image) "
            "VALUES ('alpha', '2026-12-04 10:00:00', 'discord_bot', 'discord-bot', 'running', '', 0, "
            "'homelab/discord_bot:0123456789ab')"
        )
    assert "git_commit" not in {c["name"] for c in inspect(old).get_columns("container_samples")}
    old.dispose()

    store = Store(url)

    assert _revision(store) == migrations.head() and _diffs(store) == []
    sha = "0123456789abcdef0123456789abcdef01234567"
    with store.session.begin() as s:
        [before] = s.scalars(select(ContainerSample)).all()
        assert before.git_commit is None and before.as_dict()["git_commit"] == ""
        assert deployed_commit(before.as_dict()) == "0123456789ab", "the image tag still says it"
        s.add(ContainerSample(host="alpha", service="discord_bot", name="discord-bot", image="x", git_commit=sha))
    with store.session() as s:
        rows = s.scalars(select(ContainerSample).order_by(ContainerSample.id)).all()
        assert [r.git_commit for r in rows] == [None, sha]

"""The store on PostgreSQL (HOMELAB_DATABASE_URL) instead of SQLite: a real job, persisted there."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from labenv import postgres_container

NAME = f"homelab-webui-pg-{os.getpid()}"


# One PostgreSQL container of a fixed name: every test that uses it (test_store_migrations too) runs
# on one xdist worker, one after the other.
POSTGRES_GROUP = pytest.mark.xdist_group("postgres-container")
pytestmark = [pytest.mark.lab, POSTGRES_GROUP]


@pytest.fixture
def postgres_url():
    with postgres_container(NAME, user="homelab", db="homelab") as ip:
        # client_encoding: the lab image inits SQL_ASCII
        yield f"postgresql+psycopg://homelab:pgtest@{ip}:5432/homelab?client_encoding=utf8"


def test_jobs_events_and_recaps_persist_in_postgresql(settings, make_engine, postgres_url):
    engine = make_engine(replace(settings, database_url=postgres_url))
    assert engine.store.engine.dialect.name == "postgresql"
    job = engine.wait(
        engine.submit(
            engine.catalog.prepare("hello", {"greeting": "hi pg"}, "alpha", inventory=engine.inventory), "t"
        ).id,
        180,
    )
    assert job.status == "successful", job.reason
    events = engine.events_after(job.id, 0, 100000)
    assert [e.seq for e in events] == list(range(1, job.event_count + 1))
    assert any("hi pg from alpha" in e.stdout for e in events)
    assert engine.recaps(job.id)[0].host == "alpha"
    assert not (settings.var_dir / "homelab.db").exists(), "the SQLite file must not be used when a URL is set"

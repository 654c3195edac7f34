"""The store on PostgreSQL (HOMELAB_DATABASE_URL) instead of SQLite: a real job, persisted there."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import replace

import pytest

NAME = f"homelab-webui-pg-{os.getpid()}"


def _postgres_image() -> str:
    """The real PostgreSQL image lab/build-images.sh builds (make test exports its name)."""
    return os.environ["LAB_POSTGRES_IMAGE"]


# One PostgreSQL container of a fixed name: every test that uses it (test_store_migrations too) runs
# on one xdist worker, one after the other.
POSTGRES_GROUP = pytest.mark.xdist_group("postgres-container")
pytestmark = [pytest.mark.lab, POSTGRES_GROUP]


@pytest.fixture
def postgres_url():
    import psycopg

    subprocess.run(["docker", "rm", "-f", NAME], capture_output=True, timeout=60)
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            NAME,
            "-e",
            "POSTGRES_USER=homelab",
            "-e",
            "POSTGRES_PASSWORD=pgtest",
            "-e",
            "POSTGRES_DB=homelab",
            _postgres_image(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        ip = subprocess.run(
            ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", NAME],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        deadline = time.monotonic() + 120
        while True:
            try:
                psycopg.connect(f"host={ip} user=homelab password=pgtest dbname=homelab", connect_timeout=3).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # polling for the server to accept connections
        # client_encoding: the lab image inits SQL_ASCII
        yield f"postgresql+psycopg://homelab:pgtest@{ip}:5432/homelab?client_encoding=utf8"
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", NAME], capture_output=True, timeout=60)


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

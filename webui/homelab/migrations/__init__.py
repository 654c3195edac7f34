"""The store's schema migrations (Alembic): Store() brings every store it opens to the head revision.

- an empty database is created by running the migrations from the first one;
- a store made before migrations existed (its tables there, no alembic_version table) runs them from
  the first one too: 0001, the baseline (the schema of the release before migrations, commit d5ce24b),
  creates only the tables and indexes it misses, 0002 adds the columns Store() once added at open,
  0003 the service status samples (homelab.status);
- a store already at the head is left alone (one SELECT of alembic_version).

versions/ holds the revisions; env.py is what both this module and the alembic command line run.
A new one: README.md, "The store and its migrations".
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

HERE = Path(__file__).resolve().parent
_PG_LOCK = 0x686F6D656C6162  # "homelab": one process migrates a PostgreSQL store at a time


def config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def head() -> str:
    rev = ScriptDirectory.from_config(config()).get_current_head()
    assert rev is not None
    return rev


def current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the store behind engine to the head revision (a no-op when it is there)."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            # Off while SQLite tables are rebuilt (batch mode copies a table and drops the old one):
            # with it on, dropping jobs would cascade-delete every job's events.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
                rev = current(conn)
                if rev == head():
                    return
                command.upgrade(config(conn), "head")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()

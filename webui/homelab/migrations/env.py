"""Alembic's environment: run by homelab.migrations.upgrade (with its connection) and by the alembic
command line (-c webui/homelab/migrations/alembic.ini; the store HOMELAB_DATABASE_URL or var/homelab.db)."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine

from homelab.migrations.schema import include_name, metadata


def run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata(),
        render_as_batch=True,  # SQLite alters a table by rebuilding it
        include_name=include_name,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    from homelab.settings import Settings

    url = context.config.get_main_option("sqlalchemy.url") or Settings.from_env().db_url
    with create_engine(url).connect() as conn:
        run(conn)
        conn.commit()

"""Alembic environment: the connection is handed in by shipscope.store.migrate."""

from __future__ import annotations

from alembic import context

from shipscope.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()

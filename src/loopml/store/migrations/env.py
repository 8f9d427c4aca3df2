"""Alembic environment: the database comes from ``Config.attributes`` (never a file)."""

from __future__ import annotations

from alembic import context

from loopml.store.schema import metadata

db = context.config.attributes["database"]
with db.engine.connect() as connection:
    # On SQLite, take the write lock for the whole migration so two processes never race it.
    connection = connection.execution_options(loopml_write=True)
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=db.is_sqlite)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()

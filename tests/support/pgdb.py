"""A scratch database on the session's PostgreSQL server, dropped afterwards.

Tests that create their own tables (the PostgreSQL online store, source tables) use one, so the
session database keeps exactly the migrated schema that ``tests/unit/store`` compares.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import make_url


@contextmanager
def scratch_database(postgres_url: str, prefix: str = "scratch") -> Iterator[str]:
    """Create a fresh database next to ``postgres_url``'s; yield its URL; drop it on exit."""
    base = make_url(postgres_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

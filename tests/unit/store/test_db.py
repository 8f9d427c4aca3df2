"""The metadata store: automatic migrations, schema/model agreement, SQLite settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from loopml.store.db import SCHEMA_HEAD, Database, current_revision
from loopml.store.migrate import head_revision
from loopml.store.schema import metadata


@pytest.fixture
def open_db() -> Iterator[Callable[[str], Database]]:
    opened: list[Database] = []

    def _open(url: str) -> Database:
        opened.append(Database(url))
        return opened[-1]

    yield _open
    for db in opened:
        db.dispose()


def test_schema_head_constant_matches_alembic() -> None:
    assert head_revision() == SCHEMA_HEAD


def test_first_use_migrates_and_creates_default_experiment(
    tmp_path: Path, open_db: Callable[[str], Database]
) -> None:
    db = open_db(f"sqlite:///{tmp_path / 'new' / 'loopml.db'}")
    assert current_revision(db) == SCHEMA_HEAD
    with db.read() as conn:
        row = conn.exec_driver_sql("SELECT experiment_id, name FROM experiments").one()
    assert tuple(row) == (0, "Default")
    open_db(db.url)  # a second open is a no-op, not a second Default
    with db.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM experiments").scalar() == 1


def test_migrated_schema_matches_the_models(tmp_path: Path, open_db: Callable[[str], Database]) -> None:
    db = open_db(f"sqlite:///{tmp_path / 'loopml.db'}")
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrated_postgres_schema_matches_the_models(
    postgres_url: str, open_db: Callable[[str], Database]
) -> None:
    db = open_db(postgres_url)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_sqlite_runs_in_wal_with_a_long_busy_timeout(
    tmp_path: Path, open_db: Callable[[str], Database]
) -> None:
    db = open_db(f"sqlite:///{tmp_path / 'loopml.db'}")
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30_000


def test_a_failed_write_leaves_nothing(tmp_path: Path, open_db: Callable[[str], Database]) -> None:
    db = open_db(f"sqlite:///{tmp_path / 'loopml.db'}")
    try:
        with db.write() as conn:
            conn.exec_driver_sql("INSERT INTO experiment_tags VALUES (0, 'k', 'v')")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with db.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM experiment_tags").scalar() == 0

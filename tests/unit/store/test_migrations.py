"""Upgrading a store keeps its data: 0001 (a row per metric point) -> 0002 (packed chunks) and back."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from sqlalchemy.engine import make_url

from loopml.config import Settings
from loopml.store.db import SCHEMA_HEAD, Database, current_revision
from loopml.store.migrate import alembic_config, upgrade
from loopml.tracking.local import LocalTrackingService

POINTS = [  # (key, step, timestamp, value, is_nan)
    ("loss", 0, 1000, 0.9, False),
    ("loss", 1, 1001, 0.5, False),
    ("loss", 2, 1002, 0.0, True),
    ("loss", 2, 1003, math.inf, False),
    ("acc", 5, 1000, -math.inf, False),
]


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    base = make_url(request.getfixturevalue("postgres_url"))
    name = f"migrate_{uuid.uuid4().hex[:12]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield base.set(database=name).render_as_string(hide_password=False)


def _seed_0001(db: Database) -> str:
    """A run with metric points, written the way revision 0001 stored them."""
    upgrade(db, "0001")
    run_uuid = uuid.uuid4().hex
    with db.write() as conn:
        conn.exec_driver_sql(
            db.sql(
                "INSERT INTO runs (run_uuid, name, experiment_id, user_id, status, start_time, "
                "lifecycle_stage, artifact_uri) VALUES (?, 'r', 0, 'u', 'RUNNING', 1, 'active', 'x')"
            ),
            (run_uuid,),
        )
        run_id = conn.exec_driver_sql(db.sql("SELECT id FROM runs WHERE run_uuid = ?"), (run_uuid,)).scalar()
        conn.exec_driver_sql(
            db.sql(
                "INSERT INTO metrics (run_id, key, step, timestamp, value, is_nan) VALUES (?, ?, ?, ?, ?, ?)"
            ),
            [(run_id, *p) for p in POINTS],
        )
    return run_uuid


def _history(url: str, home: Path, run_uuid: str, key: str) -> list[tuple[int, int, float]]:
    svc = LocalTrackingService.from_settings(
        Settings.load(env={"LOOPML_HOME": str(home), "LOOPML_DATABASE_URL": url})
    )
    try:
        return [(m.step, m.timestamp, m.value) for m in svc.get_metric_history(run_uuid, key)]
    finally:
        svc.close()


def _same(a: list[tuple[int, int, float]], b: list[tuple[int, int, float]]) -> bool:
    return len(a) == len(b) and all(
        x[:2] == y[:2] and (x[2] == y[2] or (math.isnan(x[2]) and math.isnan(y[2])))
        for x, y in zip(a, b, strict=True)
    )


def test_upgrade_moves_every_metric_point_into_chunks(empty_db_url: str, tmp_path: Path) -> None:
    db = Database(empty_db_url, migrate=False)
    try:
        run_uuid = _seed_0001(db)
        upgrade(db)
        assert current_revision(db) == SCHEMA_HEAD
        with db.read() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM metric_chunks").scalar() == 2  # a chunk per key
    finally:
        db.dispose()
    loss = _history(empty_db_url, tmp_path, run_uuid, "loss")
    assert _same(loss, [(0, 1000, 0.9), (1, 1001, 0.5), (2, 1002, math.nan), (2, 1003, math.inf)])
    assert _history(empty_db_url, tmp_path, run_uuid, "acc") == [(5, 1000, -math.inf)]


def test_downgrade_expands_chunks_back_into_points(empty_db_url: str) -> None:
    db = Database(empty_db_url, migrate=False)
    try:
        _seed_0001(db)
        upgrade(db)
        command.downgrade(alembic_config(db), "0001")
        with db.read() as conn:
            rows = conn.exec_driver_sql("SELECT key, step, timestamp, value, is_nan FROM metrics").all()
    finally:
        db.dispose()
    assert sorted((k, s, t, v, bool(n)) for k, s, t, v, n in rows) == sorted(POINTS)

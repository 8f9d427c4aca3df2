"""metric points in packed chunks

Revision ID: 0002
Revises: 0001

Replaces the one-row-per-point ``metrics`` table by ``metric_chunks`` (one row per run, key and
batch; see loopml.tracking.metric_chunks).  Existing points move over as one chunk per run and
key; the downgrade expands them back.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from alembic import op

from loopml.tracking.metric_chunks import digest, pack, unpack

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 5000  # chunk rows written per executemany while converting


def upgrade() -> None:
    op.create_table(
        "metric_chunks",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=16), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("run_id", "key", "digest"),
    )
    conn = op.get_bind()
    chunks = sa.table(
        "metric_chunks",
        sa.column("run_id"),
        sa.column("key"),
        sa.column("digest"),
        sa.column("points"),
        sa.column("data"),
    )
    rows = conn.execute(
        sa.text(
            "SELECT run_id, key, step, timestamp, value, is_nan FROM metrics "
            "ORDER BY run_id, key, step, timestamp, value"
        )
    )
    pending: list[dict[str, Any]] = []
    for (run_id, key), points in groupby(rows, key=lambda r: (r[0], r[1])):
        cols = list(zip(*((r[2], r[3], math.nan if r[5] else r[4]) for r in points), strict=True))
        data = pack(cols[0], cols[1], cols[2])
        pending.append(
            {"run_id": run_id, "key": key, "digest": digest(data), "points": len(cols[0]), "data": data}
        )
        if len(pending) >= _BATCH:
            conn.execute(chunks.insert(), pending)
            pending = []
    if pending:
        conn.execute(chunks.insert(), pending)
    op.drop_table("metrics")


def downgrade() -> None:
    metrics = op.create_table(
        "metrics",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=False),
        sa.Column("is_nan", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("run_id", "key", "step", "timestamp", "value", "is_nan"),
        sqlite_with_rowid=False,
    )
    conn = op.get_bind()
    seen: set[tuple[Any, ...]] = set()
    pending: list[dict[str, Any]] = []
    for run_id, key, data in conn.execute(sa.text("SELECT run_id, key, data FROM metric_chunks")):
        for point in _points(run_id, key, data):
            marker = tuple(point.values())
            if marker not in seen:
                seen.add(marker)
                pending.append(point)
        if len(pending) >= _BATCH:
            conn.execute(metrics.insert(), pending)
            pending = []
    if pending:
        conn.execute(metrics.insert(), pending)
    op.drop_table("metric_chunks")


def _points(run_id: int, key: str, data: bytes) -> Iterator[dict[str, Any]]:
    for step, stamp, value in zip(*unpack(data), strict=True):
        nan = math.isnan(value)
        yield {
            "run_id": run_id,
            "key": key,
            "step": step,
            "timestamp": stamp,
            "value": 0.0 if nan else value,
            "is_nan": nan,
        }

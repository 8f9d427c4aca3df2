"""monitoring: labels, monitors, monitor runs and results, alerts

Labels are not a table: they are Parquet segments next to the prediction log (see
``loopml.monitoring.labels``), joined to predictions in DuckDB.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitors",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("last_run_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "monitor_runs",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("monitor", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index("ix_monitor_runs_monitor", "monitor_runs", ["monitor", "started_at"])
    op.create_table(
        "monitor_alerts",
        sa.Column("alert_id", sa.String(length=32), nullable=False),
        sa.Column("monitor", sa.String(length=128), nullable=False),
        sa.Column("rule", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("opened_at", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_at", sa.BigInteger(), nullable=False),
        sa.Column("resolved_at", sa.BigInteger(), nullable=True),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("delivery", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("alert_id"),
    )
    op.create_index("ix_monitor_alerts_open", "monitor_alerts", ["monitor", "rule", "status"])
    op.create_table(
        "monitor_triggers",
        sa.Column("trigger_id", sa.String(length=32), nullable=False),
        sa.Column("alert_id", sa.String(length=32), nullable=False),
        sa.Column("monitor", sa.String(length=128), nullable=False),
        sa.Column("pipeline", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("claimed_at", sa.BigInteger(), nullable=True),
        sa.Column("claimed_by", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("trigger_id"),
    )
    op.create_index("ix_monitor_triggers_status", "monitor_triggers", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_monitor_triggers_status", table_name="monitor_triggers")
    op.drop_table("monitor_triggers")
    op.drop_index("ix_monitor_alerts_open", table_name="monitor_alerts")
    op.drop_table("monitor_alerts")
    op.drop_index("ix_monitor_runs_monitor", table_name="monitor_runs")
    op.drop_table("monitor_runs")
    op.drop_table("monitors")

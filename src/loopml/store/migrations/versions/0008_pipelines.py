"""pipelines: pipeline runs, step executions, cache entries, schedules and trigger history

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_runs",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("pipeline", sa.String(length=256), nullable=False),
        sa.Column("target", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("executor", sa.String(length=256), nullable=False),
        sa.Column("use_cache", sa.Boolean(), nullable=False),
        sa.Column("trigger_id", sa.String(length=32), nullable=True),
        sa.Column("resumed_from", sa.String(length=32), nullable=True),
        sa.Column("tracking_run_id", sa.String(length=32), nullable=True),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index("ix_pipeline_runs_pipeline", "pipeline_runs", ["pipeline", "started_at"])
    op.create_table(
        "pipeline_steps",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("step", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("cache_key", sa.String(length=64), nullable=True),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("outputs", sa.Text(), nullable=True),
        sa.Column("logs", sa.Text(), nullable=False),
        sa.Column("tracking_run_id", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("upstream", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "step"),
    )
    op.create_index("ix_pipeline_steps_cache", "pipeline_steps", ["cache_key", "status"])
    op.create_table(
        "pipeline_definitions",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("target", sa.String(length=2000), nullable=False),
        sa.Column("schedule", sa.String(length=128), nullable=True),
        sa.Column("on_dataset", sa.String(length=256), nullable=True),
        sa.Column("on_alert", sa.Boolean(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("cron_cursor", sa.BigInteger(), nullable=True),
        sa.Column("dataset_cursor", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "pipeline_triggers",
        sa.Column("trigger_id", sa.String(length=32), nullable=False),
        sa.Column("pipeline", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("trigger_id"),
    )
    op.create_index("ix_pipeline_triggers_pipeline", "pipeline_triggers", ["pipeline", "created_at"])
    op.create_table(
        "pipeline_locks",
        sa.Column("pipeline", sa.String(length=256), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=256), nullable=False),
        sa.Column("acquired_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pipeline"),
    )


def downgrade() -> None:
    op.drop_table("pipeline_locks")
    op.drop_index("ix_pipeline_triggers_pipeline", table_name="pipeline_triggers")
    op.drop_table("pipeline_triggers")
    op.drop_table("pipeline_definitions")
    op.drop_index("ix_pipeline_steps_cache", table_name="pipeline_steps")
    op.drop_table("pipeline_steps")
    op.drop_index("ix_pipeline_runs_pipeline", table_name="pipeline_runs")
    op.drop_table("pipeline_runs")

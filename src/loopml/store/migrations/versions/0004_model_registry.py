"""model registry: registered models, versions, aliases, gates, evaluations, approvals

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _model_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["model_id"], ["registered_models.id"])


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("creation_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("last_updated_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("max_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "registered_model_tags",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        _model_fk(),
        sa.PrimaryKeyConstraint("model_id", "key"),
    )
    op.create_table(
        "model_versions",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("creation_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("last_updated_timestamp", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("current_stage", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=2000), nullable=False),
        sa.Column("storage_location", sa.String(length=2000), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("logged_model_id", sa.String(length=64), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        _model_fk(),
        sa.PrimaryKeyConstraint("model_id", "version"),
    )
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"])
    op.create_table(
        "model_version_tags",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        _model_fk(),
        sa.PrimaryKeyConstraint("model_id", "version", "key"),
    )
    op.create_table(
        "registered_model_aliases",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=256), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _model_fk(),
        sa.PrimaryKeyConstraint("model_id", "alias"),
    )
    op.create_table(
        "model_gates",
        sa.Column("model_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("thresholds", sa.Text(), nullable=False),
        sa.Column("require_approval", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(length=256), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        _model_fk(),
        sa.PrimaryKeyConstraint("model_id"),
    )
    _create_history_tables()


def _create_history_tables() -> None:
    op.create_table(
        "model_evaluations",
        sa.Column("evaluation_id", sa.String(length=32), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("dataset_name", sa.String(length=500), nullable=False),
        sa.Column("dataset_version", sa.Integer(), nullable=False),
        sa.Column("dataset_digest", sa.String(length=64), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("champion_version", sa.Integer(), nullable=True),
        sa.Column("champion_metrics", sa.Text(), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        _model_fk(),
        sa.PrimaryKeyConstraint("evaluation_id"),
    )
    op.create_index("ix_model_evaluations_version", "model_evaluations", ["model_id", "version", "created"])
    op.create_table(
        "promotion_requests",
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("to_stage", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=256), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("gate", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(length=256), nullable=True),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        _model_fk(),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index("ix_promotion_requests_model", "promotion_requests", ["model_id", "status"])
    op.create_table(
        "model_transitions",
        sa.Column("transition_id", sa.String(length=32), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("from_stage", sa.String(length=20), nullable=False),
        sa.Column("to_stage", sa.String(length=20), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("gate", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(length=32), nullable=True),
        sa.Column("approved_by", sa.String(length=256), nullable=True),
        _model_fk(),
        sa.PrimaryKeyConstraint("transition_id"),
    )
    op.create_index("ix_model_transitions_version", "model_transitions", ["model_id", "version", "timestamp"])


def downgrade() -> None:
    for index, table in (
        ("ix_model_transitions_version", "model_transitions"),
        ("ix_promotion_requests_model", "promotion_requests"),
        ("ix_model_evaluations_version", "model_evaluations"),
        ("ix_model_versions_run_id", "model_versions"),
    ):
        op.drop_index(index, table_name=table)
    for table in (
        "model_transitions",
        "promotion_requests",
        "model_evaluations",
        "model_gates",
        "registered_model_aliases",
        "model_version_tags",
        "model_versions",
        "registered_model_tags",
        "registered_models",
    ):
        op.drop_table(table)

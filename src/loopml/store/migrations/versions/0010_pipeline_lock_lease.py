"""pipelines: a run lock carries a heartbeat, so a lock whose holder stopped renewing it expires

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pipeline_locks", sa.Column("heartbeat_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pipeline_locks") as batch:
        batch.drop_column("heartbeat_at")

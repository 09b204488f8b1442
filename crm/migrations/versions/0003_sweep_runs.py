"""sweep_runs and sweep_ranges: a sweep's progress, recorded where every machine can read it

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import crm.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sweep_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("as_of", crm.types.UTCDateTime(), nullable=False),
        sa.Column("started_at", crm.types.UTCDateTime(), nullable=False),
        sa.Column("ranges", sa.Integer(), nullable=True),
        sa.Column("done", sa.Integer(), server_default="0", nullable=False),
        sa.Column("planned_at", crm.types.UTCDateTime(), nullable=True),
        sa.Column("finished_at", crm.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "sweep_ranges",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("lo", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hi", sa.Integer(), nullable=False),
        sa.Column("done_at", crm.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["sweep_runs.id"]),
        sa.PrimaryKeyConstraint("run_id", "lo"),
    )


def downgrade() -> None:
    op.drop_table("sweep_ranges")
    op.drop_table("sweep_runs")

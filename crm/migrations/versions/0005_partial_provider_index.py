"""index deliveries.provider_id only where there is one: the sweep's new rows skip the index

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HAS_ONE = sa.text("provider_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_deliveries_provider_id", table_name="deliveries")
    op.create_index(
        "ix_deliveries_provider_id",
        "deliveries",
        ["provider_id"],
        postgresql_where=HAS_ONE,
        sqlite_where=HAS_ONE,
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_provider_id", table_name="deliveries")
    op.create_index("ix_deliveries_provider_id", "deliveries", ["provider_id"])

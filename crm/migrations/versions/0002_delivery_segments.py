"""deliveries.segments (the SMS parts each message was sent as); error_code up to 40 characters

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("segments", sa.Integer(), nullable=True))
        # "twilio-connection-lost" and SMTP codes did not fit in 20.
        batch_op.alter_column(
            "error_code", type_=sa.String(length=40), existing_type=sa.String(length=20)
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column(
            "error_code", type_=sa.String(length=20), existing_type=sa.String(length=40)
        )
        batch_op.drop_column("segments")

"""When a delivery's next attempt is due: jobs travel grouped, and a group comes back when its soonest retry is due,
so a job with a longer delay must know to wait again.

Revision ID: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    with op.batch_alter_table("adapters_deliveries") as table:
        table.add_column(sa.Column("retry_time", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("adapters_deliveries") as table:
        table.drop_column("retry_time")

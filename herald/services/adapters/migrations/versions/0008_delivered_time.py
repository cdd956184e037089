"""When a delivery was known to reach its reader (a receipt, an e-mail open or click): an escalation step stops.

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("adapters_deliveries") as table:
        table.add_column(sa.Column("delivered_time", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("adapters_deliveries") as table:
        table.drop_column("delivered_time")

"""A delivery record keeps its category and its trace, for the events and spans of receipts that come later.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    with op.batch_alter_table("adapters_deliveries") as table:
        table.add_column(sa.Column("category", sa.Integer, nullable=False, server_default="0"))
        table.add_column(sa.Column("traceparent", sa.String(64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("adapters_deliveries") as table:
        for name in ("traceparent", "category"):
            table.drop_column(name)

"""What must follow a delivery's recorded outcome, so a redelivered job publishes it too.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("adapters_deliveries") as table:
        table.add_column(sa.Column("dead_letter", sa.Boolean, nullable=False, server_default=sa.false()))
        table.add_column(sa.Column("address_dead", sa.Boolean, nullable=False, server_default=sa.false()))
        table.add_column(sa.Column("may_fall_back", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("adapters_deliveries") as table:
        for name in ("may_fall_back", "address_dead", "dead_letter"):
            table.drop_column(name)

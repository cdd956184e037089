"""A provider account's unit price, so each SENT event carries what it cost.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("adapters_provider_accounts") as table:
        table.add_column(sa.Column("unit_price_micros", sa.BigInteger, nullable=False, server_default="0"))
        table.add_column(sa.Column("currency_code", sa.String(3), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("adapters_provider_accounts") as table:
        for name in ("currency_code", "unit_price_micros"):
            table.drop_column(name)

"""Addresses a provider said no longer exist, per user and channel.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("router_users") as users:
        users.add_column(sa.Column("dead_addresses", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("router_users") as users:
        users.drop_column("dead_addresses")

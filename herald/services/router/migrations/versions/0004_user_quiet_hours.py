"""A user's own quiet hours.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("router_users") as users:
        users.add_column(sa.Column("quiet_hours", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("router_users") as users:
        users.drop_column("quiet_hours")

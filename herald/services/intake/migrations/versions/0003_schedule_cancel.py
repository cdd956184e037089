"""When a message is due, and when it was cancelled.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("intake_messages") as messages:
        messages.add_column(sa.Column("send_at", sa.DateTime(timezone=True)))
        messages.add_column(sa.Column("cancel_time", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("intake_messages") as messages:
        messages.drop_column("cancel_time")
        messages.drop_column("send_at")

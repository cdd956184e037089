"""The in-app inbox: per-user sequence counters and timeline items.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "adapters_inbox_counters",
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("max_seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "adapters_inbox_items",
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("delivery_id", sa.String(64), nullable=False, unique=True),
        sa.Column("message_id", sa.String(40), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deliver_time", sa.DateTime(timezone=True)),
        sa.Column("read_time", sa.DateTime(timezone=True)),
        sa.Column("delete_time", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_adapters_inbox_items_unread", "adapters_inbox_items", ["app_id", "user_id", "read_time"])


def downgrade() -> None:
    op.drop_table("adapters_inbox_items")
    op.drop_table("adapters_inbox_counters")

"""Topics and their subscribers; a user's preferred channel.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("router_users") as users:
        users.add_column(sa.Column("preferred_channel", sa.String(32), nullable=False, server_default=""))
    op.create_table(
        "router_topics",
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("topic_key", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "router_topic_subscribers",
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("topic_key", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(200), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("router_topic_subscribers")
    op.drop_table("router_topics")
    with op.batch_alter_table("router_users") as users:
        users.drop_column("preferred_channel")

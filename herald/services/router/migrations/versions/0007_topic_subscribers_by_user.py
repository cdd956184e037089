"""Topic subscriptions found by user id alone, for erasing a user.

Revision ID: 0007
"""

from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_index("ix_router_topic_subscribers_user", "router_topic_subscribers", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_router_topic_subscribers_user", "router_topic_subscribers")

"""A message's deliveries are read a page at a time in (create_time, delivery_id) order, so the message index
carries that order: a page of a million-recipient campaign is one index range, not a sort.

Revision ID: 0005
"""

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_index(
        "ix_feedback_deliveries_message", "feedback_deliveries", ["message_id", "create_time", "delivery_id"]
    )
    op.drop_index("ix_feedback_deliveries_message_id", "feedback_deliveries")


def downgrade() -> None:
    op.create_index("ix_feedback_deliveries_message_id", "feedback_deliveries", ["message_id"])
    op.drop_index("ix_feedback_deliveries_message", "feedback_deliveries")

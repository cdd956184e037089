"""Per message, how many of its deliveries are in each state, kept as events fold: GetMessage read them by
counting the message's deliveries, which grew with its audience. Filled from the deliveries already recorded.

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.create_table(
        "feedback_message_states",
        sa.Column("message_id", sa.String(40), primary_key=True),
        sa.Column("state", sa.Integer, primary_key=True),
        sa.Column("deliveries", sa.BigInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO feedback_message_states (message_id, state, deliveries) "
        "SELECT message_id, state, count(*) FROM feedback_deliveries GROUP BY message_id, state"
    )


def downgrade() -> None:
    op.drop_table("feedback_message_states")

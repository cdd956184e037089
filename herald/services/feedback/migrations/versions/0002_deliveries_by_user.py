"""Deliveries carry their app, so one user's deliveries are listed from one index.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("feedback_deliveries") as deliveries:
        deliveries.add_column(sa.Column("app_id", sa.String(40), nullable=False, server_default=""))
    op.execute(
        "UPDATE feedback_deliveries SET app_id = COALESCE((SELECT m.app_id FROM feedback_messages m"
        " WHERE m.message_id = feedback_deliveries.message_id), '')"
    )
    op.create_index("ix_feedback_deliveries_user", "feedback_deliveries", ["app_id", "user_id", "create_time"])


def downgrade() -> None:
    op.drop_index("ix_feedback_deliveries_user", "feedback_deliveries")
    with op.batch_alter_table("feedback_deliveries") as deliveries:
        deliveries.drop_column("app_id")

"""Messages, deliveries and their events.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "feedback_messages",
        sa.Column("message_id", sa.String(40), primary_key=True),
        sa.Column("app_id", sa.String(40), nullable=False, index=True),
        sa.Column("template_id", sa.String(64), nullable=False),
        sa.Column("template_version", sa.Integer, nullable=False),
        sa.Column("category", sa.Integer, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "feedback_deliveries",
        sa.Column("delivery_id", sa.String(64), primary_key=True),
        sa.Column("message_id", sa.String(40), nullable=False, index=True),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "feedback_events",
        sa.Column("event_id", sa.String(100), primary_key=True),
        sa.Column("delivery_id", sa.String(64), nullable=False, index=True),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("occur_time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("feedback_events")
    op.drop_table("feedback_deliveries")
    op.drop_table("feedback_messages")

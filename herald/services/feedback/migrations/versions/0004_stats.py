"""Statistics: hourly aggregates kept by the events consumer, and what each delivery has already been counted for.

Columns are added in place (no table rebuild), so SQLite's search triggers from 0003 stay.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column("feedback_deliveries", sa.Column("counted", sa.Integer, nullable=False, server_default="0"))
    op.add_column("feedback_deliveries", sa.Column("queued_time", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_feedback_events_occur_time", "feedback_events", ["occur_time"])
    op.create_table(
        "feedback_stats",
        sa.Column("bucket_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("template_id", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("state", sa.Integer, primary_key=True),
        sa.Column("reason_code", sa.String(32), primary_key=True),
        sa.Column("currency_code", sa.String(3), primary_key=True),
        sa.Column("latency_bucket", sa.Integer, primary_key=True),
        sa.Column("deliveries", sa.BigInteger, nullable=False),
        sa.Column("cost_micros", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("feedback_stats")
    op.drop_index("ix_feedback_events_occur_time", "feedback_events")
    op.drop_column("feedback_deliveries", "queued_time")
    op.drop_column("feedback_deliveries", "counted")

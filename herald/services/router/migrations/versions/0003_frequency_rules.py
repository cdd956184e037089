"""Frequency caps.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "router_frequency_rules",
        sa.Column("rule_id", sa.String(40), primary_key=True),
        sa.Column("category", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("max_deliveries", sa.Integer, nullable=False),
        sa.Column("window_seconds", sa.Float, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("router_frequency_rules")

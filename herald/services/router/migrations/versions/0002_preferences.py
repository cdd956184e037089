"""Users' opt-outs and opt-ins per category and channel.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "router_preferences",
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("category", sa.Integer, primary_key=True),
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("opted_out", sa.Boolean, nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("router_preferences")

"""The suppression list, and the soft bounces counted towards it.

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.create_table(
        "router_suppressions",
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("category", sa.Integer, primary_key=True),
        sa.Column("reason", sa.Integer, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("detail", sa.String(1000), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_router_suppressions_time", "router_suppressions", ["create_time"])
    op.create_table(
        "router_soft_bounces",
        sa.Column("report_id", sa.String(80), primary_key=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("occur_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_router_soft_bounces_address", "router_soft_bounces", ["channel", "address"])


def downgrade() -> None:
    op.drop_table("router_soft_bounces")
    op.drop_table("router_suppressions")

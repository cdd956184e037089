"""Digests being collected, and their items, one row each.

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "router_digests",
        sa.Column("digest_key", sa.String(64), primary_key=True),
        sa.Column("digest_id", sa.String(80), nullable=False, unique=True),
        sa.Column("due_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("items", sa.Integer, nullable=False),
        sa.Column("listed", sa.Integer, nullable=False),
        sa.Column("listed_bytes", sa.Integer, nullable=False),
    )
    op.create_table(
        "router_digest_items",
        sa.Column("delivery_id", sa.String(80), primary_key=True),
        sa.Column("digest_id", sa.String(80), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("message_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("variables", sa.JSON, nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_router_digest_items_digest", "router_digest_items", ["digest_id", "position"])
    op.create_index("ix_router_digest_items_user", "router_digest_items", ["user_id"])


def downgrade() -> None:
    op.drop_table("router_digest_items")
    op.drop_table("router_digests")

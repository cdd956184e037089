"""Apps, templates and accepted messages.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "intake_apps",
        sa.Column("app_id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("allowed_channels", sa.JSON, nullable=False),
        sa.Column("rate_limit_per_second", sa.Float, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "intake_templates",
        sa.Column("template_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("category", sa.Integer, nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("contents", sa.JSON, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "intake_messages",
        sa.Column("message_id", sa.String(40), primary_key=True),
        sa.Column("app_id", sa.String(40), nullable=False, index=True),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("template_id", sa.String(64), nullable=False),
        sa.Column("template_version", sa.Integer, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("app_id", "idempotency_key"),
    )


def downgrade() -> None:
    op.drop_table("intake_messages")
    op.drop_table("intake_templates")
    op.drop_table("intake_apps")

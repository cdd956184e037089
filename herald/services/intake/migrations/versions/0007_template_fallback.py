"""A template's fallback chain of channels.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    with op.batch_alter_table("intake_templates") as templates:
        templates.add_column(sa.Column("fallback_channels", sa.JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("intake_templates") as templates:
        templates.drop_column("fallback_channels")

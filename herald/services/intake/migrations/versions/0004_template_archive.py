"""Archived templates.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("intake_templates") as templates:
        templates.add_column(sa.Column("archive_time", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("intake_templates") as templates:
        templates.drop_column("archive_time")

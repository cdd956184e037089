"""How long an app's rendered content is kept in the status records.

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("intake_apps") as apps:
        apps.add_column(sa.Column("content_retention_days", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("intake_apps") as apps:
        apps.drop_column("content_retention_days")

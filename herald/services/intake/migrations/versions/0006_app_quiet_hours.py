"""An app's default quiet hours.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("intake_apps") as apps:
        apps.add_column(sa.Column("quiet_hours", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("intake_apps") as apps:
        apps.drop_column("quiet_hours")

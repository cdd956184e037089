"""A template's e-mail open and click tracking.

Revision ID: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    with op.batch_alter_table("intake_templates") as templates:
        templates.add_column(sa.Column("track_opens", sa.Boolean, nullable=False, server_default=sa.false()))
        templates.add_column(sa.Column("track_clicks", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("intake_templates") as templates:
        templates.drop_column("track_clicks")
        templates.drop_column("track_opens")

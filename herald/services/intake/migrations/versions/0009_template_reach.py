"""A template's offline push, escalation steps and digest window.

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    with op.batch_alter_table("intake_templates") as templates:
        templates.add_column(sa.Column("offline_push", sa.Integer, nullable=False, server_default="0"))
        templates.add_column(sa.Column("escalation", sa.JSON, nullable=False, server_default="[]"))
        templates.add_column(sa.Column("digest", sa.JSON, nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("intake_templates") as templates:
        templates.drop_column("digest")
        templates.drop_column("escalation")
        templates.drop_column("offline_push")

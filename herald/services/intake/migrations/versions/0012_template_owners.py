"""Templates have an owner: the app whose key created one ("" = the company's), and the apps it is shared with.

Revision ID: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    with op.batch_alter_table("intake_templates") as templates:
        templates.add_column(sa.Column("owner_app_id", sa.String(40), nullable=False, server_default=""))
    op.create_table(
        "intake_template_shares",
        sa.Column("template_id", sa.String(64), primary_key=True),
        sa.Column("app_id", sa.String(40), primary_key=True),
    )
    op.create_index("ix_intake_template_shares_app_id", "intake_template_shares", ["app_id"])


def downgrade() -> None:
    op.drop_table("intake_template_shares")
    with op.batch_alter_table("intake_templates") as templates:
        templates.drop_column("owner_app_id")

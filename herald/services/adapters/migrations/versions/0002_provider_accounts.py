"""Provider accounts; in-flight marks and replays on delivery records.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("adapters_deliveries") as table:
        table.add_column(sa.Column("sending_until", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("replay", sa.Integer, nullable=False, server_default="0"))
        table.add_column(sa.Column("cycle_start", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "adapters_provider_accounts",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("endpoint", sa.String(500), nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("credentials", sa.JSON, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("weight", sa.Integer, nullable=False),
        sa.Column("rate_limit_per_second", sa.Float, nullable=False),
        sa.Column("timeout_seconds", sa.Float, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("adapters_provider_accounts")
    with op.batch_alter_table("adapters_deliveries") as table:
        table.drop_column("cycle_start")
        table.drop_column("replay")
        table.drop_column("sending_until")

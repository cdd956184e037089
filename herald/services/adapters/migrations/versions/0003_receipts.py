"""What a delivery receipt needs: the delivery's identity on its record, and a lookup by the provider's id.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

_IDENTITY = (("message_id", 40), ("app_id", 40), ("template_id", 64), ("user_id", 200), ("channel", 32))


def upgrade() -> None:
    with op.batch_alter_table("adapters_deliveries") as table:
        for name, length in _IDENTITY:
            table.add_column(sa.Column(name, sa.String(length), nullable=False, server_default=""))
    op.create_index(
        "ix_adapters_deliveries_provider_message",
        "adapters_deliveries",
        ["provider", "provider_message_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_adapters_deliveries_provider_message", "adapters_deliveries")
    with op.batch_alter_table("adapters_deliveries") as table:
        for name, _ in reversed(_IDENTITY):
            table.drop_column(name)

"""The categories a provider account may carry (ProviderAccount.categories); [] = every category.

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    with op.batch_alter_table("adapters_provider_accounts") as table:
        table.add_column(sa.Column("categories", sa.JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("adapters_provider_accounts") as table:
        table.drop_column("categories")

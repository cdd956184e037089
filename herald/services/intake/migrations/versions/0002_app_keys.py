"""Several keys per app (rotation with a grace period), disabling, allowed categories.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "intake_app_keys",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("app_id", sa.String(40), nullable=False, index=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True)),
    )
    op.execute(
        "INSERT INTO intake_app_keys (key_hash, app_id, create_time)"
        " SELECT key_hash, app_id, create_time FROM intake_apps"
    )
    with op.batch_alter_table("intake_apps") as apps:
        apps.drop_column("key_hash")
        apps.add_column(sa.Column("allowed_categories", sa.JSON, nullable=False, server_default="[]"))
        apps.add_column(sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("intake_apps") as apps:
        apps.drop_column("disabled")
        apps.drop_column("allowed_categories")
        apps.add_column(sa.Column("key_hash", sa.String(64)))
    op.drop_table("intake_app_keys")

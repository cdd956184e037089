"""The parts of a message sent to a large audience (SendAudience).

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "intake_message_parts",
        sa.Column("message_id", sa.String(40), primary_key=True),
        sa.Column("part", sa.Integer, primary_key=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    with op.batch_alter_table("intake_messages") as messages:
        messages.add_column(sa.Column("parts", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("intake_messages") as messages:
        messages.drop_column("parts")
    op.drop_table("intake_message_parts")

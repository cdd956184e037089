"""Each message keeps the trace id of the call that sent it, so support can open its trace.

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("feedback_messages") as messages:
        messages.add_column(sa.Column("trace_id", sa.String(32), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("feedback_messages") as messages:
        messages.drop_column("trace_id")

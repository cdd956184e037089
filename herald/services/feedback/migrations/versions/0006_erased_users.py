"""Erased users are remembered (their id and when), so an event of theirs that arrives after the erasure - a
delivery still in flight then - is recorded without their id and content.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "feedback_erased_users",
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("erase_time", sa.DateTime(timezone=True), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("feedback_erased_users")

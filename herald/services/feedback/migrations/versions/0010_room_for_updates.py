"""On PostgreSQL, half of each page of the deliveries' records and of the per-message state counts is left free
for their updates. A delivery's record is inserted at its first event and changed at the next (PENDING, then SENT
moments later), as is its message's count of each state; on a full page the new version of the row goes to another
page, and every index of the table, the full-text index among them, gets an entry for it. With room on the page,
PostgreSQL updates in place (a HOT update) and no index is touched. The price is space: the two tables take up to
twice the pages. Rows written before this keep their pages; SQLite has no such setting. docs/benchmarks.md has
what it saved.

Revision ID: 0010
"""

from alembic import op

revision = "0010"
down_revision = "0009"

TABLES = ("feedback_deliveries", "feedback_message_states")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")

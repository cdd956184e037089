"""Search: each delivery's template and rendered content, with a full-text index.

PostgreSQL: a generated tsvector column (the 'simple' configuration: lower-cased words, no stemming, so any
language's words match as written) under a GIN index. SQLite: an FTS5 table over the content, kept in step by
triggers. A later migration that rebuilds feedback_deliveries on SQLite must recreate the triggers.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE feedback_deliveries_fts USING fts5("
    "content, content='feedback_deliveries', content_rowid='rowid')",
    "CREATE TRIGGER feedback_deliveries_fts_insert AFTER INSERT ON feedback_deliveries BEGIN "
    "INSERT INTO feedback_deliveries_fts(rowid, content) VALUES (new.rowid, new.content); END",
    "CREATE TRIGGER feedback_deliveries_fts_delete AFTER DELETE ON feedback_deliveries BEGIN "
    "INSERT INTO feedback_deliveries_fts(feedback_deliveries_fts, rowid, content) "
    "VALUES ('delete', old.rowid, old.content); END",
    "CREATE TRIGGER feedback_deliveries_fts_update AFTER UPDATE OF content ON feedback_deliveries BEGIN "
    "INSERT INTO feedback_deliveries_fts(feedback_deliveries_fts, rowid, content) "
    "VALUES ('delete', old.rowid, old.content); "
    "INSERT INTO feedback_deliveries_fts(rowid, content) VALUES (new.rowid, new.content); END",
    "INSERT INTO feedback_deliveries_fts(feedback_deliveries_fts) VALUES ('rebuild')",
]
_POSTGRES_FTS = [
    "ALTER TABLE feedback_deliveries ADD COLUMN content_tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED",
    "CREATE INDEX ix_feedback_deliveries_content ON feedback_deliveries USING gin (content_tsv)",
]


def upgrade() -> None:
    with op.batch_alter_table("feedback_deliveries") as deliveries:
        deliveries.add_column(sa.Column("template_id", sa.String(64), nullable=False, server_default=""))
        deliveries.add_column(sa.Column("content", sa.Text, nullable=False, server_default=""))
    op.create_index("ix_feedback_deliveries_app_time", "feedback_deliveries", ["app_id", "create_time"])
    for statement in _POSTGRES_FTS if op.get_bind().dialect.name == "postgresql" else _SQLITE_FTS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_feedback_deliveries_content")
        op.execute("ALTER TABLE feedback_deliveries DROP COLUMN content_tsv")
    else:
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER feedback_deliveries_fts_{trigger}")
        op.execute("DROP TABLE feedback_deliveries_fts")
    op.drop_index("ix_feedback_deliveries_app_time", "feedback_deliveries")
    with op.batch_alter_table("feedback_deliveries") as deliveries:
        deliveries.drop_column("content")
        deliveries.drop_column("template_id")

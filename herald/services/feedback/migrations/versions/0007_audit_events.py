"""The audit trail (herald.event.audit), append-only: a trigger refuses every UPDATE of a record, so not even a
bug in herald can rewrite what someone did. The retention purge deletes records past their age.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"

_REFUSAL = "the audit trail is append-only"
_SQLITE = [
    "CREATE TRIGGER feedback_audit_events_append_only BEFORE UPDATE ON feedback_audit_events "
    f"BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END",
]
_POSTGRES = [
    "CREATE OR REPLACE FUNCTION feedback_audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{_REFUSAL}'; END $$",
    "CREATE TRIGGER feedback_audit_events_append_only BEFORE UPDATE ON feedback_audit_events "
    "FOR EACH ROW EXECUTE FUNCTION feedback_audit_events_append_only()",
]


def upgrade() -> None:
    op.create_table(
        "feedback_audit_events",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("occur_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("target", sa.String(400), nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("ix_feedback_audit_events_time", "feedback_audit_events", ["occur_time", "event_id"])
    op.create_index("ix_feedback_audit_events_actor", "feedback_audit_events", ["actor", "occur_time"])
    op.create_index("ix_feedback_audit_events_target", "feedback_audit_events", ["target", "occur_time"])
    for statement in _POSTGRES if op.get_bind().dialect.name == "postgresql" else _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("feedback_audit_events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION feedback_audit_events_append_only()")

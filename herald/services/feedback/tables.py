"""Feedback's tables: messages, their deliveries' current state, every state change, and the statistics."""

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from herald.libs.store import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


class Message(Base):
    __tablename__ = "feedback_messages"
    message_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(40), index=True)
    template_id: Mapped[str] = mapped_column(String(64))
    template_version: Mapped[int] = mapped_column(Integer)
    category: Mapped[int] = mapped_column(Integer)
    create_time: Mapped[datetime]
    # The sending call's W3C trace id (hex), "" without one.
    trace_id: Mapped[str] = mapped_column(String(32), default="")


class Delivery(Base):
    """A delivery's current state, folded from its events (see timeline.apply)."""

    __tablename__ = "feedback_deliveries"
    __table_args__ = (
        Index("ix_feedback_deliveries_user", "app_id", "user_id", "create_time"),
        Index("ix_feedback_deliveries_message", "message_id", "create_time", "delivery_id"),
    )
    delivery_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(40))
    app_id: Mapped[str] = mapped_column(String(40), default="")
    template_id: Mapped[str] = mapped_column(String(64), default="")
    # The rendered subject and body; searched through feedback_deliveries_fts (SQLite) or the generated
    # content_tsv column (PostgreSQL), which migration 0003 adds outside this model.
    content: Mapped[str] = mapped_column(Text, default="")
    user_id: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(32))
    state: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]
    # Bits (1 << state) of the states already counted in feedback_stats, so a state reached twice counts once.
    counted: Mapped[int] = mapped_column(Integer, default=0)
    # When it was first queued for its channel (its first PENDING): where send and delivery latency start.
    queued_time: Mapped[datetime | None]


class MessageState(Base):
    """How many of a message's deliveries are in each state now, moved as events fold (status_fold.py), so that
    GetMessage's counts are a few rows at any audience size."""

    __tablename__ = "feedback_message_states"
    message_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    state: Mapped[int] = mapped_column(Integer, primary_key=True)
    deliveries: Mapped[int] = mapped_column(BigInteger)


class Event(Base):
    __tablename__ = "feedback_events"
    event_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(String(64))
    occur_time: Mapped[datetime] = mapped_column(index=True)


class ErasedUser(Base):
    """A user DirectoryService.DeleteUser erased: their events that arrive later are recorded without them."""

    __tablename__ = "feedback_erased_users"
    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    erase_time: Mapped[datetime] = mapped_column(index=True)


class Stat(Base):
    """How many deliveries reached a state within one UTC hour, per app, channel, template, provider, reason code
    and currency, with their cost and, for SENT and DELIVERED, their latency bucket (see stats.py)."""

    __tablename__ = "feedback_stats"
    bucket_start: Mapped[datetime] = mapped_column(primary_key=True)
    app_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    template_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[int] = mapped_column(Integer, primary_key=True)
    reason_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    currency_code: Mapped[str] = mapped_column(String(3), primary_key=True)
    # Index into stats.LATENCY_BOUNDS (len = beyond the last), or -1: not timed.
    latency_bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    deliveries: Mapped[int] = mapped_column(BigInteger)
    cost_micros: Mapped[int] = mapped_column(BigInteger)


class AuditRecord(Base):
    """One call that changed (or tried to change) state, from herald.event.audit. Append-only: a trigger
    (migration 0007) refuses every UPDATE; only the retention purge deletes, past HERALD_AUDIT_RETENTION_DAYS."""

    __tablename__ = "feedback_audit_events"
    __table_args__ = (
        Index("ix_feedback_audit_events_time", "occur_time", "event_id"),
        Index("ix_feedback_audit_events_actor", "actor", "occur_time"),
        Index("ix_feedback_audit_events_target", "target", "occur_time"),
    )
    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    occur_time: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(200))
    target: Mapped[str] = mapped_column(String(400))
    # The whole herald.v1.AuditEvent, as its JSON.
    record: Mapped[str] = mapped_column(Text)

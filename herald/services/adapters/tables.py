"""Adapters' tables: the durable record of each delivery's attempts, and the provider accounts."""

from collections.abc import Collection
from datetime import datetime
from typing import Any

from herald.v1 import common_pb2
from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, String, Text, Update, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from herald.internal.v1 import work_pb2
from herald.libs.store import UTCDateTime
from herald.libs.timeutil import now


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Delivery(Base):
    """What the provider was told about a delivery: redelivered jobs consult it before calling again, and
    delivery receipts find their delivery by the provider's message id."""

    __tablename__ = "adapters_deliveries"
    __table_args__ = (Index("ix_adapters_deliveries_provider_message", "provider", "provider_message_id"),)
    delivery_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Who and what the delivery is, for the events a receipt produces long after the job was acked.
    message_id: Mapped[str] = mapped_column(String(40), default="")
    app_id: Mapped[str] = mapped_column(String(40), default="")
    template_id: Mapped[str] = mapped_column(String(64), default="")
    # herald.v1.Category value
    category: Mapped[int] = mapped_column(Integer, default=0)
    user_id: Mapped[str] = mapped_column(String(200), default="")
    channel: Mapped[str] = mapped_column(String(32), default="")
    # The W3C traceparent of the job's first handling: a receipt's span links to the delivery's trace.
    traceparent: Mapped[str] = mapped_column(String(64), default="")
    # herald.v1.DeliveryState value
    state: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    # The provider account of the last attempt.
    provider: Mapped[str] = mapped_column(String(64))
    provider_message_id: Mapped[str] = mapped_column(String(200))
    last_error: Mapped[str] = mapped_column(Text)
    update_time: Mapped[datetime]
    # Set, before the provider is called, to when that call must have ended; cleared with its outcome. A record
    # found with it in the past means the process died mid-call and the provider may have taken the delivery.
    sending_until: Mapped[datetime | None]
    # Set with an outcome to retry: when the next attempt is due. A job comes back with its group when the group's
    # soonest retry is due; one whose own is later waits again (retry_policy.not_due).
    retry_time: Mapped[datetime | None]
    # DeliveryJob.replay of the cycle this record describes, and `attempts` when that cycle began: a replay from
    # the dead letters gets a fresh retry budget while attempts keep counting (event ids stay unique).
    replay: Mapped[int] = mapped_column(Integer, default=0)
    cycle_start: Mapped[int] = mapped_column(Integer, default=0)
    # What must follow the recorded outcome - a dead letter, a dead-address event, the fallback chain - so that a
    # job redelivered after a crash between recording and publishing them still publishes them.
    dead_letter: Mapped[bool] = mapped_column(Boolean, default=False)
    address_dead: Mapped[bool] = mapped_column(Boolean, default=False)
    may_fall_back: Mapped[bool] = mapped_column(Boolean, default=True)
    # When it was known to have reached its reader - a receipt said so, or the mail was opened or clicked: an
    # escalation step naming it is not sent.
    delivered_time: Mapped[datetime | None]

    def job(self) -> work_pb2.DeliveryJob:
        """Who and what the delivery is, for the events that come long after its job was acked (receipts,
        opens, clicks)."""
        return work_pb2.DeliveryJob(
            delivery_id=self.delivery_id,
            message_id=self.message_id,
            app_id=self.app_id,
            template_id=self.template_id,
            category=common_pb2.Category.ValueType(self.category),
            user_id=self.user_id,
            channel=self.channel,
        )


def reached(delivery_ids: Collection[str]) -> Update:
    """Mark deliveries as having reached their reader (a receipt said delivered, the mail was opened or clicked),
    unless they are marked already: an escalation step waiting on one is not sent."""
    return (
        update(Delivery)
        .where(Delivery.delivery_id.in_(delivery_ids), Delivery.delivered_time.is_(None))
        .values(delivered_time=now())
    )


class ProviderAccount(Base):
    __tablename__ = "adapters_provider_accounts"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(32))
    endpoint: Mapped[str] = mapped_column(String(500))
    settings: Mapped[dict[str, Any]]
    # credential name -> environment variable name; never the secret itself.
    credentials: Mapped[dict[str, Any]]
    priority: Mapped[int] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer)
    rate_limit_per_second: Mapped[float] = mapped_column(Float)
    timeout_seconds: Mapped[float] = mapped_column(Float)
    disabled: Mapped[bool] = mapped_column(Boolean)
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]
    unit_price_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    currency_code: Mapped[str] = mapped_column(String(3), default="")
    # herald.v1.Category values the account may carry; [] = every category.
    categories: Mapped[list[int]] = mapped_column(JSON, default=list)


class InboxCounter(Base):
    """The highest sequence handed out in one user's inbox: raised in the transaction that stores the items, so
    sequences are gap-free and unique however many processes write."""

    __tablename__ = "adapters_inbox_counters"
    app_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    max_seq: Mapped[int] = mapped_column(BigInteger)


class InboxItem(Base):
    __tablename__ = "adapters_inbox_items"
    __table_args__ = (Index("ix_adapters_inbox_items_unread", "app_id", "user_id", "read_time"),)
    app_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # One item per delivery: a redelivered job finds it and stores nothing.
    delivery_id: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]]
    create_time: Mapped[datetime]
    # When a device first got it (DELIVERED), when it was read (READ), when it was deleted.
    deliver_time: Mapped[datetime | None]
    read_time: Mapped[datetime | None]
    delete_time: Mapped[datetime | None]

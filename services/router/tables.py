"""Router's tables: the directory of users, their preferences, frequency caps, and topics."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from libs.store import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, str]: JSON, dict[str, Any]: JSON}


class User(Base):
    __tablename__ = "router_users"
    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    # channel -> address
    addresses: Mapped[dict[str, str]]
    timezone: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(35))
    update_time: Mapped[datetime]
    # herald.v1.QuietHours as JSON; None = the sending app's, else the default.
    quiet_hours: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # channel -> {"address", "reason", "time"}: addresses a provider said no longer exist (DeadAddressEvent).
    dead_addresses: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The channel the user would rather be reached on ("" = none), when a sender names none.
    preferred_channel: Mapped[str] = mapped_column(String(32), default="")

    def address(self, channel: str) -> str:
        """The user's address on `channel`, unless a provider said it is dead; a new address replaces the mark."""
        address = self.addresses.get(channel, "")
        return "" if self.dead_mark(channel) else address

    def dead_mark(self, channel: str) -> dict[str, Any] | None:
        mark = (self.dead_addresses or {}).get(channel)
        return mark if mark and mark.get("address") == self.addresses.get(channel) else None


class Preference(Base):
    """An opt-out (or opt-in) of one category, on one channel or on all ("")."""

    __tablename__ = "router_preferences"
    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    # herald.v1.Category value
    category: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    opted_out: Mapped[bool] = mapped_column(Boolean)
    update_time: Mapped[datetime]


class FrequencyRule(Base):
    """At most max_deliveries per user per sliding window, over the deliveries it matches ("" = any)."""

    __tablename__ = "router_frequency_rules"
    rule_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    category: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(32))
    app_id: Mapped[str] = mapped_column(String(40))
    max_deliveries: Mapped[int] = mapped_column(Integer)
    window_seconds: Mapped[float] = mapped_column(Float)
    create_time: Mapped[datetime]


class Topic(Base):
    """An app's topic; its subscribers are TopicSubscriber rows."""

    __tablename__ = "router_topics"
    app_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    topic_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    create_time: Mapped[datetime]


class TopicSubscriber(Base):
    """One user subscribed to one topic; the primary key orders a topic's subscribers by user id, for fan-out and
    listing by keyset."""

    __tablename__ = "router_topic_subscribers"
    # Erasing a user (DeleteUser) finds their subscriptions by user id alone.
    __table_args__ = (Index("ix_router_topic_subscribers_user", "user_id"),)
    app_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    topic_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)

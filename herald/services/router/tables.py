"""Router's tables: the directory of users, their preferences, frequency caps, topics, and the digests being
collected."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from herald.libs.store import UTCDateTime


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


class Digest(Base):
    """A digest being collected (digests.py): one per app, template, digest key value, recipient and channel, hashed
    into `digest_key`, until its window ends. Adding an item locks this row (an upsert) and closing deletes it, so an
    item lands in the digest that is closed or in the next one, never in neither."""

    __tablename__ = "router_digests"
    digest_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The delivery of the send that opened it, which goes out carrying every item.
    digest_id: Mapped[str] = mapped_column(String(80), unique=True)
    due_time: Mapped[datetime]
    # Items added (the next one's position), those listed with their variables, and those variables' size: the
    # bounds of digests.py.
    items: Mapped[int] = mapped_column(Integer)
    listed: Mapped[int] = mapped_column(Integer)
    listed_bytes: Mapped[int] = mapped_column(Integer)


class DigestItem(Base):
    """One send collected into a digest; a row of its own, so adding one never rewrites the others. Deleted once
    the digest's deliveries are published."""

    __tablename__ = "router_digest_items"
    # A digest's items in order; a user's, for erasing them (DeleteUser).
    __table_args__ = (
        Index("ix_router_digest_items_digest", "digest_id", "position"),
        Index("ix_router_digest_items_user", "user_id"),
    )
    delivery_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    digest_id: Mapped[str] = mapped_column(String(80))
    position: Mapped[int] = mapped_column(Integer)
    message_id: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[str] = mapped_column(String(200))
    # The send's variables; None past the digest's bounds: counted and carried, not listed.
    variables: Mapped[dict[str, str] | None] = mapped_column(JSON)
    create_time: Mapped[datetime]


class Suppression(Base):
    """An address herald does not send to on one channel (herald.v1.Suppression): for every category (0) or one."""

    __tablename__ = "router_suppressions"
    # The list, newest first (SuppressionService.ListSuppressions).
    __table_args__ = (Index("ix_router_suppressions_time", "create_time"),)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    # suppression_list.normal(): e-mail addresses lower-cased.
    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    category: Mapped[int] = mapped_column(Integer, primary_key=True)
    # herald.v1.SuppressionReason value
    reason: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(String(1000))
    create_time: Mapped[datetime]


class SoftBounce(Base):
    """One temporary bounce a provider reported; enough of one address's within the window suppress it."""

    __tablename__ = "router_soft_bounces"
    __table_args__ = (Index("ix_router_soft_bounces_address", "channel", "address"),)
    # The ConsentReport's id: a redelivered report counts once.
    report_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(320))
    occur_time: Mapped[datetime]

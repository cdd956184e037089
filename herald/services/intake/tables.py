"""Intake's tables: apps, templates and the messages it accepted."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from herald.libs.store import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class App(Base):
    __tablename__ = "intake_apps"
    app_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    allowed_channels: Mapped[list[str]]
    # herald.v1.Category values; empty = every category.
    allowed_categories: Mapped[list[int]] = mapped_column(JSON)
    rate_limit_per_second: Mapped[float] = mapped_column(Float)
    disabled: Mapped[bool] = mapped_column(Boolean)
    create_time: Mapped[datetime]
    # herald.v1.QuietHours as JSON; None = the default window.
    quiet_hours: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Days feedback keeps the rendered content of this app's messages; 0 = forever.
    content_retention_days: Mapped[int] = mapped_column(Integer, default=0)


class AppKey(Base):
    """An app's API key, as its SHA-256 only; a rotated-out key keeps working until expire_time."""

    __tablename__ = "intake_app_keys"
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(40), index=True)
    create_time: Mapped[datetime]
    expire_time: Mapped[datetime | None]


class Template(Base):
    """One immutable version of a template; a message pins the version it was sent with."""

    __tablename__ = "intake_templates"
    template_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(500))
    # herald.v1.ChannelContent messages as JSON objects (proto field names).
    contents: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # Channel ids tried in order for each recipient (herald.v1.Template.fallback_channels).
    fallback_channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    # herald.v1.OfflinePush; herald.v1.EscalationStep messages and the herald.v1.Digest as JSON (proto field names).
    offline_push: Mapped[int] = mapped_column(Integer, default=0)
    escalation: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    digest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # E-mail open and click tracking.
    track_opens: Mapped[bool] = mapped_column(Boolean, default=False)
    track_clicks: Mapped[bool] = mapped_column(Boolean, default=False)
    create_time: Mapped[datetime]
    # Set on every version of an archived template.
    archive_time: Mapped[datetime | None]
    # The app whose key created it (every version the same); "" = the company's.
    owner_app_id: Mapped[str] = mapped_column(String(40), default="")


class TemplateShare(Base):
    """An app, other than the owner, that may send an app's template: the sharing in force, not per version."""

    __tablename__ = "intake_template_shares"
    template_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)


class Message(Base):
    """A message with an idempotency key, or a large audience (its parts are MessagePart rows), and its payload.
    Any other message has no row: JetStream is its record (docs/decisions.md).

    The row is committed before the payload is published: it claims the
    idempotency key. A repeat of the key publishes the stored payload again under
    the same Nats-Msg-Id, so a first call that died between commit and publish is
    completed, and one that did publish is dropped as a duplicate by JetStream or,
    past its window, by the idempotent consumers downstream.
    """

    __tablename__ = "intake_messages"
    __table_args__ = (UniqueConstraint("app_id", "idempotency_key"),)
    message_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(40), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    template_id: Mapped[str] = mapped_column(String(64))
    template_version: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    create_time: Mapped[datetime]
    # Unset = sent at once.
    send_at: Mapped[datetime | None]
    cancel_time: Mapped[datetime | None]
    # 0: `payload` is the whole message. n > 0: a large audience, whose n payloads are MessagePart rows.
    parts: Mapped[int] = mapped_column(Integer, default=0)


class MessagePart(Base):
    """One part of a message to a large audience, stored as it streams in; queued once the stream completes."""

    __tablename__ = "intake_message_parts"
    message_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class StatusWebhook(Base):
    """Where an app receives its messages' status events (herald/services/intake/status_webhooks.py). The
    secrets are kept as they are: the adapters sign with them, so they cannot be hashed."""

    __tablename__ = "intake_status_webhooks"
    app_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    # herald.v1.DeliveryState values; empty = every state.
    states: Mapped[list[int]] = mapped_column(JSON)
    # [[secret, expire unix seconds or 0], ...], the newest first.
    secrets: Mapped[list[Any]] = mapped_column(JSON)
    update_time: Mapped[datetime]

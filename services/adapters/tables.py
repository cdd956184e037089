"""Adapters' tables: the durable record of each delivery's attempts, keyed by delivery id."""

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from libs.store import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


class Delivery(Base):
    """What the provider was told about a delivery: redelivered jobs consult it before calling again."""

    __tablename__ = "adapters_deliveries"
    delivery_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # herald.v1.DeliveryState value
    state: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(64))
    provider_message_id: Mapped[str] = mapped_column(String(200))
    last_error: Mapped[str] = mapped_column(Text)
    update_time: Mapped[datetime]

"""Router's tables: the directory of users."""

from datetime import datetime

from sqlalchemy import JSON, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from libs.store import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, str]: JSON}


class User(Base):
    __tablename__ = "router_users"
    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    # channel -> address
    addresses: Mapped[dict[str, str]]
    timezone: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(35))
    update_time: Mapped[datetime]

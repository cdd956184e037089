"""Finding deliveries: filters, full-text search over the rendered content, and keyset pages, for
StatusService.GetMessage (oldest first), ListDeliveries and SearchDeliveries (newest first).

The words of a query must all occur: PostgreSQL matches them against the generated `content_tsv` column (GIN
index), SQLite against the FTS5 table `feedback_deliveries_fts` (migration 0003). Pages continue after the last
delivery of the previous one in (create_time, delivery_id) order, so a page costs the same however deep it is;
a page also stops short of MAX_PAGE_BYTES, so no answer outgrows gRPC's 4 MiB message limit whatever the content.
"""

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from google.protobuf.message import Message
from sqlalchemy import Select, and_, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from herald.libs.timeutil import timestamp_field
from herald.services.feedback import tables

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# gRPC refuses messages over 4 MiB by default; a page of large contents ends early, below that.
MAX_PAGE_BYTES = 3 * 1024 * 1024
MAX_QUERY_WORDS = 16
_WORD = re.compile(r"\w+")

D = tables.Delivery


class _Sized(Protocol):
    def ByteSize(self) -> int: ...


T = TypeVar("T", bound=_Sized)


@dataclass(frozen=True)
class Filters:
    message_id: str = ""
    user_id: str = ""
    template_id: str = ""
    channel: str = ""
    state: int = 0
    start: datetime | None = None
    end: datetime | None = None
    query: str = ""


@dataclass(frozen=True)
class Page:
    size: int
    # The last delivery of the previous page: (create_time, delivery_id).
    after: tuple[datetime, str] | None


def page_of(
    page_size: int, page_token: str, bad: dict[str, str], default: int = DEFAULT_PAGE_SIZE, most: int = MAX_PAGE_SIZE
) -> Page:
    """The page a request asks for; problems go into `bad`, by field."""
    if not 0 <= page_size <= most:
        bad["page_size"] = f"between 0 (= {default}) and {most}"
    after = None
    if page_token:
        try:
            when, delivery_id = json.loads(base64.urlsafe_b64decode(page_token.encode()))
            after = (datetime.fromisoformat(when), str(delivery_id))
        except (TypeError, ValueError, binascii.Error, UnicodeDecodeError):
            bad["page_token"] = "not a next_page_token of this list"  # noqa: S105 (a message, not a secret)
    return Page(page_size or default, after)


def time_range(request: Message, bad: dict[str, str]) -> tuple[datetime | None, datetime | None]:
    """The request's start_time and end_time (each optional, the end after the start); problems go into `bad`."""
    start = timestamp_field(request, "start_time", bad)
    end = timestamp_field(request, "end_time", bad)
    if start is not None and end is not None and end <= start:
        bad["end_time"] = "must be after start_time"
    return start, end


def words(query: str) -> list[str]:
    return _WORD.findall(query.lower())


async def find(
    session: AsyncSession, app_id: str | None, filters: Filters, page: Page, *, oldest_first: bool = False
) -> list[tables.Delivery]:
    """The app's deliveries matching `filters` from where `page` starts: one more than the page holds, when there
    are more, which tells `paged` there is a next page. app_id None: the caller scoped the query to one of its
    own messages already."""
    query = select(D)
    if app_id is not None:
        query = query.where(D.app_id == app_id)
    for column, value in (
        (D.message_id, filters.message_id),
        (D.user_id, filters.user_id),
        (D.template_id, filters.template_id),
        (D.channel, filters.channel),
    ):
        if value:
            query = query.where(column == value)
    if filters.state:
        query = query.where(D.state == filters.state)
    if filters.start is not None:
        query = query.where(D.create_time >= filters.start)
    if filters.end is not None:
        query = query.where(D.create_time < filters.end)
    if terms := words(filters.query):
        query = _matching(query, terms, session.get_bind().dialect.name)
    if page.after is not None:
        when, delivery_id = page.after
        if oldest_first:
            after = or_(D.create_time > when, and_(D.create_time == when, D.delivery_id > delivery_id))
        else:
            after = or_(D.create_time < when, and_(D.create_time == when, D.delivery_id < delivery_id))
        query = query.where(after)
    order = (D.create_time, D.delivery_id) if oldest_first else (D.create_time.desc(), D.delivery_id.desc())
    return list(await session.scalars(query.order_by(*order).limit(page.size + 1)))


def paged(rows: list[tables.Delivery], page: Page, answer: Callable[[tables.Delivery], T]) -> tuple[list[T], str]:
    """The answers for one page of `find`'s rows and the next page's token ("" = last): at most page.size of
    them, and fewer where more would pass MAX_PAGE_BYTES."""
    answers: list[T] = []
    size = 0
    for row in rows[: page.size]:
        item = answer(row)
        size += item.ByteSize()
        if answers and size > MAX_PAGE_BYTES:
            return answers, _token(rows[len(answers) - 1])
        answers.append(item)
    return answers, (_token(rows[page.size - 1]) if len(rows) > page.size else "")


def _matching(query: Select[tables.Delivery], terms: list[str], dialect: str) -> Select[tables.Delivery]:
    if dialect == "postgresql":
        condition = text("feedback_deliveries.content_tsv @@ plainto_tsquery('simple', :terms)")
        return query.where(condition.bindparams(terms=" ".join(terms)))
    # Each word quoted: FTS5 reads the query as a conjunction of phrases, never as its own syntax.
    condition = text(
        "feedback_deliveries.rowid IN "
        "(SELECT rowid FROM feedback_deliveries_fts WHERE feedback_deliveries_fts MATCH :terms)"
    )
    return query.where(condition.bindparams(terms=" ".join(f'"{t}"' for t in terms)))


def _token(last: tables.Delivery) -> str:
    return token(last.create_time, last.delivery_id)


def token(when: datetime, key: str) -> str:
    """The next_page_token after the row with this time and key (page_of reads it)."""
    return base64.urlsafe_b64encode(json.dumps([when.isoformat(), key]).encode()).decode()

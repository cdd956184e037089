"""Templates: immutable versions per channel, validated when written, cached when read."""

import re
import time

from herald.v1 import admin_service_pb2 as pb
from herald.v1 import common_pb2
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from libs import channels, templating
from libs.errors import AlreadyExists, InvalidArgument, NotFound
from libs.store import Database
from libs.timeutil import now, to_timestamp
from services.intake import tables

TEMPLATE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class TemplateStore:
    """The latest version of each template is cached for CACHE_SECONDS: a version never changes once
    written, so the only staleness is a new version being picked up that much later."""

    CACHE_SECONDS = 5.0

    def __init__(self, db: Database) -> None:
        self._db = db
        self._latest: dict[str, tuple[float, pb.Template]] = {}

    async def create(self, template: pb.Template) -> pb.Template:
        validate(template)
        row = tables.Template(
            template_id=template.template_id,
            version=1,
            category=template.category,
            description=template.description,
            contents=[{"channel": c.channel, "subject": c.subject, "body": c.body} for c in template.contents],
            create_time=now(),
        )
        try:
            async with self._db.session.begin() as session:
                session.add(row)
        except IntegrityError as e:
            raise AlreadyExists(f"template '{template.template_id}' already exists") from e
        return template_pb(row)

    async def latest(self, template_id: str) -> pb.Template:
        clock = time.monotonic()
        cached = self._latest.get(template_id)
        if cached and cached[0] > clock:
            return cached[1]
        async with self._db.session() as session:
            row = await session.scalar(
                select(tables.Template)
                .where(tables.Template.template_id == template_id)
                .order_by(tables.Template.version.desc())
                .limit(1)
            )
        if row is None:
            raise NotFound(f"template '{template_id[:64]}' not found")
        template = template_pb(row)
        self._latest[template_id] = (clock + self.CACHE_SECONDS, template)
        return template


def template_pb(row: tables.Template) -> pb.Template:
    return pb.Template(
        template_id=row.template_id,
        category=common_pb2.Category.ValueType(row.category),
        contents=[common_pb2.ChannelContent(**c) for c in row.contents],
        version=row.version,
        create_time=to_timestamp(row.create_time),
        description=row.description,
    )


def validate(template: pb.Template) -> None:
    bad: dict[str, str] = {}
    if not TEMPLATE_ID.match(template.template_id):
        bad["template.template_id"] = "required: 1-64 of a-z, 0-9, '-', '_', starting with a letter or digit"
    if template.category not in (
        common_pb2.CATEGORY_CRITICAL,
        common_pb2.CATEGORY_NOTIFICATION,
        common_pb2.CATEGORY_MARKETING,
    ):
        bad["template.category"] = "required: CRITICAL, NOTIFICATION or MARKETING"
    if not template.contents:
        bad["template.contents"] = "at least one channel's content is required"
    seen: set[str] = set()
    for i, content in enumerate(template.contents):
        field = f"template.contents[{i}]"
        if why := channels.problem(content.channel):
            bad[f"{field}.channel"] = why
        elif content.channel in seen:
            bad[f"{field}.channel"] = f"channel '{content.channel}' appears twice"
        seen.add(content.channel)
        if not content.body:
            bad[f"{field}.body"] = "required"
        for part in ("subject", "body"):
            try:
                templating.check_syntax(getattr(content, part))
            except templating.TemplateError as e:
                bad[f"{field}.{part}"] = str(e)
    if bad:
        raise InvalidArgument(bad)

"""Templates: immutable versions of per-channel, per-locale content, validated when written, cached when read."""

import asyncio
import re
import time
from datetime import timedelta

from google.protobuf import json_format
from google.protobuf.message import Message
from herald.v1 import admin_service_pb2 as pb
from herald.v1 import common_pb2
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from herald.libs import categories, channels, ids, pagination, templating
from herald.libs.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from herald.libs.store import Database
from herald.libs.timeutil import duration_field, now, to_timestamp
from herald.services.intake import tables, template_owners

LOCALE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_ESCALATION_STEPS = 5
# The longest an escalation step or a digest window may wait.
MAX_WAIT = timedelta(days=7)


class TemplateStore:
    """The latest version of each template is cached for CACHE_SECONDS: a version never changes once
    written, so the only staleness is a new version (or an archive) being seen that much later."""

    CACHE_SECONDS = 5.0

    def __init__(self, db: Database) -> None:
        self._db = db
        self._latest: dict[str, tuple[float, pb.Template]] = {}
        self._loading: dict[str, asyncio.Future[pb.Template]] = {}

    async def create(self, template: pb.Template, owner_app_id: str) -> pb.Template:
        """`owner_app_id`: the app whose key creates it, "" for the company (an operator or an author)."""
        validate(template)
        row = _row(template, version=1, owner_app_id=owner_app_id)
        shares = template_owners.shared_with(template, owner_app_id)
        try:
            async with self._db.session.begin() as session:
                session.add(row)
                await session.flush()
                await template_owners.replace_shares(session, row.template_id, shares)
        except IntegrityError as e:
            raise AlreadyExists(
                f"template '{template.template_id}' already exists; UpdateTemplate adds a version"
            ) from e
        return template_pb(row, shares)

    async def update(self, template: pb.Template, app_id: str | None) -> pb.Template:
        """`app_id`: the app whose key calls, which must own it; None for an operator or author."""
        validate(template)
        try:
            async with self._db.session.begin() as session:
                current = await self._latest_row(session, template.template_id)
                template_owners.check_owner(current, app_id)
                if current.archive_time is not None:
                    raise FailedPrecondition(f"template '{template.template_id}' is archived")
                row = _row(template, version=current.version + 1, owner_app_id=current.owner_app_id)
                shares = template_owners.shared_with(template, current.owner_app_id)
                session.add(row)
                await template_owners.replace_shares(session, row.template_id, shares)
        except IntegrityError as e:  # another update took this version number a moment ago
            raise FailedPrecondition(f"template '{template.template_id}' changed meanwhile; update again") from e
        self._latest.pop(template.template_id, None)
        return template_pb(row, shares)

    async def _reload(self, template_id: str) -> pb.Template:
        """One read for all the Sends that find the cached version stale at once, not one each."""
        loading = self._loading.get(template_id)
        if loading is None:
            loading = self._loading[template_id] = asyncio.ensure_future(self._read_latest(template_id))
            loading.add_done_callback(lambda _: self._loading.pop(template_id, None))
        return await asyncio.shield(loading)

    async def _read_latest(self, template_id: str) -> pb.Template:
        clock = time.monotonic()
        template = await self.get(template_id)
        self._latest[template_id] = (clock + self.CACHE_SECONDS, template)
        return template

    async def get(self, template_id: str, version: int = 0) -> pb.Template:
        async with self._db.session() as session:
            if version:
                row = await session.get(tables.Template, (template_id, version))
                if row is None:
                    raise NotFound(f"template '{template_id[:64]}' has no version {version}")
            else:
                row = await self._latest_row(session, template_id)
            shares = await template_owners.shares_of(session, [template_id])
        return template_pb(row, shares[template_id])

    async def latest_for_sending(self, template_id: str) -> pb.Template:
        cached = self._latest.get(template_id)
        template = cached[1] if cached and cached[0] > time.monotonic() else await self._reload(template_id)
        if template.HasField("archive_time"):
            raise FailedPrecondition(f"template '{template_id}' is archived")
        return template

    async def list(
        self, size: int, token: str, show_archived: bool, app_id: str | None
    ) -> tuple[list[pb.Template], str]:
        """`app_id`: only the templates that app may send; None: every one (an operator or author)."""
        size = pagination.page_size(size)
        after = pagination.decode(token, lambda key: bool(ids.CHOSEN_KEY.match(key)))
        latest = (
            select(tables.Template.template_id, func.max(tables.Template.version).label("version"))
            .where(tables.Template.template_id > after)
            .group_by(tables.Template.template_id)
            .subquery()
        )
        query = (
            select(tables.Template)
            .join(
                latest,
                (tables.Template.template_id == latest.c.template_id) & (tables.Template.version == latest.c.version),
            )
            .order_by(tables.Template.template_id)
            .limit(size + 1)
        )
        if not show_archived:
            query = query.where(tables.Template.archive_time.is_(None))
        if app_id is not None:
            query = query.where(template_owners.visible_to(app_id))
        async with self._db.session() as session:
            rows = list(await session.scalars(query))
            shares = await template_owners.shares_of(session, [r.template_id for r in rows[:size]])
        more = len(rows) > size
        rows = rows[:size]
        token = pagination.encode(rows[-1].template_id) if more else ""
        return [template_pb(r, shares[r.template_id]) for r in rows], token

    async def archive(self, template_id: str, app_id: str | None) -> pb.Template:
        async with self._db.session.begin() as session:
            current = await self._latest_row(session, template_id)
            template_owners.check_owner(current, app_id)
            if current.archive_time is None:
                await session.execute(
                    update(tables.Template).where(tables.Template.template_id == template_id).values(archive_time=now())
                )
        self._latest.pop(template_id, None)
        return await self.get(template_id)

    @staticmethod
    async def _latest_row(session: AsyncSession, template_id: str) -> tables.Template:
        row = await session.scalar(
            select(tables.Template)
            .where(tables.Template.template_id == template_id)
            .order_by(tables.Template.version.desc())
            .limit(1)
        )
        if row is None:
            raise NotFound(f"template '{template_id[:64]}' not found")
        return row


def draft(template: pb.Template) -> pb.Template:
    """A template not saved, checked as a create checks it, with the variables it needs, to preview."""
    validate(template)
    checked = pb.Template()
    checked.CopyFrom(template)
    checked.variables[:] = sorted(templating.needed_variables(checked))
    return checked


def preview(template: pb.Template, values: dict[str, str], locale: str) -> list[common_pb2.ChannelContent]:
    """Every channel rendered as a recipient in `locale` would get it."""
    rendered = []
    given = templating.send_values(template, values)
    for channel in dict.fromkeys(c.channel for c in template.contents):
        content = templating.pick(list(template.contents), channel, locale)
        assert content is not None  # validate() guarantees a default locale per channel
        try:
            rendered.append(templating.render_content(content, given))
        except templating.TemplateError as e:
            raise InvalidArgument({"variables": f"{channel} {e}"}) from e
    return rendered


def template_pb(row: tables.Template, shared_with: list[str]) -> pb.Template:
    contents = [json_format.ParseDict(c, common_pb2.ChannelContent()) for c in row.contents]
    template = pb.Template(
        template_id=row.template_id,
        category=common_pb2.Category.ValueType(row.category),
        contents=contents,
        fallback_channels=row.fallback_channels,
        version=row.version,
        create_time=to_timestamp(row.create_time),
        description=row.description,
        offline_push=pb.OfflinePush.ValueType(row.offline_push),
        escalation=[json_format.ParseDict(s, pb.EscalationStep()) for s in row.escalation],
        track_opens=row.track_opens,
        track_clicks=row.track_clicks,
        owner_app_id=row.owner_app_id,
        shared_with_app_ids=shared_with,
    )
    if row.digest:
        template.digest.CopyFrom(json_format.ParseDict(row.digest, pb.Digest()))
    template.variables[:] = sorted(templating.needed_variables(template))
    if row.archive_time is not None:
        template.archive_time.CopyFrom(to_timestamp(row.archive_time))
    return template


def validate(template: pb.Template) -> None:
    bad: dict[str, str] = {}
    if not ids.CHOSEN_KEY.match(template.template_id):
        bad["template.template_id"] = f"required: {ids.CHOSEN_KEY_RULE}"
    if template.category not in categories.KNOWN:
        bad["template.category"] = "required: CRITICAL, NOTIFICATION or MARKETING"
    if len(template.description) > 500:
        bad["template.description"] = "at most 500 characters"
    if not template.contents:
        bad["template.contents"] = "at least one channel's content is required"
    seen: set[tuple[str, str]] = set()
    for i, content in enumerate(template.contents):
        field = f"template.contents[{i}]"
        if why := channels.problem(content.channel):
            bad[f"{field}.channel"] = why
        if content.locale and not LOCALE.match(content.locale):
            bad[f"{field}.locale"] = "a BCP 47 tag such as 'en' or 'zh-CN', or '' for the default"
        variant = (content.channel, content.locale.lower())
        if variant in seen:
            bad[f"{field}"] = f"channel '{content.channel}' in locale '{content.locale}' appears twice"
        seen.add(variant)
        if not content.body:
            bad[f"{field}.body"] = "required"
        for part, source in templating.content_parts(content):
            try:
                templating.check_syntax(source)
            except templating.TemplateError as e:
                bad[f"{field}.{part}"] = str(e)
                continue
            if why := templating.sample_problem(content.channel, part, source, templating.collects_digest(template)):
                bad[f"{field}.{part}"] = why
    for channel in {c for c, _ in seen} - {c for c, locale in seen if locale == ""}:
        bad["template.contents"] = f"channel '{channel}' needs content in the default locale ('')"
    for i, channel in enumerate(template.fallback_channels):
        if channel not in {c for c, _ in seen}:
            bad[f"template.fallback_channels[{i}]"] = f"channel '{channel[:40]}' has no content in this template"
        elif channel in template.fallback_channels[:i]:
            bad[f"template.fallback_channels[{i}]"] = f"channel '{channel}' appears twice"
    _validate_reach(template, {c for c, _ in seen}, bad)
    template_owners.share_problems(template, bad)
    if bad:
        raise InvalidArgument(bad)


def _validate_reach(template: pb.Template, with_content: set[str], bad: dict[str, str]) -> None:
    """The offline push, escalation steps and digest window."""
    if template.offline_push not in pb.OfflinePush.values():
        bad["template.offline_push"] = "ENABLED, DISABLED or unspecified"
    previous = 0.0
    if len(template.escalation) > MAX_ESCALATION_STEPS:
        bad["template.escalation"] = f"at most {MAX_ESCALATION_STEPS} steps"
    for i, step in enumerate(template.escalation):
        field = f"template.escalation[{i}]"
        if step.channel not in with_content:
            bad[f"{field}.channel"] = f"channel '{step.channel[:40]}' has no content in this template"
        elif step.channel in channels.ADDRESSED_BY_USER_ID:
            bad[f"{field}.channel"] = "the inbox is where a message waits to be read, not a step to escalate to"
        elif step.channel in template.fallback_channels:
            bad[f"{field}.channel"] = f"channel '{step.channel}' is in the fallback chain"
        elif step.channel in [s.channel for s in template.escalation[:i]]:
            bad[f"{field}.channel"] = f"channel '{step.channel}' appears twice"
        delay = _seconds(step, "delay", bad, f"{field}.delay")
        if delay is None:
            continue
        if not 1 <= delay <= MAX_WAIT.total_seconds():
            bad[f"{field}.delay"] = "from 1 second to 7 days"
        elif delay <= previous:
            bad[f"{field}.delay"] = "must be longer than the previous step's"
        previous = delay
    if template.escalation and len(with_content - {s.channel for s in template.escalation}) == 0:
        bad["template.escalation"] = "needs a channel that is sent at once, besides the steps"
    if template.HasField("digest"):
        window = _seconds(template.digest, "window", bad, "template.digest.window")
        if template.category == common_pb2.CATEGORY_CRITICAL:
            bad["template.digest"] = "critical messages are never held for a digest"
        elif window is not None and not 1 <= window <= MAX_WAIT.total_seconds():
            bad["template.digest.window"] = "from 1 second to 7 days"
        if template.digest.key and not VARIABLE.match(template.digest.key):
            bad["template.digest.key"] = "a variable name: letters, digits and '_', not starting with a digit"
        if template.escalation:
            bad["template.digest"] = "a template escalates or collects digests, not both"


def _seconds(message: Message, field: str, bad: dict[str, str], where: str) -> float | None:
    """A Duration of the template in seconds (0 when unset); None when it is malformed (then named in `bad`)."""
    length = duration_field(message, field, bad, where)
    return None if where in bad else length.total_seconds() if length is not None else 0.0


def _row(template: pb.Template, version: int, owner_app_id: str) -> tables.Template:
    return tables.Template(
        template_id=template.template_id,
        version=version,
        category=template.category,
        description=template.description,
        contents=[json_format.MessageToDict(c, preserving_proto_field_name=True) for c in template.contents],
        fallback_channels=list(template.fallback_channels),
        offline_push=template.offline_push,
        escalation=[json_format.MessageToDict(s, preserving_proto_field_name=True) for s in template.escalation],
        digest=json_format.MessageToDict(template.digest, preserving_proto_field_name=True)
        if template.HasField("digest")
        else {},
        track_opens=template.track_opens,
        track_clicks=template.track_clicks,
        create_time=now(),
        owner_app_id=owner_app_id,
    )

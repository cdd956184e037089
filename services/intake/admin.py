"""AdminService: apps and templates. Every call needs the admin token."""

import re

import grpc
from herald.v1 import admin_service_pb2 as pb
from herald.v1 import admin_service_pb2_grpc, common_pb2
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from libs import channels, templating
from libs.auth import AppIdentity, AppKeys, key_hash, new_api_key, require_admin
from libs.errors import AlreadyExists, InvalidArgument
from libs.ids import new_id
from libs.store import Database
from libs.timeutil import now, to_timestamp
from services.intake import tables

TEMPLATE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class AdminService(admin_service_pb2_grpc.AdminServiceServicer):
    def __init__(self, db: Database, keys: AppKeys, admin_token: str) -> None:
        self._db = db
        self._keys = keys
        self._admin_token = admin_token

    async def CreateApp(self, request: pb.CreateAppRequest, context: grpc.aio.ServicerContext) -> pb.CreateAppResponse:
        require_admin(context, self._admin_token)
        bad: dict[str, str] = {}
        if not request.name.strip():
            bad["name"] = "required"
        for i, channel in enumerate(request.allowed_channels):
            if why := channels.problem(channel):
                bad[f"allowed_channels[{i}]"] = why
        if request.rate_limit_per_second < 0:
            bad["rate_limit_per_second"] = "must be 0 (no limit) or more"
        if bad:
            raise InvalidArgument(bad)
        api_key = new_api_key()
        row = tables.App(
            app_id=new_id("app"),
            name=request.name.strip(),
            key_hash=key_hash(api_key),
            allowed_channels=list(request.allowed_channels),
            rate_limit_per_second=request.rate_limit_per_second,
            create_time=now(),
        )
        async with self._db.session.begin() as session:
            session.add(row)
        await self._keys.publish(row.key_hash, identity(row))
        return pb.CreateAppResponse(app=_app_pb(row), api_key=api_key)

    async def CreateTemplate(self, request: pb.CreateTemplateRequest, context: grpc.aio.ServicerContext) -> pb.Template:
        require_admin(context, self._admin_token)
        template = request.template
        _validate_template(template)
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


async def publish_all_keys(db: Database, keys: AppKeys) -> None:
    """Re-publish every app's key at start-up, so a KV write lost to a crash is repaired."""
    async with db.session() as session:
        for row in await session.scalars(select(tables.App)):
            await keys.publish(row.key_hash, identity(row))


def identity(row: tables.App) -> AppIdentity:
    return AppIdentity(
        app_id=row.app_id,
        name=row.name,
        allowed_channels=list(row.allowed_channels),
        rate_limit_per_second=row.rate_limit_per_second,
    )


def template_pb(row: tables.Template) -> pb.Template:
    return pb.Template(
        template_id=row.template_id,
        category=common_pb2.Category.ValueType(row.category),
        contents=[common_pb2.ChannelContent(**c) for c in row.contents],
        version=row.version,
        create_time=to_timestamp(row.create_time),
        description=row.description,
    )


def _app_pb(row: tables.App) -> pb.App:
    return pb.App(
        app_id=row.app_id,
        name=row.name,
        allowed_channels=row.allowed_channels,
        rate_limit_per_second=row.rate_limit_per_second,
        create_time=to_timestamp(row.create_time),
    )


def _validate_template(template: pb.Template) -> None:
    bad: dict[str, str] = {}
    if not TEMPLATE_ID.match(template.template_id):
        bad["template.template_id"] = "required: 1-64 of a-z, 0-9, '-', '_', starting with a letter or digit"
    if template.category == common_pb2.CATEGORY_UNSPECIFIED:
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

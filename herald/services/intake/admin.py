"""AdminService: apps, their keys, their status webhooks, and templates. Every call needs the admin token."""

from datetime import timedelta
from typing import TypeVar

import grpc
from google.protobuf import json_format
from herald.v1 import admin_service_pb2 as pb
from herald.v1 import admin_service_pb2_grpc, common_pb2

from herald.libs import audit, categories, channels, quiet_hours
from herald.libs.auth import AppKeys
from herald.libs.callers import operator, require_operator
from herald.libs.errors import InvalidArgument, NotFound
from herald.libs.timeutil import duration_field, to_timestamp
from herald.services.intake import tables, template_owners
from herald.services.intake.apps import AppRegistry
from herald.services.intake.status_webhooks import StatusWebhooks
from herald.services.intake.templates import TemplateStore, draft, preview

DEFAULT_GRACE = timedelta(hours=24)
M = TypeVar("M", pb.App, pb.Template)
MAX_RETENTION_DAYS = 3650
MAX_GRACE = timedelta(days=30)
MAX_SECRET_GRACE = timedelta(days=7)


class AdminService(admin_service_pb2_grpc.AdminServiceServicer):
    def __init__(self, apps: AppRegistry, templates: TemplateStore, webhooks: StatusWebhooks, keys: AppKeys) -> None:
        self._apps = apps
        self._keys = keys
        self._templates = templates
        self._webhooks = webhooks

    async def CreateApp(self, request: pb.CreateAppRequest, context: grpc.aio.ServicerContext) -> pb.CreateAppResponse:
        require_operator()
        bad: dict[str, str] = {}
        if not request.name.strip() or len(request.name) > 200:
            bad["name"] = "required, at most 200 characters"
        for i, channel in enumerate(request.allowed_channels):
            if why := channels.problem(channel):
                bad[f"allowed_channels[{i}]"] = why
        for i, category in enumerate(request.allowed_categories):
            if category not in categories.KNOWN:
                bad[f"allowed_categories[{i}]"] = "CRITICAL, NOTIFICATION or MARKETING"
        if not request.rate_limit_per_second >= 0:  # also refuses NaN
            bad["rate_limit_per_second"] = "must be 0 (no limit) or more"
        if request.HasField("quiet_hours") and (why := quiet_hours.problem(request.quiet_hours)):
            bad["quiet_hours"] = why
        _check_retention(request.content_retention_days, bad)
        if bad:
            raise InvalidArgument(bad)
        app, api_key = await self._apps.create(
            request.name.strip(),
            list(dict.fromkeys(request.allowed_channels)),
            list(dict.fromkeys(request.allowed_categories)),
            request.rate_limit_per_second,
            json_format.MessageToDict(request.quiet_hours) if request.HasField("quiet_hours") else None,
            request.content_retention_days,
        )
        return pb.CreateAppResponse(app=app_pb(app), api_key=api_key)

    async def GetApp(self, request: pb.GetAppRequest, context: grpc.aio.ServicerContext) -> pb.App:
        require_operator()
        return app_pb(await self._apps.get(request.app_id))

    async def ListApps(self, request: pb.ListAppsRequest, context: grpc.aio.ServicerContext) -> pb.ListAppsResponse:
        require_operator()
        apps, token = await self._apps.list(request.page_size, request.page_token)
        return pb.ListAppsResponse(apps=[app_pb(a) for a in apps], next_page_token=token)

    async def DisableApp(self, request: pb.DisableAppRequest, context: grpc.aio.ServicerContext) -> pb.App:
        require_operator()
        before = app_pb(await self._apps.get(request.app_id))
        return _changed(before, app_pb(await self._apps.set_disabled(request.app_id, True)))

    async def EnableApp(self, request: pb.EnableAppRequest, context: grpc.aio.ServicerContext) -> pb.App:
        require_operator()
        before = app_pb(await self._apps.get(request.app_id))
        return _changed(before, app_pb(await self._apps.set_disabled(request.app_id, False)))

    async def RotateAppKey(
        self, request: pb.RotateAppKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.RotateAppKeyResponse:
        require_operator()
        api_key, expire = await self._apps.rotate(request.app_id, _grace(request, MAX_GRACE))
        return pb.RotateAppKeyResponse(api_key=api_key, previous_keys_expire_time=to_timestamp(expire))

    async def SetContentRetention(
        self, request: pb.SetContentRetentionRequest, context: grpc.aio.ServicerContext
    ) -> pb.App:
        require_operator()
        bad: dict[str, str] = {}
        _check_retention(request.content_retention_days, bad)
        if bad:
            raise InvalidArgument(bad)
        before = app_pb(await self._apps.get(request.app_id))
        return _changed(before, app_pb(await self._apps.set_retention(request.app_id, request.content_retention_days)))

    async def SetStatusWebhook(
        self, request: pb.SetStatusWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetStatusWebhookResponse:
        require_operator()
        webhook = request.webhook
        bad: dict[str, str] = {}
        if not webhook.app_id:
            bad["webhook.app_id"] = "required"
        known = set(common_pb2.DeliveryState.values()) - {common_pb2.DELIVERY_STATE_UNSPECIFIED}
        for i, state in enumerate(webhook.states):
            if state not in known:
                bad[f"webhook.states[{i}]"] = "a DeliveryState other than DELIVERY_STATE_UNSPECIFIED"
        if bad:
            raise InvalidArgument(bad)
        try:
            before: pb.StatusWebhook | None = webhook_pb(await self._webhooks.get(webhook.app_id))
        except NotFound:
            before = None
        row, secret = await self._webhooks.set(webhook.app_id, webhook.url, list(webhook.states))
        audit.changed(before=before, after=webhook_pb(row))
        return pb.SetStatusWebhookResponse(webhook=webhook_pb(row), secret=secret)

    async def GetStatusWebhook(
        self, request: pb.GetStatusWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.StatusWebhook:
        require_operator()
        return webhook_pb(await self._webhooks.get(request.app_id))

    async def DeleteStatusWebhook(
        self, request: pb.DeleteStatusWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteStatusWebhookResponse:
        require_operator()
        before = webhook_pb(await self._webhooks.get(request.app_id))
        await self._webhooks.delete(request.app_id)
        audit.changed(before=before)
        return pb.DeleteStatusWebhookResponse()

    async def RotateStatusWebhookSecret(
        self, request: pb.RotateStatusWebhookSecretRequest, context: grpc.aio.ServicerContext
    ) -> pb.RotateStatusWebhookSecretResponse:
        require_operator()
        secret, expire = await self._webhooks.rotate(request.app_id, _grace(request, MAX_SECRET_GRACE))
        return pb.RotateStatusWebhookSecretResponse(secret=secret, previous_secrets_expire_time=to_timestamp(expire))

    async def CreateTemplate(self, request: pb.CreateTemplateRequest, context: grpc.aio.ServicerContext) -> pb.Template:
        app_id = await self._template_caller(context)
        await self._check_shares(request.template)
        return await self._templates.create(request.template, app_id or "")

    async def UpdateTemplate(self, request: pb.UpdateTemplateRequest, context: grpc.aio.ServicerContext) -> pb.Template:
        app_id = await self._template_caller(context)
        await self._check_shares(request.template)
        before = await self._current_template(request.template.template_id)
        return _changed(before, await self._templates.update(request.template, app_id))

    async def GetTemplate(self, request: pb.GetTemplateRequest, context: grpc.aio.ServicerContext) -> pb.Template:
        return await self._readable_template(request.template_id, request.version, context)

    async def ListTemplates(
        self, request: pb.ListTemplatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTemplatesResponse:
        app_id = await self._template_caller(context)
        templates, token = await self._templates.list(
            request.page_size, request.page_token, request.show_archived, app_id
        )
        return pb.ListTemplatesResponse(templates=templates, next_page_token=token)

    async def ArchiveTemplate(
        self, request: pb.ArchiveTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.Template:
        app_id = await self._template_caller(context)
        before = await self._current_template(request.template_id)
        return _changed(before, await self._templates.archive(request.template_id, app_id))

    async def _template_caller(self, context: grpc.aio.ServicerContext) -> str | None:
        """The app whose key calls; None for an operator (the gate has checked their roles)."""
        if operator() is not None:
            return None
        return (await self._keys.authenticate(context)).app_id

    async def _readable_template(
        self, template_id: str, version: int, context: grpc.aio.ServicerContext
    ) -> pb.Template:
        """An app reads what it may send (template_owners.check_sender); an operator any template."""
        app_id = await self._template_caller(context)
        template = await self._templates.get(template_id, version)
        if app_id is not None:
            template_owners.check_sender(template, app_id)
        return template

    async def _check_shares(self, template: pb.Template) -> None:
        """Each app a template is shared with exists (a mistyped id would share it with nobody, silently)."""
        bad: dict[str, str] = {}
        for i, app_id in enumerate(template.shared_with_app_ids):
            try:
                await self._apps.get(app_id)
            except NotFound:
                bad[f"template.shared_with_app_ids[{i}]"] = f"no app '{app_id[:40]}'"
        if bad:
            raise InvalidArgument(bad)

    async def _current_template(self, template_id: str) -> pb.Template | None:
        """What an update or archive replaces, for the audit record; the call itself says what is wrong with it."""
        try:
            return await self._templates.get(template_id)
        except NotFound:
            return None

    async def PreviewTemplate(
        self, request: pb.PreviewTemplateRequest, context: grpc.aio.ServicerContext
    ) -> pb.PreviewTemplateResponse:
        if request.HasField("template"):
            await self._template_caller(context)
            template = draft(request.template)
        else:
            template = await self._readable_template(request.template_id, request.version, context)
        return pb.PreviewTemplateResponse(contents=preview(template, dict(request.variables), request.locale))


def _changed(before: M | None, after: M) -> M:
    """`after`, the call's answer, once the audit record knows what it replaced."""
    audit.changed(before=before, after=after)
    return after


def _grace(request: pb.RotateAppKeyRequest | pb.RotateStatusWebhookSecretRequest, most: timedelta) -> timedelta:
    """The request's grace_period: unset = DEFAULT_GRACE, else between 0 and `most`."""
    bad: dict[str, str] = {}
    grace = duration_field(request, "grace_period", bad)
    if grace is None:
        grace = DEFAULT_GRACE
    if not bad and (grace < timedelta(0) or grace > most):
        bad["grace_period"] = f"between 0 and {most.days} days"
    if bad:
        raise InvalidArgument(bad)
    return grace


def _check_retention(days: int, bad: dict[str, str]) -> None:
    if not 0 <= days <= MAX_RETENTION_DAYS:
        bad["content_retention_days"] = f"between 0 (forever) and {MAX_RETENTION_DAYS}"


def webhook_pb(row: tables.StatusWebhook) -> pb.StatusWebhook:
    return pb.StatusWebhook(
        app_id=row.app_id,
        url=row.url,
        states=[common_pb2.DeliveryState.ValueType(s) for s in row.states],
        update_time=to_timestamp(row.update_time),
    )


def app_pb(row: tables.App) -> pb.App:
    app = pb.App(
        app_id=row.app_id,
        name=row.name,
        allowed_channels=row.allowed_channels,
        allowed_categories=[common_pb2.Category.ValueType(c) for c in row.allowed_categories],
        rate_limit_per_second=row.rate_limit_per_second,
        create_time=to_timestamp(row.create_time),
        disabled=row.disabled,
        content_retention_days=row.content_retention_days,
    )
    if row.quiet_hours is not None:
        json_format.ParseDict(row.quiet_hours, app.quiet_hours)
    return app

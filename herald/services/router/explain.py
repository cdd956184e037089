"""Explain: which channels a message would reach a user on now, and why not the others.

It asks the questions routing asks (app permissions, opt-outs, addresses,
frequency caps, quiet hours, the fallback chain) without changing anything.
"""

import asyncio
from typing import Protocol

from herald.v1 import admin_service_pb2
from herald.v1 import routing_service_pb2 as pb

from herald.internal.v1 import work_pb2
from herald.libs import categories, channels, templating
from herald.libs.errors import InvalidArgument
from herald.libs.masking import mask
from herald.libs.store import Database
from herald.libs.timeutil import to_timestamp
from herald.services.router import jobs
from herald.services.router.frequency import FrequencyCaps
from herald.services.router.recipients import Recipients
from herald.services.router.suppression import Suppressions

Verdict = pb.ChannelVerdict


class AppsAndTemplates(Protocol):
    """Where Explain reads the app and the template: intake's AdminService (intake_client.py)."""

    async def app(self, app_id: str) -> admin_service_pb2.App: ...

    async def template(self, template_id: str) -> admin_service_pb2.Template: ...


class Explainer:
    def __init__(self, db: Database, suppressions: Suppressions, caps: FrequencyCaps, intake: AppsAndTemplates) -> None:
        self._db = db
        self._suppressions = suppressions
        self._caps = caps
        self._intake = intake

    async def explain(self, request: pb.ExplainRoutingRequest) -> pb.ExplainRoutingResponse:
        _validate(request)
        app, template = await asyncio.gather(
            self._intake.app(request.app_id), self._intake.template(request.template_id)
        )
        chosen = channels.choose(template, request.channels)
        chain = channels.fallback_chain(template.fallback_channels, chosen)
        later = jobs.escalation_steps(template, chosen)
        recipients = await Recipients.load(self._db, {request.user_id})
        user = recipients.users.get(request.user_id)
        preferred = user.preferred_channel if user and not request.channels else ""
        singles, chain = jobs.at_once(chosen, chain, later.keys(), preferred)
        verdicts = [await self._verdict(app, template, request.user_id, c, recipients) for c in singles]
        used = ""
        for channel in chain:
            verdict = await self._verdict(app, template, request.user_id, channel, recipients)
            if used and verdict.outcome != Verdict.OUTCOME_BLOCKED:
                verdict.outcome, verdict.reason = Verdict.OUTCOME_STANDBY, f"used only if {used} fails for good"
                verdict.ClearField("release_time")
            elif not used and verdict.outcome != Verdict.OUTCOME_BLOCKED:
                used = channel
            verdicts.append(verdict)
        if preferred in chain:
            verdicts += [
                Verdict(channel=c, outcome=Verdict.OUTCOME_BLOCKED, reason=f"the user prefers {preferred}")
                for c in chosen
                if c not in chain and c not in later
            ]
        for channel, delay in later.items():
            verdict = await self._verdict(app, template, request.user_id, channel, recipients)
            if verdict.outcome != Verdict.OUTCOME_BLOCKED:
                verdict.outcome = Verdict.OUTCOME_ESCALATE
                verdict.reason = (
                    f"escalation: sent {delay.total_seconds():g}s after the message unless it is read by then"
                )
                verdict.delay.FromTimedelta(delay)
                verdict.ClearField("release_time")
            verdicts.append(verdict)
        if templating.collects_digest(template):
            for verdict in verdicts:
                if verdict.outcome in (Verdict.OUTCOME_SEND, Verdict.OUTCOME_HOLD):
                    window = template.digest.window.ToTimedelta().total_seconds()
                    verdict.outcome = Verdict.OUTCOME_DIGEST
                    verdict.reason = f"collected into a digest, sent {window:g}s after the first send of the window"
                    verdict.delay.CopyFrom(template.digest.window)
                    verdict.ClearField("release_time")
        return pb.ExplainRoutingResponse(category=template.category, verdicts=verdicts)

    async def _verdict(
        self,
        app: admin_service_pb2.App,
        template: admin_service_pb2.Template,
        user_id: str,
        channel: str,
        recipients: Recipients,
    ) -> pb.ChannelVerdict:
        job = work_pb2.DeliveryJob(
            app_id=app.app_id,
            template_id=template.template_id,
            category=template.category,
            user_id=user_id,
            channel=channel,
            address=jobs.address(None, user_id, channel, recipients.users.get(user_id)),
        )
        if app.HasField("quiet_hours"):
            job.quiet_hours.CopyFrom(app.quiet_hours)
        verdict = pb.ChannelVerdict(channel=channel, address=mask(job.address))
        if blocked := (
            _app_refusal(app, template, channel)
            or recipients.opted_out(job)
            or recipients.no_address(job)
            or (await self._suppressions.lookup([job])).reason(job)
            or await self._caps.headroom(job)
        ):
            verdict.outcome, verdict.reason = Verdict.OUTCOME_BLOCKED, blocked
        elif quiet_until := recipients.quiet_until(job):
            verdict.outcome = Verdict.OUTCOME_HOLD
            verdict.reason = f"quiet hours: held until {quiet_until.strftime('%H:%M %Z')}"
            verdict.release_time.CopyFrom(to_timestamp(quiet_until))
        else:
            verdict.outcome = Verdict.OUTCOME_SEND
        return verdict


def _app_refusal(app: admin_service_pb2.App, template: admin_service_pb2.Template, channel: str) -> str:
    if app.disabled:
        return f"app {app.app_id} is disabled"
    if app.allowed_categories and template.category not in app.allowed_categories:
        return f"app {app.app_id} may not send {categories.name(template.category)} messages"
    if app.allowed_channels and channel not in app.allowed_channels:
        return f"app {app.app_id} may not send on channel '{channel}'"
    if template.HasField("archive_time"):
        return f"template '{template.template_id}' is archived"
    return ""


def _validate(request: pb.ExplainRoutingRequest) -> None:
    bad = {field: "required" for field in ("app_id", "template_id", "user_id") if not getattr(request, field)}
    for i, channel in enumerate(request.channels):
        if why := channels.problem(channel):
            bad[f"channels[{i}]"] = why
    if bad:
        raise InvalidArgument(bad)

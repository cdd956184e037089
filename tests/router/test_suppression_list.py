"""The suppression list and the consent reports the adapters send, decided in the router's own process
(tests/router/stage.py): what a bounce, a complaint, an unsubscribe or an SMS STOP does to the next delivery, and
the events the member system gets."""

import asyncio
import uuid

from google.protobuf.message import Message
from herald.v1 import common_pb2, events_pb2
from herald.v1 import message_service_pb2 as msg
from herald.v1 import suppression_service_pb2 as sup
from sqlalchemy import func, select

from herald.internal.v1 import work_pb2
from herald.libs import subjects
from herald.libs.bus import Incoming, each
from herald.libs.timeutil import now, to_timestamp
from herald.services.router import tables
from tests.router.stage import SOFT_BOUNCE_LIMIT, RouterStage, message, router_stage

S = common_pb2
R = sup.SuppressionReason


async def _report(stage: RouterStage, report_id: str = "", **report: Message) -> str:
    """Publish a ConsentReport as the adapters do (`report`: its one field, e.g. suppress=...); its id."""
    made = work_pb2.ConsentReport(
        report_id=report_id or f"rep_{uuid.uuid4().hex[:12]}",
        occur_time=to_timestamp(now()),
        **report,  # type: ignore[arg-type]
    )
    await stage.bus.publish(subjects.CONSENT, made.SerializeToString(), msg_id=made.report_id)
    return made.report_id


def _entry(channel: str, address: str, reason: int, category: int = 0) -> sup.Suppression:
    return sup.Suppression(
        channel=channel,
        address=address,
        category=common_pb2.Category.ValueType(category),
        reason=R.ValueType(reason),
        source="ses-main",
        detail="550 5.1.1 user unknown",
    )


async def _collect(stage: RouterStage, subject: str) -> list[bytes]:
    seen: list[bytes] = []

    async def keep(incoming: Incoming) -> None:
        seen.append(incoming.data)

    await stage.bus.consume(subjects.EVENTS_STREAM, f"test-{uuid.uuid4().hex[:6]}", subject, each(keep))
    return seen


async def _outcome(
    stage: RouterStage, address: str, category: int = S.CATEGORY_NOTIFICATION
) -> events_pb2.DeliveryEvent:
    user = await stage.user({"email": address})
    [event] = await stage.settled(
        await stage.send(message({"email": "hi"}, msg.Recipient(user_id=user), category=category))
    )
    return event


async def test_a_hard_bounce_suppresses_the_address_for_every_category_and_is_published(database_url: str) -> None:
    async with router_stage(database_url) as stage:
        added = await _collect(stage, subjects.SUPPRESSION_ADDED)
        await _report(stage, suppress=_entry("email", "Gone@Example.org", R.SUPPRESSION_REASON_HARD_BOUNCE))
        await stage.wait_for(lambda: added, 1)

        for category in (S.CATEGORY_CRITICAL, S.CATEGORY_MARKETING):
            event = await _outcome(stage, "gone@example.org", category)
            assert (event.state, event.reason_code) == (S.DELIVERY_STATE_SUPPRESSED, "suppressed")
            assert (
                "suppression list" in event.reason and "bounced for good" in event.reason and "ses-main" in event.reason
            )
        assert (await _outcome(stage, "other@example.org")).state == S.DELIVERY_STATE_PENDING

        [published] = [events_pb2.SuppressionEvent.FromString(d) for d in added]
        assert published.suppression.address == "gone@example.org", "e-mail addresses are kept lower-cased"
        assert published.suppression.reason == R.SUPPRESSION_REASON_HARD_BOUNCE


async def test_a_suppressed_channel_falls_back_to_the_next_of_the_chain(database_url: str) -> None:
    async with router_stage(database_url) as stage:
        await stage.suppressions.add(_entry("sms", "+15550001111", R.SUPPRESSION_REASON_SMS_STOP), "ev-1")
        user = await stage.user({"sms": "+15550001111", "webhook": "https://hooks.example/u"})
        sent = message({"sms": "code", "webhook": "{}"}, msg.Recipient(user_id=user), fallback=["sms", "webhook"])
        message_id = await stage.send(sent)
        [job] = await stage.queued(message_id)
        assert job.channel == "webhook"
        [suppressed] = [e for e in await stage.settled(message_id, 2) if e.state == S.DELIVERY_STATE_SUPPRESSED]
        assert suppressed.channel == "sms" and "replied STOP" in suppressed.reason


async def test_an_entry_for_one_category_leaves_the_others(database_url: str) -> None:
    async with router_stage(database_url) as stage:
        added = await _collect(stage, subjects.SUPPRESSION_ADDED)
        entry = _entry("email", "a@example.org", R.SUPPRESSION_REASON_COMPLAINT, S.CATEGORY_MARKETING)
        await _report(stage, suppress=entry)
        await stage.wait_for(lambda: added, 1)
        assert (await _outcome(stage, "a@example.org", S.CATEGORY_MARKETING)).reason_code == "suppressed"
        assert (await _outcome(stage, "a@example.org")).state == S.DELIVERY_STATE_PENDING


async def test_soft_bounces_suppress_at_the_limit_and_a_redelivered_report_counts_once(database_url: str) -> None:
    async with router_stage(database_url) as stage:
        added = await _collect(stage, subjects.SUPPRESSION_ADDED)
        bounce = _entry("email", "full@example.org", R.SUPPRESSION_REASON_UNSPECIFIED)
        first = work_pb2.ConsentReport(report_id="rep_first", soft_bounce=bounce, occur_time=to_timestamp(now()))
        for n in range(SOFT_BOUNCE_LIMIT):  # one report, redelivered after the broker's duplicate window
            await stage.bus.publish(subjects.CONSENT, first.SerializeToString(), msg_id=f"delivery-{n}")
        for _ in range(SOFT_BOUNCE_LIMIT - 2):
            await _report(stage, soft_bounce=bounce)
        counted = await _until_counted(stage, SOFT_BOUNCE_LIMIT - 1)
        assert counted == SOFT_BOUNCE_LIMIT - 1 and not added, "one short of the limit: counted, not suppressed"
        assert (await _outcome(stage, "full@example.org")).state == S.DELIVERY_STATE_PENDING
        await _report(stage, soft_bounce=bounce)
        [event] = [events_pb2.SuppressionEvent.FromString(d) for d in await stage.wait_for(lambda: added, 1)]
        assert event.suppression.reason == R.SUPPRESSION_REASON_SOFT_BOUNCES
        assert (await _outcome(stage, "full@example.org")).reason_code == "suppressed"


async def _until_counted(stage: RouterStage, count: int) -> int:
    """The soft bounces the router has recorded once `count` are (and a moment more, for any extra)."""

    async def recorded() -> int:
        async with stage.db.session() as session:
            return int(await session.scalar(select(func.count()).select_from(tables.SoftBounce)) or 0)

    for _ in range(500):
        if await recorded() >= count:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    return await recorded()


async def test_start_lifts_a_stop_but_not_an_operators_entry(database_url: str) -> None:
    async with router_stage(database_url) as stage:
        removed = await _collect(stage, subjects.SUPPRESSION_REMOVED)
        await stage.suppressions.add(_entry("sms", "+15550002222", R.SUPPRESSION_REASON_SMS_STOP), "ev-stop")
        await stage.suppressions.add(_entry("sms", "+15550003333", R.SUPPRESSION_REASON_MANUAL), "ev-manual")
        for phone in ("+15550002222", "+15550003333"):
            await _report(stage, lift=_entry("sms", phone, R.SUPPRESSION_REASON_SMS_STOP))
        [lifted] = [events_pb2.SuppressionEvent.FromString(d) for d in await stage.wait_for(lambda: removed, 1)]
        assert lifted.suppression.address == "+15550002222"
        job = work_pb2.DeliveryJob(channel="sms", address="+15550003333", category=S.CATEGORY_NOTIFICATION)
        assert "an operator added it" in (await stage.suppressions.lookup([job])).reason(job)


async def test_a_known_users_complaint_opts_them_out_of_marketing_email(database_url: str) -> None:
    async with router_stage(database_url) as stage:
        opted = await _collect(stage, subjects.UNSUBSCRIBED)
        user = await stage.user({"email": "reader@example.org"})
        change = events_pb2.PreferenceEvent(
            user_id=user, category=S.CATEGORY_MARKETING, channel="email", opted_out=True
        )
        report_id = await _report(stage, opt_out=change)
        [event] = [events_pb2.PreferenceEvent.FromString(d) for d in await stage.wait_for(lambda: opted, 1)]
        assert (event.event_id, event.user_id, event.opted_out) == (report_id, user, True)

        sent = message({"email": "sale"}, msg.Recipient(user_id=user), category=S.CATEGORY_MARKETING)
        [marketing] = await stage.settled(await stage.send(sent))
        assert (marketing.state, marketing.reason_code) == (S.DELIVERY_STATE_SUPPRESSED, "opted_out")
        [notice] = await stage.settled(await stage.send(message({"email": "notice"}, msg.Recipient(user_id=user))))
        assert notice.state == S.DELIVERY_STATE_PENDING

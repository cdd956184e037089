"""The router's decisions on the messages it consumes, in one process (tests/router/stage.py): what each delivery
becomes - queued for its channel with its address, SCHEDULED, SUPPRESSED or EXPIRED with its reason - as the
events and jobs it publishes show. The same checks ran through the whole mesh before; each test names the one."""

import asyncio
from datetime import UTC, datetime, timedelta

from herald.v1 import common_pb2, events_pb2
from herald.v1 import message_service_pb2 as msg

from herald.internal.v1 import work_pb2
from herald.libs import subjects
from herald.libs.dispatch import Decision
from tests.router.stage import RouterStage, message, router_stage

S = common_pb2
HOOK = "https://hooks.example/u"


def _quiet_now() -> tuple[common_pb2.QuietHours, datetime]:
    """A window (UTC) that started an hour ago and ends in about an hour, and when it ends."""
    now = datetime.now(UTC)
    end = (now + timedelta(hours=1)).replace(second=0, microsecond=0)
    return common_pb2.QuietHours(start=(now - timedelta(hours=1)).strftime("%H:%M"), end=end.strftime("%H:%M")), end


async def test_recipient_resolved_from_directory_and_the_requests_address_wins(database_url: str) -> None:
    """Was test_routing.py's test_address_in_request_wins_over_directory; test_recipient_resolved_from_directory
    stays there, end to end."""
    async with router_stage(database_url) as stage:
        user = await stage.user({"webhook": HOOK})
        from_directory = await stage.send(message({"webhook": "{}"}, msg.Recipient(user_id=user)))
        [job] = await stage.queued(from_directory)
        assert (job.address, job.user_id) == (HOOK, user)
        [pending] = await stage.settled(from_directory)
        assert pending.state == S.DELIVERY_STATE_PENDING

        given = msg.Recipient(user_id=user, addresses={"webhook": "https://other.example/"})
        [job] = await stage.queued(await stage.send(message({"webhook": "{}"}, given)))
        assert job.address == "https://other.example/"


async def test_no_address_anywhere_is_suppressed_with_reason(database_url: str) -> None:
    """Was test_routing.py's test_no_address_anywhere_is_suppressed_with_reason."""
    async with router_stage(database_url) as stage:
        message_id = await stage.send(message({"webhook": "{}"}, msg.Recipient(user_id="nobody")))
        [event] = await stage.settled(message_id)
        assert (event.state, event.reason_code) == (S.DELIVERY_STATE_SUPPRESSED, "no_address")
        assert event.reason == "no webhook address: none in the request and none in the directory for user 'nobody'"
        assert not stage.jobs


async def test_the_apps_quiet_hours_hold_a_user_without_their_own(database_url: str) -> None:
    """The decision behind test_quiet_hours.py's test_the_apps_quiet_hours_apply_to_users_without_their_own, which
    stays there, end to end (from CreateApp to the held delivery)."""
    quiet, end = _quiet_now()
    async with router_stage(database_url) as stage:
        sent = message({"webhook": "{}"}, msg.Recipient(user_id=await stage.user({"webhook": HOOK}, timezone="UTC")))
        sent.template.category = S.CATEGORY_MARKETING
        sent.quiet_hours.CopyFrom(quiet)
        [held] = await stage.settled(await stage.send(sent))
        assert held.state == S.DELIVERY_STATE_SCHEDULED
        assert held.reason == f"quiet hours: held until {end.strftime('%H:%M')} UTC"
        assert await stage.bus.scheduled(subjects.held_delivery(held.delivery_id)) is not None

        never = await stage.user({"webhook": HOOK}, quiet=common_pb2.QuietHours(disabled=True), timezone="UTC")
        sent = message({"webhook": "{}"}, msg.Recipient(user_id=never), category=S.CATEGORY_MARKETING)
        sent.quiet_hours.CopyFrom(quiet)
        message_id = await stage.send(sent)
        assert len(await stage.queued(message_id)) == 1
        assert [e.state for e in await stage.settled(message_id)] == [S.DELIVERY_STATE_PENDING]


async def test_a_delivery_that_would_wake_after_its_expiry_expires(database_url: str) -> None:
    """Was test_quiet_hours.py's test of the same name."""
    quiet, _ = _quiet_now()
    async with router_stage(database_url) as stage:
        sent = message(
            {"webhook": "{}"}, msg.Recipient(user_id=await stage.user({"webhook": HOOK}, quiet=quiet, timezone="UTC"))
        )
        sent.expire_at.FromDatetime(datetime.now(UTC) + timedelta(seconds=30))
        [event] = await stage.settled(await stage.send(sent))
        assert event.state == S.DELIVERY_STATE_EXPIRED
        assert "quiet hours" in event.reason
        assert not stage.jobs


def _states(events: list[events_pb2.DeliveryEvent]) -> dict[str, tuple[int, str]]:
    return {e.channel: (e.state, e.reason) for e in events}


async def test_no_address_for_the_first_channel_falls_back_to_the_next(database_url: str) -> None:
    """Was test_fallback.py's test of the same name (that the webhook is then sent is the adapters': the mesh tests
    that remain there)."""
    async with router_stage(database_url) as stage:
        user = await stage.user({"webhook": HOOK})
        sent = message({"email": "x", "webhook": "{}"}, msg.Recipient(user_id=user), fallback=["email", "webhook"])
        message_id = await stage.send(sent)
        steps = _states(await stage.settled(message_id, 2))
        state, reason = steps["email"]
        assert state == S.DELIVERY_STATE_SUPPRESSED
        assert reason.startswith("no email address") and reason.endswith("; falling back to webhook")
        assert steps["webhook"] == (S.DELIVERY_STATE_PENDING, "")
        assert [(j.channel, j.address) for j in await stage.queued(message_id)] == [("webhook", HOOK)]


async def test_an_opt_out_of_the_first_channel_falls_back_to_the_next(database_url: str) -> None:
    """Was test_fallback.py's test of the same name."""
    async with router_stage(database_url) as stage:
        user = await stage.user({"email": "someone@example.com", "webhook": HOOK})
        await stage.opt_out(user, S.CATEGORY_MARKETING, "email")
        sent = message(
            {"email": "x", "webhook": "{}"},
            msg.Recipient(user_id=user),
            category=S.CATEGORY_MARKETING,
            fallback=["email", "webhook"],
        )
        message_id = await stage.send(sent)
        steps = _states(await stage.settled(message_id, 2))
        state, reason = steps["email"]
        assert state == S.DELIVERY_STATE_SUPPRESSED
        assert f"user '{user}' opted out of marketing messages on email" in reason
        assert steps["webhook"] == (S.DELIVERY_STATE_PENDING, "")
        assert [j.channel for j in await stage.queued(message_id)] == ["webhook"]


async def test_a_chain_stops_at_the_first_channel_that_works(database_url: str) -> None:
    """Was test_fallback.py's test of the same name: one job, for the first channel, carrying the rest of the
    chain for the adapters to hand back if it fails for good."""
    async with router_stage(database_url) as stage:
        user = await stage.user({"webhook": HOOK, "email": "someone@example.com"})
        sent = message({"webhook": "{}", "email": "x"}, msg.Recipient(user_id=user), fallback=["webhook", "email"])
        message_id = await stage.send(sent)
        [event] = await stage.settled(message_id)
        assert (event.channel, event.state) == ("webhook", S.DELIVERY_STATE_PENDING)
        [job] = await stage.queued(message_id)
        assert job.channel == "webhook"
        assert [f.channel for f in job.fallback] == ["email"]


async def test_repeated_content_is_suppressed_but_new_content_and_critical_go_out(database_url: str) -> None:
    """The decisions test_dedup.py shows end to end, where HERALD_DEDUP_WINDOW_SECONDS sets the window of a
    router binary."""
    async with router_stage(database_url, dedup_window=30) as stage:
        recipient = msg.Recipient(user_id="u1", addresses={"webhook": HOOK})
        sale = message({"webhook": "sale {{ n }}"}, recipient, category=S.CATEGORY_MARKETING)
        code = message({"webhook": "code {{ n }}"}, recipient, category=S.CATEGORY_CRITICAL)

        async def send(template: work_pb2.AcceptedMessage, n: str) -> events_pb2.DeliveryEvent:
            sent = work_pb2.AcceptedMessage()
            sent.CopyFrom(template)
            sent.variables["n"] = n
            [event] = await stage.settled(await stage.send(sent))
            return event

        assert (await send(sale, "1")).state == S.DELIVERY_STATE_PENDING
        again = await send(sale, "1")
        assert (again.state, again.reason_code) == (S.DELIVERY_STATE_SUPPRESSED, "duplicate")
        assert again.reason.startswith("duplicate")
        assert (await send(sale, "2")).state == S.DELIVERY_STATE_PENDING
        assert (await send(code, "9")).state == S.DELIVERY_STATE_PENDING
        assert (await send(code, "9")).state == S.DELIVERY_STATE_PENDING
        assert sorted(j.body for j in stage.jobs) == ["code 9", "code 9", "sale 1", "sale 2"]


async def test_critical_is_exempt_from_caps_unless_a_rule_names_it(database_url: str) -> None:
    """Was test_frequency.py's test_critical_is_exempt_unless_a_rule_names_it."""
    async with router_stage(database_url) as stage:
        recipient = msg.Recipient(user_id="u1", addresses={"webhook": HOOK})
        await stage.cap(1, 86400, S.CATEGORY_NOTIFICATION, "webhook", app_id="app_1")

        async def state(n: int) -> int:
            sent = message({"webhook": "{{ n }}"}, recipient, category=S.CATEGORY_CRITICAL)
            sent.variables["n"] = str(n)
            [event] = await stage.settled(await stage.send(sent))
            return event.state

        assert [await state(n) for n in range(3)] == [S.DELIVERY_STATE_PENDING] * 3
        await stage.cap(1, 86400, S.CATEGORY_CRITICAL, "webhook", app_id="app_1")
        assert [await state(n) for n in range(3, 5)] == [S.DELIVERY_STATE_PENDING, S.DELIVERY_STATE_SUPPRESSED]


async def test_a_message_cancelled_before_the_router_held_it_is_cancelled_not_scheduled(database_url: str) -> None:
    """Was test_scheduling_and_cancel.py's test_a_message_cancelled_before_the_router_held_it_is_never_sent (a
    mesh of its own, the router stopped while intake's CancelMessage decided CANCELLED): the router, reading the
    message later, finds the decision and makes no schedule, so nothing can fire at send_at."""
    async with router_stage(database_url) as stage:
        sent = message(
            {"webhook": "{}"}, msg.Recipient(addresses={"webhook": HOOK}), msg.Recipient(user_id="nobody-home")
        )
        sent.message_id = "msg_cancelled_first"
        sent.send_at.FromDatetime(datetime.now(UTC) + timedelta(seconds=15))
        assert await stage.ledger.decide(sent.message_id, Decision.CANCELLED) is Decision.CANCELLED
        cancelled = await stage.settled(await stage.send(sent), 2)
        assert {(e.state, e.reason) for e in cancelled} == {(S.DELIVERY_STATE_CANCELLED, "cancelled by the sender")}
        assert len({e.delivery_id for e in cancelled}) == 2
        assert await stage.bus.scheduled(subjects.schedule(sent.message_id, 0)) is None
        assert not stage.jobs


async def test_a_cancel_that_won_holds_within_a_batch_and_routing_the_batch_again_decides_nothing_new(
    database_url: str,
) -> None:
    """A batch's dispatch decisions are written together (DispatchLedger.decide_all): a message a cancel decided
    first is cancelled while its neighbour goes out, and the same messages routed again (a redelivery) find their
    decisions taken - nothing more is queued, the cancelled one stays cancelled."""
    async with router_stage(database_url) as stage:
        cancelled = message({"webhook": "{}"}, msg.Recipient(addresses={"webhook": HOOK}))
        cancelled.message_id = "msg_cancel_won"
        kept = message({"webhook": "{}"}, msg.Recipient(addresses={"webhook": HOOK}))
        kept.message_id = "msg_dispatched"
        assert await stage.ledger.decide(cancelled.message_id, Decision.CANCELLED) is Decision.CANCELLED
        subject = subjects.message_accepted(kept.template.category)
        together = [
            stage.bus.publish_grouped(subject, (m.SerializeToString(), m.message_id), each_traced=True)
            for m in (cancelled, kept)
        ]
        for published in together:
            await published
        [gone] = await stage.settled(cancelled.message_id)
        assert gone.state == S.DELIVERY_STATE_CANCELLED
        [job] = await stage.queued(kept.message_id)
        for again in (cancelled, kept):
            again.part = 1  # a new record id, so the bus takes it: the router sees the same message again
            await stage.send(again)
        await _drained(stage)
        assert await stage.ledger.decided(cancelled.message_id) is Decision.CANCELLED
        assert await stage.ledger.decided(kept.message_id) is Decision.DISPATCHED
        assert [j.delivery_id for j in stage.jobs if j.message_id == kept.message_id] == [job.delivery_id]


async def _drained(stage: RouterStage) -> None:
    """Once the router's consumers hold nothing: what the same messages routed again publish is dropped as a
    repeat, so only the consumers show it was done."""
    for _ in range(1000):
        if all(lag == (0, 0) for lag in (await stage.bus.consumer_lag()).values()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the router's consumers still hold messages: {await stage.bus.consumer_lag()}")

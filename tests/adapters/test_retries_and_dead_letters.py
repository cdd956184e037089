"""Retries follow the category's schedule; after the last, the delivery is FAILED with the provider's last error and
waits in the dead-letter stream until an operator replays it (on the mesh: DeadLetterService end to end). Critical
codes stop retrying at expire_at (in one process: tests/adapters/stage.py)."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import grpc
from herald.v1 import common_pb2
from herald.v1 import dead_letter_service_pb2 as dlq
from herald.v1 import message_service_pb2 as msg

from herald.libs import subjects
from herald.libs.timeutil import to_timestamp
from tests.adapters.stage import adapters_stage
from tests.conftest import RETRY_BACKOFF
from tests.helpers.client import Herald, all_final, bad_fields, rpc_error
from tests.helpers.dead_letters import ATTEMPTS, dead_lettered
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


async def test_after_the_last_retry_the_delivery_is_dead_lettered_and_a_replay_sends_it(
    herald: Herald, sink: WebhookSink
) -> None:
    dead = await dead_lettered(herald, sink)
    app, message_id, delivery, path, attempts = dead.app, dead.message_id, dead.delivery, dead.path, ATTEMPTS
    assert delivery.state == S.DELIVERY_STATE_FAILED
    assert delivery.reason == f"gave up after {attempts} attempts: webhook endpoint answered HTTP 502"
    assert len(sink.for_path(path)) == attempts
    retries = [h for h in delivery.history if h.state == S.DELIVERY_STATE_PENDING and "retrying" in h.reason]
    assert len(retries) == attempts - 1

    listed = await herald.dead_letters.ListDeadLetters(
        dlq.ListDeadLettersRequest(channel="webhook", category=S.CATEGORY_NOTIFICATION), metadata=herald.admin
    )
    [dead] = [d for d in listed.dead_letters if d.delivery_id == delivery.delivery_id]
    assert dead.attempts == attempts and dead.reason == delivery.reason and dead.provider == "webhook"

    replayed = await herald.dead_letters.ReplayDeadLetters(
        dlq.ReplayDeadLettersRequest(sequences=[dead.sequence]), metadata=herald.admin
    )
    assert replayed.replayed == 1
    sent = await herald.wait_message(app, message_id, lambda m: m.deliveries[0].state == S.DELIVERY_STATE_SENT)
    assert sent.deliveries[0].attempts == attempts + 1, "attempts keep counting across the replay"
    assert len(sink.for_path(path)) == attempts + 1
    again = await herald.dead_letters.ReplayDeadLetters(
        dlq.ReplayDeadLettersRequest(sequences=[dead.sequence]), metadata=herald.admin
    )
    assert again.replayed == 0, "a dead letter is replayed once"


async def test_replaying_a_channel_and_category_sends_each_of_its_dead_letters_once_more(
    herald: Herald, sink: WebhookSink
) -> None:
    path = f"/dead-all/{uuid.uuid4().hex[:8]}"
    attempts = len(RETRY_BACKOFF["HERALD_RETRY_BACKOFF_CRITICAL"].split(",")) + 1
    sink.answer(path, *[502] * attempts * 2)
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": "{}"}, category=S.CATEGORY_CRITICAL)
    request = msg.SendRequest(template_id=template, recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})])
    messages = [await herald.send(app, request) for _ in range(2)]
    failed = [(await herald.wait_message(app, m, all_final)).deliveries[0] for m in messages]
    assert {d.state for d in failed} == {S.DELIVERY_STATE_FAILED}
    mine = {d.delivery_id for d in failed}

    async def dead_letters() -> list[dlq.DeadLetter]:
        listed = await herald.dead_letters.ListDeadLetters(
            dlq.ListDeadLettersRequest(channel="webhook", category=S.CATEGORY_CRITICAL, page_size=1000),
            metadata=herald.admin,
        )
        return [d for d in listed.dead_letters if d.delivery_id in mine]

    dead = await dead_letters()
    assert len(dead) == 2
    # A listed sequence of another category is not replayed.
    mismatch = await herald.dead_letters.ReplayDeadLetters(
        dlq.ReplayDeadLettersRequest(sequences=[dead[0].sequence], category=S.CATEGORY_MARKETING),
        metadata=herald.admin,
    )
    assert mismatch.replayed == 0
    everything = await herald.dead_letters.ReplayDeadLetters(
        dlq.ReplayDeadLettersRequest(channel="webhook", category=S.CATEGORY_CRITICAL), metadata=herald.admin
    )
    assert everything.replayed >= 2
    for message_id in messages:
        await herald.wait_message(app, message_id, lambda m: m.deliveries[0].state == S.DELIVERY_STATE_SENT)
    assert len(sink.for_path(path)) == attempts * 2 + 2
    assert await dead_letters() == []


async def test_a_critical_code_retries_fast_and_expires_instead_of_failing(
    database_url: str, sink: WebhookSink
) -> None:
    path = f"/expire/{uuid.uuid4().hex[:8]}"
    sink.answer(path, *[503] * 20)
    async with adapters_stage(database_url) as adapters:
        # Retries 0.5 s, 0.5 s, then 1 s apart: the third retry would come after expire_at, the first two in time
        # even when the first attempt starts more than a second late on a busy machine.
        expire_at = to_timestamp(datetime.now(UTC) + timedelta(seconds=1.9))
        events = await adapters.outcome(
            await adapters.send("webhook", sink.url(path), category=S.CATEGORY_CRITICAL, expire_at=expire_at)
        )
    expired = events[-1]
    assert expired.state == S.DELIVERY_STATE_EXPIRED
    assert expired.reason.startswith("expire_at passed while retrying; attempt ")
    assert expired.reason.endswith("failed: webhook endpoint answered HTTP 503")
    assert expired.attempt >= 2, "critical retries quickly within its expire_at"
    assert adapters.dead_letters == [], "an expired delivery is not dead-lettered"


async def test_jobs_queued_together_are_each_retried_on_their_own_schedule(
    database_url: str, sink: WebhookSink
) -> None:
    """The router queues a routed batch's jobs as one message, which comes back when its soonest retry is due: the
    job the receiver took is not sent again, and a job told to wait longer (Retry-After) is not called early."""
    run = uuid.uuid4().hex[:8]
    taken, flaky, slow = (f"/together/{run}/{name}" for name in ("taken", "flaky", "slow"))
    sink.answer(flaky, 503)
    sink.answer(slow, (503, {"Retry-After": "3"}))
    async with adapters_stage(database_url) as adapters:
        ids = await asyncio.gather(*(adapters.send("webhook", sink.url(path)) for path in (taken, flaky, slow)))
        queued = await adapters.bus.subject_counts(subjects.DELIVERIES_STREAM)
        outcomes = [await adapters.outcome(delivery_id) for delivery_id in ids]
    assert queued == {subjects.delivery_job(S.CATEGORY_NOTIFICATION, "webhook"): 1}, "the three jobs in one message"
    assert [events[-1].state for events in outcomes] == [S.DELIVERY_STATE_SENT] * 3
    assert [len(sink.for_path(path)) for path in (taken, flaky, slow)] == [1, 2, 2]
    retrying, sent = outcomes[2][-2:]
    assert retrying.reason == "attempt 1 failed: webhook endpoint answered HTTP 503; retrying in 3s"
    waited = sent.occur_time.ToDatetime() - retrying.occur_time.ToDatetime()
    assert waited >= timedelta(seconds=2.9), f"called again after {waited}, not when the message first came back"


async def test_dead_letter_requests_are_checked(herald: Herald) -> None:
    error = await rpc_error(
        herald.dead_letters.ListDeadLetters(
            dlq.ListDeadLettersRequest(channel="pigeon", page_size=5000), metadata=herald.admin
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_fields(error)) == {"channel", "page_size"}
    garbage = dlq.ReplayDeadLettersRequest(sequences=[0, 5, 2**64 - 1])
    error = await rpc_error(herald.dead_letters.ReplayDeadLetters(garbage, metadata=herald.admin))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_fields(error)) == {"sequences[0]", "sequences[2]"}

"""How a webhook delivery ends: the status events the adapters publish for it (what GetMessage shows a support
person). In one process (tests/adapters/stage.py), except the JSON body, which crosses the router's templating
and so runs on the mesh."""

import asyncio
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from herald.v1 import common_pb2
from herald.v1 import message_service_pb2 as msg
from opentelemetry import trace

from herald.internal.v1 import work_pb2
from herald.libs import delivery_jobs, subjects, telemetry
from herald.libs.timeutil import to_timestamp
from herald.services.adapters.retry_policy import IN_HAND_RETRY
from tests.adapters.stage import AdaptersStage, adapters_stage, job_for
from tests.helpers.client import Herald
from tests.helpers.webhook_sink import WebhookSink

S = common_pb2


def _path() -> str:
    return f"/hook/{uuid.uuid4().hex[:8]}"


async def test_retryable_error_is_retried_then_sent(database_url: str, sink: WebhookSink) -> None:
    path = _path()
    sink.answer(path, 503)
    async with adapters_stage(database_url) as adapters:
        events = await adapters.outcome(await adapters.send("webhook", sink.url(path)))
    assert events[-1].state == S.DELIVERY_STATE_SENT
    assert max(e.attempt for e in events) == 2
    assert len(sink.for_path(path)) == 2
    retry = [e for e in events if e.state == S.DELIVERY_STATE_PENDING and e.attempt == 1]
    assert retry and "HTTP 503" in retry[0].reason and "retrying" in retry[0].reason


async def test_a_job_queued_again_while_its_first_copy_is_in_hand_calls_the_receiver_once(
    database_url: str, sink: WebhookSink
) -> None:
    """The router queues a message's jobs again when it routes the message again (a redelivery, a Send repeated
    with its idempotency key), and the adapters hold two batches of a channel at once. A copy fetched while the
    first is still waiting for the receiver waits for that outcome: the receiver hears of the delivery once, and
    the copy's neighbours go out meanwhile."""
    slow, other = _path(), _path()
    sink.stalled.add(slow)
    job = job_for("webhook", sink.url(slow))
    neighbour = job_for("webhook", sink.url(other))
    async with adapters_stage(database_url) as adapters:
        await delivery_jobs.queue(adapters.bus, job)
        await sink.wait_for(slow)  # the first copy's call is under way
        await delivery_jobs.queue(adapters.bus, job, neighbour)  # another group: a message of its own
        sent = await adapters.outcome(neighbour.delivery_id)
        sink.release()
        events = await adapters.outcome(job.delivery_id)
        await asyncio.sleep(2 * IN_HAND_RETRY)  # the copy has come back and found the outcome
    assert sent[-1].state == S.DELIVERY_STATE_SENT
    assert events[-1].state == S.DELIVERY_STATE_SENT
    assert len(sink.for_path(slow)) == 1, "the receiver was called again while the first call was under way"
    assert len(sink.for_path(other)) == 1


async def test_jobs_of_concurrent_sends_share_a_message_and_each_call_continues_its_own_trace(
    database_url: str, sink: WebhookSink
) -> None:
    """Jobs the router queues at once for Sends of different traces travel as one message; each webhook call still
    carries its own Send's trace, so the receiver's logs and herald's join up message by message."""
    paths = [_path() for _ in range(3)]
    trace_ids = [secrets.randbits(128) for _ in paths]

    async def routed(adapters: AdaptersStage, path: str, trace_id: int) -> str:
        routing = trace.SpanContext(trace_id, secrets.randbits(64), is_remote=True, trace_flags=trace.TraceFlags(0))
        with trace.use_span(trace.NonRecordingSpan(routing)):
            return await adapters.send("webhook", sink.url(path))

    async with adapters_stage(database_url) as adapters:
        ids = await asyncio.gather(*(routed(adapters, p, t) for p, t in zip(paths, trace_ids, strict=True)))
        queued = await adapters.bus.subject_counts(subjects.DELIVERIES_STREAM)
        outcomes = [await adapters.outcome(delivery_id) for delivery_id in ids]
    assert sum(queued.values()) == 1, "the three jobs in one message"
    assert [events[-1].state for events in outcomes] == [S.DELIVERY_STATE_SENT] * 3
    carried = [telemetry.trace_id(sink.for_path(p)[0].headers.get("traceparent", "")) for p in paths]
    assert carried == [format(t, "032x") for t in trace_ids]


async def test_a_job_queued_before_jobs_were_grouped_is_still_delivered(database_url: str, sink: WebhookSink) -> None:
    """A job stored alone, as the router queued jobs before they travelled grouped (no Herald-Records header),
    is delivered like any other after an upgrade."""
    path = _path()
    message_id = f"msg_{uuid.uuid4().hex[:16]}"
    job = work_pb2.DeliveryJob(
        delivery_id=f"{message_id}.0",
        message_id=message_id,
        app_id="app_1",
        template_id="t",
        category=S.CATEGORY_NOTIFICATION,
        channel="webhook",
        address=sink.url(path),
        body="{}",
    )
    async with adapters_stage(database_url) as adapters:
        subject = subjects.delivery_job(job.category, job.channel)
        await adapters.bus.publish(subject, job.SerializeToString(), job.delivery_id)
        events = await adapters.outcome(job.delivery_id)
    assert events[-1].state == S.DELIVERY_STATE_SENT
    assert len(sink.for_path(path)) == 1


async def test_permanent_error_fails_with_the_endpoints_answer(database_url: str, sink: WebhookSink) -> None:
    path = _path()
    sink.answer(path, 404)
    async with adapters_stage(database_url) as adapters:
        [failed] = await adapters.outcome(await adapters.send("webhook", sink.url(path)))
    assert failed.state == S.DELIVERY_STATE_FAILED
    assert failed.reason == "webhook endpoint answered HTTP 404"
    assert failed.attempt == 1 and failed.provider == "webhook"


async def test_webhook_to_a_private_address_is_refused(database_url: str, sink: WebhookSink) -> None:
    # The stage allows only the host "127.0.0.1", like the mesh; "localhost" is the same machine under another name.
    url = sink.url(_path()).replace("127.0.0.1", "localhost")
    async with adapters_stage(database_url) as adapters:
        [failed] = await adapters.outcome(await adapters.send("webhook", url))
    assert failed.state == S.DELIVERY_STATE_FAILED
    assert "non-public address" in failed.reason and "HERALD_WEBHOOK_ALLOWED_HOSTS" in failed.reason


async def test_channel_without_a_provider_account_fails_visibly(database_url: str) -> None:
    async with adapters_stage(database_url) as adapters:
        [failed] = await adapters.outcome(await adapters.send("email", "ann@example.com"))
    assert failed.state == S.DELIVERY_STATE_FAILED
    assert failed.reason == "no email provider account is configured"


async def test_message_past_expire_at_is_not_retried(database_url: str, sink: WebhookSink) -> None:
    path = _path()
    sink.answer(path, (503, {"Retry-After": "3"}))
    async with adapters_stage(database_url) as adapters:
        expire_at = to_timestamp(datetime.now(UTC) + timedelta(seconds=1.5))
        [expired] = await adapters.outcome(await adapters.send("webhook", sink.url(path), expire_at=expire_at))
    assert expired.state == S.DELIVERY_STATE_EXPIRED
    # Retry-After (3 s) would land after expire_at: it expires at once, saying why the one attempt failed.
    assert expired.reason == "expire_at passed while retrying; attempt 1 failed: webhook endpoint answered HTTP 503"
    assert len(sink.for_path(path)) == 1, "no retry after expire_at may reach the endpoint"


async def test_a_variable_cannot_add_fields_to_a_json_body(herald: Herald, sink: WebhookSink) -> None:
    path = _path()
    _, app = await herald.create_app()
    template = await herald.create_template({"webhook": '{"text": "Order {{ order }} shipped"}'})
    order = 'a","admin":true,"x":"'
    request = msg.SendRequest(
        template_id=template,
        variables={"order": order},
        recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})],
    )
    await herald.send(app, request)
    [received] = await sink.wait_for(path)
    assert json.loads(received.body) == {"text": f"Order {order} shipped"}
    assert received.signature_ok and received.headers["Content-Type"] == "application/json"

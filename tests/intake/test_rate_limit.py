"""A per-app rate limit: the excess is refused with a retry delay, shared by every intake replica, and
nothing refused is ever delivered."""

import asyncio
import time
import uuid

import grpc
from herald.v1 import message_service_pb2 as msg
from herald.v1 import message_service_pb2_grpc

from devmesh.mesh import Mesh
from tests.helpers.client import Herald, Metadata, retry_delay
from tests.helpers.replicas import extra_replica
from tests.helpers.webhook_sink import WebhookSink


async def _fire(
    stub: message_service_pb2_grpc.MessageServiceStub, app: Metadata, request: msg.SendRequest, n: int
) -> tuple[list[str], list[grpc.aio.AioRpcError]]:
    async def one() -> str | grpc.aio.AioRpcError:
        try:
            return (await stub.Send(request, metadata=app)).message_id
        except grpc.aio.AioRpcError as e:
            return e

    results = await asyncio.gather(*(one() for _ in range(n)))
    return [r for r in results if isinstance(r, str)], [r for r in results if not isinstance(r, str)]


def _most(rate: float, seconds: float) -> int:
    """The most a limit of `rate` per second may accept in `seconds`: its burst, then one per interval."""
    return int(rate + rate * seconds) + 1


async def test_fifty_at_once_against_five_per_second(herald: Herald, sink: WebhookSink) -> None:
    _, app = await herald.create_app(rate=5)
    template = await herald.create_template({"webhook": "{}"})
    path = f"/limited/{uuid.uuid4().hex[:8]}"
    request = msg.SendRequest(template_id=template, recipients=[msg.Recipient(addresses={"webhook": sink.url(path)})])
    began = time.monotonic()
    accepted, refused = await _fire(herald.messages, app, request, 50)
    # The burst of one second's worth, and what the rate refilled while the calls were being answered.
    assert 4 <= len(accepted) <= _most(5, time.monotonic() - began), len(accepted)
    assert len(refused) == 50 - len(accepted)
    assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert all(0 < retry_delay(e) <= 1.0 for e in refused)
    await sink.wait_for(path, len(accepted))
    await asyncio.sleep(2)
    assert len(sink.for_path(path)) == len(accepted), "a refused Send must never be delivered"


async def test_batch_entries_over_the_limit_are_refused_one_by_one(herald: Herald) -> None:
    _, app = await herald.create_app(rate=3)
    template = await herald.create_template({"webhook": "{}"})
    entry = msg.SendRequest(
        template_id=template, recipients=[msg.Recipient(addresses={"webhook": "https://example.com/h"})]
    )
    reply = await herald.messages.SendBatch(msg.SendBatchRequest(requests=[entry] * 10), metadata=app)
    kinds = [r.WhichOneof("outcome") for r in reply.results]
    assert kinds == ["response"] * 3 + ["error"] * 7
    assert all(r.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] for r in reply.results[3:])
    assert all(r.error.retry_delay.ToTimedelta().total_seconds() > 0 for r in reply.results[3:])


async def test_two_intake_replicas_share_one_limit(shared_mesh: tuple[Mesh, Herald]) -> None:
    mesh, herald = shared_mesh
    _, app = await herald.create_app(rate=5)
    template = await herald.create_template({"webhook": "{}"})
    request = msg.SendRequest(
        template_id=template, recipients=[msg.Recipient(addresses={"webhook": "https://example.com/h"})]
    )
    async with extra_replica(mesh, "intake") as second, grpc.aio.insecure_channel(second.addr) as channel:
        other = message_service_pb2_grpc.MessageServiceStub(channel)
        began = time.monotonic()
        (a, refused_a), (b, refused_b) = await asyncio.gather(
            _fire(herald.messages, app, request, 25), _fire(other, app, request, 25)
        )
        took = time.monotonic() - began
    assert len(a) + len(refused_a) == len(b) + len(refused_b) == 25, "both replicas answered every call"
    # Two separate limits would accept twice as many: a burst of 5 each, and each refilling at 5/s.
    assert 4 <= len(a) + len(b) <= _most(5, took), (len(a), len(b), took)

"""ExportEvents: the data platform pulls a time range of raw status events as CSV or Parquet, streamed in pieces,
oldest first, one app's or (with the admin token) any app's."""

import asyncio
import csv
import io
import sys
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from herald.v1 import common_pb2, events_pb2
from herald.v1 import status_service_pb2 as pb

from devmesh.mesh import Mesh
from herald.libs.timeutil import to_timestamp
from tests.feedback.stage import feedback_stage
from tests.helpers.client import Herald, Metadata, bad_fields, rpc_error
from tests.helpers.status_events import publish, status_event

S = common_pb2
DAY = datetime(2024, 6, 1, tzinfo=UTC)  # no other test's events fall on this day
SENT = 6000  # more than one slice (5000), so the file comes in several chunks


def _event(
    app_id: str, delivery: str, state: common_pb2.DeliveryState.ValueType, at: datetime
) -> events_pb2.DeliveryEvent:
    return status_event(
        delivery,
        state,
        at,
        message_id=f"msg_{delivery.replace('.', '')[:36]}",
        app_id=app_id,
        template_id="receipt",
        user_id="u-1",
        channel="webhook",
        provider="webhook",
    )


async def _export(herald: Herald, who: Metadata, request: pb.ExportEventsRequest) -> list[bytes]:
    return [chunk.data async for chunk in herald.status.ExportEvents(request, metadata=who)]


def _parquet(chunks: list[bytes]) -> pa.Table:
    return pq.read_table(io.BytesIO(b"".join(chunks)))


def _range(format: "pb.ExportFormat.ValueType", app_id: str = "") -> pb.ExportEventsRequest:
    return pb.ExportEventsRequest(
        start_time=to_timestamp(DAY), end_time=to_timestamp(DAY + timedelta(days=1)), format=format, app_id=app_id
    )


async def test_events_export_as_csv_and_parquet_in_time_order(shared_mesh: tuple[Mesh, Herald]) -> None:
    mesh, herald = shared_mesh
    app_id, app = await herald.create_app()
    other_id, _ = await herald.create_app()
    prefix = uuid.uuid4().hex[:10]
    published = [
        _event(app_id, f"{prefix}.{n}", S.DELIVERY_STATE_SENT, DAY + timedelta(seconds=n)) for n in range(SENT)
    ]
    published += [
        _event(app_id, f"{prefix}.0", S.DELIVERY_STATE_DELIVERED, DAY + timedelta(hours=23)),
        _event(app_id, f"{prefix}.early", S.DELIVERY_STATE_SENT, DAY - timedelta(seconds=1)),  # before: left out
        _event(other_id, f"{prefix}.x", S.DELIVERY_STATE_SENT, DAY + timedelta(hours=1)),  # another app's
    ]
    await publish(mesh, *published)

    async with asyncio.timeout(60):  # until feedback has recorded every event
        while True:
            chunks = await _export(herald, app, _range(pb.EXPORT_FORMAT_CSV))
            header, *events = csv.reader(io.StringIO(b"".join(chunks).decode()))
            if len(events) == SENT + 1:
                break
            await asyncio.sleep(0.2)
    assert header == [
        "event_id", "occur_time", "app_id", "message_id", "delivery_id", "template_id", "user_id", "channel",
        "state", "attempt", "reason", "provider",
    ]  # fmt: skip
    assert len(chunks) > 1
    assert [e[4] for e in events[:3]] == [f"{prefix}.0", f"{prefix}.1", f"{prefix}.2"]
    assert events[0][1] == "2024-06-01T00:00:00Z" and events[0][8] == "sent"
    assert events[-1][4] == f"{prefix}.0" and events[-1][8] == "delivered"
    assert {e[2] for e in events} == {app_id}

    parquet = _parquet(await _export(herald, herald.admin, _range(pb.EXPORT_FORMAT_PARQUET, app_id)))
    assert parquet.num_rows == SENT + 1
    assert parquet.column("event_id").to_pylist() == [e[0] for e in events]
    assert parquet.column("occur_time").to_pylist()[0] == DAY
    assert parquet.column("attempt").to_pylist()[0] == 1

    theirs = _parquet(await _export(herald, herald.admin, _range(pb.EXPORT_FORMAT_PARQUET, other_id)))
    assert theirs.column("delivery_id").to_pylist() == [f"{prefix}.x"]


async def test_an_export_is_checked_before_it_streams(herald: Herald) -> None:
    app_id, app = await herald.create_app()
    other_id, _ = await herald.create_app()
    error = await rpc_error(_export(herald, app, pb.ExportEventsRequest()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_fields(error)) == {"start_time", "end_time", "format"}
    error = await rpc_error(_export(herald, app, _range(pb.EXPORT_FORMAT_CSV, other_id)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    [empty] = await _export(herald, app, _range(pb.EXPORT_FORMAT_CSV, app_id))
    assert empty.decode().splitlines() == [
        "event_id,occur_time,app_id,message_id,delivery_id,template_id,user_id,channel,state,attempt,reason,provider"
    ]


async def test_parquet_without_its_extra_is_a_failed_precondition_and_csv_still_works(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image built without herald's `parquet` extra (no pyarrow) says so, instead of failing the call."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError from here on
    async with feedback_stage(database_url) as feedback:
        request = _range(pb.EXPORT_FORMAT_PARQUET, "")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in feedback.status.ExportEvents(request, metadata=feedback.admin):
                pass
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "parquet" in (refused.value.details() or "")
        request.format = pb.EXPORT_FORMAT_CSV
        chunks = [c.data async for c in feedback.status.ExportEvents(request, metadata=feedback.admin)]
        assert b"".join(chunks).decode().startswith("event_id,")

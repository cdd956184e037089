"""Delivery jobs on the bus: queued grouped, as accepted messages are (the jobs of one channel queued meanwhile, in
any trace, are one message), and read back by whoever handles that subject - the adapters, feedback's count of
what was given up."""

from collections.abc import Awaitable, Mapping

from opentelemetry import trace

from herald.internal.v1 import work_pb2
from herald.libs import subjects, telemetry
from herald.libs.bus import Publisher
from herald.libs.bus.grouping import RECORDS_HEADER


def queue(bus: Publisher, job: work_pb2.DeliveryJob, record_id: str = "") -> Awaitable[None]:
    """Queue `job` for its channel's adapter, grouped with the other jobs of that channel queued meanwhile (of
    concurrent Sends too: `job` is stamped with the current trace first): it joins its group now; await the result
    for it to be durable. Its record id is the delivery id unless `record_id` says otherwise (a replay): the same
    job queued again (a redelivered message) is dropped, or recognised by the adapters' record of it."""
    job.traceparent = telemetry.traceparent(trace.get_current_span())
    return bus.publish_grouped(
        subjects.delivery_job(job.category, job.channel),
        (job.SerializeToString(), record_id or job.delivery_id),
        each_traced=True,
    )


def read(data: bytes, headers: Mapping[str, str]) -> list[work_pb2.DeliveryJob]:
    """The jobs a message on a delivery subject carries: a group (DeliveryJobs), or one job alone - as one queued
    before jobs were grouped was, and as a held delivery's schedule still is."""
    if RECORDS_HEADER in headers:
        return list(work_pb2.DeliveryJobs.FromString(data).jobs)
    return [work_pb2.DeliveryJob.FromString(data)]

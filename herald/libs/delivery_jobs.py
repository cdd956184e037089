"""Delivery jobs on the bus: queued grouped, as accepted messages are (the jobs of one channel queued meanwhile, in
any trace, are one message), and read back by whoever handles that subject - the adapters, feedback's count of
what was given up."""

from collections.abc import Awaitable, Mapping

from opentelemetry import trace

from herald.internal.v1 import work_pb2
from herald.libs import subjects, telemetry
from herald.libs.bus import Publisher
from herald.libs.bus.grouping import RECORDS_HEADER, join_groups


def queue(bus: Publisher, *jobs: work_pb2.DeliveryJob) -> Awaitable[None]:
    """Queue jobs for their channels' adapters, grouped with the other jobs of each channel queued meanwhile (of
    concurrent Sends too: each job is stamped with the current trace first): they join their groups now, one call
    per channel; await the result for them to be durable. A job's record id is its delivery id, and a replayed
    one's says which replay it is: the same job queued again (a redelivered message) is dropped, or recognised by
    the adapters' record of it, while a replay is a new record."""
    traceparent = telemetry.traceparent(trace.get_current_span())
    for job in jobs:
        job.traceparent = traceparent
    records = (
        (
            subjects.delivery_job(job.category, job.channel),
            job.SerializeToString(),
            f"{job.delivery_id}.replay.{job.replay}" if job.replay else job.delivery_id,
        )
        for job in jobs
    )
    return join_groups(bus, records, each_traced=True)


def read(data: bytes, headers: Mapping[str, str]) -> list[work_pb2.DeliveryJob]:
    """The jobs a message on a delivery subject carries: a group (DeliveryJobs), or one job alone - as one queued
    before jobs were grouped was, and as a held delivery's schedule still is."""
    if RECORDS_HEADER in headers:
        return list(work_pb2.DeliveryJobs.FromString(data).jobs)
    return [work_pb2.DeliveryJob.FromString(data)]

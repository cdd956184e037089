"""Prometheus metrics, served by every binary at GET /metrics on HERALD_METRICS_ADDR, beside Kubernetes' probes.

Consumer lag is read from JetStream when Prometheus scrapes, so it is never stale: how many messages each of this
process's durable consumers has not yet been handed, and how many it holds unacknowledged. A service adds its own
metrics by creating them with prometheus_client at import time; they land in the same registry. A gauge that is
read from elsewhere (the dead letters waiting, in adapters) is refreshed by a job the service adds to
Runtime.on_scrape, run before each answer.

The probes are plain HTTP here, even where the gRPC port serves TLS only (Kubernetes' gRPC probes cannot present a
certificate): GET /livez answers 200 from the process alone - its event loop turns - so an outage of the database
or NATS, however long, restarts no pod; GET /readyz answers 200 only while its NATS and database connections are
up (herald/libs/runtime.py, Readiness: the same answer as grpc.health.v1), else 503, so traffic leaves the pod
meanwhile.
"""

import functools
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.utils import floatToGoString

from herald.libs import http_server
from herald.libs.bus import Consumers

CONSUMER_PENDING = Gauge(
    "herald_consumer_pending_messages",
    "Messages in the stream that this durable consumer has not been handed yet: its lag.",
    ["consumer"],
)
CONSUMER_UNACKED = Gauge(
    "herald_consumer_ack_pending_messages",
    "Messages handed to this durable consumer and not yet acknowledged.",
    ["consumer"],
)


@functools.cache
def child(metric: MetricWrapperBase, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once: on a path taken for every message or call, prometheus_client's
    own lookup (validating and joining the labels each time) is work to spare. Labels are bounded, so is this."""
    return metric.labels(*labels)


class BatchHistogram:
    """A Prometheus histogram given a batch of observations at once, exposed as prometheus_client's own are.
    Its Histogram pays two counter increments and a scan of the buckets per value; on feedback's path (three
    values per delivery) that was a tenth of the process's CPU. Observed and scraped on the event loop's thread
    only."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        self._name, self._documentation, self._labelnames = name, documentation, list(labelnames)
        self._bounds = tuple(buckets)
        # Per label values: how many values fell in each bucket (not cumulative; the last is +Inf's), and their sum.
        self._counts: dict[tuple[str, ...], list[int]] = {}
        self._sums: dict[tuple[str, ...], float] = {}
        if not self._labelnames:  # exposed from the start, as prometheus_client's would be
            self.observe((), ())
        REGISTRY.register(self)

    def observe(self, labels: tuple[str, ...], values: Iterable[float]) -> None:
        counts = self._counts.get(labels)
        if counts is None:
            counts = self._counts[labels] = [0] * (len(self._bounds) + 1)
            self._sums[labels] = 0.0
        bounds, total = self._bounds, 0.0
        for value in values:
            counts[bisect_left(bounds, value)] += 1
            total += value
        self._sums[labels] += total

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for labels, counts in self._counts.items():
            cumulative, buckets = 0, []
            for bound, count in zip((*self._bounds, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
            family.add_metric(list(labels), buckets, self._sums[labels])
        yield family


def consumer_lag(bus: Consumers) -> Callable[[], Awaitable[None]]:
    """A refresher for `serve`: the lag of each of this process's durable consumers, read from JetStream."""

    async def refresh() -> None:
        for name, (pending, unacked) in (await bus.consumer_lag()).items():
            CONSUMER_PENDING.labels(name).set(pending)
            CONSUMER_UNACKED.labels(name).set(unacked)

    return refresh


async def serve(
    addr: str,
    ready: Callable[[], bool],
    refreshers: Sequence[Callable[[], Awaitable[None]]] = (),
    not_ready: str = "NATS or the database does not answer",
) -> web.AppRunner:
    async def metrics(_: web.Request) -> web.Response:
        for refresh in refreshers:
            await refresh()
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def livez(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {not_ready}\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    return await http_server.serve(app, addr)

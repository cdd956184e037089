"""Message categories as herald names them to people ("critical", "notification", "marketing"),
and the pipeline each one flows through."""

import functools
from dataclasses import dataclass

from herald.v1 import common_pb2

KNOWN = (common_pb2.CATEGORY_CRITICAL, common_pb2.CATEGORY_NOTIFICATION, common_pb2.CATEGORY_MARKETING)
BY_NAME = {common_pb2.Category.Name(c).removeprefix("CATEGORY_").lower(): c for c in KNOWN}


@functools.cache
def name(category: int) -> str:
    """The category as consumer names and metric labels spell it (CATEGORY_NOTIFICATION: notification)."""
    return common_pb2.Category.Name(common_pb2.Category.ValueType(category)).removeprefix("CATEGORY_").lower()


@dataclass(frozen=True)
class Pipeline:
    """One category's share of a router or adapters process: its consumers take `batch` messages at a
    time; the router publishes at most `concurrency` of its deliveries at once, whatever the other categories
    have queued; while a batch of a better `rank` (0 first) is in hand, its work waits (herald/libs/bus/precedence.py,
    Precedence)."""

    batch: int
    concurrency: int
    rank: int


PIPELINES = {
    common_pb2.CATEGORY_CRITICAL: Pipeline(batch=32, concurrency=64, rank=0),
    common_pb2.CATEGORY_NOTIFICATION: Pipeline(batch=64, concurrency=64, rank=1),
    common_pb2.CATEGORY_MARKETING: Pipeline(batch=32, concurrency=32, rank=2),
}

# Seconds before each retry of a delivery that failed in a way that may pass. Critical codes retry fast and,
# whatever is left here, never after their expire_at; notifications keep trying for about seven hours;
# marketing gives up within the hour. After the last, the delivery is FAILED and dead-lettered.
RETRY_BACKOFF: dict[common_pb2.Category.ValueType, tuple[float, ...]] = {
    common_pb2.CATEGORY_CRITICAL: (1, 2, 4, 8, 15, 30, 60, 60, 60, 60),
    common_pb2.CATEGORY_NOTIFICATION: (10, 30, 60, 120, 300, 600, 1800, 3600, 3600, 3600, 3600, 3600, 3600, 3600),
    common_pb2.CATEGORY_MARKETING: (60, 300, 1800),
}

"""Message categories as herald names them to people ("critical", "notification", "marketing"),
and the pipeline each one flows through."""

from dataclasses import dataclass

from herald.v1 import common_pb2

KNOWN = (common_pb2.CATEGORY_CRITICAL, common_pb2.CATEGORY_NOTIFICATION, common_pb2.CATEGORY_MARKETING)
BY_NAME = {common_pb2.Category.Name(c).removeprefix("CATEGORY_").lower(): c for c in KNOWN}


def name(category: int) -> str:
    return common_pb2.Category.Name(common_pb2.Category.ValueType(category)).removeprefix("CATEGORY_").lower()


@dataclass(frozen=True)
class Pipeline:
    """One category's share of a router or adapters process: its consumers take `batch` messages at a
    time and publish at most `concurrency` at once, whatever the other categories have queued; while a
    batch of a better `rank` (0 first) is in hand, its work waits (libs/bus.py, Precedence)."""

    batch: int
    concurrency: int
    rank: int


PIPELINES = {
    common_pb2.CATEGORY_CRITICAL: Pipeline(batch=32, concurrency=64, rank=0),
    common_pb2.CATEGORY_NOTIFICATION: Pipeline(batch=64, concurrency=64, rank=1),
    common_pb2.CATEGORY_MARKETING: Pipeline(batch=32, concurrency=32, rank=2),
}

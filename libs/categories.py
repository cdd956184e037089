"""Message categories as herald names them to people: "critical", "notification", "marketing"."""

from herald.v1 import common_pb2

KNOWN = (common_pb2.CATEGORY_CRITICAL, common_pb2.CATEGORY_NOTIFICATION, common_pb2.CATEGORY_MARKETING)
BY_NAME = {common_pb2.Category.Name(c).removeprefix("CATEGORY_").lower(): c for c in KNOWN}


def name(category: int) -> str:
    return common_pb2.Category.Name(common_pb2.Category.ValueType(category)).removeprefix("CATEGORY_").lower()

"""Grouped records (publish_grouped): a group waiting to be published, its message id, and its wire encoding - one
message whose field 1 repeats the records."""

import asyncio
import contextvars
import hashlib
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from herald.libs.together import together

if TYPE_CHECKING:
    from herald.libs.bus.interfaces import Publisher

# What one grouped publish may weigh: NATS carries 1 MiB, and no single record is allowed over 512 KiB.
MAX_GROUP_BYTES = 768 * 1024
# And how many records it may hold: a consumer takes a batch of messages, all handled within the ack wait (30 s),
# so a message must stay small in work too - feedback's 500 messages of a campaign's status events were a million
# events to fold in one go, and never acknowledged in time.
MAX_GROUP_RECORDS = 100


def join_groups(
    bus: "Publisher", records: Iterable[tuple[str, bytes, str]], *, each_traced: bool = False, linger: float = 0.0
) -> Awaitable[None]:
    """Join each (subject, record, its id) to its subject's group: one publish_grouped per subject, however many
    records - a batch's thousand events or jobs cost the bus a few joins and the caller a few waits, not one each.
    Durable once the result is done; it may be awaited more than once."""
    by_subject: dict[str, list[tuple[bytes, str]]] = {}
    for subject, record, record_id in records:
        by_subject.setdefault(subject, []).append((record, record_id))
    joined = [
        bus.publish_grouped(subject, *alike, each_traced=each_traced, linger=linger)
        for subject, alike in by_subject.items()
    ]
    # None or several: one task, which - as a single group's future - may be awaited more than once.
    return joined[0] if len(joined) == 1 else asyncio.ensure_future(together(joined))


def grouped(records: Iterable[bytes]) -> bytes:
    """One message whose field 1 repeats `records` (serialized messages), without parsing them again: on the wire a
    repeated message field is its elements, each a length-delimited record of its field number."""
    return b"".join(_GROUPED_TAG + _varint(len(record)) + record for record in records)


# Field 1, wire type 2 (length-delimited).
_GROUPED_TAG = bytes([1 << 3 | 2])


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# The header of every grouped message: how many records it holds. It tells a group from a message of a subject that
# carried single records before its publishers grouped them (delivery jobs).
RECORDS_HEADER = "Herald-Records"

# Records are grouped by subject and trace id; None: any trace (records that carry their own).
GroupKey = tuple[str, int | None]


@dataclass
class Group:
    """Records waiting to be published together, with their ids, the future their publishers wait on, the
    first publisher's context, which the group's publish continues (its trace), and when it may go (loop time)."""

    records: list[tuple[bytes, str]]
    done: asyncio.Future[None]
    context: contextvars.Context
    due: float


def group_headers(records: list[tuple[bytes, str]]) -> dict[str, str]:
    """A grouped message's headers: its Nats-Msg-Id (group_id) and how many records it holds (RECORDS_HEADER)."""
    return {"Nats-Msg-Id": group_id(records), RECORDS_HEADER: str(len(records))}


def group_id(records: list[tuple[bytes, str]]) -> str:
    if len(records) == 1:
        return records[0][1]
    return hashlib.sha256("\n".join(record_id for _, record_id in records).encode()).hexdigest()[:40]

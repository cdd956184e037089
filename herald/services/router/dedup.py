"""Content de-duplication: the same rendered content to the same user on the same channel goes out once per window.

The first delivery of a content claims a KV key (a hash of user, address, channel,
template and rendered content) with its delivery id and time, by create, so two
routers cannot both win. A later delivery of that content within the window is
a duplicate; the first one redelivered after a crash finds its own id and
proceeds. Critical messages are exempt: a user asking for their login code again
must get it.
"""

import hashlib
import time

from herald.v1 import common_pb2
from nats.js.errors import KeyWrongLastSequenceError

from herald.internal.v1 import work_pb2
from herald.libs.bus import DAY, Bucket, KeyValues

BUCKET = "herald_dedup"
# Entries are kept this long at most; the window itself is configuration (HERALD_DEDUP_WINDOW_SECONDS).
BUCKET_TTL = DAY
RACES = 3


class ContentDedup:
    def __init__(self, kv: Bucket, window: float) -> None:
        self._kv = kv
        self.window = min(window, BUCKET_TTL)

    @classmethod
    async def open(cls, bus: KeyValues, window: float) -> "ContentDedup":
        return cls(await bus.key_value(BUCKET, ttl=BUCKET_TTL), window)

    async def first(self, job: work_pb2.DeliveryJob) -> bool:
        """False when this content already went to this recipient on this channel within the window."""
        if self.window <= 0 or job.category == common_pb2.CATEGORY_CRITICAL:
            return True
        key = _fingerprint(job)
        claim = f"{time.time()}|{job.delivery_id}".encode()
        for _ in range(RACES):
            try:
                await self._kv.create(key, claim)
                return True
            except KeyWrongLastSequenceError:
                pass
            entry = await self._kv.get(key)
            claimed_at, owner = (entry.value or b"0|").decode().split("|", 1)
            if owner == job.delivery_id:
                return True
            if time.time() - float(claimed_at) < self.window:
                return False
            try:
                await self._kv.update(key, claim, last=entry.revision)
                return True
            except KeyWrongLastSequenceError:
                continue
        return False


def _fingerprint(job: work_pb2.DeliveryJob) -> str:
    parts = [job.user_id, job.address, job.channel, job.template_id, job.subject, job.body, job.html_body]
    parts += [f"{k}={v}" for k, v in sorted(job.data.items())]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

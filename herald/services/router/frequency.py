"""Frequency caps: at most N deliveries per user per sliding window, exact across router replicas.

For each (rule, recipient) the deliveries counted in the window are a small log
in NATS KV - [time, delivery id] pairs - replaced by compare-and-set on the
entry's revision, so two routers cannot both take the last place. A delivery
already in the log (a redelivered job) is not counted twice. Critical traffic is
exempt unless a rule names the critical category. When several rules match, a
delivery refused by one may already count against another: caps err on the
side of sending less.
"""

import asyncio
import hashlib
import json
import time

from herald.v1 import common_pb2
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from sqlalchemy import select

from herald.internal.v1 import work_pb2
from herald.libs import categories
from herald.libs.bus import DAY, Bucket, KeyValues
from herald.libs.store import Database
from herald.services.router import tables

BUCKET = "herald_frequency"
MAX_WINDOW = 30 * DAY
RULES_CACHE_SECONDS = 5.0
RACES = 20


class FrequencyCaps:
    def __init__(self, db: Database, kv: Bucket) -> None:
        self._db = db
        self._kv = kv
        self._rules: tuple[float, list[tables.FrequencyRule]] = (0.0, [])
        self._reloading = asyncio.Lock()

    @classmethod
    async def open(cls, db: Database, bus: KeyValues) -> "FrequencyCaps":
        return cls(db, await bus.key_value(BUCKET, ttl=MAX_WINDOW + DAY))

    def forget_rules(self) -> None:
        self._rules = (0.0, [])

    async def admit(self, job: work_pb2.DeliveryJob) -> str:
        """Count this delivery against every rule it matches; why it must not go out, or "" when it may."""
        for rule in await self._matching(job):
            if reason := await self._count(rule, job):
                return reason
        return ""

    async def headroom(self, job: work_pb2.DeliveryJob) -> str:
        """What `admit` would answer now, without counting anything (for Explain)."""
        for rule in await self._matching(job):
            log, _ = await self._log(_key(rule, job))
            if len(_recent(log, rule)) >= rule.max_deliveries:
                return _refusal(rule)
        return ""

    async def _matching(self, job: work_pb2.DeliveryJob) -> list[tables.FrequencyRule]:
        loaded_at, rules = self._rules
        if time.monotonic() - loaded_at > RULES_CACHE_SECONDS:
            # One reload for every delivery of a batch that finds the cache stale, not one each.
            async with self._reloading:
                loaded_at, rules = self._rules
                if time.monotonic() - loaded_at > RULES_CACHE_SECONDS:
                    async with self._db.session() as session:
                        rules = list(await session.scalars(select(tables.FrequencyRule)))
                    self._rules = (time.monotonic(), rules)
        return [
            r
            for r in rules
            if r.category == job.category
            and r.channel in ("", job.channel)
            and r.app_id in ("", job.app_id)
            and (job.category != common_pb2.CATEGORY_CRITICAL or r.category == common_pb2.CATEGORY_CRITICAL)
        ]

    async def _count(self, rule: tables.FrequencyRule, job: work_pb2.DeliveryJob) -> str:
        key = _key(rule, job)
        for _ in range(RACES):
            log, revision = await self._log(key)
            log = _recent(log, rule)
            if any(d == job.delivery_id for _, d in log):
                return ""
            if len(log) >= rule.max_deliveries:
                return _refusal(rule)
            value = json.dumps([*log, (time.time(), job.delivery_id)]).encode()
            try:
                if revision is None:
                    await self._kv.create(key, value)
                else:
                    await self._kv.update(key, value, last=revision)
                return ""
            except KeyWrongLastSequenceError:
                continue
        raise TimeoutError(f"frequency log {key} kept changing under us")

    async def _log(self, key: str) -> tuple[list[tuple[float, str]], int | None]:
        """The [time, delivery id] pairs counted under `key`, and the entry's revision (None: no entry yet)."""
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return [], None
        return [(t, d) for t, d in json.loads(entry.value or b"[]")], entry.revision


def _key(rule: tables.FrequencyRule, job: work_pb2.DeliveryJob) -> str:
    recipient = job.user_id or job.address
    return f"{rule.rule_id}.{hashlib.sha256(recipient.encode()).hexdigest()[:40]}"


def _recent(log: list[tuple[float, str]], rule: tables.FrequencyRule) -> list[tuple[float, str]]:
    now = time.time()
    return [(t, d) for t, d in log if now - t < rule.window_seconds]


def _refusal(rule: tables.FrequencyRule) -> str:
    what = f"{rule.max_deliveries} {categories.name(rule.category)} deliveries"
    where = f" on {rule.channel}" if rule.channel else ""
    per = _duration(rule.window_seconds)
    return f"frequency cap: at most {what}{where} per {per} to this recipient (rule {rule.rule_id})"


def _duration(seconds: float) -> str:
    for unit, size in (("day", DAY), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count > 1 else ''}" if count > 1 else unit
    return f"{seconds:g}s"

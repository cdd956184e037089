"""What providers and recipients tell the adapters about receiving herald's messages, handed to the router.

A bounce, a complaint, a one-click unsubscribe, an SMS STOP or START arrives at the adapters' HTTP endpoint; the
router owns the directory and the suppression list, so each becomes a ConsentReport on herald.message.consent
(router/consent.py records it and publishes the public event). The provider or reader gets its answer only once
JetStream holds the report. A report's id is made from what it reports and the `key` that tells one notification
from the next (the provider's id of the notification or of the text), so a provider posting the same notification
again makes the same report, which JetStream and the router take once (a soft bounce is counted once).
"""

import hashlib

from herald.v1 import common_pb2, events_pb2, suppression_service_pb2

from herald.internal.v1 import work_pb2
from herald.libs import subjects
from herald.libs.bus.interfaces import Publisher
from herald.libs.timeutil import now, to_timestamp

R = suppression_service_pb2.SuppressionReason


class ConsentReporter:
    def __init__(self, bus: Publisher) -> None:
        self._bus = bus

    async def suppress(
        self, key: str, channel: str, address: str, reason: int, source: str, detail: str = "", category: int = 0
    ) -> None:
        entry = _entry(channel, address, reason, source, detail, category)
        await self._publish(work_pb2.ConsentReport(suppress=entry), key, "suppress", channel, address, category)

    async def lift(self, key: str, channel: str, address: str, reason: int, source: str) -> None:
        """Lift the address's entry of that reason (an SMS START lifts a STOP, nothing an operator added)."""
        entry = _entry(channel, address, reason, source, "", 0)
        await self._publish(work_pb2.ConsentReport(lift=entry), key, "lift", channel, address)

    async def soft_bounce(self, key: str, channel: str, address: str, source: str, detail: str) -> None:
        entry = _entry(channel, address, R.SUPPRESSION_REASON_UNSPECIFIED, source, detail, 0)
        await self._publish(work_pb2.ConsentReport(soft_bounce=entry), key, "soft_bounce", channel, address)

    async def opt_out(self, key: str, user_id: str, category: int, channel: str) -> None:
        change = events_pb2.PreferenceEvent(
            user_id=user_id, category=common_pb2.Category.ValueType(category), channel=channel, opted_out=True
        )
        await self._publish(work_pb2.ConsentReport(opt_out=change), key, "opt_out", user_id, category, channel)

    async def _publish(self, report: work_pb2.ConsentReport, *identity: object) -> None:
        digest = hashlib.sha256("\n".join(map(str, identity)).encode()).hexdigest()[:40]
        report.report_id = f"rep_{digest}"
        report.occur_time.CopyFrom(to_timestamp(now()))
        await self._bus.publish(subjects.CONSENT, report.SerializeToString(), msg_id=report.report_id)


def _entry(
    channel: str, address: str, reason: int, source: str, detail: str, category: int
) -> suppression_service_pb2.Suppression:
    return suppression_service_pb2.Suppression(
        channel=channel,
        address=address,
        category=common_pb2.Category.ValueType(category),
        reason=R.ValueType(reason),
        source=source,
        detail=detail[:1000],
    )

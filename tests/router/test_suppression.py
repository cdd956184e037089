"""The router's suppression rules, in one process: each rule's verdict, their order, and that a rule after the one
that objects is never asked (asking the dedup and frequency logs counts the delivery)."""

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format
from herald.v1 import common_pb2

from herald.internal.v1 import work_pb2
from herald.services.router import suppression, tables
from herald.services.router.recipients import Recipients

S = common_pb2
# A user's own quiet hours switched off, so the default window (22:00-08:00) never depends on when a test runs.
AWAKE = common_pb2.QuietHours(disabled=True)


class Dedup:
    """Answers `first` as told, and remembers what it was asked."""

    window = 60.0

    def __init__(self, first: bool = True) -> None:
        self.answer = first
        self.asked: list[str] = []

    async def first(self, job: work_pb2.DeliveryJob) -> bool:
        self.asked.append(job.delivery_id)
        return self.answer


class Unsuppressed:
    def reason(self, job: work_pb2.DeliveryJob) -> str:
        return ""


class Caps:
    def __init__(self, refusal: str = "") -> None:
        self.refusal = refusal
        self.asked: list[str] = []

    async def admit(self, job: work_pb2.DeliveryJob) -> str:
        self.asked.append(job.delivery_id)
        return self.refusal


def _quiet_now(now: datetime | None = None) -> common_pb2.QuietHours:
    """A window (UTC) that started an hour before `now` (the time the test asks) and ends about an hour after it."""
    now = now or datetime.now(UTC)
    return common_pb2.QuietHours(
        start=(now - timedelta(hours=1)).strftime("%H:%M"), end=(now + timedelta(hours=1)).strftime("%H:%M")
    )


def _user(
    *,
    addresses: dict[str, str] | None = None,
    quiet: common_pb2.QuietHours | None = AWAKE,
    timezone: str = "UTC",
    dead: dict[str, Any] | None = None,
) -> tables.User:
    return tables.User(
        user_id="u1",
        addresses=addresses or {},
        timezone=timezone,
        locale="",
        update_time=datetime.now(UTC),
        quiet_hours=json_format.MessageToDict(quiet) if quiet is not None else None,
        dead_addresses=dead,
        preferred_channel="",
    )


def _job(
    channel: str = "webhook",
    category: common_pb2.Category.ValueType = S.CATEGORY_NOTIFICATION,
    address: str = "https://example.com/hook",
    expire_at: datetime | None = None,
) -> work_pb2.DeliveryJob:
    job = work_pb2.DeliveryJob(
        delivery_id="d1", user_id="u1", channel=channel, category=category, address=address, body="hello"
    )
    if expire_at is not None:
        job.expire_at.FromDatetime(expire_at)
    return job


async def _verdict(
    job: work_pb2.DeliveryJob,
    user: tables.User | None = None,
    opted_out: bool = False,
    dedup: Dedup | None = None,
    caps: Caps | None = None,
) -> suppression.Verdict | None:
    preferences = {"u1": {(int(job.category), ""): True}} if opted_out else {}
    recipients = Recipients({"u1": user} if user else {}, preferences)
    return await suppression.verdict(
        job, suppression.Facts(recipients, Unsuppressed(), dedup or Dedup(), caps or Caps())
    )


def test_the_rules_are_asked_in_routings_order_with_their_reason_codes() -> None:
    assert [(r.name.split(" (")[0], r.code) for r in suppression.RULES] == [
        ("expired", ""),
        ("opted out", "opted_out"),
        ("no address", "no_address"),
        ("address on the suppression list", "suppressed"),
        ("duplicate content", "duplicate"),
        ("frequency cap", "frequency_cap"),
        ("quiet hours", ""),
    ]


async def test_a_delivery_nothing_objects_to_goes_out_after_counting_in_both_logs() -> None:
    dedup, caps = Dedup(), Caps()
    assert await _verdict(_job(), _user(), dedup=dedup, caps=caps) is None
    assert dedup.asked == caps.asked == ["d1"]


async def test_an_expired_delivery_is_settled_before_anything_else_is_asked() -> None:
    dedup, caps = Dedup(first=False), Caps("capped")
    expired = _job(expire_at=datetime.now(UTC) - timedelta(seconds=1))
    found = await _verdict(expired, None, opted_out=True, dedup=dedup, caps=caps)
    assert found == suppression.Settle(S.DELIVERY_STATE_EXPIRED, "expire_at passed before routing")
    assert dedup.asked == caps.asked == []


async def test_an_opt_out_leaves_the_channel_unusable_without_counting_it() -> None:
    dedup, caps = Dedup(), Caps()
    found = await _verdict(_job(category=S.CATEGORY_MARKETING), _user(), opted_out=True, dedup=dedup, caps=caps)
    assert found == suppression.Unusable("opted_out", "user 'u1' opted out of marketing messages on every channel")
    assert dedup.asked == caps.asked == []


async def test_critical_cannot_be_opted_out_of() -> None:
    assert await _verdict(_job(category=S.CATEGORY_CRITICAL), _user(), opted_out=True) is None


async def test_no_address_is_unusable_and_names_where_herald_looked() -> None:
    found = await _verdict(_job(address=""), _user())
    assert found == suppression.Unusable(
        "no_address", "no webhook address: none in the request and none in the directory for user 'u1'"
    )
    anonymous = _job(address="")
    anonymous.user_id = ""
    assert await _verdict(anonymous) == suppression.Unusable("no_address", "no webhook address: none in the request")


async def test_a_dead_address_is_no_address_and_says_when_it_was_reported() -> None:
    hook = "https://example.com/gone"
    dead = {"webhook": {"address": hook, "reason": "410 Gone", "time": "2026-01-02T03:04:05Z"}}
    found = await _verdict(_job(address=""), _user(addresses={"webhook": hook}, dead=dead))
    assert found == suppression.Unusable(
        "no_address",
        "no webhook address: none in the request, and the directory's was reported dead at 2026-01-02T03:04:05Z: "
        "410 Gone",
    )


async def test_a_duplicate_is_suppressed_before_the_frequency_cap_counts_it() -> None:
    caps = Caps("over the cap")
    found = await _verdict(_job(), _user(), dedup=Dedup(first=False), caps=caps)
    assert found == suppression.Settle(
        S.DELIVERY_STATE_SUPPRESSED,
        "duplicate: the same content went to this recipient on webhook within the last 60s",
        "duplicate",
    )
    assert caps.asked == []


async def test_a_capped_delivery_is_suppressed_with_the_caps_reason_before_quiet_hours_hold_it() -> None:
    found = await _verdict(_job(), _user(quiet=_quiet_now()), caps=Caps("at most 3 per 1h"))
    assert found == suppression.Settle(S.DELIVERY_STATE_SUPPRESSED, "at most 3 per 1h", "frequency_cap")


async def test_quiet_hours_hold_until_the_window_ends_after_counting_in_both_logs() -> None:
    dedup, caps, now = Dedup(), Caps(), datetime.now(UTC)
    found = await _verdict(_job(), _user(quiet=_quiet_now(now)), dedup=dedup, caps=caps)
    end = (now + timedelta(hours=1)).replace(second=0, microsecond=0)
    assert found == suppression.Hold(end, f"quiet hours: held until {end.strftime('%H:%M')} UTC")
    assert dedup.asked == caps.asked == ["d1"]


async def test_the_apps_quiet_hours_apply_to_a_user_without_their_own() -> None:
    job = _job(category=S.CATEGORY_MARKETING)
    job.quiet_hours.CopyFrom(_quiet_now())
    assert isinstance(await _verdict(job, _user(quiet=None)), suppression.Hold)
    assert await _verdict(job, _user(quiet=AWAKE)) is None
    job.quiet_hours.CopyFrom(AWAKE)
    assert await _verdict(job, _user(quiet=None)) is None


async def test_quiet_hours_need_a_known_time_zone_and_spare_critical() -> None:
    quiet = _quiet_now()
    assert await _verdict(_job(), _user(quiet=quiet, timezone="")) is None
    assert await _verdict(_job(category=S.CATEGORY_CRITICAL), _user(quiet=quiet)) is None


async def test_a_delivery_whose_quiet_hours_end_after_its_expiry_expires() -> None:
    now = datetime.now(UTC)
    found = await _verdict(_job(expire_at=now + timedelta(minutes=5)), _user(quiet=_quiet_now(now)))
    end = (now + timedelta(hours=1)).replace(second=0, microsecond=0)
    assert found == suppression.Settle(
        S.DELIVERY_STATE_EXPIRED, f"quiet hours until {end.strftime('%H:%M')} UTC end after expire_at"
    )


def test_an_inbox_item_does_not_wake_a_user_in_quiet_hours_or_opted_out_of_push() -> None:
    def inbox() -> work_pb2.DeliveryJob:
        job = _job(channel="inbox", address="u1")
        job.wake.CopyFrom(_job(channel="apns", address="a" * 64))
        return job

    awake = inbox()
    suppression.without_unwanted_wake(awake, Recipients({"u1": _user()}, {}))
    assert awake.HasField("wake")
    for recipients in (
        Recipients({"u1": _user(quiet=_quiet_now())}, {}),
        Recipients({"u1": _user()}, {"u1": {(S.CATEGORY_NOTIFICATION, "apns"): True}}),
    ):
        asleep = inbox()
        suppression.without_unwanted_wake(asleep, recipients)
        assert not asleep.HasField("wake")

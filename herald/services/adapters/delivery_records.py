"""The deliverer's SQL: delivery records (adapters_deliveries) read for a batch, marked in flight before a call,
written with each outcome; and the escalation stop checks (was an earlier delivery read or delivered?)."""

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from herald.libs.store import Database
from herald.libs.timeutil import now
from herald.services.adapters import tables
from herald.services.adapters.attempt import Attempt, Result, S

# Beyond the call's own timeout, how long an in-flight mark is trusted before it counts as a crash.
IN_FLIGHT_MARGIN = timedelta(seconds=5)
DELIVERIES = tables.Base.metadata.tables["adapters_deliveries"]


# Built once: a statement built per read coerced each delivery id anew (as the router's directory.USERS).
RECORDS = select(tables.Delivery).where(tables.Delivery.delivery_id.in_(bindparam("ids", expanding=True)))


async def load(db: Database, delivery_ids: Iterable[str]) -> dict[str, tables.Delivery]:
    async with db.session() as session:
        rows = await session.scalars(RECORDS, {"ids": list(set(delivery_ids))})
        return {r.delivery_id: r for r in rows}


async def stopped(db: Database, steps: list[Attempt]) -> dict[str, str]:
    """Escalation steps that must not go out, and why: a delivery before them was read or delivered."""
    if not steps:
        return {}
    earlier = {d for step in steps for d in step.job.stop_on}
    async with db.session() as session:
        read = await session.execute(
            select(tables.InboxItem.delivery_id, tables.InboxItem.read_time).where(
                tables.InboxItem.delivery_id.in_(earlier), tables.InboxItem.read_time.is_not(None)
            )
        )
        delivered = await session.execute(
            select(tables.Delivery.delivery_id, tables.Delivery.delivered_time).where(
                tables.Delivery.delivery_id.in_(earlier), tables.Delivery.delivered_time.is_not(None)
            )
        )
    seen = {d: f"read at {at.isoformat(timespec='seconds')}" for d, at in read if at}
    seen |= {d: f"delivered at {at.isoformat(timespec='seconds')}" for d, at in delivered if at}
    found = {}
    for step in steps:
        if earlier_one := next((d for d in step.job.stop_on if d in seen), None):
            found[step.job.delivery_id] = f"escalation stopped: {earlier_one} was {seen[earlier_one]}"
    return found


async def mark_in_flight(db: Database, attempts: list[Attempt]) -> None:
    """Mark each planned call in flight, in one transaction: no provider is called before that mark is durable."""
    if not attempts:
        return
    async with db.session.begin() as session:
        records = await _records(session, attempts)
        for record, attempt in zip(records, attempts, strict=True):
            assert attempt.call is not None, "only planned calls are marked"
            call = attempt.call
            deadline = timedelta(seconds=call.wait + call.route.account.timeout) + IN_FLIGHT_MARGIN
            record.state = S.DELIVERY_STATE_PENDING
            record.attempts = call.attempt
            record.provider = call.route.account.name
            record.sending_until = now() + deadline
            record.update_time = now()


async def store(db: Database, attempts: list[Attempt]) -> None:
    """Record the outcomes: in one bulk insert for deliveries with no record yet (the common case: a first attempt
    to a provider that needs no in-flight mark), through their records for the others. Should another replica have
    recorded one of those meanwhile, the whole batch goes through the records."""
    first = [a for a in attempts if a.record is None and not a.marks_in_flight]
    if first:
        try:
            async with db.session.begin() as session:
                await db.insert_rows(session, DELIVERIES, [_first_record(a) for a in first])
                await _update(session, [a for a in attempts if a.record is not None or a.marks_in_flight])
            return
        except IntegrityError:
            pass
    async with db.session.begin() as session:
        await _update(session, attempts)


async def _update(session: AsyncSession, attempts: list[Attempt]) -> None:
    if not attempts:
        return
    records = await _records(session, attempts)
    for record, attempt in zip(records, attempts, strict=True):
        for column, value in _outcome(attempt.result).items():
            setattr(record, column, value)


def _identity(attempt: Attempt) -> dict[str, object]:
    """Who and what the delivery is, and the trace it was first handled in: a record's columns that never change."""
    job = attempt.job
    return {
        "delivery_id": job.delivery_id,
        "message_id": job.message_id,
        "app_id": job.app_id,
        "template_id": job.template_id,
        "category": job.category,
        "user_id": job.user_id,
        "channel": job.channel,
        "traceparent": attempt.traceparent,
    }


def _outcome(result: Result) -> dict[str, object]:
    """A record's columns as an outcome leaves them."""
    return {
        "state": result.state,
        "attempts": result.attempts,
        "provider": result.provider,
        "provider_message_id": result.provider_message_id,
        "last_error": result.reason,
        "dead_letter": result.dead,
        "address_dead": result.address_dead,
        "may_fall_back": result.may_fall_back,
        "sending_until": None,
        "retry_time": None if result.retry_in is None else now() + timedelta(seconds=result.retry_in),
        "update_time": now(),
    }


def _first_record(attempt: Attempt) -> dict[str, object]:
    """The record of a delivery's first outcome, as _records would create it and _update fill it."""
    return _identity(attempt) | _outcome(attempt.result) | {"replay": attempt.job.replay, "cycle_start": 0}


async def _records(session: AsyncSession, attempts: list[Attempt]) -> list[tables.Delivery]:
    """The attempts' records, locked for this transaction, in their order: created where missing, and starting a
    new cycle where a job is a replay the record has not seen."""
    ids = [a.job.delivery_id for a in attempts]
    rows = await session.scalars(select(tables.Delivery).where(tables.Delivery.delivery_id.in_(ids)).with_for_update())
    found = {r.delivery_id: r for r in rows}
    records = []
    for attempt in attempts:
        record = found.get(attempt.job.delivery_id)
        if record is None:
            record = tables.Delivery(
                **_identity(attempt),
                state=S.DELIVERY_STATE_PENDING,
                attempts=0,
                provider="",
                provider_message_id="",
                last_error="",
                update_time=now(),
                replay=0,
                cycle_start=0,
                dead_letter=False,
                address_dead=False,
                may_fall_back=True,
            )
            session.add(record)
        if attempt.job.replay > record.replay:
            record.replay, record.cycle_start = attempt.job.replay, record.attempts
        records.append(record)
    return records

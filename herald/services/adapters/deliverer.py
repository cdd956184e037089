"""The adapters' consumer: one durable consumer per category and channel, so neither a slow channel nor a
flood of marketing stalls anything else.

Jobs come grouped (libs/delivery_jobs.py): a fetched batch is many messages of many jobs each. For each batch:
1. Read the delivery records. A job whose record is final re-publishes that outcome (same event id) and is
   acked: the provider is not called again. A job whose delivery another batch of this process has in hand (a
   copy queued again) comes back shortly (retry_policy.in_hand_elsewhere) and finds that batch's outcome.
2. Plan each job. A record still marked in flight past its deadline means a process died during the provider
   call, so the provider may have taken the delivery: a provider that de-duplicates on our key (the delivery
   id) gets the same call again; any other is not called again - the delivery is FAILED with "outcome
   unknown" and dead-lettered, for an operator to replay on purpose. Otherwise an account is chosen (priority,
   weight, circuit breaker) and its rate limit paced, across every adapters process (herald/libs/rate_limit.py).
3. Mark every planned call in flight, in one transaction: no provider is called before that mark is durable.
   Calls to providers that de-duplicate on our key are not marked; a crash leads to the same call again.
4. Call the providers concurrently.
5. Record every outcome in one transaction, then publish the status events, dead letters and fallbacks, then
   ack each message whose jobs are all settled. A message with a job to retry is nak'ed with that job's delay
   (JetStream holds it until then); when it comes back, its jobs settled meanwhile find their outcome on record,
   and a job whose own retry is not due yet (a longer delay than its neighbour's) waits again (retry_policy.not_due).

Each job is one `Attempt` (attempt.py) from step 1 to 5. What an outcome is without the provider's say, or after
a failed call, is the retry policy (retry_policy.py); the SQL is in delivery_records.py, what follows an outcome
on the bus in outcome_publisher.py, the metrics in delivery_metrics.py.
"""

import asyncio
import time
from collections.abc import Mapping
from datetime import datetime

import structlog
from herald.v1 import common_pb2

from herald.internal.v1 import work_pb2
from herald.libs import delivery_jobs
from herald.libs.bus import ACK, Incoming, Outcome, record_span
from herald.libs.bus.interfaces import Publisher
from herald.libs.masking import mask
from herald.libs.rate_limit import RateLimiter
from herald.libs.store import Database
from herald.libs.timeutil import now
from herald.services.adapters import delivery_metrics, delivery_records, outcome_publisher, retry_policy
from herald.services.adapters.accounts import Accounts, Price
from herald.services.adapters.attempt import FINAL, Answer, Attempt, Call, Result, S
from herald.services.adapters.channels.base import DeliveryError, Failure
from herald.services.adapters.tracking import Tracker
from herald.services.adapters.unsubscribe import Unsubscriber

log = structlog.get_logger()

# Longest a call waits in process for its account's rate limit; a longer wait naks the job until then.
MAX_PACING_WAIT = 2.0


class Deliverer:
    def __init__(
        self,
        db: Database,
        bus: Publisher,
        accounts: Accounts,
        backoff: Mapping[common_pb2.Category.ValueType, retry_policy.Backoff],
        limiter: RateLimiter,
        tracker: Tracker,
        unsubscriber: Unsubscriber,
    ) -> None:
        self._tracker = tracker
        self._unsubscriber = unsubscriber
        self._db = db
        self._bus = bus
        self._accounts = accounts
        self._backoff = backoff
        self._limiter = limiter
        # The deliveries the batches in hand are working on: a consumer holds two at once (main.JOBS_IN_HAND).
        self._in_hand: set[str] = set()

    async def handle(self, batch: list[Incoming]) -> list[Outcome]:
        held = [delivery_jobs.read(i.data, i.headers) for i in batch]
        # A delivery another batch has in hand (the router queued its job again: a redelivered message, a Send
        # repeated with its idempotency key) waits for that batch's outcome: a provider that takes no in-flight
        # mark (one that de-duplicates on our key) would otherwise be called twice at once.
        ids = {j.delivery_id for jobs in held for j in jobs}
        mine = ids - self._in_hand
        self._in_hand |= mine
        # A job repeated within the batch is settled by its first copy; each is worked on in its own trace.
        by_delivery: dict[str, Attempt] = {}
        try:
            records = await delivery_records.load(self._db, mine)
            for incoming, jobs in zip(batch, held, strict=True):
                for j in jobs:
                    if j.delivery_id not in by_delivery:
                        span = record_span(incoming, j.traceparent)
                        by_delivery[j.delivery_id] = Attempt(incoming, j, records.get(j.delivery_id), span)
            for key in ids - mine:
                by_delivery[key].outcome = retry_policy.in_hand_elsewhere()
            attempts = [a for key, a in by_delivery.items() if key in mine]
            _name_in_traces(attempts)
            await self._deliver(attempts)
        finally:
            self._in_hand -= mine
            for a in by_delivery.values():
                if a.span is not a.incoming.span:
                    a.span.end()
        return [
            _settled([a for j in jobs if (a := by_delivery[j.delivery_id]).incoming is incoming])
            for incoming, jobs in zip(batch, held, strict=True)
        ]

    async def _deliver(self, attempts: list[Attempt]) -> None:
        """Steps 2 to 5 of the module's docstring, but the acks."""
        stopped = await delivery_records.stopped(self._db, [a for a in attempts if a.job.stop_on])
        for a in attempts:
            await self._plan(a, stopped.get(a.job.delivery_id, ""))
        await delivery_records.mark_in_flight(self._db, [a for a in attempts if a.marks_in_flight])
        await asyncio.gather(*(self._settle(a) for a in attempts))
        await delivery_records.store(self._db, [a for a in attempts if a.result.new])
        delivery_metrics.observe(attempts)
        await asyncio.gather(*outcome_publisher.publish(self._bus, attempts, self._price))

    async def _plan(self, attempt: Attempt, stop: str) -> None:
        """Settle the attempt at once, or plan its call."""
        job, record = attempt.job, attempt.record
        if record is not None and not retry_policy.replayed(job, record):
            if record.state in FINAL:
                attempt.outcome = retry_policy.on_record(record)
                return
            if record.sending_until is not None:
                self._resume(attempt, record.sending_until)
                return
            if (waiting := retry_policy.not_due(record, now())) is not None:
                attempt.outcome = waiting
                return
        attempts = record.attempts if record else 0
        cycle_start = retry_policy.cycle_start(job, record)
        if (ended := retry_policy.before_call(job, attempts, stop, now())) is not None:
            attempt.outcome = ended
            return
        try:
            route = self._accounts.choose(job.channel, job.address, job.category)
        except DeliveryError as e:  # no account to try: an operator can add one and replay the dead letter
            _log_failure(job, attempts + 1, e)
            attempt.outcome = retry_policy.no_account(
                job, cycle_start, attempts + 1, e, self._backoff[job.category], now()
            )
            return
        wait = 0.0
        if route.rate > 0:
            wait = await self._limiter.reserve(f"account.{route.account.name}", route.rate, MAX_PACING_WAIT)
            if wait > MAX_PACING_WAIT:
                if route.breaker is not None:
                    route.breaker.cancel()
                attempt.outcome = retry_policy.paced(route.account.name, attempts, wait)
                return
        attempt.call = Call(route, attempts + 1, cycle_start, wait)

    def _resume(self, attempt: Attempt, sending_until: datetime) -> None:
        """A record marked in flight: another call is under way, or a process died during one."""
        record = attempt.record
        assert record is not None
        if (waiting := retry_policy.in_flight(record, sending_until, now())) is not None:
            attempt.outcome = waiting
            return
        route = self._accounts.named(record.provider)
        if route is not None and route.provider.idempotent:
            attempt.call = Call(route, record.attempts, record.cycle_start)
        else:
            attempt.outcome = retry_policy.unknown_outcome(record)

    async def _settle(self, attempt: Attempt) -> None:
        result = attempt.outcome if attempt.call is None else await self._call(attempt, attempt.call)
        assert result is not None, "an attempt is planned into a call or settled"
        attempt.outcome = retry_policy.with_fallback_reason(attempt.job, result)

    async def _call(self, attempt: Attempt, call: Call) -> Result:
        job, route = attempt.job, call.route
        if call.wait:
            await asyncio.sleep(call.wait)
        with attempt.active():
            started = time.perf_counter()
            try:
                sent = await route.provider.send(self._as_sent(job))
            except DeliveryError as e:
                error = e
            except Exception:  # a bug in a provider plug-in: retry it like an outage, and say so
                log.exception("provider plug-in raised", provider=route.account.provider, delivery_id=job.delivery_id)
                error = DeliveryError(f"internal error in the {route.account.provider} plug-in", Failure.RETRYABLE)
            else:
                attempt.answer = Answer("sent", time.perf_counter() - started)
                if route.breaker is not None:
                    route.breaker.succeeded()
                return Result(S.DELIVERY_STATE_SENT, call.attempt, route.account.name, sent.provider_message_id)
        attempt.answer = Answer(error.failure.value, time.perf_counter() - started)
        if route.breaker is not None:
            if error.failure in (Failure.RETRYABLE, Failure.BAD_CREDENTIALS):
                route.breaker.failed(at_once=error.failure is Failure.BAD_CREDENTIALS)
            else:  # the provider answered: it is up
                route.breaker.succeeded()
        _log_failure(job, call.attempt, error)
        backoff = self._backoff[job.category]
        return retry_policy.after_failure(
            job, call.cycle_start, call.attempt, route.account.name, error, backoff, now()
        )

    def _as_sent(self, job: work_pb2.DeliveryJob) -> work_pb2.DeliveryJob:
        """The job as its provider gets it: an e-mail's HTML tracked and its unsubscribe URL added - in one copy,
        made only when one of them applies."""
        html, unsubscribe = self._tracker.tracked_html(job), self._unsubscriber.url_for(job)
        if html == job.html_body and not unsubscribe:
            return job
        sent = work_pb2.DeliveryJob()
        sent.CopyFrom(job)
        sent.html_body = html
        if unsubscribe:
            sent.list_unsubscribe_url = unsubscribe
        return sent

    def _price(self, result: Result) -> Price:
        return self._accounts.price(result.provider) if result.state == S.DELIVERY_STATE_SENT else Price()


def _name_in_traces(attempts: list[Attempt]) -> None:
    """So that ops find a delivery's trace in Jaeger from its ids: each recorded span names the delivery worked on
    in it, or, for several, the message they all belong to (one message's recipients)."""
    by_span: dict[int, list[Attempt]] = {}
    for a in attempts:
        if a.span.is_recording():
            by_span.setdefault(id(a.span), []).append(a)
    for together in by_span.values():
        span, jobs = together[0].span, [a.job for a in together]
        if len(jobs) == 1:
            span.set_attributes({"herald.message_id": jobs[0].message_id, "herald.delivery_id": jobs[0].delivery_id})
            continue
        span.set_attribute("messaging.batch.message_count", len(jobs))
        if len(messages := {j.message_id for j in jobs}) == 1:
            span.set_attribute("herald.message_id", messages.pop())


def _settled(attempts: list[Attempt]) -> Outcome:
    """A message's outcome from its jobs' (those it carried first): acked once none is left to retry, else
    redelivered when the soonest retry is due."""
    waits = [a.result.retry_in for a in attempts if a.result.retry_in is not None]
    return min(waits) if waits else ACK


def _log_failure(job: work_pb2.DeliveryJob, attempt: int, error: DeliveryError) -> None:
    log.info("attempt failed", delivery_id=job.delivery_id, attempt=attempt, reason=mask(error.reason))

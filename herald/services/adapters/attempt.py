"""What the deliverer carries for each job of a batch: one `Attempt`, from the job's record through the call
planned (`Call`) to its outcome (`Result`), so every step reads and fills the same object."""

from contextlib import AbstractContextManager
from dataclasses import dataclass

from herald.v1 import common_pb2
from opentelemetry import trace

from herald.internal.v1 import work_pb2
from herald.libs import telemetry
from herald.libs.bus import Incoming
from herald.services.adapters import tables
from herald.services.adapters.accounts import Route

S = common_pb2
# States a delivery never leaves: a job on record in one of them is not sent again.
FINAL = frozenset(
    {S.DELIVERY_STATE_SENT, S.DELIVERY_STATE_FAILED, S.DELIVERY_STATE_EXPIRED, S.DELIVERY_STATE_CANCELLED}
)


@dataclass(frozen=True)
class Result:
    state: common_pb2.DeliveryState.ValueType
    attempts: int
    provider: str = ""
    provider_message_id: str = ""
    reason: str = ""
    # Set while retrying: redeliver the job after this many seconds.
    retry_in: float | None = None
    # False when nothing new happened: the outcome is already on record, or the job only waits.
    new: bool = True
    # Goes to the dead-letter stream (FAILED after its retries, or with an unknown outcome).
    dead: bool = False
    # The template's fallback may take over (not when the provider may have taken it after all).
    may_fall_back: bool = True
    # The provider said the address no longer exists: the directory should stop using it.
    address_dead: bool = False


@dataclass(frozen=True)
class Call:
    route: Route
    attempt: int
    # `attempts` when this retry cycle began (a replay from the dead letters starts a new one).
    cycle_start: int
    # Seconds to wait for the account's rate limit before calling.
    wait: float = 0.0


@dataclass(frozen=True)
class Answer:
    """How a provider call ended (delivery_metrics): its outcome (sent, or the failure's kind) and its seconds."""

    outcome: str
    seconds: float


@dataclass
class Attempt:
    """One job of a fetched batch: planned into a `call` or settled at once, then given its `outcome`."""

    incoming: Incoming
    job: work_pb2.DeliveryJob
    # The delivery's record when the batch was read; None for a first attempt.
    record: tables.Delivery | None
    # Where the job is worked on: its message's span, or one of its own trace (bus.record_span).
    span: trace.Span
    call: Call | None = None
    answer: Answer | None = None
    outcome: Result | None = None

    def active(self) -> AbstractContextManager[trace.Span]:
        """The job's span as the current one: what its provider call and its outcome's publishes continue."""
        return trace.use_span(self.span, end_on_exit=False)

    @property
    def traceparent(self) -> str:
        """Where the job's trace is, kept on its record for the receipts that come long after."""
        return telemetry.traceparent(self.span)

    @property
    def result(self) -> Result:
        """The outcome, once settled."""
        assert self.outcome is not None, f"{self.job.delivery_id} read before it was settled"
        return self.outcome

    @property
    def marks_in_flight(self) -> bool:
        """A call to a provider that does not de-duplicate on our key: marked in flight before it is made (a
        provider that does needs no mark: after a crash it simply gets the same call again)."""
        return self.call is not None and not self.call.route.provider.idempotent

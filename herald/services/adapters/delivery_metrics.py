"""What SREs alert on in delivery: per provider account, how its calls end and how long they take; per channel,
what each attempt came to."""

from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import Counter, Histogram

from herald.libs import categories, events, metrics
from herald.services.adapters.attempt import Attempt, S

PROVIDER_CALLS = Counter(
    "herald_provider_calls_total",
    "Provider calls by account and outcome: sent, retryable, permanent, rate_limited, bad_credentials, dead_address.",
    ["account", "outcome"],
)
PROVIDER_CALL_SECONDS = metrics.BatchHistogram(
    "herald_provider_call_seconds",
    "How long provider calls take, by channel and account.",
    ["channel", "account"],
    Histogram.DEFAULT_BUCKETS[:-1],  # +Inf is every histogram's last
)
# Sent, failed (for good), expired, retrying; dead_lettered counts the failed ones kept for an operator's replay.
DELIVERIES = Counter(
    "herald_adapters_deliveries_total",
    "Delivery attempts' outcomes by channel and category: sent, failed, expired, retrying, dead_lettered.",
    ["channel", "category", "outcome"],
)


def observe(attempts: Sequence[Attempt]) -> None:
    """Count a batch's provider calls and new outcomes (one already on record was counted when it happened), each
    set of labels once: prometheus_client's cost per increment is paid per label set, not per delivery."""
    calls: Tally[tuple[str, str]] = Tally()
    seconds: dict[tuple[str, str], list[float]] = {}
    outcomes: Tally[tuple[str, str, str]] = Tally()
    for a in attempts:
        job = a.job
        if a.call is not None and a.answer is not None:
            account = a.call.route.account.name
            calls[(account, a.answer.outcome)] += 1
            seconds.setdefault((job.channel, account), []).append(a.answer.seconds)
        result = a.result
        if not result.new:
            continue
        outcome = "retrying" if result.state == S.DELIVERY_STATE_PENDING else events.state_name(result.state)
        category = categories.name(job.category)
        outcomes[(job.channel, category, outcome)] += 1
        if result.dead:
            outcomes[(job.channel, category, "dead_lettered")] += 1
    for (account, outcome), n in calls.items():
        metrics.child(PROVIDER_CALLS, account, outcome).inc(n)
    for channel_account, taken in seconds.items():
        PROVIDER_CALL_SECONDS.observe(channel_account, taken)
    for channel_category_outcome, n in outcomes.items():
        metrics.child(DELIVERIES, *channel_category_outcome).inc(n)

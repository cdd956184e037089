"""What SREs alert on in delivery: per provider account, how its calls end and how long they take; per channel,
what each attempt came to."""

from prometheus_client import Counter, Histogram

from herald.libs import categories, events, metrics
from herald.services.adapters.accounts import Route
from herald.services.adapters.attempt import Attempt, S

PROVIDER_CALLS = Counter(
    "herald_provider_calls_total",
    "Provider calls by account and outcome: sent, retryable, permanent, rate_limited, bad_credentials, dead_address.",
    ["account", "outcome"],
)
PROVIDER_CALL_SECONDS = Histogram(
    "herald_provider_call_seconds", "How long provider calls take, by channel and account.", ["channel", "account"]
)
# Sent, failed (for good), expired, retrying; dead_lettered counts the failed ones kept for an operator's replay.
DELIVERIES = Counter(
    "herald_adapters_deliveries_total",
    "Delivery attempts' outcomes by channel and category: sent, failed, expired, retrying, dead_lettered.",
    ["channel", "category", "outcome"],
)


def observe_call(route: Route, channel: str, seconds: float, outcome: str) -> None:
    metrics.child(PROVIDER_CALL_SECONDS, channel, route.account.name).observe(seconds)
    metrics.child(PROVIDER_CALLS, route.account.name, outcome).inc()


def count(attempt: Attempt) -> None:
    """Count a new outcome (one already on record was counted when it happened)."""
    job, result = attempt.job, attempt.result
    outcome = "retrying" if result.state == S.DELIVERY_STATE_PENDING else events.state_name(result.state)
    category = categories.name(job.category)
    metrics.child(DELIVERIES, job.channel, category, outcome).inc()
    if result.dead:
        metrics.child(DELIVERIES, job.channel, category, "dead_lettered").inc()

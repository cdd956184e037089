"""A histogram observed a batch at a time reads, once scraped, as prometheus_client's own would."""

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest

from herald.libs.metrics import BatchHistogram

BOUNDS = (0.1, 1.0, 10.0)
VALUES = (0.05, 0.1, 0.5, 1.0, 2.0, 50.0)


def test_a_batch_observed_at_once_scrapes_as_the_same_values_observed_one_by_one() -> None:
    batched = BatchHistogram("test_batched_seconds", "A test.", ["channel"], BOUNDS)
    try:
        batched.observe(("sms",), VALUES[:3])
        batched.observe(("sms",), VALUES[3:])
        batched.observe(("email",), [0.2])
        own = CollectorRegistry()
        one_by_one = Histogram("test_batched_seconds", "A test.", ["channel"], buckets=BOUNDS, registry=own)
        for value in VALUES:
            one_by_one.labels("sms").observe(value)
        one_by_one.labels("email").observe(0.2)

        def samples(text: bytes) -> set[str]:
            return {line for line in text.decode().splitlines() if line and "_created" not in line}

        assert samples(generate_latest(REGISTRY)) >= samples(generate_latest(own))
        assert 'test_batched_seconds_bucket{channel="sms",le="1.0"} 4.0' in samples(generate_latest(REGISTRY))
    finally:
        REGISTRY.unregister(batched)


def test_one_without_labels_is_exposed_before_anything_is_observed() -> None:
    batched = BatchHistogram("test_unlabelled_seconds", "A test.", (), BOUNDS)
    try:
        assert "test_unlabelled_seconds_count 0.0" in generate_latest(REGISTRY).decode()
    finally:
        REGISTRY.unregister(batched)

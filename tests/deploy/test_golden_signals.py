"""After a mixed run (tests/deploy/conftest.py), each binary's /metrics has the golden signals an SRE reads, with
exactly the run's counts, and passes `promtool check metrics`."""

import subprocess

import pytest

from devmesh.mesh import SERVICES
from herald.libs import categories
from tests.deploy.conftest import BURST, MixedRun
from tests.deploy.monitoring import promtool
from tests.helpers.metrics import samples, total

# The package's mixed run and rendered manifests are set up once per worker: its tests share one.
pytestmark = pytest.mark.xdist_group("deploy")

# Notifications retry 3 times in the test mesh (tests/conftest.py, RETRY_BACKOFF), then are dead-lettered.
RETRIES = 3


@pytest.mark.parametrize("service", [*SERVICES, "gateway"])
def test_metrics_pass_promtool(mixed_run: MixedRun, service: str) -> None:
    checked = subprocess.run(
        [promtool(), "check", "metrics"], input=mixed_run.metrics[service], capture_output=True, text=True, check=False
    )
    # Exit 0 and not even a lint warning (names, units, HELP text).
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def test_every_binary_counts_its_rpcs_by_method_and_code(mixed_run: MixedRun) -> None:
    intake = samples(mixed_run.metrics["intake"])
    send = {"grpc_service": "herald.v1.MessageService", "grpc_method": "Send", "grpc_type": "unary"}
    ok = 7 + mixed_run.limited_accepted
    assert total(intake, "grpc_server_handled_total", **send, grpc_code="OK") == ok
    assert total(intake, "grpc_server_handled_total", **send, grpc_code="INVALID_ARGUMENT") == 1
    assert total(intake, "grpc_server_handled_total", **send, grpc_code="PERMISSION_DENIED") == 1
    assert total(intake, "grpc_server_handled_total", **send, grpc_code="RESOURCE_EXHAUSTED") == (
        mixed_run.limited_refused
    )
    calls = ok + 2 + mixed_run.limited_refused
    assert total(intake, "grpc_server_started_total", **send) == calls
    assert total(intake, "grpc_server_handling_seconds_count", **send) == calls
    assert total(intake, "grpc_server_handling_seconds_bucket", **send, le="+Inf") == calls
    for service, method in (
        ("router", "ExplainRouting"),
        ("adapters", "CreateProviderAccount"),
        ("feedback", "GetMessage"),
    ):
        found = samples(mixed_run.metrics[service])
        assert total(found, "grpc_server_handled_total", grpc_method=method, grpc_code="OK") >= 1, service
        assert total(found, "grpc_server_handling_seconds_count", grpc_method=method) >= 1, service


def test_the_gateway_counts_its_calls_by_procedure_and_code(mixed_run: MixedRun) -> None:
    gateway = samples(mixed_run.metrics["gateway"])
    get = {"procedure": "herald.v1.StatusService/GetMessage"}
    send = {"procedure": "herald.v1.MessageService/Send"}
    assert total(gateway, "herald_gateway_requests_handled_total", **get, code="ok") == 1
    assert total(gateway, "herald_gateway_requests_handled_total", **send, code="invalid_argument") == 1
    assert total(gateway, "herald_gateway_requests_handled_total") == 2
    assert total(gateway, "herald_gateway_requests_started_total") == 2
    assert total(gateway, "herald_gateway_handling_seconds_count", **get) == 1
    assert total(gateway, "herald_gateway_requests_in_flight") == 0


def test_intake_counts_messages_accepted_by_app_and_category_and_refused_by_reason(mixed_run: MixedRun) -> None:
    intake = samples(mixed_run.metrics["intake"])
    accepted = "herald_intake_messages_accepted_total"
    assert total(intake, accepted, app=mixed_run.app_id, category="notification") == 6
    assert total(intake, accepted, app=mixed_run.app_id, category="critical") == 1
    assert total(intake, accepted, app=mixed_run.limited_app_id) == mixed_run.limited_accepted
    assert mixed_run.limited_accepted + mixed_run.limited_refused == BURST
    refused = "herald_intake_messages_refused_total"
    assert total(intake, refused, reason="invalid_argument") == 1
    assert total(intake, refused, reason="permission_denied") == 1
    assert total(intake, refused, reason="rate_limited") == mixed_run.limited_refused
    assert total(intake, refused) == 2 + mixed_run.limited_refused


def test_router_counts_decisions_by_outcome_and_reason(mixed_run: MixedRun) -> None:
    router = samples(mixed_run.metrics["router"])
    decisions = "herald_router_decisions_total"
    queued = 5 + mixed_run.limited_accepted
    assert total(router, decisions, category="notification", outcome="pending", reason_code="") == queued
    assert total(router, decisions, category="notification", outcome="suppressed", reason_code="no_address") == 1
    assert total(router, decisions, category="critical", outcome="pending") == 1
    assert total(router, decisions) == queued + 2


def test_adapters_count_deliveries_provider_calls_dead_letters_and_receipts(mixed_run: MixedRun) -> None:
    adapters = samples(mixed_run.metrics["adapters"])
    webhooks = {"channel": "webhook", "category": "notification"}
    deliveries = "herald_adapters_deliveries_total"
    sent = 3 + mixed_run.limited_accepted
    assert total(adapters, deliveries, **webhooks, outcome="sent") == sent
    assert total(adapters, deliveries, **webhooks, outcome="failed") == 2  # a 404, and the one that gave up
    assert total(adapters, deliveries, **webhooks, outcome="retrying") == RETRIES
    assert total(adapters, deliveries, **webhooks, outcome="dead_lettered") == 1
    assert total(adapters, deliveries, channel="sms", category="critical", outcome="sent") == 1

    calls = "herald_provider_call_seconds_count"
    assert total(adapters, calls, channel="webhook") == sent + 1 + RETRIES + 1
    assert total(adapters, calls, channel="sms", account=mixed_run.twilio_account) == 1

    waiting = "herald_dead_letters_waiting"
    assert total(adapters, waiting, **webhooks) == 1
    assert total(adapters, waiting) == 1
    every = {(c, ch) for c in categories.BY_NAME for ch in ("webhook", "sms", "inbox")}
    labelled = {(dict(labels)["category"], dict(labels)["channel"]) for name, labels in adapters if name == waiting}
    assert every <= labelled, "a channel with no dead letters reads 0, so its panel and alert have a series"

    receipts = "herald_receipts_total"
    assert total(adapters, receipts, account=mixed_run.twilio_account, outcome="delivered") == 1
    assert total(adapters, receipts) == 1


def test_feedback_measures_end_to_end_latency_by_channel_and_category(mixed_run: MixedRun) -> None:
    feedback = samples(mixed_run.metrics["feedback"])
    latency = "herald_feedback_delivery_latency_seconds_count"
    assert total(feedback, latency, channel="webhook", category="notification", state="sent") == (
        3 + mixed_run.limited_accepted
    )
    assert total(feedback, latency, channel="sms", category="critical", state="sent") == 1
    assert total(feedback, latency, channel="sms", category="critical", state="delivered") == 1
    assert total(feedback, latency, state="delivered") == 1
    assert total(feedback, "herald_feedback_status_delay_seconds_count") > 0

"""The alerting rules fire when they should: promtool's rule unit tests over series made to cross each threshold."""

import subprocess
from pathlib import Path

import yaml

from tests.deploy.monitoring import RULES, promtool, rules


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _counter(name: str, values: str, **labels: str) -> dict[str, str]:
    return _series(name, labels, values)


def _histogram(name: str, per_minute: dict[str, int], **labels: str) -> list[dict[str, str]]:
    """Cumulative buckets growing by `per_minute` observations (le -> count at or under it) for an hour."""
    return [_series(f"{name}_bucket", {**labels, "le": le}, f"0+{n}x60") for le, n in per_minute.items()]


# (alert, input series, when, the alerts expected then: their labels but alertname and severity)
SCENARIOS: list[tuple[str, list[dict[str, str]], str, list[dict[str, str]]]] = [
    (
        "HeraldBinaryDown",
        [_series("up", {"job": "herald-router", "instance": "a:9462"}, "1 0x10")],
        "2m",
        [],  # down for 1 minute only
    ),
    (
        "HeraldBinaryDown",
        [
            _series("up", {"job": "herald-router", "instance": "a:9462"}, "1 0x10"),
            _series("up", {"job": "herald-router", "instance": "b:9462"}, "1x10"),
        ],
        "4m",
        [{"job": "herald-router", "instance": "a:9462"}],
    ),
    (
        "HeraldBinaryAbsent",
        [
            _series("up", {"job": job, "instance": "a"}, "1x10")
            for job in ("herald-intake", "herald-router", "herald-router-critical", "herald-adapters")
        ]
        + [_series("up", {"job": "herald-adapters-critical", "instance": "a"}, "0x10")],
        "6m",
        [{"job": "herald-feedback"}],
    ),
    (
        "HeraldGrpcServerErrors",
        [
            _counter(
                "grpc_server_handled_total",
                "0+90x30",
                job="herald-intake",
                grpc_service="S",
                grpc_method="A",
                grpc_code=c,
            )
            for c in ("OK", "INVALID_ARGUMENT")
        ]
        + [
            _counter(
                "grpc_server_handled_total",
                "0+90x30",
                job="herald-intake",
                grpc_service="S",
                grpc_method="B",
                grpc_code="OK",
            ),
            _counter(
                "grpc_server_handled_total",
                "0+10x30",
                job="herald-intake",
                grpc_service="S",
                grpc_method="B",
                grpc_code="INTERNAL",
            ),
        ],
        "20m",
        [{"job": "herald-intake", "grpc_service": "S", "grpc_method": "B"}],
    ),
    (
        "HeraldSendLatencyHigh",
        _histogram(
            "grpc_server_handling_seconds",
            {"0.5": 90, "1": 97, "2.5": 100, "+Inf": 100},
            job="herald-intake",
            grpc_type="unary",
            grpc_service="herald.v1.MessageService",
            grpc_method="Send",
        )
        + _histogram(
            "grpc_server_handling_seconds",
            {"1": 0, "+Inf": 100},  # slow, but not Send
            job="herald-intake",
            grpc_type="unary",
            grpc_service="herald.v1.MessageService",
            grpc_method="SendBatch",
        ),
        "20m",
        [{}],
    ),
    (
        "HeraldSendLatencyHigh",
        _histogram(
            "grpc_server_handling_seconds",
            {"0.5": 99, "1": 100, "+Inf": 100},
            job="herald-intake",
            grpc_type="unary",
            grpc_service="herald.v1.MessageService",
            grpc_method="Send",
        ),
        "20m",
        [],
    ),
    (
        "HeraldStatusDelayHigh",
        _histogram("herald_feedback_status_delay_seconds", {"1": 50, "60": 90, "300": 100, "+Inf": 100}),
        "20m",
        [{}],
    ),
    (
        "HeraldCriticalLatencyHigh",
        [
            *_histogram(
                "herald_feedback_delivery_latency_seconds",
                {"1": 50, "30": 90, "60": 100, "+Inf": 100},
                channel="sms",
                category="critical",
                state="sent",
            ),
            # Fast critical webhooks, slow notifications, slow receipts: none of them pages.
            *_histogram(
                "herald_feedback_delivery_latency_seconds",
                {"1": 100, "+Inf": 100},
                channel="webhook",
                category="critical",
                state="sent",
            ),
            *_histogram(
                "herald_feedback_delivery_latency_seconds",
                {"1": 10, "300": 100, "+Inf": 100},
                channel="sms",
                category="notification",
                state="sent",
            ),
            *_histogram(
                "herald_feedback_delivery_latency_seconds",
                {"1": 10, "300": 100, "+Inf": 100},
                channel="webhook",
                category="critical",
                state="delivered",
            ),
        ],
        "15m",
        [{"channel": "sms"}],
    ),
    (
        "HeraldCriticalLagHigh",
        [
            _series("herald_consumer_pending_messages", {"consumer": c, "pod": p}, "500x20")
            for c in ("adapters-critical-sms", "router-notification")
            for p in ("a", "b")
        ]
        + [_series("herald_consumer_pending_messages", {"consumer": "router-critical", "pod": "a"}, "50x20")],
        "10m",
        [{"consumer": "adapters-critical-sms"}],
    ),
    (
        "HeraldConsumerLagGrowing",
        [
            _series("herald_consumer_pending_messages", {"consumer": "router-notification"}, "1000+100x40"),
            _series("herald_consumer_pending_messages", {"consumer": "router-marketing"}, "1000+100x40"),
            _series("herald_consumer_pending_messages", {"consumer": "feedback-events"}, "5000x40"),
            _series("herald_consumer_pending_messages", {"consumer": "adapters-notification-sms"}, "0+10x40"),
        ],
        "25m",
        [{"consumer": "router-notification"}],
    ),
    (
        "HeraldChannelFailureRate",
        [
            _counter("herald_adapters_deliveries_total", f"0+{n}x40", channel=ch, category="notification", outcome=o)
            for ch, o, n in (
                ("sms", "sent", 70),
                ("sms", "failed", 30),
                ("sms", "retrying", 500),
                ("email", "sent", 100),
                ("email", "failed", 10),
                ("email", "expired", 100),
                ("slack", "failed", 1),  # every one fails, but too few to page
            )
        ],
        "25m",
        [{"channel": "sms"}],
    ),
    (
        "HeraldProviderCallsFailing",
        [
            _counter("herald_provider_calls_total", f"0+{n}x40", account=a, outcome=o)
            for a, o, n in (
                ("twilio-main", "sent", 50),
                ("twilio-main", "retryable", 30),
                ("twilio-main", "rate_limited", 20),
                ("smtp", "sent", 50),
                ("smtp", "permanent", 50),  # recipients' fault, not the provider's
            )
        ],
        "25m",
        [{"account": "twilio-main"}],
    ),
    (
        "HeraldProviderBadCredentials",
        [
            _counter("herald_provider_calls_total", "0x5 1x20", account="apns", outcome="bad_credentials"),
            _counter("herald_provider_calls_total", "0+10x20", account="fcm", outcome="sent"),
        ],
        "7m",
        [{"account": "apns"}],
    ),
    (
        "HeraldDeliveriesDeadLettered",
        [
            _counter("herald_adapters_deliveries_total", "0x5 3x30", channel="sms", category="critical", outcome=o)
            for o in ("dead_lettered", "failed")
        ],
        "10m",
        [{"channel": "sms", "category": "critical"}],
    ),
    (
        "HeraldDeliveriesDeadLettered",
        [
            _counter(
                "herald_adapters_deliveries_total", "3x40", channel="sms", category="critical", outcome="dead_lettered"
            )
        ],
        "30m",
        [],  # none in the last 15 minutes
    ),
    (
        "HeraldUnprocessedMessages",
        [
            _counter("herald_unprocessed_messages_total", "0x5 1x30", consumer="router-notification", pod=p)
            for p in ("a", "b")
        ],
        "10m",
        [{"consumer": "router-notification"}],
    ),
]


def test_rules_fire_when_they_should(tmp_path: Path) -> None:
    """promtool's rule unit tests, on the rules without their annotations (promtool compares those whole, and
    `check rules` has checked their templates)."""
    bare = yaml.safe_load(RULES.read_text())
    for group in bare["groups"]:
        for rule in group["rules"]:
            del rule["annotations"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(bare))
    tests = [
        {
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {
                    "eval_time": when,
                    "alertname": alert,
                    "exp_alerts": [{"exp_labels": {**labels, "severity": "page"}} for labels in expected],
                }
            ],
        }
        for alert, series, when, expected in SCENARIOS
    ]
    (tmp_path / "test.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    tested = subprocess.run(
        [promtool(), "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert {alert for alert, _, _, expected in SCENARIOS if expected} == {rule["alert"] for rule in rules()}

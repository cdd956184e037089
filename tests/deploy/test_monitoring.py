"""deploy/k8s/monitoring: the alerting rules pass promtool and fire when they should, the Grafana dashboard loads,
every series they query is one the binaries export after a mixed run (with the labels and label values they filter
on), and every alert has its runbook in docs/operations.md."""

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from herald.v1 import common_pb2, message_service_pb2
from prometheus_client.parser import text_string_to_metric_families

from herald.libs import categories, events
from herald.services.adapters.attempt import FINAL
from herald.services.adapters.channels.base import Failure
from tests.deploy.conftest import MixedRun

# The package's mixed run and rendered manifests are set up once per worker: its tests share one.
pytestmark = pytest.mark.xdist_group("deploy")

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
MONITORING = K8S_DIR / "monitoring"
DASHBOARD = MONITORING / "herald-dashboard.json"
RULES = MONITORING / "herald-alerts.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"

# Labels Prometheus attaches to every scraped series (see the scrape config in docs/operations.md), not the binaries.
TARGET_LABELS = {"job", "instance", "pod"}
# Prometheus' own series.
PROMETHEUS_SERIES = {"up"}
# Sampled only once a stage gave up on a message after about 18 minutes of retries: declared, never sampled here.
# Series -> its labels (herald/libs/bus/consuming.py: UNPROCESSED;
# herald/services/adapters/dead_letters.py: UNPROCESSED_WAITING).
RARE_SERIES = {"herald_unprocessed_messages_total": {"consumer"}, "herald_unprocessed_messages_waiting": {"consumer"}}
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
# Label values a short test cannot make every binary export, known from the code that sets them.
KNOWN_VALUES: dict[tuple[str, str], set[str]] = {
    ("", "grpc_code"): {code.name for code in grpc.StatusCode},
    ("", "category"): set(categories.BY_NAME),
    ("", "grpc_service"): {message_service_pb2.DESCRIPTOR.services_by_name["MessageService"].full_name},
    ("", "grpc_method"): set(message_service_pb2.DESCRIPTOR.services_by_name["MessageService"].methods_by_name),
    ("herald_provider_calls_total", "outcome"): {"sent"} | {failure.value for failure in Failure},
    ("herald_adapters_deliveries_total", "outcome"): {"retrying", "dead_lettered"}
    | {events.state_name(state) for state in FINAL},
    ("herald_router_decisions_total", "outcome"): {
        events.state_name(state) for state in common_pb2.DeliveryState.values()
    },
}


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, operator, value)


def parse_promql(expr: str) -> tuple[list[Selector], set[str]]:
    """The series selectors of a PromQL expression and the labels its by/without/on/ignoring/group_* clauses name.
    Enough for the expressions of this dashboard and these rules, not a PromQL parser."""
    braces: list[str] = []

    def stash(match: re.Match[str]) -> str:
        braces.append(match.group(1))
        return f"{{{len(braces) - 1}}}"

    text = re.sub(r"\{([^}]*)\}", stash, expr)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range vectors, subqueries
    grouping = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"
    grouped = {label.strip() for labels in re.findall(grouping, text) for label in labels.split(",") if label.strip()}
    text = re.sub(grouping, " ", text)
    selectors = []
    for match in re.finditer(r"(?<![\w.{])([A-Za-z_:][\w:]*)\s*(?:\{(\d+)\})?(\s*\()?", text):
        name, brace, call = match.groups()
        if call or name.lower() in PROMQL_KEYWORDS:
            continue
        matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', braces[int(brace)] if brace else "")
        selectors.append(Selector(name, tuple(matchers)))
    return selectors, grouped


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def queries() -> dict[str, str]:
    """Every PromQL expression of the dashboard and the rules, by where it is."""
    found = {f"alert {rule['alert']}": str(rule["expr"]) for rule in rules()}
    board = dashboard()
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            call = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["query"]["query"])
            assert call, variable["name"]
            found[f"variable {variable['name']}"] = call.group(1)
    # Grafana's variables: a rate window, and label values the test cannot know (skipped below).
    return {where: expr.replace("$__rate_interval", "5m") for where, expr in found.items()}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make test` installs it (Debian's prometheus package)"
    return path


def test_parse_promql() -> None:
    selectors, grouped = parse_promql(
        'histogram_quantile(0.99, sum by (channel, le) (rate(x_bucket{a="b", c=~"d|e"}[5m]))) > 1 '
        'and on (channel) sum without (le) (y) / ignoring(z) absent(up{job="j"}) > bool 0'
    )
    assert selectors == [
        Selector("x_bucket", (("a", "=", "b"), ("c", "=~", "d|e"))),
        Selector("y", ()),
        Selector("up", (("job", "=", "j"),)),
    ]
    assert grouped == {"channel", "le", "z"}


def test_rules_pass_promtool() -> None:
    checked = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_every_rule_pages_and_has_a_runbook() -> None:
    headings = set(re.findall(r"^## (Herald\w+)$", OPERATIONS.read_text(), re.MULTILINE))
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        assert rule["labels"]["severity"] == "page", rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        # GitHub's anchor for `## HeraldBinaryDown`.
        assert annotations["runbook_url"] == f"docs/operations.md#{rule['alert'].lower()}"
    assert headings == set(names), "one `## <alert>` runbook in docs/operations.md per alert, and no stale ones"


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


def test_dashboard() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39 and board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    shown = [p for p in panels if p["type"] != "row"]
    assert {p["type"] for p in shown} <= {"timeseries", "stat"}
    for panel in shown:
        assert panel["title"] and panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    exprs = " ".join(t["expr"] for p in shown for t in p["targets"])
    # What issue 16 asks to see.
    for wanted in (
        "grpc_server_started_total",
        "grpc_code",
        "grpc_server_handling_seconds_bucket",
        'outcome="dead_lettered"',
        "herald_provider_call_seconds_bucket",
        "herald_intake_messages_accepted_total",
        "herald_router_decisions_total",
        "herald_consumer_pending_messages",
        "herald_feedback_status_delay_seconds_bucket",
        "herald_unprocessed_messages_total",
        "herald_dead_letters_waiting",
        'herald_feedback_delivery_latency_seconds_bucket{channel=~"$channel"',
        'herald_feedback_delivery_latency_seconds_bucket{category="critical"',
        "up{",
    ):
        assert wanted in exprs, wanted


def test_kustomize_generates_the_configmaps() -> None:
    generators = {
        g["name"]: g for g in yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())["configMapGenerator"]
    }
    assert generators["herald-grafana-dashboards"]["files"] == ["monitoring/herald-dashboard.json"]
    assert generators["herald-grafana-dashboards"]["options"]["labels"]["grafana_dashboard"] == "1"
    assert generators["herald-prometheus-rules"]["files"] == ["monitoring/herald-alerts.yaml"]
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the rendering is not checked")
    rendered = subprocess.run([kubectl, "kustomize", str(K8S_DIR)], capture_output=True, text=True, check=False)
    assert rendered.returncode == 0, rendered.stderr
    maps = {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(rendered.stdout)
        if doc and doc["kind"] == "ConfigMap" and doc["metadata"]["name"] in generators
    }
    assert maps["herald-grafana-dashboards"]["data"] == {DASHBOARD.name: DASHBOARD.read_text()}
    assert maps["herald-prometheus-rules"]["data"] == {RULES.name: RULES.read_text()}
    assert {m["metadata"]["namespace"] for m in maps.values()} == {"herald"}


def test_documented_scrape_config_passes_promtool(tmp_path: Path) -> None:
    """The scrape job in docs/operations.md, with static targets for its Kubernetes discovery (Debian's promtool is
    built without it): the relabelling that makes `job` the pod's app.kubernetes.io/name is valid."""
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", OPERATIONS.read_text(), re.DOTALL) if "scrape_configs" in b]
    config = yaml.safe_load(block)
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["127.0.0.1:9461"]}]
    assert any(
        r.get("target_label") == "job" and r["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
        for job in config["scrape_configs"]
        for r in job["relabel_configs"]
    )
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    checked = subprocess.run(
        [promtool(), "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_queried_series_are_exported(mixed_run: MixedRun) -> None:
    declared: set[str] = set()
    labels: dict[str, set[str]] = {}
    values: dict[tuple[str, str], set[str]] = {}
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}
    for text in mixed_run.metrics.values():
        for family in text_string_to_metric_families(text):
            declared |= {family.name + s for s in suffixes.get(family.type, ("",))}
            for sample in family.samples:
                declared.add(sample.name)
                labels.setdefault(sample.name, set()).update(sample.labels)
                for label, value in sample.labels.items():
                    values.setdefault((sample.name, label), set()).add(value)
    problems = []
    for where, expr in queries().items():
        selectors, grouped = parse_promql(expr)
        assert selectors, where
        for selector in selectors:
            metric = selector.metric
            if metric in PROMETHEUS_SERIES:
                continue
            if metric not in declared:
                problems.append(f"{where}: no binary exports {metric}")
                continue
            if metric not in labels:
                if metric not in RARE_SERIES:
                    problems.append(f"{where}: {metric} has no samples")
                continue
            for label, op, value in selector.matchers:
                if label in TARGET_LABELS:
                    continue
                if label not in labels[metric]:
                    problems.append(f"{where}: {metric} has no label {label}")
                    continue
                if op not in ("=", "=~") or "$" in value:
                    continue
                allowed = (
                    values.get((metric, label), set())
                    | KNOWN_VALUES.get((metric.removesuffix("_bucket"), label), set())
                    | KNOWN_VALUES.get(("", label), set())
                )
                if op == "=" or re.fullmatch(r"[\w.-]+(\|[\w.-]+)*", value):
                    problems += [
                        f"{where}: {metric} never has {label}={v!r}" for v in value.split("|") if v not in allowed
                    ]
                elif not any(re.fullmatch(value, v) for v in allowed):
                    problems.append(f"{where}: no {label} of {metric} matches {value!r}")
        available = TARGET_LABELS | {"le"}
        available |= {label for s in selectors for label in labels.get(s.metric, RARE_SERIES.get(s.metric, set()))}
        problems += [f"{where}: groups by {label}, which none of its series has" for label in grouped - available]
    assert not problems, "\n".join(problems)

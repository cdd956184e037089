"""What the monitoring tests read: deploy/k8s/monitoring's dashboard and alerting rules, the PromQL in them
(parsed well enough to name every series and label they use) and promtool."""

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml
from herald.v1 import common_pb2, message_service_pb2

from herald.libs import categories, events
from herald.services.adapters.attempt import FINAL
from herald.services.adapters.channels.base import Failure

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

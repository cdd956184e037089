"""deploy/k8s's NetworkPolicies: ingress denied by default, each herald port open to exactly the sources it serves,
Prometheus let in to scrape, the third-party services (NATS, Jaeger) to herald's pods only."""

from typing import Any

import pytest

from tests.deploy.manifests import (
    ANYWHERE,
    CLUSTER,
    SERVICE_PORT_SOURCES,
    THIRD_PARTY_PORT_SOURCES,
    Sources,
    containers,
    herald_deployments,
    of_kind,
    pod_labels,
    selects,
)

# The package's rendered manifests are set up once per worker: its tests share one.
pytestmark = pytest.mark.xdist_group("deploy")


def _ingress_sources(
    policies: list[dict[str, Any]], labels: dict[str, str], port: int, name: str | None
) -> list[Sources]:
    """The `from` of every ingress rule that opens TCP `port` (named `name` in the pod) on pods with these labels."""

    def opens(rule_port: dict[str, Any]) -> bool:
        if rule_port.get("protocol", "TCP") != "TCP":
            return False
        if "port" not in rule_port:
            return True
        if isinstance(rule_port["port"], str):
            return bool(rule_port["port"] == name)
        return bool(rule_port["port"] <= port <= rule_port.get("endPort", rule_port["port"]))

    return [
        rule.get("from") or ANYWHERE
        for policy in policies
        if selects(policy["spec"]["podSelector"], labels)
        for rule in policy["spec"].get("ingress", [])
        if any(opens(p) for p in rule.get("ports") or [{}])
    ]


def _container_ports(workload: dict[str, Any]) -> dict[int, str | None]:
    return {p["containerPort"]: p.get("name") for c in containers(workload) for p in c.get("ports", [])}


def test_network_policy_default_deny(rendered: list[dict[str, Any]]) -> None:
    policies = of_kind(rendered, "NetworkPolicy")
    assert all(p["metadata"]["namespace"] == "herald" for p in policies)
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {} and "Ingress" in p["spec"]["policyTypes"] and not p["spec"].get("ingress")
    ]
    assert deny, "no default-deny ingress policy for the namespace"


def test_network_policy_opens_each_herald_service_port(rendered: list[dict[str, Any]]) -> None:
    policies = of_kind(rendered, "NetworkPolicy")
    deployments = herald_deployments(rendered)
    opened = {}
    for service in of_kind(rendered, "Service"):
        selector = {"matchLabels": service["spec"]["selector"]}
        selected = [d for d in deployments.values() if selects(selector, pod_labels(d))]
        if not selected:
            continue  # NATS, Jaeger: see test_network_policy_third_party
        [deploy] = selected
        ports = {name: number for number, name in _container_ports(deploy).items()}
        for p in service["spec"]["ports"]:
            target = p["targetPort"]
            number = ports[target] if isinstance(target, str) else target
            opened[number] = _ingress_sources(policies, pod_labels(deploy), number, target)
    assert opened == {port: [sources] for port, sources in SERVICE_PORT_SOURCES.items()}


def test_network_policy_lets_prometheus_scrape(rendered: list[dict[str, Any]]) -> None:
    policies = of_kind(rendered, "NetworkPolicy")
    for name, deploy in herald_deployments(rendered).items():
        port = int(deploy["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"])
        assert _ingress_sources(policies, pod_labels(deploy), port, "metrics") == [CLUSTER], name


def test_network_policy_third_party(rendered: list[dict[str, Any]]) -> None:
    policies = of_kind(rendered, "NetworkPolicy")
    workloads = {d["metadata"]["name"]: d for d in rendered if d["kind"] in ("Deployment", "StatefulSet")}
    opened = {
        (name, port): _ingress_sources(policies, pod_labels(workloads[name]), port, port_name)
        for name in {name for name, _ in THIRD_PARTY_PORT_SOURCES}
        for port, port_name in _container_ports(workloads[name]).items()
    }
    assert opened == THIRD_PARTY_PORT_SOURCES

"""deploy/k8s as the tests read it: every manifest's resources, which herald binary a Deployment runs, the ports
and the sources herald's services are to be reached from."""

from pathlib import Path
from typing import Any

import yaml

from herald.libs import ports

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
KUSTOMIZATION = "kustomization.yaml"
# Pinned so a kubernetes-validate upgrade cannot silently change what we check.
K8S_VERSION = "1.35.0"
HERALD_PORTS = {
    "herald-intake": 50051,
    "herald-router": 50052,
    "herald-adapters": 50053,
    "herald-feedback": 50054,
    "herald-gateway": ports.GATEWAY,
}
# The variable each binary's listen address is set with: the gateway serves HTTP, the others gRPC.
LISTEN_VARIABLE = {
    name: "HERALD_GATEWAY_ADDR" if name == "herald-gateway" else "HERALD_GRPC_ADDR" for name in HERALD_PORTS
}
# The gateway holds no NATS connection, so no NATS credentials.
NATS_CLIENTS = set(HERALD_PORTS) - {"herald-gateway"}
# What each probe of a herald container asks its metrics port (herald/libs/metrics.py).
PROBES = {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
SECRET_ENV_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "DATABASE_URL")
# Scaled by a HorizontalPodAutoscaler (their -critical twins may be too).
AUTOSCALED = ("herald-intake", "herald-router", "herald-adapters", "herald-gateway")
# The optional Secret whose keys are the HERALD_PROVIDER_* variables provider accounts name.
PROVIDER_SECRET = {"secretRef": {"name": "herald-providers", "optional": True}}
# Who a NetworkPolicy lets in, as an ingress rule's `from`: None = any source, outside the cluster too.
Sources = list[dict[str, Any]] | None
ANYWHERE: Sources = None
CLUSTER: Sources = [{"namespaceSelector": {}}]
HERALD_PODS: Sources = [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "herald"}}}]
NATS_PODS: Sources = [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nats"}}}]
# Each herald Service port: the HTTP edge and providers' receipts from anywhere, gRPC from inside the cluster.
SERVICE_PORT_SOURCES = {
    ports.GATEWAY: ANYWHERE,
    50051: CLUSTER,
    50052: CLUSTER,
    50053: CLUSTER,
    ports.RECEIPTS: ANYWHERE,
    50054: CLUSTER,
}
# The third-party pods' ports: (workload, port) -> the sources of every rule opening it; [] = only the kubelet.
THIRD_PARTY_PORT_SOURCES: dict[tuple[str, int], list[Sources]] = {
    ("nats", 4222): [HERALD_PODS],
    ("nats", 6222): [NATS_PODS],
    ("nats", 8222): [],
    ("jaeger", 4317): [HERALD_PODS],
    ("jaeger", 4318): [],
    ("jaeger", 16686): [],
    ("jaeger", 14269): [],
}


def load_resources() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted(K8S_DIR.glob("*.yaml"))
        if path.name != KUSTOMIZATION
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


RESOURCES = load_resources()


def binary_of(doc: dict[str, Any]) -> str | None:
    """The herald binary a Deployment runs, None for third-party ones (NATS, Jaeger)."""
    command = doc["spec"]["template"]["spec"]["containers"][0].get("command", [])
    return command[0] if command and command[0] in HERALD_PORTS else None


DEPLOYMENTS = [doc for _, doc in RESOURCES if doc["kind"] == "Deployment" and binary_of(doc)]


def resource_id(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def herald_deployments(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in of_kind(docs, "Deployment") if binary_of(doc)}


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert not selector.get("matchExpressions"), "only matchLabels selectors are checked here"
    return bool(selector.get("matchLabels", {}).items() <= labels.items())

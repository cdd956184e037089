from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from libs import categories
from libs.config import DEFAULT_METRICS_PORTS, DEFAULT_RECEIPTS_PORT

K8S_DIR = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUSTOMIZATION = "kustomization.yaml"
# Pinned so a kubernetes-validate upgrade cannot silently change what we check.
K8S_VERSION = "1.35.0"
HERALD_PORTS = {
    "herald-intake": 50051,
    "herald-router": 50052,
    "herald-adapters": 50053,
    "herald-feedback": 50054,
}
SECRET_ENV_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "DATABASE_URL")


def _load() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted(K8S_DIR.glob("*.yaml"))
        if path.name != KUSTOMIZATION
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


RESOURCES = _load()


def _binary(doc: dict[str, Any]) -> str | None:
    """The herald binary a Deployment runs, None for third-party ones (NATS, Jaeger)."""
    command = doc["spec"]["template"]["spec"]["containers"][0].get("command", [])
    return command[0] if command and command[0] in HERALD_PORTS else None


DEPLOYMENTS = [doc for _, doc in RESOURCES if doc["kind"] == "Deployment" and _binary(doc)]


def _id(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


@pytest.mark.parametrize("doc", [pytest.param(doc, id=f"{name}:{_id(doc)}") for name, doc in RESOURCES])
def test_schema(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{'.'.join(map(str, e.path))}: {e.message}", pytrace=False)
    except kubernetes_validate.SchemaNotFoundError as e:
        pytest.fail(e.message, pytrace=False)


def test_resource_names_unique() -> None:
    ids = [(doc["metadata"].get("namespace"), _id(doc)) for _, doc in RESOURCES]
    assert len(ids) == len(set(ids))


def _env(deploy: dict[str, Any]) -> dict[str, str | None]:
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_every_herald_binary_deployed() -> None:
    assert {doc["metadata"]["name"] for doc in DEPLOYMENTS} >= set(HERALD_PORTS)


@pytest.mark.parametrize("binary", ["herald-router", "herald-adapters"])
def test_every_category_runs_once_and_critical_on_its_own(binary: str) -> None:
    pipelines = {
        doc["metadata"]["name"]: (_env(doc).get("HERALD_PIPELINES") or ",".join(categories.BY_NAME)).split(",")
        for doc in DEPLOYMENTS
        if _binary(doc) == binary
    }
    assert pipelines[f"{binary}-critical"] == ["critical"]
    served = [category for names in pipelines.values() for category in names]
    assert sorted(served) == sorted(categories.BY_NAME)


@pytest.mark.parametrize("deploy", DEPLOYMENTS, ids=_id)
def test_herald_deployment(deploy: dict[str, Any]) -> None:
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (name,) = container["command"]
    port = HERALD_PORTS[name]
    env = _env(deploy)
    assert env["HERALD_GRPC_ADDR"] == f"0.0.0.0:{port}"
    # Prometheus finds /metrics through the pod's annotations.
    metrics = DEFAULT_METRICS_PORTS[name.removeprefix("herald-")]
    assert env["HERALD_METRICS_ADDR"] == f"0.0.0.0:{metrics}"
    annotations = deploy["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(metrics)
    if name == "herald-adapters":  # it also takes providers' delivery receipts over HTTP
        receipts = DEFAULT_RECEIPTS_PORT
        assert [p["containerPort"] for p in container["ports"]] == [port, metrics, receipts]
        assert env["HERALD_RECEIPTS_ADDR"] == f"0.0.0.0:{receipts}"
    else:
        assert [p["containerPort"] for p in container["ports"]] == [port, metrics]
    assert env["OTEL_SERVICE_NAME"] == name
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == port, probe
    # A failing readiness check should drain traffic well before liveness restarts.
    assert container["livenessProbe"]["failureThreshold"] > container["readinessProbe"]["failureThreshold"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # readOnlyRootFilesystem leaves /tmp as the only writable path.
    assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"]  # noqa: S108


def test_no_literal_secrets() -> None:
    committed = [
        _id(doc) for _, doc in RESOURCES if doc["kind"] == "Secret" and (doc.get("data") or doc.get("stringData"))
    ]
    assert not committed, "create Secrets with kubectl, never commit them"
    inline = [
        f"{_id(doc)}: {e['name']}"
        for _, doc in RESOURCES
        for c in _containers(doc)
        for e in c.get("env", [])
        if any(m in e["name"] for m in SECRET_ENV_MARKERS) and "secretKeyRef" not in e.get("valueFrom", {})
    ]
    assert not inline, "secret-looking env vars must come from secretKeyRef"
    in_configmaps = [
        f"{_id(doc)}: {key}"
        for _, doc in RESOURCES
        if doc["kind"] == "ConfigMap"
        for key in doc.get("data", {})
        if any(m in key for m in SECRET_ENV_MARKERS)
    ]
    assert not in_configmaps


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / KUSTOMIZATION).read_text())
    present = sorted(p.name for p in K8S_DIR.glob("*.yaml") if p.name != KUSTOMIZATION)
    assert sorted(kustomization["resources"]) == present

"""deploy/k8s: every manifest valid for the Kubernetes version it names, every herald binary deployed with its
probes, ports, autoscaler and disruption budget, no secret committed, images pinned."""

import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from herald.libs import categories, ports
from herald.libs.bus import MIN_SERVER_VERSION
from tests.deploy.manifests import (
    AUTOSCALED,
    DEPLOYMENTS,
    HERALD_PORTS,
    K8S_DIR,
    K8S_VERSION,
    KUSTOMIZATION,
    LISTEN_VARIABLE,
    NATS_CLIENTS,
    PROBES,
    PROVIDER_SECRET,
    RESOURCES,
    ROOT,
    SECRET_ENV_MARKERS,
    binary_of,
    containers,
    herald_deployments,
    of_kind,
    pod_labels,
    resource_id,
    selects,
)

# The package's mixed run and rendered manifests are set up once per worker: its tests share one.
pytestmark = pytest.mark.xdist_group("deploy")


@pytest.mark.parametrize("doc", [pytest.param(doc, id=f"{name}:{resource_id(doc)}") for name, doc in RESOURCES])
def test_schema(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{'.'.join(map(str, e.path))}: {e.message}", pytrace=False)
    except kubernetes_validate.SchemaNotFoundError as e:
        pytest.fail(e.message, pytrace=False)


def test_resource_names_unique() -> None:
    ids = [(doc["metadata"].get("namespace"), resource_id(doc)) for _, doc in RESOURCES]
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
        if binary_of(doc) == binary
    }
    assert pipelines[f"{binary}-critical"] == ["critical"]
    served = [category for names in pipelines.values() for category in names]
    assert sorted(served) == sorted(categories.BY_NAME)


@pytest.mark.parametrize("deploy", DEPLOYMENTS, ids=resource_id)
def test_herald_deployment(deploy: dict[str, Any]) -> None:
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (name,) = container["command"]
    port = HERALD_PORTS[name]
    env = _env(deploy)
    assert env[LISTEN_VARIABLE[name]] == f"0.0.0.0:{port}"
    # Prometheus finds /metrics through the pod's annotations.
    metrics = ports.METRICS[name.removeprefix("herald-")]
    assert env["HERALD_METRICS_ADDR"] == f"0.0.0.0:{metrics}"
    annotations = deploy["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(metrics)
    if name == "herald-adapters":  # it also takes providers' delivery receipts over HTTP
        receipts = ports.RECEIPTS
        assert [p["containerPort"] for p in container["ports"]] == [port, metrics, receipts]
        assert env["HERALD_RECEIPTS_ADDR"] == f"0.0.0.0:{receipts}"
    else:
        assert [p["containerPort"] for p in container["ports"]] == [port, metrics]
    assert env["OTEL_SERVICE_NAME"] == name
    # The kubelet asks the plain-HTTP metrics port (the gRPC port serves TLS only): liveness from the process alone,
    # so an outage of the database or NATS restarts no pod; startup and readiness follow those connections.
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in PROBES.items():
        get = container[probe]["httpGet"]
        assert (get["path"], named.get(get["port"], get["port"]), get.get("scheme", "HTTP")) == (path, metrics, "HTTP")
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
        resource_id(doc)
        for _, doc in RESOURCES
        if doc["kind"] == "Secret" and (doc.get("data") or doc.get("stringData"))
    ]
    assert not committed, "create Secrets with kubectl, never commit them"
    inline = [
        f"{resource_id(doc)}: {e['name']}"
        for _, doc in RESOURCES
        for c in containers(doc)
        for e in c.get("env", [])
        if any(m in e["name"] for m in SECRET_ENV_MARKERS) and "secretKeyRef" not in e.get("valueFrom", {})
    ]
    assert not inline, "secret-looking env vars must come from secretKeyRef"
    in_configmaps = [
        f"{resource_id(doc)}: {key}"
        for _, doc in RESOURCES
        if doc["kind"] == "ConfigMap"
        for key in doc.get("data", {})
        if any(m in key for m in SECRET_ENV_MARKERS)
    ]
    assert not in_configmaps


def _secret_mounts(workload: dict[str, Any]) -> dict[str, str]:
    """Mount path -> the Secret mounted there, in the workload's one container."""
    pod = workload["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    (container,) = pod["containers"]
    return {m["mountPath"]: secrets[m["name"]] for m in container["volumeMounts"] if m["name"] in secrets}


def test_tls_files_come_from_secrets() -> None:
    """Every herald binary serves TLS and connects to NATS over TLS with credentials, from files its Secrets hold;
    NATS serves TLS and authenticates clients."""
    [config] = [doc["data"] for _, doc in RESOURCES if resource_id(doc) == "ConfigMap/herald-config"]
    files = {
        "HERALD_TLS_CERT_FILE": ("herald-tls", "tls.crt"),
        "HERALD_TLS_KEY_FILE": ("herald-tls", "tls.key"),
        "HERALD_TLS_CA_FILE": ("herald-tls", "ca.crt"),
        "HERALD_TLS_CLIENT_CERT_FILE": ("herald-tls", "tls.crt"),
        "HERALD_TLS_CLIENT_KEY_FILE": ("herald-tls", "tls.key"),
        "HERALD_NATS_CA_FILE": ("herald-tls", "ca.crt"),
        "HERALD_NATS_CREDS_FILE": ("herald-nats-creds", "herald.creds"),
    }
    assert all(url.startswith("tls://") for url in config["HERALD_NATS_URL"].split(","))
    for deploy in DEPLOYMENTS:
        mounts = _secret_mounts(deploy)
        for variable, (secret, key) in files.items():
            if "NATS" in variable and binary_of(deploy) not in NATS_CLIENTS:
                continue
            path = Path(config[variable])
            assert (mounts.get(str(path.parent)), path.name) == (secret, key), (resource_id(deploy), variable)
    [nats] = [doc for _, doc in RESOURCES if resource_id(doc) == "StatefulSet/nats"]
    [nats_config] = [doc["data"]["nats.conf"] for _, doc in RESOURCES if resource_id(doc) == "ConfigMap/nats-config"]
    mounts = _secret_mounts(nats)
    for key in ("tls.crt", "tls.key", "ca.crt"):
        assert nats_config.count(f"/etc/nats-tls/{key}") == 2, key  # clients and routes
    assert mounts["/etc/nats-tls"] == "nats-tls"
    # nats-server resolves an include relative to the including file.
    assert 'include "../nats-auth/auth.conf"' in nats_config and mounts["/etc/nats-auth"] == "nats-auth"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / KUSTOMIZATION).read_text())
    present = sorted(p.name for p in K8S_DIR.glob("*.yaml") if p.name != KUSTOMIZATION)
    assert sorted(kustomization["resources"]) == present


def test_rendered_schema(rendered: list[dict[str, Any]]) -> None:
    errors = []
    for doc in rendered:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            errors.append(f"{resource_id(doc)}: {e.message}")
    assert not errors


def test_autoscalers(rendered: list[dict[str, Any]]) -> None:
    deployments = herald_deployments(rendered)
    scaled = []
    for hpa in of_kind(rendered, "HorizontalPodAutoscaler"):
        assert hpa["apiVersion"] == "autoscaling/v2"
        spec = hpa["spec"]
        target = spec["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment"), resource_id(hpa)
        assert target["name"] in deployments, f"{resource_id(hpa)} scales no herald Deployment"
        # The Deployment's replicas is the count a first apply creates: within what the autoscaler allows.
        replicas = deployments[target["name"]]["spec"]["replicas"]
        assert 2 <= spec["minReplicas"] <= replicas <= spec["maxReplicas"], resource_id(hpa)
        assert spec["minReplicas"] < spec["maxReplicas"], resource_id(hpa)
        cpu = [m["resource"]["target"] for m in spec["metrics"] if m.get("resource", {}).get("name") == "cpu"]
        assert [t["type"] for t in cpu] == ["Utilization"] and cpu[0]["averageUtilization"] > 0, resource_id(hpa)
        scaled.append(target["name"])
    assert len(scaled) == len(set(scaled)), "two autoscalers fight over one Deployment"
    assert set(scaled) >= set(AUTOSCALED)


def test_disruption_budgets(rendered: list[dict[str, Any]]) -> None:
    budgets = of_kind(rendered, "PodDisruptionBudget")
    for name, deploy in herald_deployments(rendered).items():
        # One replica: a budget would either block every node drain or protect nothing.
        replicas = deploy["spec"]["replicas"]
        assert replicas >= 2, name
        selecting = [b["spec"] for b in budgets if selects(b["spec"]["selector"], pod_labels(deploy))]
        assert len(selecting) == 1, f"{len(selecting)} PodDisruptionBudgets for {name}"
        [budget] = selecting
        # A drain must still be able to move a pod.
        assert budget.get("maxUnavailable", 0) >= 1 or budget["minAvailable"] < replicas, name


def test_provider_credentials_reach_only_the_adapters(rendered: list[dict[str, Any]]) -> None:
    with_secret = {
        name
        for name, deploy in herald_deployments(rendered).items()
        for container in containers(deploy)
        if PROVIDER_SECRET in container.get("envFrom", [])
    }
    adapters = {name for name, deploy in herald_deployments(rendered).items() if binary_of(deploy) == "herald-adapters"}
    assert with_secret == adapters == {"herald-adapters", "herald-adapters-critical"}


def _tag(image: str) -> str | None:
    """The image's tag or digest; None for none (Docker then pulls latest)."""
    if "@" in image:
        return image.partition("@")[2]
    _, colon, tag = image.rpartition(":")
    return tag if colon and "/" not in tag else None


def test_images_pinned(rendered: list[dict[str, Any]]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    images = {c["image"] for doc in rendered for c in containers(doc)}
    assert all(_tag(image) not in (None, "latest") for image in images), images
    herald = {image for image in images if image.rpartition(":")[0].rpartition("/")[2] == "herald"}
    assert herald == {f"herald:{version}"}
    # The manifests themselves say the same, so applying one file without kustomize runs the same image.
    assert {c["image"] for doc in DEPLOYMENTS for c in containers(doc)} == {f"herald:{version}"}


def test_nats_image_has_message_schedules() -> None:
    """herald's timers need JetStream message schedules: its binaries refuse an older nats-server (herald/libs/bus)."""
    [image] = {c["image"] for _, doc in RESOURCES for c in containers(doc) if c["image"].partition(":")[0] == "nats"}
    tag = _tag(image)
    assert tag is not None
    version = tuple(int(part) for part in tag.partition("-")[0].split(".")[:2])
    assert version >= MIN_SERVER_VERSION, image

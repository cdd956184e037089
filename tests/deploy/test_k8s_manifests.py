import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from herald.libs import categories, ports
from herald.libs.bus import MIN_SERVER_VERSION

# The package's mixed run and rendered manifests are set up once per worker: its tests share one.
pytestmark = pytest.mark.xdist_group("deploy")

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


def _secret_mounts(workload: dict[str, Any]) -> dict[str, str]:
    """Mount path -> the Secret mounted there, in the workload's one container."""
    pod = workload["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    (container,) = pod["containers"]
    return {m["mountPath"]: secrets[m["name"]] for m in container["volumeMounts"] if m["name"] in secrets}


def test_tls_files_come_from_secrets() -> None:
    """Every herald binary serves TLS and connects to NATS over TLS with credentials, from files its Secrets hold;
    NATS serves TLS and authenticates clients."""
    [config] = [doc["data"] for _, doc in RESOURCES if _id(doc) == "ConfigMap/herald-config"]
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
            if "NATS" in variable and _binary(deploy) not in NATS_CLIENTS:
                continue
            path = Path(config[variable])
            assert (mounts.get(str(path.parent)), path.name) == (secret, key), (_id(deploy), variable)
    [nats] = [doc for _, doc in RESOURCES if _id(doc) == "StatefulSet/nats"]
    [nats_config] = [doc["data"]["nats.conf"] for _, doc in RESOURCES if _id(doc) == "ConfigMap/nats-config"]
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


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    """What `kubectl apply -k deploy/k8s` applies."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S_DIR)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def _herald_deployments(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in _kind(docs, "Deployment") if _binary(doc)}


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert not selector.get("matchExpressions"), "only matchLabels selectors are checked here"
    return bool(selector.get("matchLabels", {}).items() <= labels.items())


def test_rendered_schema(rendered: list[dict[str, Any]]) -> None:
    errors = []
    for doc in rendered:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            errors.append(f"{_id(doc)}: {e.message}")
    assert not errors


def test_autoscalers(rendered: list[dict[str, Any]]) -> None:
    deployments = _herald_deployments(rendered)
    scaled = []
    for hpa in _kind(rendered, "HorizontalPodAutoscaler"):
        assert hpa["apiVersion"] == "autoscaling/v2"
        spec = hpa["spec"]
        target = spec["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment"), _id(hpa)
        assert target["name"] in deployments, f"{_id(hpa)} scales no herald Deployment"
        # The Deployment's replicas is the count a first apply creates: within what the autoscaler allows.
        replicas = deployments[target["name"]]["spec"]["replicas"]
        assert 2 <= spec["minReplicas"] <= replicas <= spec["maxReplicas"], _id(hpa)
        assert spec["minReplicas"] < spec["maxReplicas"], _id(hpa)
        cpu = [m["resource"]["target"] for m in spec["metrics"] if m.get("resource", {}).get("name") == "cpu"]
        assert [t["type"] for t in cpu] == ["Utilization"] and cpu[0]["averageUtilization"] > 0, _id(hpa)
        scaled.append(target["name"])
    assert len(scaled) == len(set(scaled)), "two autoscalers fight over one Deployment"
    assert set(scaled) >= set(AUTOSCALED)


def test_disruption_budgets(rendered: list[dict[str, Any]]) -> None:
    budgets = _kind(rendered, "PodDisruptionBudget")
    for name, deploy in _herald_deployments(rendered).items():
        # One replica: a budget would either block every node drain or protect nothing.
        replicas = deploy["spec"]["replicas"]
        assert replicas >= 2, name
        selecting = [b["spec"] for b in budgets if _selects(b["spec"]["selector"], _pod_labels(deploy))]
        assert len(selecting) == 1, f"{len(selecting)} PodDisruptionBudgets for {name}"
        [budget] = selecting
        # A drain must still be able to move a pod.
        assert budget.get("maxUnavailable", 0) >= 1 or budget["minAvailable"] < replicas, name


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
        if _selects(policy["spec"]["podSelector"], labels)
        for rule in policy["spec"].get("ingress", [])
        if any(opens(p) for p in rule.get("ports") or [{}])
    ]


def _container_ports(workload: dict[str, Any]) -> dict[int, str | None]:
    return {p["containerPort"]: p.get("name") for c in _containers(workload) for p in c.get("ports", [])}


def test_network_policy_default_deny(rendered: list[dict[str, Any]]) -> None:
    policies = _kind(rendered, "NetworkPolicy")
    assert all(p["metadata"]["namespace"] == "herald" for p in policies)
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {} and "Ingress" in p["spec"]["policyTypes"] and not p["spec"].get("ingress")
    ]
    assert deny, "no default-deny ingress policy for the namespace"


def test_network_policy_opens_each_herald_service_port(rendered: list[dict[str, Any]]) -> None:
    policies = _kind(rendered, "NetworkPolicy")
    deployments = _herald_deployments(rendered)
    opened = {}
    for service in _kind(rendered, "Service"):
        selector = {"matchLabels": service["spec"]["selector"]}
        selected = [d for d in deployments.values() if _selects(selector, _pod_labels(d))]
        if not selected:
            continue  # NATS, Jaeger: see test_network_policy_third_party
        [deploy] = selected
        ports = {name: number for number, name in _container_ports(deploy).items()}
        for p in service["spec"]["ports"]:
            target = p["targetPort"]
            number = ports[target] if isinstance(target, str) else target
            opened[number] = _ingress_sources(policies, _pod_labels(deploy), number, target)
    assert opened == {port: [sources] for port, sources in SERVICE_PORT_SOURCES.items()}


def test_network_policy_lets_prometheus_scrape(rendered: list[dict[str, Any]]) -> None:
    policies = _kind(rendered, "NetworkPolicy")
    for name, deploy in _herald_deployments(rendered).items():
        port = int(deploy["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"])
        assert _ingress_sources(policies, _pod_labels(deploy), port, "metrics") == [CLUSTER], name


def test_network_policy_third_party(rendered: list[dict[str, Any]]) -> None:
    policies = _kind(rendered, "NetworkPolicy")
    workloads = {d["metadata"]["name"]: d for d in rendered if d["kind"] in ("Deployment", "StatefulSet")}
    opened = {
        (name, port): _ingress_sources(policies, _pod_labels(workloads[name]), port, port_name)
        for name in {name for name, _ in THIRD_PARTY_PORT_SOURCES}
        for port, port_name in _container_ports(workloads[name]).items()
    }
    assert opened == THIRD_PARTY_PORT_SOURCES


def test_provider_credentials_reach_only_the_adapters(rendered: list[dict[str, Any]]) -> None:
    with_secret = {
        name
        for name, deploy in _herald_deployments(rendered).items()
        for container in _containers(deploy)
        if PROVIDER_SECRET in container.get("envFrom", [])
    }
    adapters = {name for name, deploy in _herald_deployments(rendered).items() if _binary(deploy) == "herald-adapters"}
    assert with_secret == adapters == {"herald-adapters", "herald-adapters-critical"}


def _tag(image: str) -> str | None:
    """The image's tag or digest; None for none (Docker then pulls latest)."""
    if "@" in image:
        return image.partition("@")[2]
    _, colon, tag = image.rpartition(":")
    return tag if colon and "/" not in tag else None


def test_images_pinned(rendered: list[dict[str, Any]]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    images = {c["image"] for doc in rendered for c in _containers(doc)}
    assert all(_tag(image) not in (None, "latest") for image in images), images
    herald = {image for image in images if image.rpartition(":")[0].rpartition("/")[2] == "herald"}
    assert herald == {f"herald:{version}"}
    # The manifests themselves say the same, so applying one file without kustomize runs the same image.
    assert {c["image"] for doc in DEPLOYMENTS for c in _containers(doc)} == {f"herald:{version}"}


def test_nats_image_has_message_schedules() -> None:
    """herald's timers need JetStream message schedules: its binaries refuse an older nats-server (herald/libs/bus)."""
    [image] = {c["image"] for _, doc in RESOURCES for c in _containers(doc) if c["image"].partition(":")[0] == "nats"}
    tag = _tag(image)
    assert tag is not None
    version = tuple(int(part) for part in tag.partition("-")[0].split(".")[:2])
    assert version >= MIN_SERVER_VERSION, image

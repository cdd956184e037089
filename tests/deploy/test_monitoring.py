"""deploy/k8s/monitoring: the alerting rules pass promtool (test_alert_rules.py: and fire when they should), the
Grafana dashboard loads, every series they query is one the binaries export after a mixed run (with the labels and
label values they filter on), and every alert has its runbook in docs/operations.md."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.conftest import MixedRun
from tests.deploy.monitoring import (
    DASHBOARD,
    K8S_DIR,
    KNOWN_VALUES,
    OPERATIONS,
    PROMETHEUS_SERIES,
    RARE_SERIES,
    RULES,
    TARGET_LABELS,
    Selector,
    dashboard,
    parse_promql,
    promtool,
    queries,
    rules,
)

# The package's mixed run and rendered manifests are set up once per worker: its tests share one.
pytestmark = pytest.mark.xdist_group("deploy")


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

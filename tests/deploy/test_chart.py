"""The Helm chart and the image, checked offline: helm lint and template, Kubernetes' schemas for 1.28 and 1.33,
assertions on the rendered objects, checkov and hadolint. Helm and checkov come from `make tools` (deploy/tools.py)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "songda"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
TOOLS = ROOT / ".venv" / "tools"
HELM = TOOLS / "helm"
CHECKOV = TOOLS / "checkov-venv" / "bin" / "checkov"
BIN = ROOT / ".venv" / "bin"
MONITORING = "monitoring.coreos.com/v1"
COMPONENTS = {"gateway", "order", "dispatch", "redemption", "aftersales", "notify"}


@pytest.fixture(scope="module")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not HELM.exists() or not CHECKOV.exists():
        pytest.fail("helm or checkov is missing: run `make tools`")
    home = tmp_path_factory.mktemp("helm")
    return {
        **os.environ,
        "PATH": f"{TOOLS}:{os.environ['PATH']}",
        **{f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")},
    }


def helm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HELM), *args], env=env, capture_output=True, text=True, check=False)


def render(env: dict[str, str], values: Path, *extra: str, monitoring: bool = False) -> list[dict[str, Any]]:
    api = ("--api-versions", MONITORING) if monitoring else ()
    result = helm(env, "template", "r", str(CHART), "-f", str(values), *api, *extra)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def kinds(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pods(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in ("Deployment", "Job"):
            yield o["metadata"]["name"], o["spec"]["template"]["spec"]
        elif o["kind"] == "Pod":
            yield o["metadata"]["name"], o["spec"]


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_lint_strict(helm_env: dict[str, str], values: Path) -> None:
    result = helm(helm_env, "lint", "--strict", str(CHART), "-f", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kube", ["1.28.0", "1.33.0"])
@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_manifests_validate_against_kubernetes(helm_env: dict[str, str], values: Path, kube: str) -> None:
    rendered = helm(helm_env, "template", "r", str(CHART), "-f", str(values), "--kube-version", kube)
    assert rendered.returncode == 0, rendered.stderr
    result = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "-k", kube, "--quiet", "-"],
        input=rendered.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_unknown_keys_and_missing_settings_are_refused(helm_env: dict[str, str]) -> None:
    minimal = CHART / "ci" / "minimal-values.yaml"
    typo = helm(helm_env, "template", "r", str(CHART), "-f", str(minimal), "--set", "services.order.replica=3")
    assert typo.returncode != 0
    assert "additional properties 'replica' not allowed" in typo.stderr
    bare = helm(helm_env, "template", "r", str(CHART))
    assert bare.returncode != 0
    assert "kafka.bootstrapServers is required" in bare.stderr


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.stem)
def test_every_pod_is_restricted_and_deployments_have_three_probes(helm_env: dict[str, str], values: Path) -> None:
    objects = render(helm_env, values)
    seen = list(pods(objects))
    assert seen
    for name, spec in seen:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == 10001, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
    for deployment in kinds(objects, "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] == "http", deployment["metadata"]["name"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        assert container["args"][:2] == ["serve", component]
        readiness = container["readinessProbe"]["httpGet"]["path"]
        # The gateway's /readyz asks every upstream: one service down must not take every gateway pod out.
        assert readiness == ("/healthz" if component == "gateway" else "/readyz")


def test_migrations_and_topics_run_as_hooks_before_the_pods(helm_env: dict[str, str]) -> None:
    objects = render(helm_env, CHART / "ci" / "production-values.yaml")
    jobs = {j["metadata"]["labels"]["app.kubernetes.io/component"]: j for j in kinds(objects, "Job")}
    assert set(jobs) == {"topics", *(f"migrate-{c}" for c in COMPONENTS)}
    for component, job in jobs.items():
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
        assert int(annotations["helm.sh/hook-weight"]) == (-5 if component == "topics" else 0)
    (container,) = jobs["migrate-order"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate", "order", "--database-url", "$(ORDER_DATABASE_URL)"]
    assert container["envFrom"] == [{"secretRef": {"name": "songda-order"}}]
    (gateway,) = jobs["migrate-gateway"]["spec"]["template"]["spec"]["containers"]
    assert gateway["args"] == ["migrate", "gateway", "--database-url", "$(GATEWAY_DATABASE_URL)"]
    (topics,) = jobs["topics"]["spec"]["template"]["spec"]["containers"]
    assert topics["args"][:2] == ["topics", "create"]
    tests = [p for p in kinds(objects, "Pod") if p["metadata"]["annotations"]["helm.sh/hook"] == "test"]
    assert {p["spec"]["containers"][0]["args"][1].split("//")[1].split(":")[0] for p in tests} == {
        f"r-songda-{c}" for c in COMPONENTS
    }
    assert all(p["spec"]["containers"][0]["args"][1].endswith("/readyz") for p in tests)


def test_gitops_mode_renders_plain_jobs_per_revision(helm_env: dict[str, str]) -> None:
    objects = render(helm_env, CHART / "ci" / "all-features-values.yaml")
    for job in kinds(objects, "Job"):
        assert "helm.sh/hook" not in job["metadata"]["annotations"]
        assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
        assert job["metadata"]["name"].endswith("-1")


def test_no_secret_is_rendered_when_existing_secrets_are_named(helm_env: dict[str, str]) -> None:
    production = render(helm_env, CHART / "ci" / "production-values.yaml")
    assert kinds(production, "Secret") == []
    for deployment in kinds(production, "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        assert {"secretRef": {"name": f"songda-{component}"}} in container["envFrom"]
    for config in kinds(production, "ConfigMap"):
        assert not any("DATABASE_URL" in key or "KEY" in key for key in config["data"]), config["metadata"]["name"]
    minimal = render(helm_env, CHART / "ci" / "minimal-values.yaml")
    secrets = {s["metadata"]["name"]: s for s in kinds(minimal, "Secret")}
    assert set(secrets) == {f"r-songda-{c}" for c in COMPONENTS}
    # The migration Jobs read them before the release's resources exist: they are hooks too, created first.
    assert secrets["r-songda-order"]["metadata"]["annotations"]["helm.sh/hook-weight"] == "-10"


def test_checksums_roll_pods_when_config_or_secret_changes(helm_env: dict[str, str]) -> None:
    minimal = CHART / "ci" / "minimal-values.yaml"

    def checksums(*extra: str) -> dict[str, tuple[str, str]]:
        return {
            d["metadata"]["name"]: (
                d["spec"]["template"]["metadata"]["annotations"]["checksum/config"],
                d["spec"]["template"]["metadata"]["annotations"]["checksum/secret"],
            )
            for d in kinds(render(helm_env, minimal, *extra), "Deployment")
        }

    before = checksums()
    config = checksums("--set", "services.order.env.ORDER_LOG_LEVEL=DEBUG")
    secret = checksums("--set", "services.order.secretEnv.ORDER_DATABASE_URL=postgresql+asyncpg://other/db")
    assert config["r-songda-order"][0] != before["r-songda-order"][0]
    assert config["r-songda-order"][1] == before["r-songda-order"][1]
    assert secret["r-songda-order"][1] != before["r-songda-order"][1]
    assert config["r-songda-dispatch"] == before["r-songda-dispatch"]


def test_network_policies_allow_services_only_from_their_callers(helm_env: dict[str, str]) -> None:
    objects = render(helm_env, CHART / "ci" / "production-values.yaml")
    policies = {p["metadata"]["name"]: p["spec"] for p in kinds(objects, "NetworkPolicy")}
    assert set(policies) == {f"r-songda-{c}" for c in COMPONENTS} | {"r-songda-tasks"}
    for component in COMPONENTS - {"gateway"}:
        (rule,) = policies[f"r-songda-{component}"]["ingress"]
        callers = {
            peer["podSelector"]["matchLabels"].get("app.kubernetes.io/component")
            for peer in rule["from"]
            if "podSelector" in peer
        }
        expected = {"gateway", "dispatch"} if component == "redemption" else {"gateway"}
        assert callers - {None} == expected, component
        assert not any("ipBlock" in peer for peer in rule["from"])
    gateway_from = policies["r-songda-gateway"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} in gateway_from
    order_egress = policies["r-songda-order"]["egress"]
    assert {"ipBlock": {"cidr": "10.20.0.0/24"}} in [peer for rule in order_egress for peer in rule.get("to", [])]
    assert {"port": 53, "protocol": "UDP"} in order_egress[0]["ports"]
    # The gateway reaches its identity database, and no broker.
    gateway_ports = {p["port"] for rule in policies["r-songda-gateway"]["egress"] for p in rule.get("ports", [])}
    assert 5432 in gateway_ports
    assert not gateway_ports & {9092, 9093, 9094}


def test_tracing_reaches_every_component_and_its_collector(helm_env: dict[str, str]) -> None:
    endpoint = "http://otel-collector.observability:4318"
    off = render(helm_env, CHART / "ci" / "production-values.yaml")
    assert not any("OTEL_EXPORTER_OTLP_ENDPOINT" in c["data"] for c in kinds(off, "ConfigMap") if "data" in c)
    on = render(helm_env, CHART / "ci" / "production-values.yaml", "--set", f"tracing.otlpEndpoint={endpoint}")
    configs = {c["metadata"]["name"]: c["data"] for c in kinds(on, "ConfigMap") if "data" in c}
    for component in COMPONENTS:
        assert configs[f"r-songda-{component}"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint
    policies = {p["metadata"]["name"]: p["spec"] for p in kinds(on, "NetworkPolicy")}
    for component in COMPONENTS:
        ports = [port["port"] for rule in policies[f"r-songda-{component}"]["egress"] for port in rule.get("ports", [])]
        assert 4318 in ports, component


def test_kafka_sasl_and_tls_reach_every_kafka_client_and_the_tls_secrets_are_mounted(helm_env: dict[str, str]) -> None:
    objects = render(helm_env, CHART / "ci" / "all-features-values.yaml")
    configs = {c["metadata"]["name"]: c["data"] for c in kinds(objects, "ConfigMap") if "data" in c}
    for component in COMPONENTS - {"gateway", "aftersales"}:  # aftersales is off in these values
        prefix = component.upper()
        env = configs[f"r-songda-{component}"]
        assert env[f"{prefix}_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env[f"{prefix}_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert env[f"{prefix}_KAFKA_SSL_CAFILE"] == "/etc/songda/kafka-tls/ca.crt"
        assert env[f"{prefix}_KAFKA_SSL_KEYFILE"] == "/etc/songda/kafka-tls/tls.key"
    assert not any("KAFKA" in key for key in configs["r-songda-gateway"])
    (topics,) = [j for j in kinds(objects, "Job") if "topics" in j["metadata"]["name"]]
    topics_env = {e["name"]: e["value"] for e in topics["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert topics_env["SONGDA_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert topics_env["SONGDA_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    # Each pod mounts the Secrets of what it talks to, and no other.
    for name, pod in pods(objects):
        volumes = {v["name"]: v.get("secret", {}).get("secretName") for v in pod["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        kafka = "gateway" not in name and "migrate" not in name  # the services and the topic Job
        postgres = "topics" not in name  # every component has a database (the gateway: identity), and its migrations
        assert (volumes.get("kafka-tls") == "songda-kafka-tls") is kafka, name
        assert (mounts.get("postgres-tls") == "/etc/songda/postgres-tls") is postgres, name


def test_monitoring_objects_follow_the_cluster_capabilities(helm_env: dict[str, str]) -> None:
    production = CHART / "ci" / "production-values.yaml"
    without = render(helm_env, production)
    assert kinds(without, "ServiceMonitor") == []
    assert kinds(without, "PrometheusRule") == []
    for deployment in kinds(without, "Deployment"):
        assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    (rules,) = [c for c in kinds(without, "ConfigMap") if c["metadata"]["name"].endswith("prometheus-rules")]
    assert "SongdaOutboxStuck" in rules["data"]["songda-rules.yaml"]
    with_api = render(helm_env, production, monitoring=True)
    assert len(kinds(with_api, "ServiceMonitor")) == len(COMPONENTS)
    (rule,) = kinds(with_api, "PrometheusRule")
    alerts = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]}
    assert {"SongdaOutboxStuck", "SongdaDeadLetters", "SongdaParkedEvents", "SongdaConsumerLagGrowing"} <= alerts
    for deployment in kinds(with_api, "Deployment"):
        assert "prometheus.io/scrape" not in deployment["spec"]["template"]["metadata"]["annotations"]


def test_schema_refuses_unknown_keys_everywhere() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def objects(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                yield path, node
            for key, child in node.get("properties", {}).items():
                yield from objects(child, f"{path}.{key}")

    for path, node in objects(schema, ""):
        assert node.get("additionalProperties") is False, path


def test_checkov_finds_nothing(helm_env: dict[str, str]) -> None:
    # CKV_K8S_21 ("default namespace") is skipped: the chart sets no namespace; `helm install -n` chooses it. Every
    # other skip is an annotation with its reason beside the object (deployment.yaml, migrate-job.yaml, …).
    result = subprocess.run(
        [
            *(str(CHECKOV), "-d", str(CHART), "--framework", "helm", "--skip-download", "--quiet", "--compact"),
            *("--var-file", str(CHART / "ci" / "production-values.yaml"), "--skip-check", "CKV_K8S_21"),
        ],
        env=helm_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_dockerfile_lints_clean_and_installs_like_ci() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--failure-threshold", "info", str(ROOT / "deploy" / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "--constraint constraints.txt ." in dockerfile
    assert "--constraint constraints.txt -e '.[local,dev]'" in makefile
    assert 'ENTRYPOINT ["songda"]' in dockerfile
    assert "USER 10001:10001" in dockerfile

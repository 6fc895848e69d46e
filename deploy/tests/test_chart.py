"""The Helm chart, rendered by Helm's own engine (helm-python-sdk bundles Helm 4).

For the default values and every value set in helm/erp-toolkit/ci/: Helm's lint, the values
schema, every manifest against the Kubernetes schemas (kubernetes-validate, strict) or, for the
custom resources, their CRDs' schemas (kubernetes-models, through deploy/tests/crd/), the
properties a reviewer looks for, and golden files of the rendered output. Regenerate the golden
files after a deliberate change with:

    UPDATE_GOLDEN=1 scripts/deploy-test.sh -k golden
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess

import helm_python as helm
import kubernetes_validate
import promql_parser
import pytest
import yaml
from helm_python import _native

from conftest import CHART, chart_tool

GOLDEN = CHART / "tests" / "golden"
PENDING_FLAGS = CHART / "tests" / "pending-flags.txt"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas here.
KUBE_VERSIONS = ("1.30.0", "1.37.0")
NAME, NAMESPACE = "erp", "erp"
ROLES = ("ingest", "api", "processor", "dispatcher")
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject", "TriggerAuthentication"}


def value_sets() -> dict[str, tuple[dict, list[str]]]:
    """name -> (values, API versions the set expects the cluster to serve)."""
    sets = {"default": ({}, [])}
    for path in sorted((CHART / "ci").glob("*-values.yaml")):
        text = path.read_text()
        apis = re.findall(r"^# api-versions: (.+)$", text, re.M)
        sets[path.stem.removesuffix("-values")] = (
            yaml.safe_load(text) or {},
            [api.strip() for line in apis for api in line.split(",")],
        )
    return sets


VALUE_SETS = value_sets()


def render(values: dict, api_versions: list[str] | None = None) -> dict[str, str]:
    """template path -> rendered text (`helm template --api-versions …`)."""
    with helm.Chart.load(str(CHART)) as chart:
        opts = {"name": NAME, "namespace": NAMESPACE}
        if api_versions:
            opts["api_versions"] = api_versions
        # Chart.render has no API-versions argument; the C ABI it wraps takes them.
        rendered = _native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(opts))
    return json.loads(rendered)


def manifests(rendered: dict[str, str]) -> list[dict]:
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def case(request):
    values, apis = VALUE_SETS[request.param]
    rendered = render(values, apis)
    return request.param, values, rendered, manifests(rendered)


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


def role_of(doc: dict) -> str:
    return doc["metadata"]["labels"]["app.kubernetes.io/component"]


# --- Helm's own checks ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint(name):
    report = helm.lint(str(CHART), VALUE_SETS[name][0], namespace=NAMESPACE, strict=True)
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not serious, report


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_values_schema_accepts_the_value_set(name):
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(VALUE_SETS[name][0])


@pytest.mark.parametrize("values, complaint", [
    ({"processor": {"replica": 3}}, "replica"),
    ({"ingest": {"config": {"ERP_TOOLKIT_BODY_LIMT": 1}}}, "ERP_TOOLKIT_BODY_LIMT"),
    ({"processor": {"config": {"ERP_TOOLKIT_BROKERS": "x:9092"}}}, "ERP_TOOLKIT_BROKERS"),
    ({"api": {"config": {"ERP_TOOLKIT_ADMIN_TOKEN": "erpt_x"}}}, "ERP_TOOLKIT_ADMIN_TOKEN"),
    ({"processor": {"config": {"ERP_TOOLKIT_SCHEMA_REGISTRY_PASSWORD": "x"}}}, "ERP_TOOLKIT_SCHEMA_REGISTRY_PASSWORD"),
    ({"kafka": {"sasl": {"mechanism": "GSSAPI"}}}, "/kafka/sasl/mechanism"),
    ({"kafka": {"options": {"sasl.password": "hunter2"}}}, "sasl.password"),
    ({"kafka": {"options": {"client.rack": "a,b"}}}, "a,b"),
    ({"kafka": {"brokers": "a:9092, b:9092"}}, "brokers"),
    ({"image": {"digest": "latest"}}, "digest"),
    ({"metrics": {"serviceMonitor": {"interval": "30 seconds"}}}, "interval"),
    ({"dispatcher": {"keda": {"enabeld": True}}}, "enabeld"),
    ({"processor": {"livenessProbe": {"periodSecond": 5}}}, "periodSecond"),
])
def test_values_schema_rejects_typos_and_secrets(values, complaint):
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError) as raised:
        chart.validate_schema(values)
    assert complaint in str(raised.value), raised.value


def test_values_schema_leaves_kubernetes_objects_loose():
    values = {
        "ingest": {
            "extraEnv": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["erp"]}]}]}}},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "erp", "effect": "NoSchedule"}],
            "lifecycle": {"preStop": {"sleep": {"seconds": 10}}},
        },
        "podSecurityContext": {"runAsNonRoot": True, "supplementalGroups": [1000]},
    }
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)


def test_role_settings_in_the_schema_match_the_binary(binary):
    settings = chart_tool("settings")
    lists, stand_ins = settings.allowed(binary)
    schema = json.loads((CHART / "values.schema.json").read_text())
    for role in ROLES:
        assert schema["definitions"][f"{role}Settings"]["propertyNames"]["enum"] == lists[role], (
            f"{role}: run python3 helm/erp-toolkit/tests/settings.py --bin {binary} --write")
    for role, stand_in in stand_ins.items():
        print(f"\nthe binary has no `{role}` role yet; `{stand_in}` stands in for it")


def test_the_readme_is_generated_from_the_values():
    readme = chart_tool("readme")
    assert readme.render() == (CHART / "README.md").read_text(), (
        "run python3 helm/erp-toolkit/tests/readme.py --write")


def test_every_value_is_documented():
    readme = chart_tool("readme")
    missing = [row.key for row in readme.rows() if not row.description]
    assert not missing, f"values.yaml fields without a `# --` comment: {missing}"


# --- the manifests --------------------------------------------------------------------------


def test_manifests_match_the_kubernetes_schemas(case):
    name, _, _, docs = case
    failures = []
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue  # no schema offline; checked by the tests below
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                failures.append(f"{doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): {error.message} at {list(error.path)}")
    assert not failures, "\n".join(failures)


def test_custom_resources_match_their_crd_schemas(case):
    """ServiceMonitor, PrometheusRule, ScaledObject and TriggerAuthentication against the schemas
    that kubernetes-models generates from their CRDs (types, required fields, enums)."""
    name, _, _, docs = case
    custom = [d for d in docs if d["kind"] in CRD_KINDS]
    if not custom:
        return
    validator = os.environ.get("ERP_TOOLKIT_CRD_VALIDATOR")
    if not validator:
        pytest.skip("ERP_TOOLKIT_CRD_VALIDATOR unset (scripts/deploy-test.sh installs and sets it)")
    done = subprocess.run(["node", validator], input=json.dumps(custom), capture_output=True, text=True, check=True)
    failures = [f"{d['kind']}/{d['metadata']['name']}: {'; '.join(errors)}"
                for d, errors in zip(custom, json.loads(done.stdout)) if errors]
    assert not failures, "\n".join(failures)


def test_every_container_has_probes_limits_and_a_hardened_security_context(case):
    _, _, _, docs = case
    for workload in workloads(docs):
        pod = workload["spec"]["template"]["spec"]
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["automountServiceAccountToken"] is False, where
        for container in pod["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["path"] in ("/healthz", "/readyz"), (where, probe)
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", where
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            ports = {p["name"] for p in container["ports"]}
            assert "metrics" in ports, where
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert container["args"] == [role_of(workload)], where


def test_the_processor_is_a_statefulset_with_a_volume_per_pod_and_a_budget(case):
    _, _, _, docs = case
    processor = by_kind(docs, "StatefulSet")[f"{NAME}-erp-toolkit-processor"]
    claims = processor["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]
    mounts = processor["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "data", "mountPath": "/var/lib/erp-toolkit"} in mounts
    assert processor["spec"]["persistentVolumeClaimRetentionPolicy"]
    selector = processor["spec"]["selector"]["matchLabels"]
    budgets = [p for p in by_kind(docs, "PodDisruptionBudget").values()
               if p["spec"]["selector"]["matchLabels"] == selector]
    assert len(budgets) == 1 and budgets[0]["spec"]["maxUnavailable"] == 1
    env = {e["name"]: e for e in processor["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    assert env["ERP_TOOLKIT_GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "partition.assignment.strategy=cooperative-sticky" in env["ERP_TOOLKIT_KAFKA_OPTIONS"]["value"]


def test_the_api_is_one_statefulset_pod_serving_the_poll_queue(case):
    _, values, _, docs = case
    api = by_kind(docs, "StatefulSet")[f"{NAME}-erp-toolkit-api"]
    assert api["spec"]["replicas"] == 1
    config = by_kind(docs, "ConfigMap")[f"{NAME}-erp-toolkit-api"]["data"]
    assert config["ERP_TOOLKIT_POLL_QUEUE"] == "true"
    assert config["ERP_TOOLKIT_DATA_DIR"] == "/var/lib/erp-toolkit"
    volumes = {v["name"]: v for v in api["spec"]["template"]["spec"]["volumes"]}
    if values.get("api", {}).get("persistence", {}).get("enabled", True):
        assert [c["metadata"]["name"] for c in api["spec"]["volumeClaimTemplates"]] == ["data"]
        assert "data" not in volumes
    else:
        assert "volumeClaimTemplates" not in api["spec"] and "emptyDir" in volumes["data"]


def test_no_secret_value_is_rendered(case):
    name, values, rendered, docs = case
    assert not [d for d in docs if d["kind"] == "Secret"], "the chart must not create Secrets"
    secret_settings = {"ERP_TOOLKIT_ADMIN_TOKEN", "ERP_TOOLKIT_KAFKA_OPTIONS", "KAFKA_SASL_USERNAME",
                       "KAFKA_SASL_PASSWORD", "KAFKA_SECRET_OPTIONS", "ERP_TOOLKIT_SCHEMA_REGISTRY_PASSWORD",
                       "ERP_TOOLKIT_SCHEMA_REGISTRY_TOKEN"}
    for config_map in by_kind(docs, "ConfigMap").values():
        leaked = secret_settings & set(config_map.get("data", {}))
        assert not leaked, f"{config_map['metadata']['name']} holds {leaked}"
        for value in config_map.get("data", {}).values():
            assert not re.search(r"(?i)sasl\.password|erpt_|BEGIN [A-Z ]*PRIVATE KEY", value)
    for workload in workloads(docs):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                if env["name"] in secret_settings - {"ERP_TOOLKIT_KAFKA_OPTIONS"}:
                    assert "secretKeyRef" in env["valueFrom"], (workload["metadata"]["name"], env["name"])
                if env["name"] == "ERP_TOOLKIT_KAFKA_OPTIONS":
                    # Secret parts are $(VAR) references Kubernetes fills in the container.
                    for option in env["value"].split(","):
                        if re.match(r"sasl\.(username|password)=", option):
                            assert option.split("=", 1)[1].startswith("$("), option


def test_a_config_change_rolls_only_its_role():
    base = manifests(render({}))
    changed = manifests(render({"processor": {"config": {"ERP_TOOLKIT_SUCCESS_SPANS": False}}}))

    def checksums(docs):
        return {w["metadata"]["name"]: w["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
                for w in workloads(docs)}
    before, after = checksums(base), checksums(changed)
    differ = {name for name in before if before[name] != after[name]}
    assert differ == {f"{NAME}-erp-toolkit-processor"}
    for workload in workloads(base):
        config = by_kind(base, "ConfigMap")[workload["metadata"]["name"]]
        text = "".join(f"\n{k}: {json.dumps(v)}" for k, v in sorted(config["data"].items()))
        assert hashlib.sha256(text.encode()).hexdigest() == before[workload["metadata"]["name"]]


def test_the_chart_sets_only_settings_the_binary_reads(case, binary):
    """Every ERP_TOOLKIT_* variable the chart gives a role is a flag of that role (or pending)."""
    _, _, _, docs = case
    settings, stand_ins = chart_tool("settings").binary_settings(binary)
    pending = {}
    for line in PENDING_FLAGS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            variable, roles = line.split(":", 1)
            pending[variable.strip()] = {r.strip() for r in roles.split(",")}
    config_maps = by_kind(docs, "ConfigMap")
    for workload in workloads(docs):
        role = role_of(workload)
        container = workload["spec"]["template"]["spec"]["containers"][0]
        names = set(config_maps[workload["metadata"]["name"]]["data"])
        names |= {e["name"] for e in container.get("env", [])}
        for variable in sorted(n for n in names if n.startswith("ERP_TOOLKIT_")):
            if variable in settings[role]:
                assert role not in pending.get(variable, set()), (
                    f"{variable} is a flag of `{role}` now: delete it from {PENDING_FLAGS.name}")
            else:
                assert role in pending.get(variable, set()), f"`erp-toolkit {role}` has no {variable}"


def test_replicas_never_exceed_partitions_and_the_poll_queue_keeps_one_writer(tmp_path):
    # A copy without values.schema.json (--skip-schema-validation): the templates must refuse
    # these on their own too.
    unchecked = tmp_path / "erp-toolkit"
    shutil.copytree(CHART, unchecked, ignore=shutil.ignore_patterns("tests", "values.schema.json"))
    for values, message in [
        ({"processor": {"replicas": 13}}, "processor.replicas"),
        ({"dispatcher": {"replicas": 13}}, "dispatcher.replicas"),
        ({"dispatcher": {"keda": {"enabled": True, "maxReplicas": 20}}}, "maxReplicas"),
        ({"api": {"replicas": 2}}, "pollQueue"),
        ({"processor": {"config": {"ERP_TOOLKIT_BROKERS": "x:1"}}}, "set by the chart"),
    ]:
        with pytest.raises(helm.HelmError) as raised:
            with helm.Chart.load(str(unchecked)) as chart:
                opts = {"name": NAME, "namespace": NAMESPACE, "api_versions": ["keda.sh/v1alpha1"]}
                _native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(opts))
        assert message in str(raised.value), raised.value
    docs = manifests(render({"api": {"replicas": 2, "pollQueue": False}}))
    assert by_kind(docs, "ConfigMap")[f"{NAME}-erp-toolkit-api"]["data"]["ERP_TOOLKIT_POLL_QUEUE"] == "false"


def test_autoscaled_workloads_leave_replicas_to_the_autoscaler(case):
    name, values, _, docs = case
    deployments = by_kind(docs, "Deployment")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    ingest = deployments[f"{NAME}-erp-toolkit-ingest"]
    assert ("replicas" in ingest["spec"]) == (f"{NAME}-erp-toolkit-ingest" not in hpas)
    scaled = by_kind(docs, "ScaledObject")
    dispatcher = deployments[f"{NAME}-erp-toolkit-dispatcher"]
    assert ("replicas" in dispatcher["spec"]) == (not scaled)
    for scaled_object in scaled.values():
        spec = scaled_object["spec"]
        assert spec["scaleTargetRef"]["name"] == dispatcher["metadata"]["name"]
        assert spec["fallback"]["replicas"] >= 1 and spec["fallback"]["failureThreshold"] >= 1
        trigger = spec["triggers"][0]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["topic"] == "erp.core.events"
        assert trigger["metadata"]["consumerGroup"] == "erp-toolkit-dispatcher"
        assert all(isinstance(v, str) for v in trigger["metadata"].values())
        if values.get("kafka", {}).get("sasl", {}).get("enabled"):
            auth = by_kind(docs, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
            assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} >= {"username", "password"}
            assert trigger["metadata"]["sasl"] == "scram_sha512"


def test_monitoring_objects_need_the_api_and_the_flag(case):
    name, values, rendered, docs = case
    monitors = by_kind(docs, "ServiceMonitor")
    wanted = values.get("metrics", {}).get("serviceMonitor", {}).get("enabled", False)
    assert bool(monitors) == wanted
    services = by_kind(docs, "Service")
    for role in ("ingest", "api"):  # the Services that may be exposed carry no metrics port
        assert [p["name"] for p in services[f"{NAME}-erp-toolkit-{role}"]["spec"]["ports"]] == ["http"]
    scraped = [s for s in services.values() if s["metadata"]["labels"].get("erp-toolkit.io/metrics") == "true"]
    assert sorted(role_of(s) for s in scraped) == sorted(ROLES)
    assert all(s["spec"].get("clusterIP") == "None" for s in scraped)
    for monitor in monitors.values():
        selector = monitor["spec"]["selector"]["matchLabels"]
        selected = [s for s in services.values() if selector.items() <= s["metadata"]["labels"].items()]
        assert {role_of(s) for s in selected} == set(ROLES)
        for service in selected:
            assert "metrics" in {p["name"] for p in service["spec"]["ports"]}
    for rule in by_kind(docs, "PrometheusRule").values():
        source = yaml.safe_load((CHART / "files" / "prometheus-rules.yml").read_text())
        disabled = set(values["metrics"]["prometheusRule"].get("disabled", []))
        expected = [r["alert"] for g in source["groups"] for r in g["rules"] if r["alert"] not in disabled]
        alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
        assert [r["alert"] for r in alerts] == expected
        for alert in alerts:
            promql_parser.parse(alert["expr"])
            assert alert["labels"]["severity"] in ("warning", "critical")
            assert alert["labels"].items() >= values["metrics"]["prometheusRule"]["additionalAlertLabels"].items()
            assert alert["annotations"]["runbook"].startswith("docs/deploy.md")
    for dashboard in (d for d in by_kind(docs, "ConfigMap").values() if d["metadata"]["name"].endswith("-dashboard")):
        assert json.loads(dashboard["data"]["erp-toolkit.json"])["uid"] == "erp-toolkit"


def test_monitoring_without_the_api_renders_nothing_and_says_so():
    values, _ = VALUE_SETS["monitoring"]
    rendered = render(values)  # no --api-versions: the cluster has no Prometheus Operator
    kinds = {d["kind"] for d in manifests(rendered)}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    notes = rendered["erp-toolkit/templates/NOTES.txt"]
    assert "metrics.serviceMonitor.enabled is set but the cluster does not serve monitoring.coreos.com/v1" in notes


def test_the_ingress_sends_events_to_ingest_and_the_rest_to_the_api():
    docs = manifests(render(VALUE_SETS["hardened"][0]))
    ingress = by_kind(docs, "Ingress")[f"{NAME}-erp-toolkit"]
    paths = {p["path"]: p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths["/v3/erp/updates"] == f"{NAME}-erp-toolkit-ingest"
    assert paths["/"] == f"{NAME}-erp-toolkit-api"
    policies = by_kind(docs, "NetworkPolicy")
    assert {role_of(p) for p in policies.values()} == set(ROLES)


# --- golden files ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_golden(name):
    values, apis = VALUE_SETS[name]
    rendered = render(values, apis)
    text = "".join(f"# Source: {path}\n{body.strip()}\n---\n" for path, body in sorted(rendered.items())
                   if body.strip() and not path.endswith("NOTES.txt"))
    golden = GOLDEN / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
        return
    assert golden.exists(), f"no golden file {golden}; UPDATE_GOLDEN=1 scripts/deploy-test.sh -k golden"
    expected = golden.read_text()
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                            f"golden/{name}.yaml", "rendered", n=2))
        pytest.fail(f"the rendered chart differs from golden/{name}.yaml "
                    f"(UPDATE_GOLDEN=1 scripts/deploy-test.sh -k golden if intended):\n{diff}")

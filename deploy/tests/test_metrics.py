"""Every query of the Grafana dashboard and the alert rules against a live /metrics.

Starts `erp-toolkit standalone` (every role in one process, one registry) on a temporary data
directory, drives events through it so that the labelled series appear (a success, a duplicate, a
rejected and an unauthenticated request; deliveries to endpoints that answer 200, 500, 400 and 410;
a rate-limited endpoint), scrapes `/metrics`, and checks each metric name, each label name in a
matcher or a `by`/`on` clause, and each value of an equality matcher against the scrape.

Metrics the monitoring and liveness issues will add are listed in
deploy/grafana/pending-metrics.txt: they are reported, not failed, until the binary exports them.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import CHART, DEPLOY, stop

DASHBOARD = CHART / "files" / "grafana-dashboard.json"
RULES = CHART / "files" / "prometheus-rules.yml"
PENDING = DEPLOY / "grafana" / "pending-metrics.txt"

# Labels Prometheus adds to every scraped series (Kubernetes service discovery, and the
# ServiceMonitor's `component` relabeling): queries may use them although no binary exports them.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint", "component"}
# Grafana's variables, replaced by values that keep the expression valid PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m", "$namespace": ".*"}


# --- what the queries use -------------------------------------------------------------------


@dataclass
class Use:
    """One metric as one query uses it."""

    metric: str
    where: str
    matchers: list[tuple[str, str, str]] = field(default_factory=list)  # (label, op, value)
    grouping: set[str] = field(default_factory=set)  # by / on / group_left labels above it


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard target and every rule."""
    found = []
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            found.append((f"dashboard panel {panel['title']!r}", expr))
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            found.append((f"alert {rule['alert']}", rule["expr"]))
    return found


def uses_of(where: str, expr: str) -> list[Use]:
    uses: list[Use] = []

    def walk(node, grouping: set[str]) -> list[Use]:
        kind = type(node).__name__
        below: list[Use] = []
        if kind == "VectorSelector":
            if node.name is None:
                raise AssertionError(f"{where}: a selector without a metric name: {expr}")
            use = Use(node.name, where, grouping=set(grouping))
            for matcher in node.matchers.matchers:
                use.matchers.append((matcher.name, str(matcher.op).rsplit(".", 1)[-1], matcher.value))
            uses.append(use)
            return [use]
        if kind == "MatrixSelector":
            return walk(node.vector_selector, grouping)
        if kind == "AggregateExpr":
            labels = set(node.modifier.labels) if node.modifier else set()
            by = "By" in str(node.modifier.type) if node.modifier else False
            below = walk(node.expr, grouping | (labels if by else set()))
            if not by:  # `without (l)`: l must exist too
                for use in below:
                    use.grouping |= labels
            return below
        if kind == "BinaryExpr":
            labels = set()
            modifier = node.modifier
            if modifier is not None:
                if modifier.matching is not None:
                    labels |= set(modifier.matching.labels)
                labels |= set(getattr(modifier, "group_labels", None) or [])
            return walk(node.lhs, grouping | labels) + walk(node.rhs, grouping | labels)
        if kind == "Call":
            for arg in node.args:
                below += walk(arg, grouping)
            return below
        for attribute in ("expr",):  # ParenExpr, UnaryExpr, SubqueryExpr
            if hasattr(node, attribute):
                return walk(getattr(node, attribute), grouping)
        return []  # literals

    walk(promql_parser.parse(expr), set())
    return uses


def pending() -> dict[str, set[str]]:
    """name -> labels, of the metrics expected but not yet exported."""
    metrics = {}
    for line in PENDING.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-z_:][a-z0-9_:]*)(?:\{([a-z_,]*)\})?", line)
        assert match, f"{PENDING}: cannot read {line!r}"
        metrics[match.group(1)] = set(filter(None, (match.group(2) or "").split(",")))
    return metrics


# --- the live binary ------------------------------------------------------------------------


class Endpoints(BaseHTTPRequestHandler):
    """Webhook endpoints with fixed answers: /ok 200, /fail 500, /bad 400, /gone 410."""

    answers = {"/ok": 200, "/fail": 500, "/bad": 400, "/gone": 410}
    hits: dict[str, int] = {}

    def do_POST(self):  # noqa: N802 (the handler's name is http.server's)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Endpoints.hits[self.path] = Endpoints.hits.get(self.path, 0) + 1
        self.send_response(self.answers.get(self.path, 404))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def request(method: str, url: str, token: str | None, body=None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def event(integration: str, dedup: str, customer: str) -> dict:
    return {
        "integration_id": integration,
        "events": [{
            "use_case_slug": "customer-sync", "timestamp": "2024-01-15T10:35:00Z", "format": "json",
            "payload": json.dumps({"customerId": customer, "firstName": "John", "lastName": "Doe"}),
            "deduplication_id": dedup,
        }],
    }


def wait_for(what: str, check, seconds: float = 90.0):
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def scrape(binary, tmp_path_factory) -> dict[str, list[dict[str, str]]]:
    """sample name -> label sets, from a standalone that has seen every kind of outcome."""
    work = tmp_path_factory.mktemp("metrics")
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Endpoints)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}"
    log = open(work / "standalone.log", "w")
    process = subprocess.Popen(
        [binary, "standalone", "--data-dir", str(work / "data"), "--listen", "127.0.0.1:0",
         # Scraped where Prometheus scrapes it: the metrics listener, without a token.
         "--metrics-listen", "127.0.0.1:0",
         "--broker-listen", "127.0.0.1:0", "--partitions", "2",
         # Short waits and a breaker that opens at the first failure, so retries, tier lag and
         # breaker transitions show within seconds.
         "--retry-schedule", "1s,1s", "--breaker-threshold", "1", "--breaker-cooldown", "1s"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        def api_address():
            text = (work / "standalone.log").read_text()
            match = re.search(r"^  API:\s+(\S+)", text, re.M)
            assert process.poll() is None, f"standalone exited:\n{text}"
            return match.group(1) if match else None
        erp = wait_for("the standalone API address", api_address)
        metrics_url = wait_for("the standalone metrics address", lambda: next(iter(re.findall(
            r"^  Metrics:\s+(\S+)/metrics$", (work / "standalone.log").read_text(), re.M)), None))
        wait_for("readiness", lambda: request("GET", f"{erp}/readyz", None)[0] == 200)
        token = (work / "data" / "admin-token").read_text().strip()

        status, body = request("POST", f"{erp}/v1/integrations", token, {"name": "Metrics check"})
        assert status in (200, 201), body
        integration = json.loads(body)["id"]
        status, body = request("POST", f"{erp}/v1/integrations/{integration}/use-cases", token, {
            "name": "Customer Sync", "slug": "customer-sync", "type": "inbound", "enabled": True,
            "configuration": {"entities": [{"entity_schema": "contact", "unique_ids": ["customer_number"],
                              "fields": [{"attribute": "customer_number", "field": "customerId"}]}]}})
        assert status in (200, 201), body
        for name, path, extra in [
            ("ok", "/ok", {"rateLimit": {"requestsPerSecond": 1, "burst": 1}}),
            ("fail", "/fail", {}), ("bad", "/bad", {}), ("gone", "/gone", {}),
        ]:
            status, body = request("POST", f"{erp}/v1/webhooks/configs", token, {
                "name": name, "eventName": "event_InboundEventMapped", "url": hook + path, **extra})
            assert status in (200, 201), body

        for dedup, customer in [("c1", "C001"), ("c1", "C001"), ("c2", "C002"), ("c3", "C003")]:
            status, body = request("POST", f"{erp}/v3/erp/updates/events", token, event(integration, dedup, customer))
            assert status == 200, body
        assert request("POST", f"{erp}/v3/erp/updates/events", token, {"events": []})[0] == 400
        assert request("GET", f"{erp}/v1/integrations", "not-a-token")[0] == 401

        def families() -> dict[str, list[dict[str, str]]]:
            text = request("GET", f"{metrics_url}/metrics", None)[1]
            samples: dict[str, list[dict[str, str]]] = {}
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    samples.setdefault(sample.name, []).append(dict(sample.labels))
            return samples

        # Everything the drive above produces, asynchronously: wait until the scrape shows it.
        expected = [
            ("erp_processor_events_total", "outcome", "skipped"),
            ("erp_dispatcher_deliveries_total", "outcome", "delivered"),
            ("erp_dispatcher_deliveries_total", "outcome", "failed"),
            ("erp_dispatcher_attempts_total", "result", "retryable"),
            ("erp_dispatcher_endpoints_disabled_total", "reason", None),
            ("erp_dispatcher_tier_lag_ms", "tier", None),
            ("erp_dispatcher_breaker_transitions_total", "state", "open"),
            ("erp_dispatcher_throttled_total", "result", None),
            ("erp_dead_letters_total", "stage", "dispatcher"),
            ("erp_consumer_lag_records", "group", None),
            ("erp_consumer_lag_seconds", "group", None),
            ("erp_ready", "role", "standalone"),
            ("erp_http_requests_total", "status", "200"),
        ]

        def complete():
            samples = families()
            for name, label, value in expected:
                if not any(label in s and value in (None, s[label]) for s in samples.get(name, [])):
                    return None
            return samples
        try:
            return wait_for("every labelled series", complete)
        except AssertionError:
            missing = [e for e in expected if not any(
                e[1] in s and e[2] in (None, s[e[1]]) for s in families().get(e[0], []))]
            raise AssertionError(f"series never appeared: {missing}; endpoint hits {Endpoints.hits}")
    finally:
        stop(process)
        receiver.shutdown()
        log.close()


# --- the checks -----------------------------------------------------------------------------


def test_every_query_parses():
    found = queries()
    assert len(found) > 30, "the dashboard and the rules should hold the queries"
    for where, expr in found:
        uses_of(where, expr)


def test_pending_metrics_are_declared_with_their_labels():
    declared = pending()
    for where, expr in queries():
        for use in uses_of(where, expr):
            if use.metric in declared:
                labels = {m[0] for m in use.matchers} | use.grouping
                extra = labels - declared[use.metric] - TARGET_LABELS
                assert not extra, f"{where}: {use.metric} uses {extra}, not declared in {PENDING.name}"


def family(sample: str, scrape: dict) -> str:
    """A histogram's samples (`_bucket`, `_sum`, `_count`) belong to one metric."""
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample.removesuffix(suffix)
        if base != sample and f"{base}_bucket" in scrape:
            return base
    return sample


def problems_in(found: list[tuple[str, str]], scrape: dict, declared: dict) -> tuple[list[str], dict, set]:
    """What the queries use that the scrape does not have; the pending uses; the metrics checked."""
    problems, waiting, checked = [], {}, set()
    for name in declared:
        if name in scrape:
            problems.append(f"{name} is exported now: delete it from {PENDING.relative_to(PENDING.parents[2])}")
    for where, expr in found:
        for use in uses_of(where, expr):
            if use.metric in declared:
                waiting.setdefault(use.metric, set()).add(where)
                continue
            series = scrape.get(use.metric)
            if series is None:
                problems.append(f"{where}: {use.metric} is not exported")
                continue
            checked.add(family(use.metric, scrape))
            exported = set().union(*(s.keys() for s in series))
            for label, op, value in use.matchers:
                if label not in exported and label not in TARGET_LABELS:
                    problems.append(f"{where}: {use.metric} has no label {label!r} (it has {sorted(exported)})")
                elif op == "Equal" and label not in TARGET_LABELS and value not in {s.get(label) for s in series}:
                    problems.append(f"{where}: {use.metric}{{{label}={value!r}}} never seen (seen: "
                                    f"{sorted({s.get(label) for s in series if label in s})})")
            for label in sorted(use.grouping - exported - TARGET_LABELS):
                problems.append(f"{where}: {use.metric} has no label {label!r} to group by (it has {sorted(exported)})")
    return problems, waiting, checked


def test_the_check_finds_what_is_wrong():
    scrape = {"erp_x_total": [{"outcome": "success"}], "erp_h_bucket": [{"le": "1"}], "erp_h_sum": [{}], "erp_h_count": [{}]}
    found = [
        ("ok", 'sum by (outcome) (rate(erp_x_total{outcome="success", namespace=~".*"}[5m]))'),
        ("ok", "histogram_quantile(0.9, sum by (le, pod) (rate(erp_h_bucket[5m])))"),
        ("missing metric", "erp_y_total"),
        ("missing label", 'erp_x_total{code="x"}'),
        ("unseen value", 'erp_x_total{outcome="error"}'),
        ("missing grouping label", "sum by (tier) (erp_x_total)"),
        ("missing on label", "erp_x_total / on (tier) erp_h_sum"),
        ("pending", "erp_ready{role=\"api\"}"),
    ]
    problems, waiting, checked = problems_in(found, scrape, {"erp_ready": {"role"}})
    wheres = sorted(p.split(":")[0] for p in problems)
    assert wheres == ["missing grouping label", "missing label", "missing metric", "missing on label",
                      "missing on label", "unseen value"], problems
    assert set(waiting) == {"erp_ready"} and checked == {"erp_x_total", "erp_h"}
    problems, _, _ = problems_in([], {"erp_ready": [{"role": "api"}]}, {"erp_ready": {"role"}})
    assert problems and "exported now" in problems[0]


def test_queries_match_the_live_metrics(scrape):
    declared = pending()
    problems, waiting, checked = problems_in(queries(), scrape, declared)
    print(f"\nchecked against the live /metrics: {len(checked)} metrics: {', '.join(sorted(checked))}")
    for name in sorted(declared):
        labels = ",".join(sorted(declared[name]))
        print(f"expected, not yet exported: {name}{{{labels}}} (used by {len(waiting.get(name, ()))} queries)")
    unused = sorted({family(n, scrape) for n in scrape if n.startswith("erp_")} - checked)
    if unused:
        print("exported, not on the dashboard or in a rule:", ", ".join(unused))
    assert not problems, "\n".join(problems)

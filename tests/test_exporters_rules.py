"""`shipscope prometheus rules` and `shipscope grafana dashboards`: promtool accepts every rule file, a real
Prometheus loads them and evaluates the burn-rate recording rules and a threshold alert over series fed to it, and
every PromQL expression of the dashboards parses."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from typer.testing import CliRunner

from shipscope.cli.main import app
from shipscope.errors import InputError
from shipscope.exporters.grafana import DASHBOARDS, SCHEMA_VERSION, dashboard
from shipscope.exporters.rules import rules_document, threshold_value
from shipscope.metrics.thresholds import DEFAULT_THRESHOLDS, thresholds_from_table
from shipscope.slo import Slo, load_slos
from tests.services import PROMTOOL, Prometheus, binary, free_port, prometheus, shipscope_serve, wait_until

runner = CliRunner()

CHECKOUT = """\
slos:
  - name: checkout-availability
    service: checkout
    objective: 99.9
    window: 30d
    good: http_requests_total{job="checkout", code!~"5.."}
    total: http_requests_total{job="checkout"}
    labels: {team: payments}
  - name: search-errors
    service: search
    objective: "99.5%"
    bad: sum(rate(search_errors_total[{{.window}}]))
    total: sum(rate(search_requests_total[{{ window }}]))
"""

THRESHOLDS = {
    "pr_build_p95": {"limit": 600, "repos": {"acme/shop": 1200, 'odd"repo.name': 300}},
    "queue_median": {"runner_labels": {"gpu": 900}},
    "flaky_rate": {"enabled": False},
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary(PROMTOOL, "prometheus"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def _rule_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def slo_spec(tmp_path: Path) -> Path:
    return _rule_file(tmp_path, "slos.yaml", CHECKOUT)


def test_promtool_accepts_thresholds_with_overrides_and_slos(tmp_path: Path, slo_spec: Path) -> None:
    document = rules_document(thresholds_from_table(THRESHOLDS), "7d", load_slos(slo_spec))
    checked = _promtool("check", "rules", str(_rule_file(tmp_path, "rules.yml", document)))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    groups = yaml.safe_load(document)["groups"]
    assert [group["name"] for group in groups] == [
        "shipscope-thresholds",
        "shipscope-slo-checkout-availability",
        "shipscope-slo-search-errors",
    ]
    alerts = {rule["alert"]: rule for rule in groups[0]["rules"]}
    assert "ShipscopeFlakyRate" not in alerts and len(alerts) == len(DEFAULT_THRESHOLDS) - 1
    pr_build = alerts["ShipscopePrBuildP95"]["expr"]
    # The default limit holds for every repository that has none of its own; each override is its own branch.
    assert 'repo!~"acme/shop|odd\\"repo\\\\.name"' in pr_build and ") > 600)" in pr_build
    assert 'repo="acme/shop"' in pr_build and ") > 1200)" in pr_build
    assert 'repo="odd\\"repo.name"' in pr_build and ") > 300)" in pr_build
    assert 'runner_label="gpu"' in alerts["ShipscopeQueueMedian"]["expr"]
    burn = [rule for rule in groups[1]["rules"] if rule.get("record") == "error_budget_burn_rate"]
    assert {rule["labels"]["window"] for rule in burn} == {"5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"}
    search = {rule.get("record"): rule["expr"] for rule in groups[2]["rules"] if "record" in rule}
    assert search["slo:sli_error:ratio_rate1h"] == (
        "(sum(rate(search_errors_total[1h]))) / (sum(rate(search_requests_total[1h])))"
    )


def _alert_test(name: str, errors: str, expected: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "interval": "1m",
        "input_series": [
            {"series": 'http_requests_total{job="checkout",code="200"}', "values": "0+6000x180"},
            {"series": 'http_requests_total{job="checkout",code="500"}', "values": errors},
        ],
        "alert_rule_test": [{"eval_time": "120m", "alertname": "ErrorBudgetBurn", "exp_alerts": expected}],
    }


def _firing(severity: str, window: str, burn: str, pairs: str) -> dict[str, Any]:
    return {
        "exp_labels": {
            "slo": "checkout-availability",
            "service": "checkout",
            "team": "payments",
            "window": window,
            "severity": severity,
        },
        "exp_annotations": {
            "summary": f"checkout-availability: error budget burning at {burn}×",
            "description": "checkout is spending its 0.999 objective's error budget too fast "
            f"({pairs} over a 30d window).",
        },
    }


def test_promtool_unit_test_pages_on_a_sustained_burn_and_not_on_a_short_spike(tmp_path: Path) -> None:
    [slo] = [each for each in load_slos(_rule_file(tmp_path, "slos.yaml", CHECKOUT)) if each.service == "checkout"]
    rules = _rule_file(tmp_path, "slo.yml", rules_document([], "7d", [slo]))
    page_pairs, ticket_pairs = "1h/5m at 14.4×, 6h/30m at 6×", "1d/2h at 3×, 3d/6h at 1×"
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            # 600 of 6,600 requests a minute fail: a burn rate of about 91 on every window, so both severities fire.
            _alert_test(
                "sustained",
                "0+600x180",
                [_firing("page", "1h", "90.9", page_pairs), _firing("ticket", "1d", "90.9", ticket_pairs)],
            ),
            # 2% errors for the last ten minutes: the short windows burn, the long ones do not, nothing fires.
            _alert_test("spike", "0x110 120+120x70", []),
        ],
    }
    unit = _rule_file(tmp_path, "slo_test.yml", yaml.safe_dump(tests, allow_unicode=True))
    tested = _promtool("test", "rules", str(unit))
    assert tested.returncode == 0, tested.stdout + tested.stderr


class _Requests(Collector):
    """Counters that grow linearly from the start: 100 requests and 1 error a second."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def collect(self) -> Iterator[CounterMetricFamily]:
        elapsed = time.monotonic() - self.started
        requests = CounterMetricFamily("http_requests", "Requests.", labels=["job", "code"])
        requests.add_metric(["checkout", "200"], 99 * elapsed)
        requests.add_metric(["checkout", "500"], 1 * elapsed)
        yield requests


@pytest.fixture
def requests_exporter() -> Iterator[str]:
    registry = CollectorRegistry()
    registry.register(_Requests())
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _all_rules_evaluated(prom: Prometheus) -> bool:
    rules = [rule for group in prom.rules() for rule in group["rules"]]
    return bool(rules) and all(rule.get("lastEvaluation", "").startswith("2") for rule in rules)


def _alerts(prom: Prometheus) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prom.base}/api/v1/alerts", timeout=10).json()
    alerts: list[dict[str, Any]] = answer["data"]["alerts"]
    return alerts


@pytest.mark.slow
def test_prometheus_loads_the_rules_and_evaluates_the_burn_rate(
    tmp_path: Path, slo_spec: Path, requests_exporter: str
) -> None:
    """1% errors against a 99.9% objective burn the budget 10× on every window: no 1h/5m page (14.4×), but the
    6h/30m pair (6×) and the 1d/2h ticket (3×) go pending."""
    [slo] = [each for each in load_slos(slo_spec) if each.service == "checkout"]
    thresholds = thresholds_from_table(THRESHOLDS)
    rules = _rule_file(tmp_path, "rules.yml", rules_document(thresholds, "7d", [slo]))
    # honor_labels: the exporter's own job label is the one the SLO selects.
    with prometheus(tmp_path, {"app": requests_exporter}, rule_files=[rules], honor_labels=True) as prom:
        wait_until(lambda: _all_rules_evaluated(prom), "every rule evaluated")
        for group in prom.rules():
            for rule in group["rules"]:
                assert rule["health"] == "ok", rule
        wait_until(lambda: len(prom.query('error_budget_burn_rate{window="5m"}')) == 1, "a 5m burn rate")
        for window in ("5m", "1h", "3d", "30d"):
            burn = prom.value(f'error_budget_burn_rate{{slo="checkout-availability",window="{window}"}}')
            assert burn == pytest.approx(10.0, rel=0.01), window
        remaining = prom.value('error_budget_remaining{slo="checkout-availability"}')
        assert remaining == pytest.approx(-9.0, rel=0.01)

        def pending() -> set[tuple[str, str]]:
            return {
                (alert["labels"]["severity"], alert["labels"]["window"])
                for alert in _alerts(prom)
                if alert["labels"]["alertname"] == "ErrorBudgetBurn"
            }

        wait_until(lambda: pending() == {("page", "6h"), ("ticket", "1d")}, "the 6× page and the 3× ticket")


def _run_event(number: int, status: str, start: datetime) -> dict[str, Any]:
    created = start + timedelta(minutes=number)
    return {
        "type": "pipeline_run",
        "id": f"acme/shop-main-{number}",
        "repo": "acme/shop",
        "workflow": "CI",
        "branch": "main",
        "default_branch": "main",
        "sha": f"{number:040x}",
        "status": status,
        "trigger": "push",
        "created_at": created.isoformat(),
        "started_at": created.isoformat(),
        "finished_at": (created + timedelta(minutes=5)).isoformat(),
    }


def _post_runs(base: str, runs: list[dict[str, Any]]) -> None:
    body = b"".join(orjson.dumps(run) + b"\n" for run in runs)
    answer = httpx.post(f"{base}/api/v1/events", content=body, timeout=30)
    assert answer.status_code == 200 and answer.json()["stored"] == len(runs), answer.text


@pytest.mark.slow
def test_a_threshold_alert_fires_from_the_scraped_counters(tmp_path: Path) -> None:
    """Prometheus sees only what changes while it scrapes: after the first two runs, 2 of the next 10 default-branch
    runs fail, and the failure-rate alert's value is 0.2 (limit 0.10)."""
    config = _rule_file(tmp_path, "shipscope.toml", "[exporter]\ncache_seconds = 0\n")
    thresholds = [each for each in thresholds_from_table({}) if each.name == "main_failure_rate"]
    rules = _rule_file(tmp_path, "rules.yml", rules_document(thresholds, "5m", []))
    start = datetime.now(UTC) - timedelta(hours=2)
    url = f"duckdb:///{tmp_path / 'alerts.duckdb'}"
    with (
        shipscope_serve(url, tmp_path, env={"SHIPSCOPE_CONFIG": str(config)}) as base,
        prometheus(tmp_path, {"shipscope": base.removeprefix("http://")}, rule_files=[rules]) as prom,
    ):
        _post_runs(base, [_run_event(0, "success", start), _run_event(1, "failure", start)])
        prom.value('shipscope_pipeline_runs_total{result="failure"}')
        time.sleep(2)  # a few scrapes of the first counts, so that the next ones are increases
        _post_runs(base, [_run_event(n, "failure" if n < 4 else "success", start) for n in range(2, 12)])
        failure_rate = threshold_value("main_failure_rate", "", "5m")
        wait_until(
            lambda: [float(row["value"][1]) for row in prom.query(failure_rate)] == [pytest.approx(0.2, rel=0.05)],
            "a failure rate of 0.2",
        )

        def failure_alert() -> list[dict[str, Any]]:
            return [alert for alert in _alerts(prom) if alert["labels"]["alertname"] == "ShipscopeMainFailureRate"]

        wait_until(lambda: len(failure_alert()) == 1, "the failure-rate alert pending")
        [alert] = failure_alert()
        assert alert["labels"]["repo"] == "acme/shop" and alert["labels"]["threshold"] == "main_failure_rate"
        summary = re.fullmatch(r"main_failure_rate on acme/shop: ([0-9.]+)%", alert["annotations"]["summary"])
        assert summary is not None and float(summary[1]) == pytest.approx(20, rel=0.05), alert["annotations"]


def _slo_errors(tmp_path: Path, text: str) -> str:
    path = _rule_file(tmp_path, "bad.yaml", text)
    with pytest.raises(InputError) as raised:
        load_slos(path)
    return str(raised.value)


def test_slo_spec_errors_name_the_file_the_slo_and_the_key(tmp_path: Path) -> None:
    good = "name: a\nobjective: 99\ntotal: t\ngood: g\n"
    assert load_slos(_rule_file(tmp_path, "one.yaml", good)) == [
        Slo(name="a", service="a", objective=0.99, window="30d", total="t", good="g")
    ]
    assert "bad.yaml: SLO 1: objective: '100.5' is not between 0 and 100%" in _slo_errors(
        tmp_path, good.replace("99", "'100.5'")
    )
    assert "SLO 1: give exactly one of good and bad" in _slo_errors(tmp_path, good + "bad: b\n")
    two = (
        "- {name: a, objective: 99, total: t, good: g}\n- {name: b, objective: 99, total: t, bad: b, window: 30 days}\n"
    )
    assert "SLO 2: window: expected a Prometheus duration such as 30d, got '30 days'" in _slo_errors(tmp_path, two)
    assert "SLO 1: unknown key(s) objetive" in _slo_errors(tmp_path, good.replace("objective", "objetive"))
    assert "SLO names must differ: a" in _slo_errors(
        tmp_path,
        "slos: [{name: a, objective: 99, total: t, good: g}, {name: a, objective: 99, total: t, good: g}]",
    )
    assert "not YAML" in _slo_errors(tmp_path, "slos: [unclosed\n")


def test_rules_cli_writes_a_file_and_reports_a_bad_spec(tmp_path: Path, slo_spec: Path) -> None:
    output = tmp_path / "out" / "rules.yml"
    written = runner.invoke(app, ["prometheus", "rules", "--slo", str(slo_spec), "-o", str(output)])
    assert written.exit_code == 0, written.output
    groups = yaml.safe_load(output.read_text())["groups"]
    assert len(groups) == 3
    only_slos = runner.invoke(app, ["prometheus", "rules", "--slo", str(slo_spec), "--no-thresholds"])
    assert only_slos.exit_code == 0 and "shipscope-thresholds" not in only_slos.stdout
    bad = _rule_file(tmp_path, "bad.yaml", "name: a\nobjective: high\ntotal: t\ngood: g\n")
    refused = runner.invoke(app, ["prometheus", "rules", "--slo", str(bad)])
    assert refused.exit_code == 2
    assert "objective: expected a percentage such as 99.9" in refused.stderr
    assert "Traceback" not in refused.output
    nothing = runner.invoke(app, ["prometheus", "rules", "--no-thresholds"])
    assert nothing.exit_code == 2 and "nothing to write" in nothing.stderr


# ----- Grafana dashboards ------------------------------------------------------------------------------------------


def _targets(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in board["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target["expr"]
    for annotation in board["annotations"]["list"]:
        if "expr" in annotation:
            yield annotation["name"], annotation["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["name"], variable["query"]["query"]


_VARIABLE_QUERY = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>[a-zA-Z_]+)\)$")


def _as_promql(expr: str) -> str:
    """What Grafana sends for ``expr`` with every variable at its default (All, 7d)."""
    query = _VARIABLE_QUERY.match(expr)
    if query is not None:  # Grafana's own function: it asks Prometheus for the series of the selector
        return query["selector"] or "up"
    return re.sub(r"\$(repo|service|environment|workflow)\b", ".*", expr).replace("$window", "7d")


def test_dashboards_are_grafana_dashboard_json() -> None:
    for name in DASHBOARDS:
        board = dashboard(name)
        assert board["uid"] == f"shipscope-{name}" and board["schemaVersion"] == SCHEMA_VERSION
        assert isinstance(board["title"], str) and board["panels"]
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids))
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"] and all(target["refId"] and target["expr"] for target in panel["targets"])
            position = panel["gridPos"]
            assert position["x"] + position["w"] <= 24 and position["w"] > 0 and position["h"] > 0
        variables = {variable["name"]: variable for variable in board["templating"]["list"]}
        assert variables["datasource"] == {
            "type": "datasource",
            "name": "datasource",
            "label": "Prometheus",
            "query": "prometheus",
            "current": {},
        }
        [deployments] = [each for each in board["annotations"]["list"] if each["name"] == "Deployments"]
        assert "shipscope_deployment_last_finished_timestamp_seconds" in deployments["expr"]


@pytest.mark.slow
def test_every_dashboard_expression_parses_in_prometheus(tmp_path: Path) -> None:
    with prometheus(tmp_path, {}) as prom:
        for name in DASHBOARDS:
            for where, expr in _targets(dashboard(name)):
                answer = httpx.get(f"{prom.base}/api/v1/query", params={"query": _as_promql(expr)}, timeout=10)
                assert answer.status_code == 200, (name, where, expr, answer.text)


def test_dashboards_cli_writes_one_file_or_a_directory(tmp_path: Path) -> None:
    one = runner.invoke(app, ["grafana", "dashboards", "dora", "-o", str(tmp_path / "dora.json")])
    assert one.exit_code == 0, one.output
    assert orjson.loads((tmp_path / "dora.json").read_bytes()) == dashboard("dora")
    both = runner.invoke(app, ["grafana", "dashboards", "-o", str(tmp_path / "boards")])
    assert both.exit_code == 0, both.output
    assert sorted(path.name for path in (tmp_path / "boards").iterdir()) == [
        "shipscope-dora.json",
        "shipscope-pipeline-health.json",
    ]
    listed = runner.invoke(app, ["grafana", "dashboards"])
    assert [board["uid"] for board in orjson.loads(listed.stdout)] == ["shipscope-pipeline-health", "shipscope-dora"]
    unknown = runner.invoke(app, ["grafana", "dashboards", "nope"])
    assert unknown.exit_code == 2 and "unknown dashboard 'nope'" in unknown.stderr


def test_a_threshold_value_is_shared_by_rules_and_dashboards() -> None:
    """The dashboard's failure-rate panel and the alert compare the same PromQL."""
    board = dashboard("pipeline-health")
    exprs = [expr for _, expr in _targets(board)]
    assert threshold_value("main_failure_rate", 'repo=~"$repo"', "$window") in exprs

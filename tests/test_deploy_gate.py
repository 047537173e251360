"""`shipscope deploy gate|freeze|unfreeze|analyze` against a real Prometheus, fed by a test exporter whose series the
tests set: pass, block, freeze and override, SLO burn-rate pairs, inconclusive and erring analyses, the seed's
Argo `success-rate` AnalysisTemplate unchanged, and Prometheus stopped (the gate fails closed)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from typer.testing import CliRunner

from shipscope.cli.main import app
from shipscope.deploy.analysis import load_template, run_analysis
from tests.factories import recorded_timeline
from tests.services import Prometheus, free_port, prometheus, wait_until
from tests.vendors import VendorServer

runner = CliRunner()
IDENTITY = ["--service", "checkout", "--env", "production", "--sha", "a" * 40, "--id", "deploy-1"]

# The seed's template, as Argo Rollouts documents it (https://argo-rollouts.readthedocs.io/en/stable/features/analysis/).
SEED_TEMPLATE = """\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  args:
  - name: service-name
  metrics:
  - name: success-rate
    interval: 5m
    # NOTE: prometheus queries return results in the form of a vector.
    # So it is common to access the index 0 of the returned array to obtain the value
    successCondition: result[0] >= 0.95
    failureLimit: 3
    provider:
      prometheus:
        address: http://prometheus.example.com:9090
        query: |
          sum(irate(
            istio_requests_total{reporter="source",destination_service=~"{{args.service-name}}",response_code!~"5.*"}[5m]
          )) /
          sum(irate(
            istio_requests_total{reporter="source",destination_service=~"{{args.service-name}}"}[5m]
          ))
"""


class _Series(Collector):
    """Gauges the tests set, and istio-style request counters growing at a settable rate and error share."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.error_share = 0.01
        self.requests = 0.0
        self.errors = 0.0
        self.last = time.monotonic()

    def set(self, name: str, value: float, **labels: str) -> None:
        with self.lock:
            self.gauges[(name, tuple(sorted(labels.items())))] = value

    def collect(self) -> Iterator[Any]:
        with self.lock:
            moment = time.monotonic()
            grown = 100.0 * (moment - self.last)  # 100 requests a second
            self.last = moment
            self.requests += grown * (1 - self.error_share)
            self.errors += grown * self.error_share
            families: dict[str, GaugeMetricFamily] = {}
            for (name, labels), value in self.gauges.items():
                family = families.setdefault(name, GaugeMetricFamily(name, name, labels=[key for key, _ in labels]))
                family.add_metric([value for _, value in labels], value)
            yield from families.values()
            istio = CounterMetricFamily(
                "istio_requests", "Requests.", labels=["reporter", "destination_service", "response_code"]
            )
            istio.add_metric(["source", "checkout", "200"], self.requests)
            istio.add_metric(["source", "checkout", "503"], self.errors)
            yield istio


@pytest.fixture(scope="module")
def series() -> Iterator[tuple[_Series, str]]:
    collector = _Series()
    registry = CollectorRegistry()
    registry.register(collector)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield collector, f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def prom(series: tuple[_Series, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    _, target = series
    with prometheus(tmp_path_factory.mktemp("prometheus"), {"app": target}, honor_labels=True) as running:
        yield running


def _burn(collector: _Series, prom: Prometheus, value: float) -> None:
    collector.set("error_budget_burn_rate", value, service="checkout", window="1h", slo="checkout-availability")
    wait_until(
        lambda: [float(s["value"][1]) for s in prom.query('error_budget_burn_rate{service="checkout"}')] == [value],
        f"Prometheus to read a burn of {value}",
    )


def _gate(prom_url: str, db: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    result = runner.invoke(
        app, ["deploy", "gate", *IDENTITY, "--prometheus-url", prom_url, "--db", db, "--json", *extra]
    )
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout), result.stderr


@pytest.mark.slow
def test_the_gate_passes_blocks_freezes_and_is_overridden(
    series: tuple[_Series, str], prom: Prometheus, tmp_path: Path
) -> None:
    collector, _ = series
    db = f"duckdb:///{tmp_path / 'gate.duckdb'}"
    _burn(collector, prom, 0.5)
    code, verdict, _ = _gate(prom.base, db)
    assert (code, verdict["outcome"]) == (0, "pass")
    assert verdict["measurements"][0]["value"] == 0.5 and verdict["measurements"][0]["limit"] == 2.0

    _burn(collector, prom, 3.25)
    code, verdict, text = _gate(prom.base, db, "--freeze-for", "2h")
    assert (code, verdict["outcome"]) == (1, "blocked")
    assert "error budget burn is 3.25×, above 2×" in verdict["reasons"]
    assert "3.250" in text and "BREACH" in text
    freeze = verdict["freeze"]
    assert freeze["service"] == "checkout" and freeze["environment"] == "production"
    assert freeze["reason"] == "error budget burn is 3.25×, above 2×"
    since, until = datetime.fromisoformat(freeze["since"]), datetime.fromisoformat(freeze["until"])
    assert (until - since).total_seconds() == 7200

    # The burn recovers, but the freeze holds later gates until it is lifted.
    _burn(collector, prom, 0.5)
    code, verdict, _ = _gate(prom.base, db)
    assert (code, verdict["outcome"]) == (1, "blocked")
    assert any("is frozen since" in reason for reason in verdict["reasons"])
    code, verdict, _ = _gate(prom.base, db, "--override", "hotfix for INC-42", "--actor", "alice")
    assert (code, verdict["outcome"]) == (0, "overridden")
    lifted = runner.invoke(
        app,
        ["deploy", "unfreeze", "--service", "checkout", "--env", "production", "--reason", "budget back", "--db", db],
    )
    assert lifted.exit_code == 0 and "lifted: frozen since" in lifted.stderr
    code, verdict, _ = _gate(prom.base, db)
    assert (code, verdict["outcome"]) == (0, "pass")

    gates = recorded_timeline(db, "gate")
    assert [gate["details"]["outcome"] for gate in gates] == ["pass", "blocked", "blocked", "overridden", "pass"]
    (overridden,) = [gate for gate in gates if gate["details"]["outcome"] == "overridden"]
    assert overridden["details"]["override"] == "hotfix for INC-42" and overridden["details"]["actor"] == "alice"
    assert overridden["details"]["deployment_id"] == "deploy-1"
    assert [event["details"]["reason"] for event in recorded_timeline(db, "unfreeze")] == ["budget back"]


@pytest.mark.slow
def test_a_manual_freeze_blocks_until_its_end(series: tuple[_Series, str], prom: Prometheus, tmp_path: Path) -> None:
    collector, _ = series
    db = f"duckdb:///{tmp_path / 'freeze.duckdb'}"
    _burn(collector, prom, 0.1)
    frozen = runner.invoke(
        app,
        [
            "deploy",
            "freeze",
            "--service",
            "checkout",
            "--env",
            "production",
            "--reason",
            "Black Friday",
            "--until",
            "1h",
        ]
        + ["--actor", "release-manager", "--db", db, "--json"],
    )
    assert frozen.exit_code == 0, frozen.output
    assert json.loads(frozen.stdout)["freeze"]["actor"] == "release-manager"
    code, verdict, _ = _gate(prom.base, db)
    assert code == 1
    assert any("by release-manager" in reason and "Black Friday" in reason for reason in verdict["reasons"])
    # Another environment is not frozen.
    other = runner.invoke(
        app,
        ["deploy", "gate", "--service", "checkout", "--env", "staging", "--sha", "a" * 40, "--id", "d-2"]
        + ["--prometheus-url", prom.base, "--db", db],
    )
    assert other.exit_code == 0, other.output


@pytest.mark.slow
def test_the_slo_spec_blocks_when_a_burn_rate_pair_fires(
    series: tuple[_Series, str], prom: Prometheus, tmp_path: Path
) -> None:
    """1% errors against 99.9% burn the budget 10× on every window: the 6h/30m pair (6×) and the 1d/2h and 3d/6h
    pairs fire; the 1h/5m page (14.4×) does not. The burn-rate series alone (0.5) would pass."""
    collector, _ = series
    collector.error_share = 0.01
    _burn(collector, prom, 0.5)
    spec = tmp_path / "slo.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "slos": [
                    {
                        "name": "checkout-availability",
                        "service": "checkout",
                        "objective": 99.9,
                        "window": "30d",
                        "bad": 'istio_requests_total{destination_service="checkout",response_code=~"5.."}',
                        "total": 'istio_requests_total{destination_service="checkout"}',
                    }
                ]
            }
        )
    )
    db = f"duckdb:///{tmp_path / 'slo.duckdb'}"
    wait_until(lambda: len(prom.query("rate(istio_requests_total[1m])")) == 2, "two request samples")
    code, verdict, _ = _gate(prom.base, db, "--slo", str(spec), "--freeze-for", "0")
    assert (code, verdict["outcome"]) == (1, "blocked")
    fired = {m["what"]: m["breached"] for m in verdict["measurements"]}
    assert fired == {
        "error budget burn": False,
        "checkout-availability burn 1h/5m (page)": False,
        "checkout-availability burn 6h/30m (page)": True,
        "checkout-availability burn 1d/2h (ticket)": True,
        "checkout-availability burn 3d/6h (ticket)": True,
    }
    burns = [m["value"] for m in verdict["measurements"][1:]]
    assert all(burn == pytest.approx(10.0, rel=0.05) for burn in burns)
    assert verdict["freeze"] is None  # --freeze-for 0


def test_the_gate_fails_closed_when_prometheus_is_down_or_open_by_choice(tmp_path: Path) -> None:
    db = f"duckdb:///{tmp_path / 'down.duckdb'}"
    down = f"http://127.0.0.1:{free_port()}"
    code, verdict, text = _gate(down, db)
    assert (code, verdict["outcome"]) == (3, "unknown")
    assert "cannot be reached" in verdict["reasons"][0] and "failing closed" in verdict["reasons"][0]
    assert verdict["freeze"] is None
    code, verdict, _ = _gate(down, db, "--fail-open")
    assert (code, verdict["outcome"]) == (0, "pass")
    assert "failing open, as configured" in verdict["reasons"][0]
    assert [gate["details"]["outcome"] for gate in recorded_timeline(db, "gate")] == ["unknown", "pass"]


@pytest.mark.slow
def test_a_query_without_series_is_unknown_not_a_pass(prom: Prometheus, tmp_path: Path) -> None:
    db = f"duckdb:///{tmp_path / 'none.duckdb'}"
    code, verdict, _ = _gate(prom.base, db, "--query", 'error_budget_burn_rate{service="{service}-nope"}')
    assert (code, verdict["outcome"]) == (3, "unknown")
    assert 'returned no series: error_budget_burn_rate{service="checkout-nope"}' in verdict["reasons"][0]


def test_bad_gate_input_exits_4_with_the_reason(tmp_path: Path) -> None:
    db = f"duckdb:///{tmp_path / 'bad.duckdb'}"
    missing = runner.invoke(app, ["deploy", "gate", "--env", "production", "--sha", "a", "--id", "x", "--db", db])
    assert missing.exit_code == 4 and "no service" in missing.stderr
    no_source = runner.invoke(app, ["deploy", "gate", *IDENTITY, "--db", db])
    assert no_source.exit_code == 4 and "give --prometheus-url" in no_source.stderr


def test_an_unreachable_database_or_server_exits_3_not_4() -> None:
    """A pipeline retries an exit 3 and fixes its flags after an exit 4."""
    prometheus = ("--prometheus-url", "http://127.0.0.1:9")
    down = runner.invoke(app, ["deploy", "gate", *IDENTITY, *prometheus, "--db", "postgresql://x@127.0.0.1:9/none"])
    assert down.exit_code == 3 and "cannot open the database" in down.stderr
    gone = runner.invoke(app, ["deploy", "gate", *IDENTITY, *prometheus, "--server", "http://127.0.0.1:9"])
    assert gone.exit_code == 3 and "cannot reach the shipscope server" in gone.stderr


# ----- analyze -------------------------------------------------------------------------------------------------------


def _template(tmp_path: Path, metrics: list[dict[str, Any]], kind: str = "AnalysisTemplate", **spec: Any) -> Path:
    path = tmp_path / "analysis.yaml"
    document = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "canary"},
        "spec": {"args": [{"name": "service", "value": "checkout"}], "metrics": metrics, **spec},
    }
    path.write_text(yaml.safe_dump(document))
    return path


def _ratio_metric(**fields: Any) -> dict[str, Any]:
    return {
        "name": "canary-ratio",
        "interval": "1s",
        "count": 3,
        "provider": {"prometheus": {"query": 'canary_success_ratio{service="{{args.service}}"}'}},
        **fields,
    }


def _analyze(template: Path, prom_url: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    result = runner.invoke(
        app, ["deploy", "analyze", "--template", str(template), "--prometheus-url", prom_url, "--json", *extra]
    )
    assert "Traceback" not in result.output, result.output
    return result.exit_code, json.loads(result.stdout), result.stderr


def _ratio(collector: _Series, prom: Prometheus, value: float) -> None:
    collector.set("canary_success_ratio", value, service="checkout")
    wait_until(
        lambda: [float(s["value"][1]) for s in prom.query('canary_success_ratio{service="checkout"}')] == [value],
        f"Prometheus to read {value}",
    )


@pytest.mark.slow
def test_analysis_successful_failed_and_inconclusive(
    series: tuple[_Series, str], prom: Prometheus, tmp_path: Path
) -> None:
    collector, _ = series
    conditions = {"successCondition": "result[0] >= 0.99", "failureCondition": "result[0] < 0.9"}
    template = _template(tmp_path, [_ratio_metric(**conditions)], kind="ClusterAnalysisTemplate")

    _ratio(collector, prom, 0.995)
    code, document, text = _analyze(template, prom.base)
    assert (code, document["phase"]) == (0, "Successful")
    assert [m["phase"] for m in document["measurements"]] == ["Successful"] * 3
    assert [m["value"] for m in document["measurements"]] == [[0.995]] * 3
    assert document["kind"] == "ClusterAnalysisTemplate" and "canary-ratio" in text

    _ratio(collector, prom, 0.95)
    code, document, _ = _analyze(template, prom.base)
    assert (code, document["phase"]) == (2, "Inconclusive")
    assert len(document["measurements"]) == 1  # the run ends at the first inconclusive measurement (limit 0)

    _ratio(collector, prom, 0.5)
    code, document, _ = _analyze(_template(tmp_path, [_ratio_metric(failureLimit=1, **conditions)]), prom.base)
    assert (code, document["phase"]) == (1, "Failed")
    assert [m["phase"] for m in document["measurements"]] == ["Failed", "Failed"]  # the second exceeds the limit
    assert document["metrics"][0] | {"measurements": 2} == {
        "name": "canary-ratio",
        "phase": "Failed",
        "dry_run": False,
        "measurements": 2,
        "successful": 0,
        "failed": 2,
        "inconclusive": 0,
        "errors": 0,
    }


@pytest.mark.slow
def test_analysis_errors_when_the_query_gives_nothing_or_prometheus_is_down(prom: Prometheus, tmp_path: Path) -> None:
    empty = _ratio_metric(
        successCondition="result[0] >= 0.99",
        consecutiveErrorLimit=1,
        provider={"prometheus": {"query": 'canary_success_ratio{service="nobody"}'}},
    )
    code, document, _ = _analyze(_template(tmp_path, [empty]), prom.base)
    assert (code, document["phase"]) == (3, "Error")
    assert [m["phase"] for m in document["measurements"]] == ["Error", "Error"]
    assert "IndexError" in document["measurements"][0]["message"]
    code, document, _ = _analyze(_template(tmp_path, [empty]), f"http://127.0.0.1:{free_port()}")
    assert (code, document["phase"]) == (3, "Error")
    assert "cannot be reached" in document["measurements"][0]["message"]


@pytest.mark.slow
def test_the_seed_success_rate_template_runs_unchanged(
    series: tuple[_Series, str], prom: Prometheus, tmp_path: Path
) -> None:
    collector, _ = series
    path = tmp_path / "success-rate.yaml"
    path.write_text(SEED_TEMPLATE)
    collector.error_share = 0.01
    wait_until(lambda: len(prom.query("irate(istio_requests_total[5m])")) == 2, "request rates")
    args = ["--arg", "service-name=checkout", "--duration", "0s", "--service", "checkout", "--env", "production"]
    args += ["--sha", "b" * 40, "--id", "canary-7", "--db", f"duckdb:///{tmp_path / 'seed.duckdb'}"]
    code, document, _ = _analyze(path, prom.base, *args)
    assert (code, document["phase"]) == (0, "Successful"), document
    (measurement,) = document["measurements"]
    assert measurement["value"][0] == pytest.approx(0.99, abs=0.002)
    (verdict,) = recorded_timeline(f"duckdb:///{tmp_path / 'seed.duckdb'}", "analysis")
    assert verdict["details"]["phase"] == "Successful" and verdict["details"]["deployment_id"] == "canary-7"

    # 10% errors: each 5-minute measurement fails; the fourth exceeds failureLimit 3. Argo's schedule is kept, and
    # only the waiting is skipped, so a quarter of an hour of analysis runs in a moment.
    collector.error_share = 0.10
    wait_until(
        lambda: all(
            float(s["value"][1]) > 5 for s in prom.query('irate(istio_requests_total{response_code="503"}[5m])')
        ),
        "the error rate to rise",
    )
    template = load_template(path, {"service-name": "checkout"}, prometheus_url=prom.base)
    skipped = [0.0]
    result = run_analysis(
        template,
        duration=15 * 60,
        clock=lambda: skipped[0],
        sleep=lambda seconds: skipped.__setitem__(0, skipped[0] + seconds),
        wall=lambda: datetime.now(UTC),
    )
    assert result.phase == "Failed" and result.exit_code == 1
    assert [m.phase for m in result.measurements] == ["Failed"] * 4
    assert skipped[0] == 15 * 60
    assert all(m.value[0] == pytest.approx(0.9, abs=0.01) for m in result.measurements)


def test_the_gate_reads_a_datadog_slo(tmp_path: Path, vendors: VendorServer) -> None:
    """https://docs.datadoghq.com/api/latest/service-level-objectives/#get-an-slos-history: GET
    /api/v1/slo/{slo_id}/history with from_ts and to_ts, DD-API-KEY and DD-APPLICATION-KEY."""
    history = {"data": {"overall": {"sli_value": 99.5}, "thresholds": {"30d": {"target": 99.9, "timeframe": "30d"}}}}
    vendors.plan("GET", "/api/v1/slo/abc123/history", (200, {}, history, 0.0))
    env = {"DD_API_KEY": "dd-key", "DD_APP_KEY": "dd-app-key", "SHIPSCOPE_DATADOG_URL": vendors.base}
    db = f"duckdb:///{tmp_path / 'dd.duckdb'}"
    result = runner.invoke(
        app,
        ["deploy", "gate", *IDENTITY, "--datadog-slo", "abc123", "--db", db, "--json", "--freeze-for", "0"],
        env=env,
    )
    verdict = json.loads(result.stdout)
    assert (result.exit_code, verdict["outcome"]) == (1, "blocked")
    assert verdict["measurements"][0]["what"] == "Datadog SLO abc123 burn (1h)"
    assert verdict["measurements"][0]["value"] == pytest.approx(5.0)
    (request,) = vendors.at("/api/v1/slo/abc123/history")
    assert request.headers["DD-API-KEY"] == "dd-key" and request.headers["DD-APPLICATION-KEY"] == "dd-app-key"
    params = dict(part.split("=") for part in request.path.split("?")[1].split("&"))
    assert int(params["to_ts"]) - int(params["from_ts"]) == 3600

"""`/metrics`: the exposition equals the store's numbers, keeps to its series budget, and a real Prometheus scrapes
it and answers `histogram_quantile` within one bucket of the store's exact p95."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from shipscope.config import Settings
from shipscope.demo import generate
from shipscope.exporters.prometheus import DURATION_BOUNDS, ExporterConfig, StoreCollector, metrics_registry
from shipscope.metrics.common import EARLIEST, LATEST, Window
from shipscope.metrics.pipelines import workflow_durations
from shipscope.store import Store
from shipscope.web.app import create_app
from tests.factories import delivery, ndjson
from tests.services import prometheus, shipscope_serve

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _run(number: int, seconds: float, *, pr: bool, status: str = "success", repo: str = "acme/shop") -> dict[str, Any]:
    created = START + timedelta(minutes=17 * number)
    return {
        "type": "pipeline_run",
        "id": f"{repo}-{number}",
        "repo": repo,
        "workflow": "ci",
        "trigger": "pull_request" if pr else "push",
        "branch": f"feature-{number}" if pr else "main",
        "default_branch": "main",
        "pr_number": number if pr else None,
        "sha": f"{number:040x}",
        "status": status,
        "created_at": _iso(created),
        "started_at": _iso(created + timedelta(seconds=20)),
        "finished_at": _iso(created + timedelta(seconds=20 + seconds)),
    }


def _durations(count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.lognormvariate(6.0, 0.7), 1) for _ in range(count)]


def _seed(store: Store) -> dict[str, list[float]]:
    """PR and default-branch runs of acme/shop with known durations, a failed default-branch run with a test job,
    and three deployments."""
    durations = {"pr": _durations(150, 1), "default": _durations(40, 2)}
    events = [_run(n, seconds, pr=True) for n, seconds in enumerate(durations["pr"])]
    events += [_run(1000 + n, seconds, pr=False) for n, seconds in enumerate(durations["default"])]
    failed = _run(2000, 300.0, pr=False, status="failure")
    events.append(failed)
    events.append(
        {
            "type": "job",
            "id": "job-2000",
            "run_id": failed["id"],
            "name": "unit tests",
            "status": "failure",
            "created_at": failed["created_at"],
            "started_at": _iso(datetime.fromisoformat(failed["created_at"]) + timedelta(seconds=45)),
            "finished_at": failed["finished_at"],
        }
    )
    durations["default"].append(300.0)
    for number, status in enumerate(("success", "success", "failure")):
        events.append(
            {
                "type": "deployment",
                "id": f"deploy-{number}",
                "service": "checkout",
                "environment": "production",
                "sha": f"{number:040x}",
                "status": status,
                "started_at": _iso(START + timedelta(hours=number)),
                "finished_at": _iso(START + timedelta(hours=number, minutes=5)),
            }
        )
    store.ingest([delivery(event) for event in events], [])
    return durations


def _scrape(store: Store, config: ExporterConfig | None = None) -> dict[str, list[Sample]]:
    from prometheus_client import generate_latest

    registry = metrics_registry(StoreCollector(store, config or ExporterConfig(cache_seconds=0)))
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def _value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    found = [
        sample.value for sample in samples.get(name, []) if all(sample.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_exposition_counts_what_the_store_holds(store: Store) -> None:
    durations = _seed(store)
    samples = _scrape(store)
    for kind, values in durations.items():
        where = {"repo": "acme/shop", "workflow": "ci", "branch_kind": kind}
        assert _value(samples, "shipscope_pipeline_duration_seconds_count", **where) == len(values)
        assert _value(samples, "shipscope_pipeline_duration_seconds_sum", **where) == pytest.approx(sum(values))
        for bound in DURATION_BOUNDS:
            expected = sum(1 for value in values if value <= bound)
            assert _value(samples, "shipscope_pipeline_duration_seconds_bucket", le=f"{bound:g}", **where) == expected
        assert _value(samples, "shipscope_pipeline_duration_seconds_bucket", le="+Inf", **where) == len(values)
    runs = {"repo": "acme/shop", "workflow": "ci"}
    assert _value(samples, "shipscope_pipeline_runs_total", branch_kind="pr", result="success", **runs) == 150
    assert _value(samples, "shipscope_pipeline_runs_total", branch_kind="default", result="success", **runs) == 40
    failed = _value(
        samples, "shipscope_pipeline_runs_total", branch_kind="default", result="failure", failure_class="test", **runs
    )
    assert failed == 1
    queue = {"repo": "acme/shop", "workflow": "ci", "branch_kind": "default"}
    assert _value(samples, "shipscope_job_queue_seconds_count", **queue) == 1
    assert _value(samples, "shipscope_job_queue_seconds_sum", **queue) == 45
    assert _value(samples, "shipscope_job_queue_seconds_bucket", le="30", **queue) == 0
    assert _value(samples, "shipscope_job_queue_seconds_bucket", le="60", **queue) == 1
    deployed = {"service": "checkout", "environment": "production", "kind": "deploy"}
    assert _value(samples, "shipscope_deployments_total", status="success", **deployed) == 2
    assert _value(samples, "shipscope_deployments_total", status="failure", **deployed) == 1
    last = _value(samples, "shipscope_deployment_last_finished_timestamp_seconds", service="checkout")
    assert last == (START + timedelta(hours=2, minutes=5)).timestamp()
    assert _value(samples, "shipscope_exporter_folded_label_sets", metric="shipscope_pipeline_duration_seconds") == 0


def test_the_budget_folds_the_least_active_label_sets_into_other(store: Store) -> None:
    events = [_run(n, 100.0 + n, pr=False, repo=f"acme/repo-{n % 40:02d}") for n in range(400)]
    events += [_run(500 + n, 50.0, pr=False, repo="acme/busy") for n in range(100)]
    store.ingest([delivery(event) for event in events], [])
    unbounded = _scrape(store)
    durations = "shipscope_pipeline_duration_seconds_count"
    assert len(unbounded[durations]) == 41
    samples = _scrape(store, ExporterConfig(cache_seconds=0, max_series=200))
    store_series = sum(sample.value for sample in samples["shipscope_exporter_series"])
    assert store_series <= 200
    repos = {sample.labels["repo"] for sample in samples[durations]}
    assert "other" in repos and "acme/busy" in repos, repos
    assert sum(sample.value for sample in samples[durations]) == 500, "folding keeps every run counted"
    folded = _value(samples, "shipscope_exporter_folded_label_sets", metric="shipscope_pipeline_duration_seconds")
    assert folded == 41 - len(repos) + 1


def test_allowlists_turn_other_values_into_other(store: Store) -> None:
    _seed(store)
    store.ingest([delivery(_run(9000, 60.0, pr=False, repo="elsewhere/tool"))], [])
    samples = _scrape(store, ExporterConfig(cache_seconds=0, labels={"repo": ["acme/*"]}))
    repos = {sample.labels["repo"] for sample in samples["shipscope_pipeline_duration_seconds_count"]}
    assert repos == {"acme/shop", "other"}
    assert _value(samples, "shipscope_exporter_folded_label_sets", metric="shipscope_pipeline_duration_seconds") == 1


def test_the_demo_stays_under_two_thousand_series(demo_store: Store) -> None:
    samples = _scrape(demo_store)
    series = sum(len(found) for found in samples.values())
    assert 500 < series < 2000
    for family in ("shipscope_dora_tier", "shipscope_open_findings", "shipscope_stage_duration_seconds_count"):
        assert samples[family], family


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store(f"duckdb:///{tmp_path_factory.mktemp('demo') / 'demo.duckdb'}")
    store.ensure_schema()
    events = generate()  # what `make run` loads: 90 days up to today
    while batch := list(islice(events, 5000)):
        store.ingest([delivery(event) for event in batch], [])
    try:
        yield store
    finally:
        store.close()


def test_metrics_needs_the_read_scope_when_tokens_are_set(tmp_path: Path) -> None:
    settings = Settings(
        db=f"duckdb:///{tmp_path / 'x.duckdb'}", api_tokens="reader:read writer:ingest", alert_interval_seconds=0
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer writer"}).status_code == 403
        answer = client.get("/metrics", headers={"Authorization": "Bearer reader"})
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_ingest_counters_count_this_servers_writes(tmp_path: Path) -> None:
    settings = Settings(db=f"duckdb:///{tmp_path / 'x.duckdb'}", alert_interval_seconds=0)
    body = ndjson(_run(1, 60.0, pr=False), _run(2, 60.0, pr=False))
    with TestClient(create_app(settings)) as client:
        assert client.post("/api/v1/events", content=body).json()["stored"] == 2
        assert client.post("/api/v1/events", content=body).json()["duplicates"] == 2
        assert client.post("/api/v1/events", content=b"{not json\n").status_code == 400
        samples: dict[str, list[Sample]] = {}
        for family in text_string_to_metric_families(client.get("/metrics").text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append(sample)
    assert _value(samples, "shipscope_ingest_events_total", source="events", outcome="new") == 2
    assert _value(samples, "shipscope_ingest_events_total", source="events", outcome="duplicate") == 2
    assert _value(samples, "shipscope_ingest_deliveries_total", source="events", outcome="rejected") == 1


@pytest.mark.slow
def test_prometheus_scrapes_and_its_p95_matches_the_store(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'scraped.duckdb'}"
    store = Store(url)
    store.ensure_schema()
    _seed(store)
    [pr] = [row for row in workflow_durations(store, Window(EARLIEST, LATEST)) if row.branch_kind == "pr"]
    store.close()
    exact = pr.duration.p95
    assert exact is not None
    with (
        shipscope_serve(url, tmp_path) as base,
        prometheus(tmp_path, {"shipscope": base.removeprefix("http://")}) as prom,
    ):
        estimate = prom.value(
            'histogram_quantile(0.95, sum by (le) (shipscope_pipeline_duration_seconds_bucket{branch_kind="pr"}))'
        )
        assert prom.value('up{job="shipscope"}') == 1
    bounds = (0.0, *DURATION_BOUNDS)
    upper = next(bound for bound in bounds if bound >= exact)
    width = upper - bounds[bounds.index(upper) - 1]
    assert abs(estimate - exact) <= width, (estimate, exact, width)

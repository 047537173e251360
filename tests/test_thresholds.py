"""Alert thresholds evaluated on ingested data, on DuckDB and PostgreSQL, against hand-computed values.

The data set ``crossing`` crosses each of the seven defaults once for ``acme/shop`` (or runner label ``linux``);
``at_the_limit`` sits exactly on every limit, which is not a violation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shipscope.errors import ConfigError
from shipscope.metrics.common import Filters, Window
from shipscope.metrics.thresholds import DEFAULT_THRESHOLDS, Violation, evaluate, thresholds_from_table
from shipscope.store import Store
from tests.factories import delivery

Event = dict[str, Any]

SINCE = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday: two ISO weeks, 2 and 9 March
WINDOW = Window(SINCE, datetime(2026, 3, 16, tzinfo=UTC))
DAY = datetime(2026, 3, 10, 10, tzinfo=UTC)
REPO = "acme/shop"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def load(store: Store, *events: Event) -> None:
    store.ingest([delivery(event) for event in events])


def run(
    run_id: str, *, duration: float = 300, status: str = "success", created: datetime = DAY, **fields: Any
) -> Event:
    started = created + timedelta(seconds=30)
    event: Event = {
        "type": "pipeline_run",
        "id": run_id,
        "repo": REPO,
        "workflow": "ci",
        "trigger": "push",
        "branch": "main",
        "sha": f"sha-{run_id}",
        "status": status,
        "created_at": iso(created),
        "started_at": iso(started),
        "finished_at": iso(started + timedelta(seconds=duration)),
    }
    event.update(fields)
    return event


def pr_run(run_id: str, duration: float, workflow: str = "ci") -> Event:
    return run(run_id, duration=duration, trigger="pull_request", branch="feature/x", pr_number=7, workflow=workflow)


def job(job_id: str, queue: float) -> Event:
    return {
        "type": "job",
        "id": job_id,
        "run_id": "main-1",
        "name": job_id,
        "status": "success",
        "runner": ["linux"],
        "created_at": iso(DAY),
        "started_at": iso(DAY + timedelta(seconds=queue)),
    }


def case(name: str, seconds: float, *, suite: str = "unit", outcome: str = "passed", attempt: int = 1) -> Event:
    return {
        "type": "test_case",
        "run_id": "main-1",
        "suite": suite,
        "classname": "tests.test_shop",
        "name": name,
        "duration_seconds": seconds,
        "outcome": outcome,
        "attempt": attempt,
    }


def cache(hit: bool, run_id: str) -> Event:
    return {"type": "cache", "kind": "dependency", "key": "deps", "hit": hit, "run_id": run_id}


def finding(scan_id: str, fingerprint: str, scanned_at: str, severity: str = "critical") -> Event:
    return {
        "type": "finding",
        "scan_id": scan_id,
        "repo": REPO,
        "tool": "trivy",
        "rule_id": f"rule-{fingerprint}",
        "severity": severity,
        "fingerprint": fingerprint,
        "scanned_at": scanned_at,
    }


def dataset(*, cross: bool) -> list[Event]:
    """Every default threshold crossed (``cross``) or exactly at its limit (not crossed)."""
    events: list[Event] = [
        # PR runs: ci 600 s and 1200 s → p95 = 600 + 0.95·600 = 1170 s (19.5 min) > 15 min;
        # at the limit: 600 s and 900 s → 600 + 0.95·300 = 885 s. The lint workflow (60 s) is not the worst.
        pr_run("pr-1", 600),
        pr_run("pr-2", 1200 if cross else 900),
        pr_run("pr-lint", 60, workflow="lint"),
        # An earlier main run before the window: main is a warm branch for the cache.
        run("main-0", created=SINCE - timedelta(days=1)),
    ]
    # Default-branch runs: crossing 1 failed of 5 = 20% > 10%; at the limit 1 of 10 = 10%.
    successes = 4 if cross else 9
    events.append(run("main-fail", status="failure"))
    events += [run(f"main-{index}") for index in range(1, successes + 1)]
    # Queue on "linux": 100, 200, 300 s → median 200 s > 180 s; at the limit 100, 180, 300 → 180 s.
    events += [job("q1", 100), job("q2", 200 if cross else 180), job("q3", 300)]
    # Suite "unit" in one job-less execution of main-1: 200 + 150 = 350 s > 300 s; at the limit 200 + 100 = 300 s.
    events += [case("test_big", 200), case("test_medium", 150 if cross else 100)]
    # Flaky: test_flaky failed then passed on retry: 1 flaky execution. Executions: 2 (unit) + 2 (flaky) + others.
    # Crossing: 46 others → 1 / 50 = 2% > 1%; at the limit 96 others → 1 / 100 = 1%.
    events += [
        case("test_flaky", 0.1, suite="fast", outcome="failed", attempt=1),
        case("test_flaky", 0.1, suite="fast", attempt=2),
    ]
    events += [case(f"test_{index}", 0.01, suite="fast") for index in range(46 if cross else 96)]
    # Cache on warm main: crossing 1 hit, 1 miss = 50% < 60%; at the limit 3 hits, 2 misses = 60%.
    hits, misses = (1, 1) if cross else (3, 2)
    events += [cache(True, f"main-{index}") for index in range(1, hits + 1)]
    events += [cache(False, "main-fail")] + [cache(False, f"main-{hits + index}") for index in range(1, misses)]
    # Criticals: 1 in the week of 2 March, 2 (crossing) or 1 in the week of 9 March.
    events += [finding("t1", "A", "2026-03-03T10:00:00Z"), finding("t2", "A", "2026-03-10T10:00:00Z")]
    events.append(finding("t2", "B", "2026-03-10T10:00:00Z", "critical" if cross else "high"))
    return events


def by_name(violations: list[Violation]) -> dict[str, Violation]:
    found = {violation.threshold: violation for violation in violations}
    assert len(found) == len(violations)
    return found


def test_every_default_crossed_with_hand_computed_values(store: Store) -> None:
    load(store, *dataset(cross=True))
    found = by_name(evaluate(store, WINDOW))
    assert list(found) == [threshold.name for threshold in DEFAULT_THRESHOLDS]
    assert {name: (v.subject, v.value, v.limit) for name, v in found.items()} == {
        "pr_build_p95": (REPO, pytest.approx(1170.0), 900.0),
        "suite_duration": (REPO, pytest.approx(350.0), 300.0),
        "main_failure_rate": (REPO, pytest.approx(0.2), 0.10),
        "queue_median": ("linux", pytest.approx(200.0), 180.0),
        "cache_hit_rate": (REPO, pytest.approx(0.5), 0.60),
        "flaky_rate": (REPO, pytest.approx(0.02), 0.01),
        "critical_findings_up": (REPO, 1.0, 0.0),
    }
    assert found["pr_build_p95"].numbers["workflow"] == "ci"
    assert found["pr_build_p95"].numbers["samples"] == 2
    assert found["suite_duration"].numbers["suite"] == "unit"
    assert found["main_failure_rate"].numbers == {"failed": 1, "completed": 5, "succeeded": 4, "infra": 0}
    assert found["queue_median"].numbers["samples"] == 3
    assert found["cache_hit_rate"].numbers["hits"] == 1 and found["cache_hit_rate"].numbers["lookups"] == 2
    assert found["flaky_rate"].numbers["flaky_executions"] == 1 and found["flaky_rate"].numbers["executions"] == 50
    assert found["critical_findings_up"].numbers == {"week": "2026-03-09", "critical": 2, "critical_previous": 1}
    assert found["pr_build_p95"].message == (
        "acme/shop: the p95 build time of PR runs of ci is 19.5 min, above the limit of 15 min"
    )
    assert found["main_failure_rate"].message == (
        "acme/shop: the default-branch failure rate (1 of 5 runs) is 20%, above the limit of 10%"
    )
    assert found["queue_median"].message == "linux: the median queue time is 3.33 min, above the limit of 3 min"
    assert found["cache_hit_rate"].message == (
        "acme/shop: the cache hit rate (1 of 2 lookups) is 50%, below the limit of 60%"
    )
    assert found["critical_findings_up"].message == (
        "acme/shop: open CRITICAL findings went from 1 to 2 in the week of 2026-03-09, up by 1 (allowed: 0)"
    )
    assert found["suite_duration"].message == (
        "acme/shop: the longest run of suite unit is 5.83 min, above the limit of 5 min"
    )
    assert found["flaky_rate"].message == (
        "acme/shop: the flaky rate (1 of 50 test executions) is 2%, above the limit of 1%"
    )
    shape = found["flaky_rate"].to_json()
    assert set(shape) == {"threshold", "subject", "value", "limit", "numbers", "message"}


def test_values_at_the_limits_do_not_violate(store: Store) -> None:
    load(store, *dataset(cross=False))
    assert evaluate(store, WINDOW) == []


def test_no_data_never_violates(store: Store) -> None:
    assert evaluate(store, WINDOW) == []
    # Data outside the window is no data either.
    assert evaluate(store, Window(datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 12, tzinfo=UTC))) == []


def test_first_scan_has_nothing_to_grow_from(store: Store) -> None:
    load(store, finding("t1", "A", "2026-03-10T10:00:00Z"), finding("t1", "B", "2026-03-10T10:00:00Z"))
    assert evaluate(store, WINDOW) == []


def test_per_repo_overrides_from_the_table_and_from_the_call(store: Store) -> None:
    load(store, *dataset(cross=True))
    thresholds = thresholds_from_table(
        {
            "pr_build_p95": {"repos": {REPO: 1200}},  # 1170 s is below this repo's own limit
            "queue_median": {"runner_labels": {"linux": 200}},  # 200 s is not above 200 s
            "main_failure_rate": {"limit": 0.25, "repos": {"acme/other": 0.01}},
        }
    )
    names = {violation.threshold for violation in evaluate(store, WINDOW, thresholds=thresholds)}
    assert names == {"suite_duration", "cache_hit_rate", "flaky_rate", "critical_findings_up"}
    # Overrides given to evaluate win over the table's.
    again = evaluate(store, WINDOW, thresholds=thresholds, overrides={"pr_build_p95": {REPO: 1000}})
    (pr,) = [violation for violation in again if violation.threshold == "pr_build_p95"]
    assert pr.limit == 1000
    # Filters pass through to the metrics: another repository has nothing.
    assert evaluate(store, WINDOW, Filters(repo="acme/other")) == []


def test_disabled_threshold_is_not_evaluated(store: Store) -> None:
    load(store, *dataset(cross=True))
    thresholds = thresholds_from_table({"flaky_rate": {"enabled": False}, "suite_duration": {"enabled": False}})
    assert [threshold.name for threshold in thresholds] == [
        "pr_build_p95",
        "main_failure_rate",
        "queue_median",
        "cache_hit_rate",
        "critical_findings_up",
    ]
    names = [violation.threshold for violation in evaluate(store, WINDOW, thresholds=thresholds)]
    assert "flaky_rate" not in names and "suite_duration" not in names and len(names) == 5


def test_empty_table_gives_the_defaults() -> None:
    assert thresholds_from_table({}) == list(DEFAULT_THRESHOLDS)
    (changed,) = [t for t in thresholds_from_table({"flaky_rate": {"limit": 0.05}}) if t.name == "flaky_rate"]
    assert changed.limit == 0.05 and changed.limit_for("acme/x") == 0.05


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ({"build_p99": {"limit": 1}}, "unknown threshold"),
        ({"flaky_rate": {"limt": 1}}, "unknown setting"),
        ({"flaky_rate": {"limit": "1%"}}, "expected a number"),
        ({"flaky_rate": {"limit": True}}, "expected a number"),
        ({"flaky_rate": {"enabled": "no"}}, "expected true or false"),
        ({"flaky_rate": 3}, "expected a table"),
        ({"flaky_rate": {"repos": {"acme/x": "high"}}}, "expected a number"),
        ({"queue_median": {"repos": {"acme/x": 1}}}, "unknown setting"),
        ({"pr_build_p95": {"runner_labels": {"linux": 1}}}, "unknown setting"),
    ],
)
def test_config_errors(table: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        thresholds_from_table(table)

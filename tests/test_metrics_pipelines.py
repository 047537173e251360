"""Pipeline SLIs (DESIGN.md §3) against hand-computed values, on DuckDB and PostgreSQL (the ``store`` fixture).

Percentiles are PostgreSQL's ``percentile_cont``: for n sorted samples x[0..n-1] and fraction f, the position is
(n − 1)·f and the value interpolates linearly between the two closest ranks.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from typing import Any

import pytest
import sqlalchemy as sa

from shipscope.demo import generate
from shipscope.errors import InputError
from shipscope.metrics.common import Filters, MetricsConfig, Percentiles, Window
from shipscope.metrics.pipelines import (
    _epoch,
    cache_hit_rates,
    classify_failure,
    duration_weeks,
    failure_rates,
    pipeline_report,
    queue_times,
    regressions,
    runner_labels,
    stage_weeks,
    workflow_durations,
)
from shipscope.store import Store
from tests.factories import delivery

Event = dict[str, Any]

SINCE = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
UNTIL = datetime(2026, 3, 9, tzinfo=UTC)
WINDOW = Window(SINCE, UNTIL)
DAY2 = datetime(2026, 3, 3, 10, tzinfo=UTC)


def load(store: Store, *events: Event) -> None:
    store.ingest([delivery(event) for event in events])


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def run(
    run_id: str,
    created: datetime,
    *,
    duration: float | None = 480,
    queue: float = 60,
    status: str = "success",
    **fields: Any,
) -> Event:
    """A run created at ``created``, started ``queue`` s later, finished ``duration`` s after starting."""
    started = created + timedelta(seconds=queue)
    event: Event = {
        "type": "pipeline_run",
        "id": run_id,
        "repo": "acme/shop",
        "workflow": "ci",
        "trigger": "push",
        "branch": "main",
        "sha": f"sha-{run_id}",
        "status": status,
        "created_at": iso(created),
        "started_at": iso(started),
    }
    if duration is not None:
        event["finished_at"] = iso(started + timedelta(seconds=duration))
    event.update(fields)
    return event


def job(job_id: str, run_id: str, created: datetime = DAY2, *, status: str = "success", **fields: Any) -> Event:
    event: Event = {
        "type": "job",
        "id": job_id,
        "run_id": run_id,
        "name": job_id,
        "status": status,
        "created_at": iso(created),
    }
    event.update(fields)
    return event


def step(job_id: str, number: int, name: str, started: datetime, seconds: float, status: str = "success") -> Event:
    return {
        "type": "step",
        "job_id": job_id,
        "number": number,
        "name": name,
        "status": status,
        "started_at": iso(started),
        "finished_at": iso(started + timedelta(seconds=seconds)),
    }


def cache(hit: bool, *, run_id: str | None = None, job_id: str | None = None, key: str = "deps") -> Event:
    event: Event = {"type": "cache", "kind": "dependency", "key": key, "hit": hit}
    if run_id is not None:
        event["run_id"] = run_id
    if job_id is not None:
        event["job_id"] = job_id
    return event


def p(p50: float | None, p95: float | None, samples: int) -> Percentiles:
    return Percentiles(p50, p95, samples)


def approx(value: Percentiles) -> tuple[Any, Any, int]:
    return (
        None if value.p50 is None else pytest.approx(value.p50),
        None if value.p95 is None else pytest.approx(value.p95),
        value.samples,
    )


# ----- no data ----------------------------------------------------------------------------------------------------


def test_empty_store_gives_empty_sections_with_reasons_never_zero(store: Store) -> None:
    report = pipeline_report(store, WINDOW)
    shape = report.to_json()
    assert shape["window"] == {"since": "2026-03-02T00:00:00Z", "until": "2026-03-09T00:00:00Z"}
    for section in (
        "workflows",
        "duration_weeks",
        "failure_rate",
        "queue_seconds",
        "cache_hit_rate",
        "stages",
        "regressions",
    ):
        assert shape[section] == []
        assert shape["no_data"][section]
    check = shape["regression_check"]
    # The window's last instant is Sunday 2026-03-08, so the checked week starts Monday 2026-03-02.
    assert check["week"] == "2026-03-02"
    assert check["baseline_weeks"] == ["2026-02-02", "2026-02-09", "2026-02-16", "2026-02-23"]
    assert check["run_seconds"] == {"p50": None, "p95": None, "samples": 0, "no_data": "no samples in the window"}
    assert check["growth_fraction"] is None and check["regressed"] is False
    assert check["reason"] == "no completed runs in the week of 2026-03-02"


def test_row_level_no_data_is_null_with_a_reason(store: Store) -> None:
    load(
        store,
        # Completed, but never reported as started: a time to result (540 s) and no duration.
        {**run("r1", DAY2, duration=480), "started_at": None},
        # The nightly workflow's only default-branch run failed on infrastructure: no rate to give.
        run("n1", DAY2, status="failure", workflow="nightly"),
        job("n1-job", "n1", status="failure", failure_reason="runner_system_failure"),
    )
    shape = pipeline_report(store, WINDOW).to_json()
    ci = next(row for row in shape["workflows"] if row["workflow"] == "ci")
    assert ci["duration_seconds"] == {"p50": None, "p95": None, "samples": 0, "no_data": "no samples in the window"}
    # created 10:00, finished 10:01 + 480 s = 10:09 → 540 s.
    assert ci["time_to_result_seconds"] == {"p50": 540.0, "p95": 540.0, "samples": 1}
    nightly = next(row for row in shape["failure_rate"] if row["workflow"] == "nightly")
    assert nightly["rate"] is None
    assert nightly["failed"] == 0 and nightly["completed"] == 0 and nightly["infra"] == 1
    assert "no_data" in nightly


# ----- build duration and time to result ------------------------------------------------------------------------------


def test_one_run_gives_p50_equal_to_p95(store: Store) -> None:
    load(store, run("r1", DAY2, duration=480, queue=60))
    (row,) = workflow_durations(store, WINDOW)
    assert (row.repo, row.workflow, row.branch_kind, row.runs) == ("acme/shop", "ci", "default", 1)
    assert row.duration == p(480.0, 480.0, 1)
    assert row.time_to_result == p(540.0, 540.0, 1)  # 60 s queued + 480 s running


def test_even_number_of_samples_interpolates_linearly(store: Store) -> None:
    load(
        store,
        *(
            run(f"r{index}", DAY2 + timedelta(hours=index), duration=seconds)
            for index, seconds in enumerate((240, 60, 180, 120))
        ),
    )
    (row,) = workflow_durations(store, WINDOW)
    # Sorted [60, 120, 180, 240]: p50 at position 3·0.5 = 1.5 → 120 + 0.5·60 = 150;
    # p95 at 3·0.95 = 2.85 → 180 + 0.85·60 = 231.
    assert approx(row.duration) == approx(p(150, 231, 4))
    # Each waited 60 s more: [120, 180, 240, 300] → p50 210, p95 240 + 0.85·60 = 291.
    assert approx(row.time_to_result) == approx(p(210, 291, 4))


def test_ties(store: Store) -> None:
    load(
        store,
        *(
            run(f"r{index}", DAY2 + timedelta(hours=index), duration=seconds)
            for index, seconds in enumerate((60, 120, 60, 60))
        ),
    )
    (row,) = workflow_durations(store, WINDOW)
    # Sorted [60, 60, 60, 120]: p50 at 1.5 → 60; p95 at 2.85 → 60 + 0.85·(120 − 60) = 111.
    assert approx(row.duration) == approx(p(60, 111, 4))


def test_window_edges_follow_created_at(store: Store) -> None:
    load(
        store,
        # Created a minute before since, finished inside: out.
        run("before", SINCE - timedelta(minutes=1), duration=100, queue=120),
        # Created exactly at since: in (the window is [since, until)).
        run("at-since", SINCE, duration=200),
        # Created inside, finished a day after until: in.
        run("late", UNTIL - timedelta(minutes=5), duration=86_400 + 300, queue=0),
        # Created exactly at until: out.
        run("at-until", UNTIL, duration=400),
    )
    (row,) = workflow_durations(store, WINDOW)
    # [200, 86700]: p50 = 200 + 0.5·86500 = 43450; p95 = 200 + 0.95·86500 = 82375.
    assert approx(row.duration) == approx(p(43_450, 82_375, 2))
    assert row.runs == 2


def test_timestamps_with_offsets_give_true_durations(store: Store) -> None:
    load(
        store,
        {
            **run("r1", DAY2),
            "created_at": "2026-03-03T15:30:00+05:30",  # 10:00Z
            "started_at": "2026-03-03T10:02:00Z",
            "finished_at": "2026-03-03T06:10:00-04:00",  # 10:10Z
        },
        # 04:00 on March 2 in India is 22:30Z on March 1: before since, so out.
        {
            **run("r2", DAY2),
            "created_at": "2026-03-02T04:00:00+05:30",
            "started_at": "2026-03-02T04:01:00+05:30",
            "finished_at": "2026-03-02T04:11:00+05:30",
        },
    )
    (row,) = workflow_durations(store, WINDOW)
    # duration 10:02Z → 10:10Z = 480 s; time to result 10:00Z → 10:10Z = 600 s.
    assert row.duration == p(480.0, 480.0, 1)
    assert row.time_to_result == p(600.0, 600.0, 1)


def test_pull_request_and_default_branch_runs_are_reported_apart(store: Store) -> None:
    load(
        store,
        run("pr-trigger", DAY2, duration=300, trigger="pull_request", branch="feature/a", pr_number=7),
        # A merge-request pipeline pushed to a branch: the PR number makes it a PR run.
        run("pr-number", DAY2, duration=500, branch="feature/b", pr_number=8),
        # A fork's pull request from its own main: still a PR run, not a default-branch one.
        run("pr-fork-main", DAY2, duration=700, trigger="pull_request", branch="main"),
        # No default branch sent: main or master count as default.
        run("main", DAY2, duration=100),
        run("master", DAY2, duration=200, branch="master"),
        # The default branch named by the run wins over the main/master guess.
        run("develop", DAY2, duration=900, branch="develop", default_branch="develop"),
        run("main-not-default", DAY2, duration=5_000, branch="main", default_branch="develop"),
        run("feature-push", DAY2, duration=5_000, branch="feature/c"),
        # Not completed: not measured.
        run("cancelled", DAY2, duration=5_000, status="cancelled"),
        run("running", DAY2, duration=None, status="in_progress"),
    )
    rows = {row.branch_kind: row for row in workflow_durations(store, WINDOW)}
    assert set(rows) == {"default", "pr"}
    # PR: [300, 500, 700] → p50 500; p95 at 2·0.95 = 1.9 → 500 + 0.9·200 = 680.
    assert rows["pr"].runs == 3
    assert approx(rows["pr"].duration) == approx(p(500, 680, 3))
    # Default: [100, 200, 900] → p50 200; p95 at 1.9 → 200 + 0.9·700 = 830.
    assert rows["default"].runs == 3
    assert approx(rows["default"].duration) == approx(p(200, 830, 3))


def test_duration_weeks_pool_workflows_and_keep_pr_and_default_apart(store: Store) -> None:
    window = Window(SINCE - timedelta(days=3), UNTIL)  # Friday 2026-02-27 to Monday 2026-03-09
    load(
        store,
        run("before", SINCE - timedelta(days=4), duration=9_000),  # created before the window
        run("fri", SINCE - timedelta(days=2), duration=100),
        run("mon", SINCE, duration=300),
        run("tue", DAY2, duration=100, workflow="deploy"),
        run("pr1", DAY2, duration=50, trigger="pull_request", branch="feature/a", pr_number=3),
        # Created at 23:30 on Sunday at UTC-3, which is Monday 02:30 UTC: the next week, inside no window week.
        run("late", datetime.fromisoformat("2026-03-08T23:30:00-03:00"), duration=7_000),
        run("feature", DAY2, duration=5_000, branch="feature/b"),
        run("cancelled", DAY2, duration=5_000, status="cancelled"),
    )
    rows = [(row.week, row.branch_kind, row.duration) for row in duration_weeks(store, window)]
    assert rows == [
        # The window's first week is the part from Friday 2026-02-27 of the week of Monday 2026-02-23.
        (date(2026, 2, 23), "default", p(100.0, 100.0, 1)),
        # Two workflows pooled: [100, 300] → p50 200; p95 100 + 0.95·200 = 290.
        (date(2026, 3, 2), "default", p(200.0, 290.0, 2)),
        (date(2026, 3, 2), "pr", p(50.0, 50.0, 1)),
    ]
    assert [row["week"] for row in pipeline_report(store, window).to_json()["duration_weeks"]] == [
        "2026-02-23",
        "2026-03-02",
        "2026-03-02",
    ]


# ----- failure rate ------------------------------------------------------------------------------------------------


def test_failure_rate_excludes_cancelled_and_infra_and_classifies_failures(store: Store) -> None:
    at = DAY2
    load(
        store,
        run("s1", at),
        run("s2", at),
        run("s3", at),
        # A failed test job (by its name).
        run("f-test", at, status="failure"),
        job(
            "f-test-1",
            "f-test",
            status="failure",
            name="unit-tests",
            failure_reason="Process completed with exit code 1",
        ),
        # The failed step decides, not the succeeded one: "Compile assets" → build.
        run("f-build", at, status="failure"),
        job("f-build-1", "f-build", status="failure", name="verify"),
        step("f-build-1", 1, "Run pytest", at, 30),
        step("f-build-1", 2, "Compile assets", at + timedelta(seconds=30), 10, status="failure"),
        # No failed job recorded: unknown.
        run("f-unknown", at, status="failure"),
        # Only infra failures: counted apart.
        run("f-infra", at, status="failure"),
        job(
            "f-infra-1",
            "f-infra",
            status="failure",
            name="deploy-prep",
            failure_reason="The runner has received a shutdown signal",
        ),
        job("f-infra-2", "f-infra", status="success", name="unit-tests"),
        # An infra failure and a real one: the run failed anyway, as a security failure.
        run("f-mixed", at, status="failure"),
        job("f-mixed-1", "f-mixed", status="failure", name="integration", failure_reason="runner_system_failure"),
        job("f-mixed-2", "f-mixed", status="failure", name="security-scan", failure_reason="exit code 1"),
        # A GitHub re-run: attempt 1 lost its runner (infra), attempt 2 succeeded.
        run("rr", at, status="failure", attempt=1),
        run("rr", at + timedelta(hours=1), status="success", attempt=2),
        job("rr-1", "rr", status="failure", attempt=1, name="e2e", failure_reason="Runner lost"),
        job("rr-2", "rr", status="success", attempt=2, name="e2e"),
        # GitLab counts job retries in the job's attempt within one pipeline (attempt 1): the retry is still the
        # pipeline's job, and it failed in rspec, so the run is a test failure, not infra.
        run("gl", at, status="failure"),
        job("gl-1", "gl", status="failure", attempt=1, name="rspec", failure_reason="runner_system_failure"),
        job("gl-2", "gl", status="failure", attempt=2, name="rspec", failure_reason="script_failure"),
        # Excluded: cancelled, skipped, a PR run, a feature-branch push, a run created before since.
        run("cancelled", at, status="cancelled"),
        run("skipped", at, status="skipped"),
        run("pr", at, status="failure", trigger="pull_request", branch="feature/x", pr_number=3),
        run("push", at, status="failure", branch="feature/y"),
        run("old", SINCE - timedelta(hours=1), status="failure"),
    )
    (row,) = failure_rates(store, WINDOW)
    # succeeded: s1, s2, s3, rr#2 = 4; failed (not infra): f-test, f-build, f-unknown, f-mixed, gl = 5;
    # infra: f-infra, rr#1 = 2. Rate = 5 / (4 + 5) = 0.5555…
    assert (row.succeeded, row.failed, row.infra) == (4, 5, 2)
    assert row.by_class == {"test": 2, "build": 1, "security": 1, "unknown": 1}
    shape = row.to_json()
    assert shape["rate"] == pytest.approx(5 / 9)
    assert (shape["failed"], shape["completed"], shape["succeeded"], shape["infra"]) == (5, 9, 4, 2)
    assert "no_data" not in shape


def test_infra_patterns_come_from_the_configuration(store: Store) -> None:
    load(
        store,
        run("s1", DAY2),
        run("f1", DAY2, status="failure"),
        job("f1-1", "f1", status="failure", name="deploy-preview", failure_reason="Node lost during job"),
    )
    (default,) = failure_rates(store, WINDOW)
    # Nothing in "deploy-preview" or its reason matches the default patterns: unknown, and in the rate (1 / 2).
    assert (default.failed, default.infra, default.by_class["unknown"]) == (1, 0, 1)
    config = MetricsConfig(infra_failure_patterns=("NODE LOST",), build_failure_patterns=("preview",))
    (configured,) = failure_rates(store, WINDOW, config=config)
    assert (configured.succeeded, configured.failed, configured.infra) == (1, 0, 1)
    assert configured.ratio.rate == 0.0  # 0 failed of 1 completed: a real zero, with its denominator
    # Without the infra pattern, the configured build pattern names it.
    (build,) = failure_rates(store, WINDOW, config=MetricsConfig(build_failure_patterns=("preview",)))
    assert build.by_class == {"test": 0, "build": 1, "security": 0, "unknown": 0}


def test_classify_failure() -> None:
    assert classify_failure("build", "runner_system_failure", ["Run tests"]) == "infra"
    assert classify_failure("build", "The runner has received a shutdown signal", []) == "infra"
    # Failed steps first, then the job name, then its stage; classes in the order test, build, security.
    assert classify_failure("build", "exit 1", ["Run Jest"]) == "test"
    assert classify_failure("unit-tests", "exit 1", ["npm install"]) == "build"
    assert classify_failure("Docker image", None, []) == "build"
    assert classify_failure("analyse", None, [], stage="SCAN") == "security"
    assert classify_failure("trivy", None, [], stage="test") == "security"
    assert classify_failure("deploy", "script_failure", ["kubectl apply"]) == "unknown"
    config = MetricsConfig(infra_failure_patterns=("oom",), test_failure_patterns=("e2e",))
    assert classify_failure("e2e-suite", "OOMKilled", [], config) == "infra"
    assert classify_failure("e2e-suite", "exit 1", [], config) == "test"
    assert classify_failure("pytest", "runner_system_failure", [], config) == "unknown"


# ----- queue time ----------------------------------------------------------------------------------------------------


def test_queue_time_by_runner_label(store: Store) -> None:
    at = DAY2
    load(
        store,
        job("two-labels", "r1", at, runner=["self-hosted", "linux"], started_at=iso(at + timedelta(seconds=60))),
        # Queued 10:00Z (15:30 in India) → started 10:03Z: 180 s.
        job(
            "offset", "r1", runner=["linux"], created_at="2026-03-03T15:30:00+05:30", started_at="2026-03-03T10:03:00Z"
        ),
        job("group", "r1", at, runner="gpu-pool", started_at=iso(at + timedelta(seconds=30))),
        job("no-runner", "r1", at, started_at=iso(at + timedelta(seconds=90))),
        # Never started, or created before since: out.
        job("queued", "r1", at, status="queued", runner=["linux"]),
        job("old", "r1", SINCE - timedelta(seconds=1), runner=["linux"], started_at=iso(SINCE + timedelta(hours=1))),
    )
    rows = {row.runner_label: row.queue for row in queue_times(store, WINDOW)}
    assert list(rows) == ["gpu-pool", "linux", "self-hosted", "unknown"]
    # linux: [60, 180] → p50 120; p95 = 60 + 0.95·120 = 174.
    assert approx(rows["linux"]) == approx(p(120, 174, 2))
    assert rows["self-hosted"] == p(60.0, 60.0, 1)  # the two-label job counts under both labels
    assert rows["gpu-pool"] == p(30.0, 30.0, 1)  # a group name is one label
    assert rows["unknown"] == p(90.0, 90.0, 1)
    shape = pipeline_report(store, WINDOW).to_json()["queue_seconds"]
    assert shape[1] == {"runner_label": "linux", "p50": 120.0, "p95": pytest.approx(174.0), "samples": 2}


def test_runner_labels() -> None:
    assert runner_labels('["self-hosted","linux","linux"]') == ["self-hosted", "linux"]
    assert runner_labels('"gpu-pool"') == ["gpu-pool"]
    assert runner_labels("[]") == ["unknown"]
    assert runner_labels(None) == ["unknown"]


# ----- cache hit rate ------------------------------------------------------------------------------------------------


def test_cache_hit_rate_counts_warm_branches_only(store: Store) -> None:
    load(
        store,
        # An earlier run on main, before the window: main is warm all through it. Its own hit is out of the window.
        run("main-0", SINCE - timedelta(days=10)),
        cache(True, run_id="main-0"),
        run("main-1", DAY2),
        cache(True, run_id="main-1"),
        # feature/x: the first run is cold; later ones are warm.
        run("x-1", DAY2, branch="feature/x"),
        cache(False, run_id="x-1"),
        run("x-2", DAY2 + timedelta(hours=1), branch="feature/x"),
        job("x-2-job", "x-2"),
        cache(True, job_id="x-2-job"),  # reaches its run through the job
        run("x-3", DAY2 + timedelta(hours=2), branch="feature/x"),
        cache(False, run_id="x-3"),
        # Two workflows started by one push to a new branch: neither is earlier than the other, both cold.
        run("y-ci", DAY2, branch="feature/y"),
        run("y-lint", DAY2, branch="feature/y", workflow="lint"),
        cache(True, run_id="y-ci"),
        cache(True, run_id="y-lint"),
        # A repo with only a cold run, and a cache event that reaches no run.
        run("api-1", DAY2, repo="acme/api"),
        cache(True, run_id="api-1"),
        cache(True, run_id="missing-run"),
    )
    rows = {row.repo: row for row in cache_hit_rates(store, WINDOW)}
    assert list(rows) == ["acme/api", "acme/shop"]
    shop = rows["acme/shop"]
    # Warm: main-1 hit, x-2 hit, x-3 miss → 2 / 3. Cold: x-1, y-ci, y-lint.
    assert (shop.hits, shop.misses, shop.cold) == (2, 1, 3)
    assert shop.ratio.rate == pytest.approx(2 / 3)
    api = rows["acme/api"].to_json()
    assert (api["hits"], api["lookups"], api["rate"], api["cold_lookups"]) == (0, 0, None, 1)
    assert api["no_data"] == "no cache lookups on warm branches in the window"


def test_cache_of_a_rerun_belongs_to_its_attempt(store: Store) -> None:
    load(
        store,
        # New branches' first runs: attempt 1 is cold, its re-run (attempt 2, created later) is warm.
        run("b", DAY2, branch="feature/b", attempt=1, status="failure"),
        run("b", DAY2 + timedelta(hours=1), branch="feature/b", attempt=2),
        job("b-1", "b", attempt=1),
        job("b-2", "b", attempt=2),
        # Events naming only their job: the job's attempt.
        cache(False, job_id="b-1"),
        cache(True, job_id="b-2"),
        run("c", DAY2, branch="feature/c", attempt=1, status="failure"),
        run("c", DAY2 + timedelta(hours=1), branch="feature/c", attempt=2),
        job("c-1", "c", attempt=1),
        job("c-2", "c", attempt=2),
        # Events naming their run and job: the job's attempt; naming only the run: the latest attempt.
        cache(False, run_id="c", job_id="c-1"),
        cache(True, run_id="c", job_id="c-2", key="deps-2"),
        cache(False, run_id="c", key="docker"),
        # A run never re-run, named by run_id with a job that was never received.
        run("d", DAY2 + timedelta(hours=2), branch="feature/b"),
        cache(True, run_id="d", job_id="d-unknown"),
    )
    (row,) = cache_hit_rates(store, WINDOW)
    # Cold: b#1 miss, c#1 miss. Warm: b#2 hit, c#2 hit, c#2 (run only) miss, d hit → 3 hits, 1 miss.
    assert (row.hits, row.misses, row.cold) == (3, 1, 2)


# ----- stages and regressions -----------------------------------------------------------------------------------------


def test_stage_weeks(store: Store) -> None:
    monday, next_monday = SINCE, SINCE + timedelta(weeks=1)
    window = Window(SINCE, SINCE + timedelta(weeks=2))
    load(
        store,
        step("j1", 1, "Run tests", monday + timedelta(hours=10), 100),
        step("j1", 2, "Build", monday + timedelta(hours=11), 50),
        # 23:00 on Sunday March 8 in India is 17:30Z: still the first week. A failed step counts.
        {
            **step("j2", 1, "Run unit tests", monday, 0, status="failure"),
            "started_at": "2026-03-08T23:00:00+05:30",
            "finished_at": "2026-03-08T23:03:20+05:30",
        },
        # 01:00 on Monday March 9 in India is 19:30Z on Sunday: the first week too.
        {
            **step("j3", 1, "pytest", monday, 0),
            "started_at": "2026-03-09T01:00:00+05:30",
            "finished_at": "2026-03-09T01:05:00+05:30",
        },
        step("j4", 1, "Run tests", next_monday + timedelta(hours=1), 300),
        # Cancelled, or started before since: out.
        step("j5", 1, "Run tests", next_monday, 9_000, status="cancelled"),
        step("j6", 1, "Run tests", SINCE - timedelta(seconds=1), 9_000),
    )
    rows = [(row.stage, row.week, row.duration) for row in stage_weeks(store, window)]
    assert [(stage, week) for stage, week, _ in rows] == [
        ("build", date(2026, 3, 2)),
        ("test", date(2026, 3, 2)),
        ("test", date(2026, 3, 9)),
    ]
    assert rows[0][2] == p(50.0, 50.0, 1)
    # test, week 1: [100, 200, 300] → p50 200; p95 at 1.9 → 200 + 0.9·100 = 290.
    assert approx(rows[1][2]) == approx(p(200, 290, 3))
    assert rows[2][2] == p(300.0, 300.0, 1)
    shape = pipeline_report(store, window).to_json()["stages"]
    assert shape[0] == {"stage": "build", "week": "2026-03-02", "p50": 50.0, "p95": 50.0, "samples": 1}


def _week_of_runs(store: Store, week: int, checkout: float, build: float, test: float, deploy: float = 0) -> None:
    """Two runs on the Tuesday of week ``week`` (0 = March 2), each with one job whose steps take these seconds."""
    events: list[Event] = []
    for index in range(2):
        run_id = f"w{week}-{index}"
        started = SINCE + timedelta(weeks=week, days=1, hours=10 + index)
        total = checkout + build + test + deploy
        events.append(run(run_id, started - timedelta(seconds=30), duration=total, queue=30))
        events.append(job(f"{run_id}-job", run_id, started, started_at=iso(started)))
        moment = started
        for number, (name, seconds) in enumerate(
            (("Checkout", checkout), ("Build", build), ("Run tests", test), ("Deploy", deploy)), start=1
        ):
            if seconds:
                events.append(step(f"{run_id}-job", number, name, moment, seconds))
                moment += timedelta(seconds=seconds)
    load(store, *events)


def test_stage_regression(store: Store) -> None:
    # Four baseline weeks (March 2 – 29) of runs taking 60 + 240 + 300 = 600 s; then the week of March 30 takes
    # 60 + 270 + 450 + 0 = 780 s, plus a new 20 s deploy step: 800 s, i.e. 33.3% more.
    for week in range(4):
        _week_of_runs(store, week, 60, 240, 300)
    _week_of_runs(store, 4, 60, 270, 450, deploy=20)
    window = Window(SINCE + timedelta(weeks=4), SINCE + timedelta(weeks=5))
    check = regressions(store, window)
    assert check.week == date(2026, 3, 30) and check.baseline_since == date(2026, 3, 2)
    assert check.current == p(800.0, 800.0, 2)
    assert check.baseline == p(600.0, 600.0, 8)
    # 800 / 600 − 1 = 0.333… ≥ 0.20.
    assert check.regressed and check.growth_fraction == pytest.approx(1 / 3)
    # test: 450 − 300 = +150 s (+50%); build: 270 − 240 = +30 s (+12.5%); checkout did not grow; deploy is new.
    grown = [(g.stage, g.growth_seconds, g.growth_fraction) for g in check.stages]
    assert grown == [
        ("test", pytest.approx(150), pytest.approx(0.5)),
        ("build", pytest.approx(30), pytest.approx(0.125)),
        ("deploy", None, None),
    ]
    shape = pipeline_report(store, window).to_json()
    (regression,) = shape["regressions"]
    assert regression["week"] == "2026-03-30"
    assert regression["baseline_weeks"] == ["2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23"]
    assert regression["stages"][0] == {
        "stage": "test",
        "p95": 450.0,
        "baseline_p95": 300.0,
        "growth_seconds": 150.0,
        "growth_fraction": 0.5,
        "samples": 2,
        "baseline_samples": 8,
    }
    assert regression["stages"][2]["no_data"]
    # A three-day window still checks its whole last week against the four before it, all before since.
    short = regressions(store, Window(datetime(2026, 4, 2, tzinfo=UTC), datetime(2026, 4, 5, tzinfo=UTC)))
    assert short.week == date(2026, 3, 30) and short.regressed
    assert short.baseline == p(600.0, 600.0, 8)


def test_growth_below_threshold_is_no_regression(store: Store) -> None:
    for week in range(4):
        _week_of_runs(store, week, 60, 240, 300)
    _week_of_runs(store, 4, 60, 240, 360)  # 660 s: +10%
    window = Window(SINCE, SINCE + timedelta(weeks=5))
    check = regressions(store, window)
    assert check.growth_fraction == pytest.approx(0.1)
    assert not check.regressed
    assert [g.stage for g in check.stages] == ["test"]
    shape = pipeline_report(store, window).to_json()
    assert shape["regressions"] == []
    assert "below 20%" in shape["no_data"]["regressions"]
    assert regressions(store, window, threshold=0.1).regressed


# ----- filters --------------------------------------------------------------------------------------------------------


def test_repo_and_team_filters(store: Store) -> None:
    at = DAY2
    load(
        store,
        run("shop", at, duration=100),
        job("shop-job", "shop", at, runner=["linux"], started_at=iso(at + timedelta(seconds=10))),
        step("shop-job", 1, "Run tests", at, 10),
        run("api", at, duration=200, repo="acme/api"),
        job("api-job", "api", at, runner=["linux"], started_at=iso(at + timedelta(seconds=20))),
        step("api-job", 1, "Run tests", at, 20),
    )
    config = MetricsConfig(teams={"web": ["acme/shop", "storefront-web"], "empty": []})
    for filters in (Filters(repo="acme/shop"), Filters(team="web"), Filters(team="web", service="x", environment="y")):
        report = pipeline_report(store, WINDOW, filters, config)
        assert [row.repo for row in report.workflows] == ["acme/shop"]
        assert [row.queue for row in report.queue_seconds] == [p(10.0, 10.0, 1)]
        assert [row.duration for row in report.stages] == [p(10.0, 10.0, 1)]
        assert report.regression.current == p(100.0, 100.0, 1)
    empty = pipeline_report(store, WINDOW, Filters(team="empty"), config)
    assert empty.workflows == () and empty.queue_seconds == () and empty.stages == ()
    assert pipeline_report(store, WINDOW).to_json()["filters"] == {}
    with pytest.raises(InputError, match="unknown team"):
        pipeline_report(store, WINDOW, Filters(team="nobody"), config)


# ----- the demo dataset -----------------------------------------------------------------------------------------------


def test_demo_dataset_report_is_sane(store: Store) -> None:
    events = generate(days=14, seed=7, until=date(2026, 11, 1))
    while chunk := list(islice(events, 5000)):
        store.ingest([delivery(event) for event in chunk])
    window = Window(datetime(2026, 10, 18, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
    shape = pipeline_report(store, window).to_json()
    for section in ("workflows", "failure_rate", "queue_seconds", "cache_hit_rate", "stages"):
        assert shape[section], section

    def sane(percentiles: dict[str, Any]) -> None:
        assert percentiles["samples"] > 0
        assert 0 <= percentiles["p50"] <= percentiles["p95"]

    for row in shape["workflows"]:
        assert row["branch_kind"] in ("pr", "default")
        sane(row["duration_seconds"])
        sane(row["time_to_result_seconds"])
        # Each run's time to result includes its duration, so every order statistic is at least as large.
        assert row["time_to_result_seconds"]["p50"] >= row["duration_seconds"]["p50"]
        assert row["time_to_result_seconds"]["p95"] >= row["duration_seconds"]["p95"]
    assert {row["branch_kind"] for row in shape["workflows"]} == {"pr", "default"}
    for row in shape["failure_rate"]:
        assert row["completed"] == row["succeeded"] + row["failed"]
        assert sum(row["by_class"].values()) == row["failed"]
        assert row["rate"] is None or 0 <= row["rate"] <= 1
    assert sum(row["infra"] for row in shape["failure_rate"]) > 0
    labels = {row["runner_label"] for row in shape["queue_seconds"]}
    assert {"ubuntu-latest", "macos-14", "self-hosted"} <= labels
    for row in shape["queue_seconds"]:
        sane(row)
    # macOS capacity is scarce in the demo: its median queue is the longest.
    by_label = {row["runner_label"]: row["p50"] for row in shape["queue_seconds"]}
    assert by_label["macos-14"] == max(by_label.values())
    for row in shape["cache_hit_rate"]:
        assert row["lookups"] == row["hits"] + row["misses"]
        assert row["rate"] is None or 0 <= row["rate"] <= 1
    for row in shape["stages"]:
        sane(row)
    assert {row["stage"] for row in shape["stages"]} >= {"checkout", "build", "test"}
    check = shape["regression_check"]
    assert check["week"] == "2026-10-26"
    assert check["run_seconds"]["samples"] > 0


def test_epoch_seconds_are_extracts_doubles(store: Store) -> None:
    """Durations are differences of ``_epoch`` (``date_part``, which on PostgreSQL skips ``extract``'s numerics):
    on both backends it gives, bit for bit, the double of ``extract(epoch …)``, so no duration moved with it."""
    rng = random.Random(7)
    start = datetime(2001, 1, 1, tzinfo=UTC)
    moments = [start + timedelta(microseconds=rng.randrange(10**15)) for _ in range(500)]
    stamps = sa.values(sa.column("moment", sa.DateTime(timezone=True)), name="stamps").data([(at,) for at in moments])
    extracted = sa.cast(sa.extract("epoch", stamps.c.moment), sa.Double)
    rows = store.query_rows(sa.select(_epoch(stamps.c.moment), extracted))
    assert len(rows) == len(moments)
    assert all(ours == theirs for ours, theirs in rows)

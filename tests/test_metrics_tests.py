"""Test metrics: suite durations, the flaky rate and the quarantine list, hand-computed, on DuckDB and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from shipscope.demo import generate
from shipscope.events import event_to_json
from shipscope.ingest.junit import parse_junit
from shipscope.metrics.common import Filters, MetricsConfig, Window
from shipscope.metrics.tests import owner_for, parse_codeowners, tests_report
from shipscope.store import Store
from tests.conftest import FIXTURES
from tests.factories import delivery, run

MARCH = Window(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))


def case(
    name: str,
    outcome: str = "passed",
    seconds: float = 1.0,
    *,
    run_id: str | None = "r1",
    suite: str = "unit",
    attempt: int = 1,
    **fields: Any,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "test_case",
        "suite": suite,
        "classname": "tests.test_shop",
        "name": name,
        "duration_seconds": seconds,
        "outcome": outcome,
        "attempt": attempt,
    }
    if run_id is not None:
        event["run_id"] = run_id
    event.update(fields)
    return event


def job(job_id: str, run_id: str, attempt: int = 1, created_at: str = "2026-03-01T10:01:00Z") -> dict[str, Any]:
    return {
        "type": "job",
        "id": job_id,
        "run_id": run_id,
        "name": "test",
        "status": "success",
        "attempt": attempt,
        "created_at": created_at,
    }


def load(store: Store, *events: dict[str, Any]) -> None:
    store.ingest([delivery(event) for event in events])


def suites_by_name(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(suite["repo"], suite["suite"]): suite for suite in report["suites"]}


# ----- no data, one execution, percentiles -----------------------------------------------------------------


def test_no_data_gives_nulls_and_reasons(store: Store) -> None:
    report = tests_report(store, MARCH).to_json()
    assert report["test_cases"] == 0
    assert report["no_data"] == "no test cases of known runs in the window"
    assert report["suites"] == [] and report["quarantine"] == [] and report["flaky_by_repo"] == []
    assert report["flaky_rate"] == {
        "flaky_executions": 0,
        "executions": 0,
        "rate": None,
        "no_data": "no executions in the window",
        "flaky_tests": 0,
    }
    assert report["unattributed"] == 0
    assert report["window"] == {"since": "2026-03-01T00:00:00Z", "until": "2026-04-01T00:00:00Z"}


def test_one_execution(store: Store) -> None:
    load(store, run("r1"), case("test_a", seconds=1.5), case("test_b", seconds=2.5), case("test_c", "skipped", 0.0))
    report = tests_report(store, MARCH).to_json()
    # One run, one job-less execution of "unit": 1.5 + 2.5 + 0.0 = 4.0 s.
    assert report["suites"] == [
        {
            "repo": "acme/shop",
            "suite": "unit",
            "p50": 4.0,
            "p95": 4.0,
            "samples": 1,
            "max_seconds": 4.0,
            "slow": False,
            "slow_executions": 0,
        }
    ]
    assert report["test_cases"] == 3
    # Skipped cases are not executions: 2 executions, none flaky.
    assert report["flaky_rate"]["executions"] == 2
    assert report["flaky_rate"]["rate"] == 0.0
    assert "no_data" not in report


def test_even_sample_count_interpolates(store: Store) -> None:
    events: list[dict[str, Any]] = []
    for index, total in enumerate((10.0, 20.0, 30.0, 40.0), start=1):
        events.append(run(f"r{index}", created_at=f"2026-03-0{index}T10:00:00Z", sha=f"s{index}"))
        events.append(case("test_a", seconds=total / 2, run_id=f"r{index}"))
        events.append(case("test_b", seconds=total / 2, run_id=f"r{index}"))
    load(store, *events)
    suite = suites_by_name(tests_report(store, MARCH).to_json())[("acme/shop", "unit")]
    # Sorted 10, 20, 30, 40. p50 at position 3 × 0.5 = 1.5: 20 + 0.5 × 10 = 25;
    # p95 at position 3 × 0.95 = 2.85: 30 + 0.85 × 10 = 38.5.
    assert suite["p50"] == pytest.approx(25.0)
    assert suite["p95"] == pytest.approx(38.5)
    assert suite["samples"] == 4
    assert suite["max_seconds"] == pytest.approx(40.0)


def test_ties_in_durations_and_in_the_order_of_suites(store: Store) -> None:
    events: list[dict[str, Any]] = []
    for index, total in enumerate((10.0, 10.0, 10.0, 20.0), start=1):
        events.append(run(f"r{index}", created_at=f"2026-03-0{index}T10:00:00Z", sha=f"s{index}"))
        for suite in ("beta", "alpha"):
            events.append(case("test_a", seconds=total, run_id=f"r{index}", suite=suite))
    load(store, *events)
    report = tests_report(store, MARCH).to_json()
    # 10, 10, 10, 20: p50 at 1.5 → 10 + 0.5 × 0 = 10; p95 at 2.85 → 10 + 0.85 × (20 − 10) = 18.5.
    assert [(suite["suite"], suite["p50"], suite["p95"]) for suite in report["suites"]] == [
        ("alpha", pytest.approx(10.0), pytest.approx(18.5)),
        ("beta", pytest.approx(10.0), pytest.approx(18.5)),
    ]  # equal p95 and max: by repo, then suite name


def test_slowest_suite_first_and_the_slow_flag(store: Store) -> None:
    load(
        store,
        run("r1"),
        run("r2", created_at="2026-03-02T10:00:00Z"),
        case("test_a", seconds=30.0, suite="fast"),
        case("test_a", seconds=40.0, suite="fast", run_id="r2"),
        case("test_a", seconds=50.0, suite="slow"),
        case("test_b", seconds=11.0, suite="slow"),
        case("test_a", seconds=45.0, suite="slow", run_id="r2"),
    )
    report = tests_report(store, MARCH, config=MetricsConfig(slow_suite_seconds=60.0)).to_json()
    suites = suites_by_name(report)
    assert [suite["suite"] for suite in report["suites"]] == ["slow", "fast"]
    # slow: r1 50 + 11 = 61 s (over 60), r2 45 s; p95 = 45 + 0.95 × 16 = 60.2.
    assert suites[("acme/shop", "slow")]["slow"] is True
    assert suites[("acme/shop", "slow")]["slow_executions"] == 1
    assert suites[("acme/shop", "slow")]["max_seconds"] == pytest.approx(61.0)
    assert suites[("acme/shop", "slow")]["p95"] == pytest.approx(60.2)
    # fast: 30 and 40 s, never over 60.
    assert suites[("acme/shop", "fast")]["slow"] is False
    assert suites[("acme/shop", "fast")]["p50"] == pytest.approx(35.0)


def test_retried_case_counts_its_final_attempt_in_the_suite(store: Store) -> None:
    load(
        store,
        run("r1"),
        case("test_a", "failed", 5.0, attempt=1),
        case("test_a", "passed", 3.0, attempt=2),
        case("test_b", "passed", 2.0),
    )
    suite = suites_by_name(tests_report(store, MARCH).to_json())[("acme/shop", "unit")]
    # test_a's final attempt 3 s + test_b 2 s = 5 s (the failed 5 s attempt is not added).
    assert (suite["p50"], suite["samples"]) == (pytest.approx(5.0), 1)


def test_each_job_is_its_own_suite_execution(store: Store) -> None:
    load(
        store,
        run("r1"),
        job("j1", "r1"),
        job("j2", "r1"),
        case("test_a", seconds=4.0, run_id=None, job_id="j1"),
        case("test_a", seconds=6.0, run_id=None, job_id="j2"),
    )
    suite = suites_by_name(tests_report(store, MARCH).to_json())[("acme/shop", "unit")]
    # Two executions of 4 and 6 s: p50 = 5.
    assert (suite["samples"], suite["p50"], suite["max_seconds"]) == (2, pytest.approx(5.0), pytest.approx(6.0))


# ----- attribution, window, filters ------------------------------------------------------------------------


def test_cases_reach_their_run_through_a_job_and_unknown_runs_are_counted_apart(store: Store) -> None:
    load(
        store,
        run("r1"),
        job("j1", "r1"),
        case("test_a", run_id=None, job_id="j1"),
        case("test_b", run_id="r-missing"),
        case("test_c", run_id=None, job_id="j-missing"),
        case("test_d", run_id=None),
    )
    report = tests_report(store, MARCH).to_json()
    assert report["test_cases"] == 1
    assert report["unattributed"] == 3


def test_rerun_attempts_take_their_own_created_at_without_double_counting(store: Store) -> None:
    load(
        store,
        run("r1", created_at="2026-02-28T22:00:00Z", sha="s1"),
        run("r1", attempt=2, created_at="2026-03-01T01:00:00Z", sha="s1"),
        job("j1", "r1", attempt=1, created_at="2026-02-28T22:01:00Z"),
        job("j2", "r1", attempt=2, created_at="2026-03-01T01:01:00Z"),
        case("test_a", "failed", 2.0, run_id="r1", job_id="j1", attempt=1),
        case("test_a", "passed", 2.0, run_id="r1", job_id="j2", attempt=2),
    )
    report = tests_report(store, MARCH).to_json()
    # Only the second attempt (created 1 March) is in the window; one execution, no flake visible.
    assert report["test_cases"] == 1
    assert report["flaky_rate"]["flaky_executions"] == 0
    february = Window(datetime(2026, 2, 1, tzinfo=UTC), MARCH.until)
    whole = tests_report(store, february).to_json()
    assert whole["test_cases"] == 2
    assert whole["flaky_rate"]["flaky_executions"] == 1
    assert whole["quarantine"][0]["first_flake"] == "2026-02-28T22:00:00Z"


def test_runs_across_the_window_edges(store: Store) -> None:
    window = Window(datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 20, tzinfo=UTC))
    load(
        store,
        run("before", created_at="2026-03-09T23:59:59Z", sha="s1"),
        run("first", created_at="2026-03-10T00:00:00Z", sha="s1"),
        run("last", created_at="2026-03-19T23:59:59Z", sha="s2"),
        run("after", created_at="2026-03-20T00:00:00Z", sha="s2"),
        case("test_a", "failed", 1.0, run_id="before"),
        case("test_a", "passed", 2.0, run_id="first"),
        case("test_a", "failed", 4.0, run_id="last"),
        case("test_a", "passed", 8.0, run_id="after"),
    )
    report = tests_report(store, window).to_json()
    # since is inclusive, until exclusive: "first" (2 s) and "last" (4 s) only.
    assert report["test_cases"] == 2
    suite = suites_by_name(report)[("acme/shop", "unit")]
    assert (suite["samples"], suite["p50"]) == (2, pytest.approx(3.0))
    # Each sha's flake straddles an edge; inside the window each sha has one outcome: not flaky.
    assert report["quarantine"] == []
    assert report["flaky_rate"]["flaky_executions"] == 0


def test_non_utc_offsets(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    # 1 March 02:00 +02:00 is 1 March 00:00 UTC.
    window = Window(datetime(2026, 3, 1, 2, 0, tzinfo=plus_two), datetime(2026, 3, 2, 2, 0, tzinfo=plus_two))
    load(
        store,
        # 01:30 +02:00 = 28 Feb 23:30 UTC: before the window.
        run("early", created_at="2026-03-01T01:30:00+02:00", sha="s1"),
        # 18:30 −05:00 = 1 March 23:30 UTC: inside [1 March, 2 March) UTC.
        run("late", created_at="2026-03-01T18:30:00-05:00", sha="s1"),
        case("test_a", "failed", 1.0, run_id="early"),
        case("test_a", "failed", 1.0, run_id="late", attempt=1),
        case("test_a", "passed", 1.0, run_id="late", attempt=2),
    )
    report = tests_report(store, window).to_json()
    # Only "late"'s two executions count; its flake is reported in UTC.
    assert report["test_cases"] == 2
    assert report["window"] == {"since": "2026-03-01T00:00:00Z", "until": "2026-03-02T00:00:00Z"}
    (flaky,) = report["quarantine"]
    assert flaky["first_flake"] == flaky["last_flake"] == "2026-03-01T23:30:00Z"
    assert flaky["expires_at"] == "2026-03-15T23:30:00Z"  # + 14 days


def test_repo_and_team_filters(store: Store) -> None:
    load(
        store,
        run("r1", repo="acme/shop"),
        run("r2", repo="acme/other", created_at="2026-03-02T10:00:00Z"),
        case("test_a", run_id="r1"),
        case("test_a", run_id="r2"),
        case("test_b", run_id="r2"),
    )
    config = MetricsConfig(teams={"web": ["acme/shop"]})
    assert tests_report(store, MARCH, Filters(repo="acme/other")).to_json()["test_cases"] == 2
    team = tests_report(store, MARCH, Filters(team="web"), config).to_json()
    assert team["test_cases"] == 1
    assert team["filters"] == {"team": "web"}
    assert [suite["repo"] for suite in team["suites"]] == ["acme/shop"]


# ----- flakiness -------------------------------------------------------------------------------------------


def test_flaky_within_one_run(store: Store) -> None:
    load(
        store,
        run("r1"),
        case("test_a", "failed", 1.0, attempt=1),
        case("test_a", "passed", 1.0, attempt=2),
        case("test_b", "passed"),
        case("test_c", "passed"),
    )
    report = tests_report(store, MARCH).to_json()
    # Executions: test_a ×2, test_b, test_c = 4; one failed execution passed on retry: 1/4.
    assert report["flaky_rate"] == {"flaky_executions": 1, "executions": 4, "rate": 0.25, "flaky_tests": 1}
    assert report["flaky_by_repo"] == [
        {"repo": "acme/shop", "flaky_executions": 1, "executions": 4, "rate": 0.25, "flaky_tests": 1}
    ]
    (flaky,) = report["quarantine"]
    assert flaky == {
        "repo": "acme/shop",
        "suite": "unit",
        "classname": "tests.test_shop",
        "name": "test_a",
        "file": None,
        "owner": None,
        "owners": None,
        "flake_count": 1,
        "flaky_executions": 1,
        "first_flake": "2026-03-01T10:00:00Z",
        "last_flake": "2026-03-01T10:00:00Z",
        "expires_at": "2026-03-15T10:00:00Z",  # 1 March + 14 days
        "active": False,  # the window runs to 1 April
    }


def test_flaky_across_two_runs_of_one_sha(store: Store) -> None:
    load(
        store,
        run("r1", sha="s1", status="failure"),
        run("r2", sha="s1", created_at="2026-03-01T11:00:00Z"),
        case("test_a", "error", 1.0, run_id="r1"),
        case("test_a", "passed", 1.0, run_id="r2"),
        case("test_b", "passed", 1.0, run_id="r1"),
        case("test_b", "passed", 1.0, run_id="r2"),
    )
    report = tests_report(store, MARCH).to_json()
    # r1's error is followed by r2's pass on the same sha: 1 of 4 executions.
    assert report["flaky_rate"]["flaky_executions"] == 1
    assert report["flaky_rate"]["executions"] == 4
    (flaky,) = report["quarantine"]
    assert (flaky["name"], flaky["flake_count"], flaky["last_flake"]) == ("test_a", 1, "2026-03-01T10:00:00Z")


def test_failing_on_two_shas_without_passing_is_not_flaky(store: Store) -> None:
    load(
        store,
        run("r1", sha="s1", status="failure"),
        run("r2", sha="s2", status="failure", created_at="2026-03-02T10:00:00Z"),
        run("r3", sha="s3", created_at="2026-03-03T10:00:00Z"),
        case("test_a", "failed", run_id="r1"),
        case("test_a", "failed", run_id="r1", attempt=2),
        case("test_a", "failed", run_id="r2"),
        case("test_a", "passed", run_id="r3"),  # passes on another sha: a fix, not a flake
    )
    report = tests_report(store, MARCH).to_json()
    assert report["quarantine"] == []
    assert report["flaky_rate"]["flaky_executions"] == 0
    assert report["flaky_rate"]["executions"] == 4


def test_pass_then_fail_on_one_sha_is_flaky_but_not_a_retry_pass(store: Store) -> None:
    load(
        store,
        run("r1", sha="s1"),
        run("r2", sha="s1", status="failure", created_at="2026-03-01T12:00:00Z"),
        case("test_a", "passed", run_id="r1"),
        case("test_a", "failed", run_id="r2"),
    )
    report = tests_report(store, MARCH).to_json()
    # Both outcomes on s1: flaky; but the failure was never followed by a pass, so the rate's numerator is 0.
    assert [test["name"] for test in report["quarantine"]] == ["test_a"]
    assert report["quarantine"][0]["flaky_executions"] == 0
    assert report["flaky_rate"]["flaky_executions"] == 0


def test_quarantine_expiry_arithmetic(store: Store) -> None:
    events: list[dict[str, Any]] = []
    for day, sha in ((1, "s1"), (5, "s2"), (10, "s3")):
        run_id = f"r{day}"
        events.append(run(run_id, sha=sha, created_at=f"2026-03-{day:02d}T10:00:00Z"))
        events.append(case("test_a", "failed", run_id=run_id, attempt=1, file="src/payments/test_refund.py"))
        events.append(case("test_a", "passed", run_id=run_id, attempt=2, file="src/payments/test_refund.py"))
    load(store, *events)
    config = MetricsConfig(flaky_quarantine_days=7)
    (flaky,) = tests_report(store, MARCH, config=config).to_json()["quarantine"]
    # Three shas; first flake 1 March, last 10 March 10:00; expires 10 March + 7 days = 17 March 10:00.
    assert flaky["flake_count"] == 3
    assert flaky["flaky_executions"] == 3
    assert flaky["first_flake"] == "2026-03-01T10:00:00Z"
    assert flaky["last_flake"] == "2026-03-10T10:00:00Z"
    assert flaky["expires_at"] == "2026-03-17T10:00:00Z"
    assert flaky["active"] is False  # the window ends 1 April, after the expiry
    until_16th = Window(MARCH.since, datetime(2026, 3, 16, tzinfo=UTC))
    assert tests_report(store, until_16th, config=config).to_json()["quarantine"][0]["active"] is True


def test_quarantine_names_owners_from_codeowners(store: Store) -> None:
    load(
        store,
        run("r1"),
        case("test_refund", "failed", attempt=1, file="src/payments/test_refund.py"),
        case("test_refund", "passed", attempt=2, file="src/payments/test_refund.py"),
        case("test_docs", "failed", attempt=1, file="docs/test_build.py"),
        case("test_docs", "passed", attempt=2, file="docs/test_build.py"),
        case("test_misc", "failed", attempt=1, file="README.md"),
        case("test_misc", "passed", attempt=2, file="README.md"),
    )
    codeowners = {"*.py": "@py-team", "/docs/": "@docs", "src/payments/**": "@payments @finance"}
    report = tests_report(store, MARCH, codeowners=codeowners).to_json()
    owners = {test["name"]: (test["owner"], test["owners"]) for test in report["quarantine"]}
    assert owners == {
        "test_refund": ("@payments @finance", ["@payments", "@finance"]),
        "test_docs": ("@docs", ["@docs"]),
        "test_misc": (None, None),
    }


# ----- CODEOWNERS ------------------------------------------------------------------------------------------

RULES = [("*.py", ["@py-team"]), ("/docs/", ["@docs"]), ("src/payments/**", ["@payments"])]


@pytest.mark.parametrize(
    ("path", "owners"),
    [
        ("src/app.py", ["@py-team"]),  # *.py at any depth
        ("app.py", ["@py-team"]),
        ("src/payments/refund.py", ["@payments"]),  # later rule wins over *.py
        ("src/payments/deep/er/refund.go", ["@payments"]),
        ("./src/payments/refund.py", ["@payments"]),
        ("docs/conf.py", ["@docs"]),  # /docs/ comes after *.py
        ("docs/guide/intro.md", ["@docs"]),
        ("lib/docs/intro.md", None),  # /docs/ is anchored at the root
        ("docs", None),  # a trailing slash matches directories only
        ("payments/src/payments/x.md", None),  # an inner slash anchors the pattern
        ("README.md", None),
    ],
)
def test_owner_for_last_matching_rule_wins(path: str, owners: list[str] | None) -> None:
    assert owner_for(path, RULES) == owners


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("docs", "a/docs/b.md", True),  # no slash: any depth, and a directory owns what is below
        ("apps/github", "apps/github/x/y.js", True),
        ("apps/github", "x/apps/github/y.js", False),
        ("**/logs", "a/b/logs/x.txt", True),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("*.js", "src/app.jsx", False),
        ("src/*.js", "src/a/b.js", False),  # * stays within a segment
        ("src/?.js", "src/a.js", True),
        ("*", "anything/at/all.txt", True),
        ("/build/", "build/out.bin", True),
    ],
)
def test_codeowners_globs(pattern: str, path: str, matches: bool) -> None:
    assert (owner_for(path, [(pattern, ["@o"])]) is not None) is matches


def test_parse_codeowners() -> None:
    text = """
# comment
*.py        @py-team   # trailing comment
/docs/      @docs @writers
src/payments/**   @payments
[Section] @someone
/unowned/
my\\ dir/   @spaces
"""
    rules = parse_codeowners(text)
    assert rules == [
        ("*.py", ["@py-team"]),
        ("/docs/", ["@docs", "@writers"]),
        ("src/payments/**", ["@payments"]),
        ("/unowned/", []),
        ("my dir/", ["@spaces"]),
    ]
    assert owner_for("unowned/x.py", rules) == []  # explicitly unowned: the last match lists nobody
    assert owner_for("my dir/file.txt", rules) == ["@spaces"]
    assert owner_for("docs/x.py", rules) == ["@docs", "@writers"]


# ----- real inputs -----------------------------------------------------------------------------------------


def test_junit_report_with_a_flaky_failure(store: Store) -> None:
    data = (FIXTURES / "junit" / "surefire.flakyFailure.xml").read_bytes()
    cases = parse_junit(data, run_id="r1", source="github")
    load(store, run("r1", source="github"), *(event_to_json(test_case) for test_case in cases))
    report = tests_report(store, MARCH).to_json()
    classname = "io.sodadata.dependson.soda.integrations.msteams.MicrosoftTeamsCrudTest"
    (flaky,) = report["quarantine"]
    assert (flaky["suite"], flaky["classname"], flaky["name"]) == (classname, classname, "createWebhook")
    # attempt 1 failed (flakyFailure), attempt 2 passed: 1 of 2 executions.
    assert report["flaky_rate"] == {"flaky_executions": 1, "executions": 2, "rate": 0.5, "flaky_tests": 1}
    # The suite's execution is the final attempt only: 0.683 s.
    assert report["suites"][0]["p50"] == pytest.approx(0.683)


def test_junit_cases_of_another_source_are_unattributed(store: Store) -> None:
    data = (FIXTURES / "junit" / "surefire.flakyFailure.xml").read_bytes()
    cases = parse_junit(data, run_id="r1")  # source "junit": run ids are unique within a source only
    load(store, run("r1"), *(event_to_json(test_case) for test_case in cases))
    report = tests_report(store, MARCH).to_json()
    assert (report["test_cases"], report["unattributed"]) == (0, 2)


@pytest.mark.slow
def test_demo_dataset(store: Store) -> None:
    store.ingest([delivery(event) for event in generate(days=21, seed=7, until=date(2026, 11, 1))])
    window = Window(datetime(2026, 10, 11, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
    report = tests_report(store, window).to_json()
    assert report["test_cases"] > 0 and report["unattributed"] == 0
    assert report["suites"] and all(suite["samples"] > 0 for suite in report["suites"])
    assert report["flaky_rate"]["flaky_executions"] > 0
    storefront = [test for test in report["quarantine"] if test["repo"] == "acme/storefront"]
    assert storefront
    rates = {rate["repo"]: rate for rate in report["flaky_by_repo"]}
    assert rates["acme/storefront"]["rate"] > 0.01
    assert rates["acme/storefront"]["flaky_tests"] == len(storefront)
    filtered = tests_report(store, window, Filters(repo="acme/storefront")).to_json()
    assert {test["repo"] for test in filtered["quarantine"]} == {"acme/storefront"}
    assert filtered["flaky_rate"]["flaky_executions"] == rates["acme/storefront"]["flaky_executions"]

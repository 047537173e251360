"""Developer-experience metrics (DESIGN.md §3) on DuckDB and PostgreSQL, against values worked out by hand.

Percentiles are ``percentile_cont``: for n sorted values v[0..n-1] and fraction f, position p = (n−1)·f,
value = v[floor p] + (v[ceil p] − v[floor p])·(p − floor p).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from typing import Any

import pytest

from shipscope.demo import REPOS, TEAM_MEMBERS, generate
from shipscope.errors import InputError
from shipscope.metrics.common import Filters, MetricsConfig, Window
from shipscope.metrics.devex import DevexReport, devex_report
from shipscope.store import Store
from tests.factories import delivery, run

REPO = "acme/shop"
OTHER = "acme/other"
DAY = Window(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
HOUR = 3600.0


def load(store: Store, *events: dict[str, Any]) -> None:
    store.ingest([delivery(event) for event in events])


def pr(number: int, opened_at: str, merged_at: str | None = None, repo: str = REPO, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "pull_request",
        "repo": repo,
        "number": number,
        "author": "dev",
        "opened_at": opened_at,
        "base_branch": "main",
    }
    if merged_at is not None:
        event["merged_at"] = merged_at
    event.update(fields)
    return event


def change(
    sha: str, authored_at: str, committed_at: str | None = None, author: str = "dev", repo: str = REPO
) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "change", "repo": repo, "sha": sha, "authored_at": authored_at, "author": author}
    if committed_at is not None:
        event["committed_at"] = committed_at
    return event


def ci(run_id: str, status: str, created_at: str, finished_at: str | None = None, **fields: Any) -> dict[str, Any]:
    """A run whose times are given; ``finished_at`` defaults to created_at + 5 min for completed runs."""
    event = run(run_id, status, created_at=created_at, started_at=created_at, default_branch="main", **fields)
    if finished_at is not None:
        event["finished_at"] = finished_at
    elif "finished_at" in event:
        event["finished_at"] = (datetime.fromisoformat(created_at) + timedelta(minutes=5)).isoformat()
    return event


def report(store: Store, window: Window = DAY, **config: Any) -> dict[str, Any]:
    return devex_report(store, window, config=MetricsConfig(**config)).to_json()


def repo_json(shape: dict[str, Any], repo: str) -> dict[str, Any]:
    return next(entry for entry in shape["repos"] if entry["repo"] == repo)


# ----- no data ---------------------------------------------------------------------------------------------------


def test_no_data_gives_nulls_with_reasons(store: Store) -> None:
    shape = report(store)
    assert shape["repos"] == []
    overall = shape["overall"]
    for name in ("pr_cycle_time", "build_feedback_time", "time_to_green"):
        metric = overall[name]
        assert (metric["value"], metric["p50"], metric["p95"], metric["samples"]) == (None, None, None, 0)
        assert metric["meets_target"] is None
        assert metric["no_data"]
    assert overall["pr_cycle_time"]["no_data"] == "no pull request was merged in the window"
    assert overall["time_to_green"]["no_data"] == "no pull request was opened in the window"
    assert (overall["time_to_green"]["prs"], overall["time_to_green"]["never_green"]) == (0, 0)
    ratio = overall["self_service_rate"]
    assert (ratio["fixed_without_platform"], ratio["fixed_failures"], ratio["rate"]) == (0, 0, None)
    assert ratio["meets_target"] is None
    assert ratio["no_data"]


# ----- PR cycle time ---------------------------------------------------------------------------------------------


def test_one_pr(store: Store) -> None:
    load(store, pr(1, "2026-03-01T10:00:00Z", "2026-03-01T13:30:00Z"))
    cycle = report(store)["overall"]["pr_cycle_time"]
    # 13:30 − 10:00 = 3.5 h = 12600 s; one sample is its own median and p95.
    assert (cycle["p50"], cycle["p95"], cycle["samples"], cycle["value"]) == (12600.0, 12600.0, 1, 12600.0)
    assert cycle["statistic"] == "p50"
    assert cycle["meets_target"] is True  # 3.5 h < 1 day
    assert "no_data" not in cycle


def test_pr_cycle_ties_and_even_count(store: Store) -> None:
    load(
        store,
        pr(1, "2026-03-01T08:00:00Z", "2026-03-01T09:00:00Z"),  # 1 h
        pr(2, "2026-03-01T08:00:00Z", "2026-03-01T10:00:00Z"),  # 2 h
        pr(3, "2026-03-01T09:00:00Z", "2026-03-01T11:00:00Z"),  # 2 h (a tie)
        pr(4, "2026-03-01T06:00:00Z", "2026-03-01T11:00:00Z"),  # 5 h
        pr(5, "2026-03-01T06:00:00Z"),  # open: not merged, no sample
    )
    cycle = report(store)["overall"]["pr_cycle_time"]
    # sorted 3600, 7200, 7200, 18000: median p = 3·0.5 = 1.5 → 7200 + 0·0.5 = 7200
    # p95: p = 3·0.95 = 2.85 → 7200 + (18000 − 7200)·0.85 = 7200 + 9180 = 16380
    assert cycle["samples"] == 4
    assert cycle["p50"] == pytest.approx(7200.0)
    assert cycle["p95"] == pytest.approx(16380.0)


def test_pr_cycle_even_count_interpolates_the_median(store: Store) -> None:
    load(
        store,
        *(pr(n, "2026-03-01T00:00:00Z", f"2026-03-01T0{n}:00:00Z") for n in (1, 2, 3, 4)),  # 1, 2, 3, 4 h
    )
    cycle = report(store)["overall"]["pr_cycle_time"]
    # median p = 1.5 → 7200 + 3600·0.5 = 9000; p95 p = 2.85 → 10800 + 3600·0.85 = 13860
    assert (cycle["p50"], cycle["p95"], cycle["samples"]) == (pytest.approx(9000.0), pytest.approx(13860.0), 4)


def test_pr_cycle_window_edges_and_offsets(store: Store) -> None:
    load(
        store,
        # merged exactly at since: inside [since, until); opened the day before: 26 h = 93600 s
        pr(1, "2026-02-27T22:00:00Z", "2026-03-01T00:00:00Z"),
        # merged exactly at until: outside
        pr(2, "2026-03-01T10:00:00Z", "2026-03-02T00:00:00Z"),
        # +02:00: opened 10:00+02:00 = 08:00Z, merged 09:30Z → 1.5 h = 5400 s
        pr(3, "2026-03-01T10:00:00+02:00", "2026-03-01T09:30:00Z"),
        # merged 01:00+02:00 on March 2nd local = March 1st 23:00Z: inside; opened 22:00Z → 1 h = 3600 s
        pr(4, "2026-03-01T22:00:00Z", "2026-03-02T01:00:00+02:00"),
        # merged 23:30−01:00 on March 1st local = March 2nd 00:30Z: outside
        pr(5, "2026-03-01T20:00:00Z", "2026-03-01T23:30:00-01:00"),
    )
    cycle = report(store)["overall"]["pr_cycle_time"]
    # samples 3600, 5400, 93600: median 5400; p95 p = 1.9 → 5400 + (93600 − 5400)·0.9 = 5400 + 79380 = 84780
    assert cycle["samples"] == 3
    assert cycle["p50"] == pytest.approx(5400.0)
    assert cycle["p95"] == pytest.approx(84780.0)
    assert cycle["meets_target"] is True  # median 1.5 h < 1 day


def test_pr_cycle_per_repo_and_target(store: Store) -> None:
    load(
        store,
        pr(1, "2026-02-27T00:00:00Z", "2026-03-01T12:00:00Z"),  # 60 h = 216000 s
        pr(1, "2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z", repo=OTHER),  # 1 h
    )
    shape = report(store)
    assert [entry["repo"] for entry in shape["repos"]] == [OTHER, REPO]
    shop = repo_json(shape, REPO)["pr_cycle_time"]
    assert (shop["p50"], shop["meets_target"]) == (216000.0, False)  # 60 h ≥ 1 day
    other = repo_json(shape, OTHER)["pr_cycle_time"]
    assert (other["p50"], other["meets_target"]) == (3600.0, True)
    overall = shape["overall"]["pr_cycle_time"]
    # overall: 3600, 216000 → median 109800 (30.5 h): misses the target
    assert (overall["p50"], overall["samples"], overall["meets_target"]) == (109800.0, 2, False)


# ----- build feedback time ---------------------------------------------------------------------------------------


def test_build_feedback_time(store: Store) -> None:
    load(
        store,
        # a1 committed 10:00; its verdicts finish 10:07 (failure), 10:12 (success); a cancelled run at 10:03 and a
        # run still in progress say nothing → first verdict 10:07: 420 s
        change("a1", "2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z"),
        ci("r1", "failure", "2026-03-01T10:01:00Z", "2026-03-01T10:07:00Z", sha="a1"),
        ci("r2", "success", "2026-03-01T10:02:00Z", "2026-03-01T10:12:00Z", sha="a1", workflow="lint"),
        ci("r3", "cancelled", "2026-03-01T10:01:00Z", "2026-03-01T10:03:00Z", sha="a1", workflow="docs"),
        ci("r4", "in_progress", "2026-03-01T10:01:00Z", sha="a1", workflow="slow"),
        # a2 has no committed_at: authored 11:00+01:00 = 10:00Z; two runs tie at 10:20Z → 1200 s
        change("a2", "2026-03-01T11:00:00+01:00"),
        ci("r5", "success", "2026-03-01T10:05:00Z", "2026-03-01T10:20:00Z", sha="a2"),
        ci("r6", "failure", "2026-03-01T10:05:00Z", "2026-03-01T10:20:00Z", sha="a2", workflow="lint"),
        # a3: committed 12:00, verdict 12:05 → 300 s
        change("a3", "2026-03-01T12:00:00Z", "2026-03-01T12:00:00Z"),
        ci("r7", "success", "2026-03-01T12:01:00Z", "2026-03-01T12:05:00Z", sha="a3"),
        # a4: committed 13:00, verdict 13:40 → 2400 s
        change("a4", "2026-03-01T13:00:00Z", "2026-03-01T13:00:00Z"),
        ci("r8", "failure", "2026-03-01T13:01:00Z", "2026-03-01T13:40:00Z", sha="a4"),
        # no run on a5: not a sample; a run on an unknown sha: not a sample
        change("a5", "2026-03-01T14:00:00Z"),
        ci("r9", "success", "2026-03-01T14:01:00Z", "2026-03-01T14:05:00Z", sha="zz"),
        # a same-named sha in another repository does not borrow this repository's runs
        change("a3", "2026-03-01T11:00:00Z", repo=OTHER),
        # committed before the window (23:59 the day before): outside, though its run finishes inside
        change("a6", "2026-02-28T23:59:00Z"),
        ci("r10", "success", "2026-03-01T00:00:00Z", "2026-03-01T00:10:00Z", sha="a6"),
    )
    feedback = report(store)["overall"]["build_feedback_time"]
    # sorted 300, 420, 1200, 2400: p50 p = 1.5 → 420 + 780·0.5 = 810
    # p95 p = 2.85 → 1200 + 1200·0.85 = 2220
    assert feedback["samples"] == 4
    assert feedback["p50"] == pytest.approx(810.0)
    assert feedback["p95"] == pytest.approx(2220.0)
    assert (feedback["statistic"], feedback["value"]) == ("p95", pytest.approx(2220.0))
    assert feedback["meets_target"] is False  # 2220 s ≥ 10 min
    assert [entry["repo"] for entry in report(store)["repos"]] == [REPO]


def test_build_feedback_time_meets_target(store: Store) -> None:
    load(
        store,
        change("b1", "2026-03-01T10:00:00Z", "2026-03-01T10:00:00Z"),
        ci("r1", "success", "2026-03-01T10:00:30Z", "2026-03-01T10:09:00Z", sha="b1"),  # 540 s
    )
    feedback = report(store)["overall"]["build_feedback_time"]
    assert (feedback["p95"], feedback["samples"], feedback["meets_target"]) == (540.0, 1, True)


# ----- time to green ---------------------------------------------------------------------------------------------


def test_time_to_green_and_never_green(store: Store) -> None:
    load(
        store,
        # PR 1 opened 10:00: failure at 10:10, successes finishing 10:25 and 10:40 → first green 10:25: 1500 s
        pr(1, "2026-03-01T10:00:00Z"),
        ci("r1", "failure", "2026-03-01T10:05:00Z", "2026-03-01T10:10:00Z", pr_number=1, branch="f1"),
        ci("r2", "success", "2026-03-01T10:15:00Z", "2026-03-01T10:25:00Z", pr_number=1, branch="f1"),
        ci("r3", "success", "2026-03-01T10:30:00Z", "2026-03-01T10:40:00Z", pr_number=1, branch="f1"),
        # PR 2 opened 12:00+03:00 = 09:00Z, green at 09:10Z → 600 s
        pr(2, "2026-03-01T12:00:00+03:00"),
        ci("r4", "success", "2026-03-01T09:01:00Z", "2026-03-01T09:10:00Z", pr_number=2, branch="f2"),
        # PR 3 never green: only failures, and a success of PR 3 in another repository does not count
        pr(3, "2026-03-01T11:00:00Z"),
        ci("r5", "failure", "2026-03-01T11:05:00Z", "2026-03-01T11:10:00Z", pr_number=3, branch="f3"),
        ci("r6", "success", "2026-03-01T11:05:00Z", "2026-03-01T11:10:00Z", pr_number=3, branch="f3", repo=OTHER),
        # opened before the window: not counted
        pr(4, "2026-02-28T23:00:00Z"),
        ci("r7", "success", "2026-03-01T00:05:00Z", "2026-03-01T00:10:00Z", pr_number=4, branch="f4"),
    )
    green = repo_json(report(store), REPO)["time_to_green"]
    # samples 600, 1500: p50 = 1050; p95 p = 0.95 → 600 + 900·0.95 = 1455
    assert (green["samples"], green["prs"], green["never_green"]) == (2, 3, 1)
    assert green["p50"] == pytest.approx(1050.0)
    assert green["p95"] == pytest.approx(1455.0)
    assert green["meets_target"] is False  # 1455 s ≥ 20 min


def test_a_pr_never_green(store: Store) -> None:
    load(
        store,
        pr(9, "2026-03-01T10:00:00Z"),
        ci("r1", "failure", "2026-03-01T10:05:00Z", "2026-03-01T10:10:00Z", pr_number=9, branch="f"),
        ci("r2", "in_progress", "2026-03-01T10:15:00Z", pr_number=9, branch="f"),
    )
    green = report(store)["overall"]["time_to_green"]
    assert (green["p50"], green["p95"], green["samples"], green["meets_target"]) == (None, None, 0, None)
    assert (green["prs"], green["never_green"]) == (1, 1)
    assert green["no_data"] == "none of the 1 pull requests opened in the window has a successful run"


def test_time_to_green_meets_target(store: Store) -> None:
    load(
        store,
        pr(1, "2026-03-01T10:00:00Z"),
        ci("r1", "success", "2026-03-01T10:01:00Z", "2026-03-01T10:15:00Z", pr_number=1, branch="f"),  # 900 s
    )
    green = report(store)["overall"]["time_to_green"]
    assert (green["p95"], green["meets_target"], green["never_green"]) == (900.0, True, 0)


# ----- self-service rate -----------------------------------------------------------------------------------------

SELF_SERVICE_EVENTS: list[dict[str, Any]] = [
    # (1) main fails at 10:00 on m1, fixed by the next ci run at 10:30 on m2; m2 by dev2 → self-served
    ci("f1", "failure", "2026-03-01T10:00:00Z", sha="m1"),
    change("m2", "2026-03-01T10:20:00Z", "2026-03-01T10:20:00Z", author="dev2"),
    ci("s1", "success", "2026-03-01T10:30:00Z", sha="m2"),
    # (2) fails at 11:00; the lint workflow passing at 11:01 fixes nothing; a cancelled ci run is no verdict;
    #     fixed at 11:40 on m4. A platform member committed p1 at 11:15, in (11:00, 11:40] → not self-served
    ci("f2", "failure", "2026-03-01T11:00:00Z", sha="m3"),
    ci("l2", "success", "2026-03-01T11:01:00Z", sha="m3", workflow="lint"),
    ci("c2", "cancelled", "2026-03-01T11:20:00Z", sha="p1"),
    change("p1", "2026-03-01T11:15:00Z", "2026-03-01T11:15:00Z", author="Platform-Pat"),
    change("m4", "2026-03-01T11:35:00Z", "2026-03-01T11:35:00Z", author="dev"),
    ci("s2", "success", "2026-03-01T11:40:00Z", sha="m4"),
    # (3) fails at 12:00, next run fails again at 12:10 (so 12:00 is not fixed), then green at 12:30 on m7:
    #     only (12:10, 12:30] counts for the 12:10 failure; the platform commit at 12:05 is outside it → self-served
    ci("f3", "failure", "2026-03-01T12:00:00Z", sha="m5"),
    change("p2", "2026-03-01T12:05:00Z", "2026-03-01T12:05:00Z", author="platform-pat"),
    ci("f4", "failure", "2026-03-01T12:10:00Z", sha="m6"),
    change("m7", "2026-03-01T12:25:00Z", "2026-03-01T12:25:00Z", author="dev"),
    ci("s3", "success", "2026-03-01T12:30:00Z", sha="m7"),
    # (4) a pull-request run fails and is fixed on its branch; the fixing sha q2 was authored (no committed_at)
    #     long before by a platform member, outside the interval, but it is the fixing run's own sha → platform
    ci("f5", "failure", "2026-03-01T13:00:00Z", sha="q1", branch="feat", pr_number=7, trigger="pull_request"),
    change("q2", "2026-02-20T09:00:00Z", author="PLATFORM-PAT"),
    ci("s5", "success", "2026-03-01T13:20:00Z", sha="q2", branch="feat", pr_number=7, trigger="pull_request"),
    # (5) a failure re-run green (attempt 2 of the same run, same sha m8 by dev) → fixed, self-served
    ci("f6", "failure", "2026-03-01T14:00:00Z", sha="m8"),
    change("m8", "2026-03-01T13:55:00Z", "2026-03-01T13:55:00Z", author="dev"),
    ci("f6", "success", "2026-03-01T14:20:00Z", sha="m8", attempt=2),
    # (6) fails at 23:50, fixed at 00:10 the next day, after the window closed: still counted → self-served
    ci("f7", "failure", "2026-03-01T23:50:00Z", sha="k1", workflow="e2e"),
    ci("s7", "success", "2026-03-02T00:10:00Z", sha="k1", workflow="e2e"),
    # not counted: a failure created when the window closes
    ci("x7", "failure", "2026-03-02T00:00:00Z", sha="n7", workflow="late"),
    ci("x8", "success", "2026-03-02T00:10:00Z", sha="n8", workflow="late"),
    # not counted: a push to a feature branch with no PR, though fixed next
    ci("x1", "failure", "2026-03-01T15:00:00Z", sha="n1", branch="spike"),
    ci("x2", "success", "2026-03-01T15:10:00Z", sha="n2", branch="spike"),
    # not counted: failed before the window (its fix lands inside)
    ci("x3", "failure", "2026-02-28T23:50:00Z", sha="n3", workflow="nightly"),
    ci("x4", "success", "2026-03-01T00:10:00Z", sha="n4", workflow="nightly"),
    # not counted: a failure still unfixed (the next run is in progress)
    ci("x5", "failure", "2026-03-01T16:00:00Z", sha="n5", workflow="deploy"),
    ci("x6", "in_progress", "2026-03-01T16:10:00Z", sha="n6", workflow="deploy"),
]


def test_self_service_with_a_platform_member(store: Store) -> None:
    load(store, *SELF_SERVICE_EVENTS)
    rate = report(store, platform_team=("platform-pat", "someone-else"))["overall"]["self_service_rate"]
    # fixed failures: f1, f2, f4, f5, f6, f7 = 6; platform among the fixing commits: f2 (p1), f5 (q2) → 4 of 6
    assert (rate["fixed_without_platform"], rate["fixed_failures"]) == (4, 6)
    assert rate["rate"] == pytest.approx(4 / 6)
    assert rate["meets_target"] is False  # 66.7% ≤ 80%


def test_self_service_without_a_platform_member(store: Store) -> None:
    load(store, *SELF_SERVICE_EVENTS)
    # no platform team configured: every fixed failure is self-served, 6 of 6
    rate = report(store)["overall"]["self_service_rate"]
    assert (rate["fixed_without_platform"], rate["fixed_failures"], rate["rate"]) == (6, 6, 1.0)
    assert rate["meets_target"] is True
    # a platform team that wrote none of the fixing commits changes nothing
    rate = report(store, platform_team=("nobody",))["overall"]["self_service_rate"]
    assert (rate["fixed_without_platform"], rate["fixed_failures"]) == (6, 6)


def test_self_service_per_repo(store: Store) -> None:
    load(
        store,
        *SELF_SERVICE_EVENTS,
        # in another repository a platform member's commit at 10:10 does not touch acme/shop's f1, and acme/other's
        # own failure is fixed by the platform member's commit
        ci("o1", "failure", "2026-03-01T10:00:00Z", sha="o1", repo=OTHER),
        change("o2", "2026-03-01T10:10:00Z", "2026-03-01T10:10:00Z", author="platform-pat", repo=OTHER),
        ci("o2", "success", "2026-03-01T10:15:00Z", sha="o2", repo=OTHER),
    )
    shape = report(store, platform_team=("platform-pat",))
    shop = repo_json(shape, REPO)["self_service_rate"]
    other = repo_json(shape, OTHER)["self_service_rate"]
    assert (shop["fixed_without_platform"], shop["fixed_failures"]) == (4, 6)
    assert (other["fixed_without_platform"], other["fixed_failures"], other["rate"]) == (0, 1, 0.0)
    overall = shape["overall"]["self_service_rate"]
    assert (overall["fixed_without_platform"], overall["fixed_failures"]) == (4, 7)  # 4 + 0 of 6 + 1


def test_self_service_interval_is_open_left_closed_right(store: Store) -> None:
    load(
        store,
        # acme/shop: a platform commit made exactly when the failed run was created is not a fixing commit
        ci("f1", "failure", "2026-03-01T10:00:00Z", sha="m1"),
        change("b0", "2026-03-01T10:00:00Z", "2026-03-01T10:00:00Z", author="platform-pat"),
        change("m2", "2026-03-01T10:20:00Z", "2026-03-01T10:20:00Z"),
        ci("s1", "success", "2026-03-01T10:30:00Z", sha="m2"),
        # acme/other: one made exactly when the fixing run was created is
        ci("f2", "failure", "2026-03-01T11:00:00Z", sha="o1", repo=OTHER),
        change("o2", "2026-03-01T11:10:00Z", "2026-03-01T11:10:00Z", repo=OTHER),
        change("b1", "2026-03-01T11:30:00Z", "2026-03-01T11:30:00Z", author="platform-pat", repo=OTHER),
        ci("s2", "success", "2026-03-01T11:30:00Z", sha="o2", repo=OTHER),
    )
    shape = report(store, platform_team=("platform-pat",))
    shop = repo_json(shape, REPO)["self_service_rate"]
    other = repo_json(shape, OTHER)["self_service_rate"]
    assert (shop["fixed_without_platform"], shop["fixed_failures"]) == (1, 1)
    assert (other["fixed_without_platform"], other["fixed_failures"]) == (0, 1)


# ----- filters ---------------------------------------------------------------------------------------------------


def test_repo_and_team_filters(store: Store) -> None:
    load(
        store,
        pr(1, "2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z"),  # 3600 s in acme/shop
        pr(1, "2026-03-01T10:00:00Z", "2026-03-01T12:00:00Z", repo=OTHER),  # 7200 s in acme/other
    )
    config = MetricsConfig(teams={"web": [OTHER, "storefront-web"], "nobody": []})
    only = devex_report(store, DAY, Filters(repo=REPO), config).to_json()
    assert [entry["repo"] for entry in only["repos"]] == [REPO]
    assert only["overall"]["pr_cycle_time"]["p50"] == 3600.0
    team = devex_report(store, DAY, Filters(team="web"), config).to_json()
    assert [entry["repo"] for entry in team["repos"]] == [OTHER]
    assert team["overall"]["pr_cycle_time"]["p50"] == 7200.0
    assert team["filters"] == {"team": "web"}
    empty = devex_report(store, DAY, Filters(team="nobody"), config).to_json()
    assert empty["repos"] == [] and empty["overall"]["pr_cycle_time"]["samples"] == 0
    unused = devex_report(store, DAY, Filters(service="checkout"), config).to_json()
    assert unused["filters_not_applied"] == ["service"]
    assert unused["overall"]["pr_cycle_time"]["samples"] == 2
    with pytest.raises(InputError, match="unknown team 'ghosts'"):
        devex_report(store, DAY, Filters(team="ghosts"), config)


# ----- the demo data ---------------------------------------------------------------------------------------------

DEMO_UNTIL = date(2026, 11, 1)
DEMO_DAYS = 21


def _chunks(events: Iterable[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    iterator = iter(events)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@pytest.mark.slow
def test_demo_data_gives_sane_values(store: Store) -> None:
    events = list(generate(days=DEMO_DAYS, seed=7, until=DEMO_UNTIL))
    for chunk in _chunks(events, 5000):
        store.ingest([delivery(event) for event in chunk])
    until = datetime(DEMO_UNTIL.year, DEMO_UNTIL.month, DEMO_UNTIL.day, tzinfo=UTC)
    window = Window(until - timedelta(days=DEMO_DAYS), until)
    result: DevexReport = devex_report(store, window, config=MetricsConfig(platform_team=TEAM_MEMBERS["platform"]))
    shape = result.to_json()
    assert shape["repos"] and {entry["repo"] for entry in shape["repos"]} <= set(REPOS)
    overall = shape["overall"]
    for name in ("pr_cycle_time", "build_feedback_time", "time_to_green"):
        metric = overall[name]
        assert metric["samples"] > 0, name
        assert 0 < metric["p50"] <= metric["p95"], name
        assert isinstance(metric["meets_target"], bool), name
    assert overall["build_feedback_time"]["p95"] < 6 * HOUR
    assert overall["time_to_green"]["prs"] >= overall["time_to_green"]["samples"]
    rate = overall["self_service_rate"]
    assert 0 < rate["fixed_failures"] and 0 <= rate["fixed_without_platform"] <= rate["fixed_failures"]
    assert 0.0 <= rate["rate"] <= 1.0
    per_repo = sum(entry["self_service_rate"]["fixed_failures"] for entry in shape["repos"])
    assert per_repo == rate["fixed_failures"]

    # The PR cycle time recomputed from the generated events (a PR's fields merge across its events).
    merged: dict[tuple[str, int], dict[str, Any]] = {}
    for event in events:
        if event["type"] == "pull_request":
            stored = merged.setdefault((event["repo"], event["number"]), {})
            stored.update({key: value for key, value in event.items() if value is not None})
    cycles = [
        (datetime.fromisoformat(p["merged_at"]) - datetime.fromisoformat(p["opened_at"])).total_seconds()
        for p in merged.values()
        if "merged_at" in p and window.since <= datetime.fromisoformat(p["merged_at"]) < window.until
    ]
    assert overall["pr_cycle_time"]["samples"] == len(cycles)
    assert overall["pr_cycle_time"]["p50"] == pytest.approx(_percentile(cycles, 0.5))
    assert overall["pr_cycle_time"]["p95"] == pytest.approx(_percentile(cycles, 0.95))

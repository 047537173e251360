"""DORA definition presets (shipscope.metrics.dora: ``devlake``, ``fourkeys``, ``middleware``) on both backends.

Each preset reproduces a worked example reconstructed from its peer's own documentation or code; the last test runs
the four presets on one dataset and says where and why they differ. Sources:

- devlake: devlake.apache.org/docs/Metrics/DeploymentFrequency (criteria on the median number of deployment days
  per week / month), /docs/Metrics/LeadTimeForChanges (3 deploys, 6 PRs: PR cycle time = deploy finished − the PR's
  first commit authored; their median), /docs/Metrics/MTTR ("median(1, 3, 4) = 3 hours"),
  /docs/Metrics/CFR; apache/incubator-devlake grafana/dashboards/DORA.json (rank-based "lower" median).
- fourkeys: GoogleCloudPlatform/fourkeys (now dora-team/fourkeys) METRICS.md and queries (frequency buckets over
  BigQuery weeks, which start on Sunday; lead time in whole minutes, only > 0; time to restore in whole hours over
  the incidents table; "four deployments in a day and one causes a failure, that is a 25% change failure rate").
- middleware: middlewarehq/middleware backend/analytics_server/mhq/service/deployments/analytics.py (daily, weekly
  and monthly buckets over the interval), mhq/utils/dict.py (``get_average_of_dict_values``: ``sum // len``),
  mhq/service/incidents/incidents.py (incidents go to the deployment with ``conducted_at <= creation_date <`` the
  next one's; mean time to recovery = mean of ``resolved_date − creation_date`` of the incidents resolved). Its
  docs (middlewarehq.com/docs/product/oss/calculations) give no numbers; the worked examples come from its test
  suite, backend/analytics_server/tests/service/deployments/test_deployment_frequency.py and
  tests/service/Incidents/test_change_failure_rate.py and test_mean_time_to_recovery.py.

Unless a test says otherwise the window is [2026-03-01, 2026-03-31): 30 days, Sunday March 1 to Monday March 30.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shipscope.metrics.common import Window
from shipscope.metrics.dora import DEFINITIONS, PRESETS
from shipscope.store import Store
from tests.test_metrics_dora import DAY, HOUR, change, deploy, incident, load, report


def failed_ids(metrics: dict[str, Any]) -> list[str]:
    return [entry["id"] for entry in metrics["explain"]["deployments"] if entry["failed"]]


def test_the_presets_are_registered() -> None:
    assert PRESETS == ("shipscope", "devlake", "fourkeys", "middleware")
    assert {name: DEFINITIONS[name].name for name in PRESETS} == {name: name for name in PRESETS}


# ----- devlake ---------------------------------------------------------------------------------------------------


def test_devlake_deployment_days_per_week_with_the_lower_median(store: Store) -> None:
    # DevLake's criteria: elite when the median number of deployment days per week is ≥ 7, high when ≥ 1, medium
    # when the median number of deployment days per month is ≥ 1, low otherwise. Weeks start on Monday; the
    # window touches six: Feb 23 (only Mar 1), Mar 2, 9, 16, 23 and Mar 30 (only Mar 30).
    events = [
        # checkout: deployment days per week 0, 2, 0, 2, 3, 0 (two deploys on Mar 2 make one deployment day).
        deploy("c1", "2026-03-02T10:00:00Z", "c1"),
        deploy("c2", "2026-03-02T16:00:00Z", "c2"),
        deploy("c3", "2026-03-04T10:00:00Z", "c3"),
        deploy("c4", "2026-03-16T10:00:00Z", "c4"),
        deploy("c5", "2026-03-18T10:00:00Z", "c5"),
        deploy("c6", "2026-03-23T10:00:00Z", "c6"),
        deploy("c7", "2026-03-24T10:00:00Z", "c7"),
        deploy("c8", "2026-03-25T10:00:00Z", "c8"),
    ]
    # api deploys every day: 1, 7, 7, 7, 7, 1 deployment days per week.
    events += [deploy(f"a{day}", f"2026-03-{day:02d}T12:00:00Z", f"a{day}", service="api") for day in range(1, 31)]
    load(store, *events)
    services = report(store, definitions="devlake")["services"]
    checkout = services["checkout"]["deployment_frequency"]
    # Sorted 0, 0, 0, 2, 2, 3: the lower median is element (6 − 1) // 2 = 2, so 0 days per week (percentile_cont
    # would say 1, high). March has 7 deployment days ≥ 1: medium.
    assert checkout == {
        "deployments": 8,
        "deployment_days": 7,
        "per_day": pytest.approx(7 / 30),
        "per_week": 0,
        "per_month": 7,
        "tier": "medium",
    }
    # Sorted 1, 1, 7, 7, 7, 7: the lower median is 7 days per week: elite.
    api = services["api"]["deployment_frequency"]
    assert (api["per_week"], api["per_month"], api["tier"]) == (7, 30, "elite")
    # The rate preset calls checkout high: 8 deploys in 30 days is more than weekly.
    assert report(store)["services"]["checkout"]["deployment_frequency"]["tier"] == "high"


def test_devlake_lead_time_is_the_lower_median_pr_cycle_time(store: Store) -> None:
    # The LeadTimeForChanges page's example: three deployments in the month ship six PRs (PR-1 by Deploy-1, PR-2
    # and PR-3 by Deploy-2, PR-4 to PR-6 by Deploy-3); each PR's cycle time = its deployment's finished_date − the
    # PR's first commit's authored_date; the metric is their median. Cycle times here: PR-1 9 h 59 min 30 s
    # (truncated to whole minutes: 35940 s), PR-2 2 h, PR-3 30 h, PR-4 5 h, PR-5 50 h, PR-6 20 h.
    load(
        store,
        deploy("d0", "2026-02-28T12:00:00Z", "s0"),  # the previous deployment: commits are diffed against it
        deploy("deploy-1", "2026-03-03T12:00:00Z", "s1"),
        change("pr1", "2026-03-03T02:00:30Z", "deploy-1", pr_number=1),
        deploy("deploy-2", "2026-03-10T12:00:00Z", "s2"),
        change("pr2", "2026-03-10T10:00:00Z", "deploy-2", pr_number=2),
        change("pr3-a", "2026-03-09T06:00:00Z", "deploy-2", pr_number=3),  # PR-3's first commit
        change("pr3-b", "2026-03-10T08:00:00Z", "deploy-2", pr_number=3),  # the same PR: one cycle time
        deploy("deploy-3", "2026-03-17T12:00:00Z", "s3"),
        change("pr4", "2026-03-17T07:00:00Z", "deploy-3", pr_number=4),
        change("pr5", "2026-03-15T10:00:00Z", "deploy-3", pr_number=5),
        change("pr6", "2026-03-16T16:00:00Z", "deploy-3", pr_number=6),
        change("direct", "2026-03-17T11:00:00Z", "deploy-3"),  # no PR: no cycle time
    )
    overall = report(store, definitions="devlake")["overall"]
    # Sorted 7200, 18000, 35940, 72000, 108000, 180000: the lower median is element 2, 35940 s (< 1 day: elite);
    # p95 stays interpolated: rank 5 × 0.95 = 4.75 → 108000 + 0.75 × 72000 = 162000.
    assert overall["lead_time"] == {"changes": 6, "median_seconds": 35940.0, "p95_seconds": 162000.0, "tier": "elite"}
    assert [row["pr_number"] for row in overall["explain"]["changes"]] == [1, 3, 2, 5, 6, 4]


def test_devlake_recovery_and_failure_rate_from_the_latest_earlier_deployment(store: Store) -> None:
    # The MTTR page: "three incidents ... one lasting 1 hour, one lasting 3 hours and one lasting 4 hours. Your MTTR
    # will be: median(1, 3, 4) = 3 hours". DevLake links each incident to the latest production deployment finished
    # before it was created and measures from that deployment's finish to the incident's resolution.
    load(
        store,
        deploy("a1", "2026-03-02T10:00:00Z", "s1"),
        deploy("a2", "2026-03-05T10:00:00Z", "s2"),
        deploy("a3", "2026-03-09T10:00:00Z", "s3"),
        deploy("a4", "2026-03-12T10:00:00Z", "s4"),
        deploy("a5", "2026-03-16T10:00:00Z", "s5"),
        incident("i1", "2026-03-02T10:30:00Z", resolved_at="2026-03-02T11:00:00Z"),  # a1 + 1 h
        incident("i2", "2026-03-05T12:00:00Z", resolved_at="2026-03-05T13:00:00Z"),  # a2 + 3 h
        # It names a5, but DevLake links by time: a3 (+ 4 h). Its label is no exclusion in DevLake.
        incident("i3", "2026-03-09T11:00:00Z", resolved_at="2026-03-09T14:00:00Z", caused_by_deployment_id="a5")
        | {"labels": ["infra-only"]},
    )
    overall = report(store, definitions="devlake")["overall"]
    # CFR: deployments with an incident ÷ deployments = 3 / 5.
    assert overall["change_failure_rate"] == {"failed": 3, "deployments": 5, "rate": 0.6, "tier": "low"}
    assert failed_ids(overall) == ["a1", "a2", "a3"]
    # median(1, 3, 4) h = 3 h = 10800 s (< 1 day: high); mean (1 + 3 + 4) / 3 h = 9600 s.
    assert overall["recovery_time"] == {
        "failures": 3,
        "unresolved": 0,
        "median_seconds": 10800.0,
        "mean_seconds": 9600.0,
        "tier": "high",
    }


# ----- fourkeys --------------------------------------------------------------------------------------------------


def test_fourkeys_frequency_buckets(store: Store) -> None:
    # METRICS.md: Daily when the median number of days per week with deployments is ≥ 3; Weekly when most weeks
    # have a deployment (median of "the week had one", 0 or 1, ≥ 1); Monthly when the median over the weeks of
    # their month's weeks with a deployment is ≥ 1; Yearly otherwise. Weeks start on Sunday (BigQuery's WEEK).
    # Four whole weeks: Mar 1, 8, 15 and 22.
    window = Window(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 29, tzinfo=UTC))
    days = {
        "daily": [2, 3, 4, 9, 10, 11, 16, 17, 18, 23, 24, 25],  # 3, 3, 3, 3 days a week
        "weekly": [2, 9, 16],  # 1, 1, 1, 0
        "monthly": [2, 3, 23, 24],  # 2, 0, 0, 2
    }
    load(
        store,
        *(
            deploy(f"{service}-{day}", f"2026-03-{day:02d}T12:00:00Z", f"{service}-{day}", service=service)
            for service, dates in days.items()
            for day in dates
        ),
    )
    services = report(store, window, definitions="fourkeys")["services"]
    frequency = {name: services[name]["deployment_frequency"] for name in days}
    # daily: median 3 days a week → Daily (elite); 4 weeks with a deployment in March.
    assert (frequency["daily"]["per_week"], frequency["daily"]["per_month"], frequency["daily"]["tier"]) == (
        3,
        4,
        "elite",
    )
    # weekly: median 1 day a week, and most weeks had one → Weekly (high).
    assert (frequency["weekly"]["per_week"], frequency["weekly"]["tier"]) == (1, "high")
    # monthly: the median of days a week is (0 + 2) / 2 = 1, but only half the weeks had a deployment (median of
    # 0, 0, 1, 1 = 0.5 < 1), so not Weekly; March had 2 weeks with one: Monthly (medium).
    assert frequency["monthly"] == {
        "deployments": 4,
        "deployment_days": 4,
        "per_day": pytest.approx(4 / 28),
        "per_week": 1.0,
        "per_month": 2,
        "tier": "medium",
    }


def test_fourkeys_lead_time_per_commit_in_whole_minutes(store: Store) -> None:
    # METRICS.md: time to change = TIMESTAMP_DIFF(deployment, change, MINUTE) per change the deployment lists,
    # changes of 0 minutes ("automated pushes") ignored, the median by PERCENTILE_CONT. The change's own commit
    # time counts, not its PR's first commit, and the first deployment's changes count too.
    load(
        store,
        deploy("e1", "2026-03-05T12:00:00Z", "s1"),  # the first deployment ever
        change("k1", "2026-03-05T10:30:00Z", "e1"),  # 90 min
        change("k2", "2026-03-05T11:29:20Z", "e1"),  # 30 min 40 s → 30 min
        change("k3", "2026-03-05T11:59:30Z", "e1"),  # 30 s → 0 min: ignored
        deploy("e2", "2026-03-06T12:00:00Z", "s2"),
        change("k0", "2026-03-01T10:00:00Z", pr_number=5),  # PR 5's first commit, shipped by nobody
        change("k4", "2026-03-06T10:00:00Z", "e2", pr_number=5),  # 120 min from its own commit
    )
    overall = report(store, definitions="fourkeys")["overall"]
    # Sorted 30, 90, 120 min: median 90 min = 5400 s; p95: rank 2 × 0.95 = 1.9 → 90 + 0.9 × 30 = 117 min.
    assert overall["lead_time"] == {"changes": 3, "median_seconds": 5400.0, "p95_seconds": 7020.0, "tier": "elite"}
    # The shipscope preset measures only e2 (e1 has no earlier deploy), from PR 5's first commit.
    shipscope = report(store)["overall"]["lead_time"]
    assert (shipscope["changes"], shipscope["median_seconds"]) == (1, 5 * DAY + 2 * HOUR)


def test_fourkeys_failure_rate_and_time_to_restore(store: Store) -> None:
    # METRICS.md: "if there are four deployments in a day and one causes a failure, that is a 25% change failure
    # rate"; an incident marks the deployment its root cause names. Time to restore: the median over the
    # incidents table of TIMESTAMP_DIFF(time_resolved, time_created, HOUR), whether linked to a deployment or not.
    load(
        store,
        deploy("f1", "2026-03-05T09:00:00Z", "s1"),
        deploy("f2", "2026-03-05T11:00:00Z", "s2"),
        deploy("f3", "2026-03-05T13:00:00Z", "s3"),
        deploy("f4", "2026-03-05T15:00:00Z", "s4"),
        incident("i1", "2026-03-05T11:30:00Z", resolved_at="2026-03-05T12:45:00Z", caused_by_deployment_id="f2"),
        # Unlinked: no failure here (the shipscope preset would blame f4), but a restore sample.
        incident("i2", "2026-03-05T15:30:00Z", resolved_at="2026-03-05T18:29:00Z"),
        incident("i3", "2026-03-20T10:00:00Z", resolved_at="2026-03-20T15:00:00Z"),
        incident("i4", "2026-03-21T10:00:00Z", resolved_at="2026-03-21T10:30:00Z"),
        incident("i5", "2026-03-22T10:00:00Z"),  # unresolved: no duration
    )
    overall = report(store, definitions="fourkeys")["overall"]
    assert overall["change_failure_rate"] == {"failed": 1, "deployments": 4, "rate": 0.25, "tier": "low"}
    assert failed_ids(overall) == ["f2"]
    # Whole hours: i1 1 h 15 min → 1, i2 2 h 59 min → 2, i3 5, i4 30 min → 0. Sorted 0, 1, 2, 5: median 1.5 h.
    assert overall["recovery_time"] == {
        "failures": 5,
        "unresolved": 1,
        "median_seconds": 5400.0,
        "mean_seconds": 7200.0,
        "tier": "high",
    }
    assert overall["explain"]["incidents"] == [
        {"id": "i1", "deployment_id": "f2", "recovery_seconds": 3600.0},
        {"id": "i2", "deployment_id": None, "recovery_seconds": 7200.0},
        {"id": "i3", "deployment_id": None, "recovery_seconds": 18000.0},
        {"id": "i4", "deployment_id": None, "recovery_seconds": 0.0},
        {"id": "i5", "deployment_id": None, "recovery_seconds": None},
    ]
    assert report(store)["overall"]["change_failure_rate"]["failed"] == 2  # shipscope: f2, and f4 for i2


# ----- middleware ------------------------------------------------------------------------------------------------


def test_middleware_frequencies_are_floor_divided_bucket_means(store: Store) -> None:
    # analytics.py buckets the interval's deployments by day, week (Monday) and month, empty buckets included, and
    # averages each with get_average_of_dict_values: sum // number of buckets. March's window touches 30 days, 6
    # Monday weeks (Feb 23 to Mar 30) and 1 month.
    load(
        store,
        *(deploy(f"a{day}", f"2026-03-{day:02d}T10:00:00Z", f"a{day}") for day in range(2, 12)),  # 10
        *(deploy(f"b{day}", f"2026-03-{day:02d}T10:00:00Z", f"b{day}", service="b") for day in range(2, 7)),  # 5
    )
    services = report(store, definitions="middleware")["services"]
    # checkout: 10 // 30 = 0 a day, 10 // 6 = 1 a week, 10 a month: weekly, high.
    assert services["checkout"]["deployment_frequency"] == {
        "deployments": 10,
        "deployment_days": 10,
        "per_day": 0,
        "per_week": 1,
        "per_month": 10,
        "tier": "high",
    }
    # b: 5 // 6 = 0 a week: medium, where the rate (5 / 30 = 0.167 a day, over 1/7) is high.
    frequency = services["b"]["deployment_frequency"]
    assert (frequency["per_day"], frequency["per_week"], frequency["per_month"], frequency["tier"]) == (
        0,
        0,
        5,
        "medium",
    )
    assert report(store)["services"]["b"]["deployment_frequency"]["tier"] == "high"


def test_middleware_means_and_incidents_by_time(store: Store) -> None:
    load(
        store,
        deploy("m1", "2026-03-02T10:00:00Z", "s1"),  # no earlier deploy needed: PRs merged before it map to it
        change("p1", "2026-03-02T08:00:00Z", "m1", pr_number=1),  # 2 h
        deploy("m2", "2026-03-04T10:00:00Z", "s2"),
        change("p2-a", "2026-03-04T06:00:00Z", "m2", pr_number=2),  # PR 2 from its first commit: 4 h
        change("p2-b", "2026-03-04T09:00:00Z", "m2", pr_number=2),
        deploy("m3", "2026-03-09T10:00:00Z", "s3"),
        change("p3", "2026-03-06T10:00:00Z", "m3", pr_number=3),  # 72 h
        change("direct", "2026-03-09T09:00:00Z", "m3"),  # no PR: not a lead time
        # Created at m2's conducted_at: m2's (conducted_at <= creation < next); the deployment it names is ignored.
        incident("n1", "2026-03-04T10:00:00Z", resolved_at="2026-03-04T11:00:00Z", caused_by_deployment_id="m1"),
        # Opened before the window, resolved in it: no failure of the window, but a recovery of it (5 h).
        incident("n2", "2026-02-28T22:00:00Z", resolved_at="2026-03-01T03:00:00Z"),
        incident("n3", "2026-03-09T12:00:00Z"),  # m3's, unresolved: failed, no recovery sample
    )
    overall = report(store, definitions="middleware")["overall"]
    # Mean of 2, 4 and 72 h = 26 h = 93600 s: high (the median, 4 h, would be elite).
    assert overall["lead_time"] == {
        "changes": 3,
        "median_seconds": 4 * HOUR,
        "p95_seconds": pytest.approx(4 * HOUR + 0.9 * 68 * HOUR),
        "tier": "high",
        "mean_seconds": 26 * HOUR,
    }
    assert overall["change_failure_rate"] == {
        "failed": 2,
        "deployments": 3,
        "rate": pytest.approx(2 / 3),
        "tier": "low",
    }
    assert failed_ids(overall) == ["m2", "m3"]
    # Resolved in the window: n2 (5 h) and n1 (1 h); mean 3 h.
    assert overall["recovery_time"] == {
        "failures": 2,
        "unresolved": 0,
        "median_seconds": 3 * HOUR,
        "mean_seconds": 3 * HOUR,
        "tier": "high",
    }
    assert overall["explain"]["incidents"] == [
        {"id": "n2", "deployment_id": None, "recovery_seconds": 5 * HOUR},
        {"id": "n1", "deployment_id": "m2", "recovery_seconds": HOUR},
    ]


# Middleware's documentation (middlewarehq.com/docs/product/oss/calculations, /docs/product/cloud/dora/dora-metrics
# and the README's "How we Calculate DORA") describes the four keys in words only, with no numbers. Its backend's
# test suite (middlewarehq/middleware, backend/analytics_server/tests/) is where inputs and expected outputs are
# published; the tests below replay those examples. Middleware's Interval is closed (``from_time <= conducted_at
# <= to_time``, and the day of ``to_time`` is a bucket); shipscope's window is half-open, so its closed interval
# [from, to] is the window [from, to + 1 µs).
MW_FIRST_WEEK = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
MW_FOURTH_WEEK = datetime(2024, 1, 22, tzinfo=UTC)
MW_FROM = MW_FIRST_WEEK + timedelta(days=1)
MICROSECOND = timedelta(microseconds=1)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def closed(start: datetime, end: datetime) -> Window:
    """Middleware's closed Interval(start, end) as a shipscope window."""
    return Window(start, end + MICROSECOND)


# tests/service/deployments/test_deployment_frequency.py: the deployments of its "across weeks" example, 2 in the
# week of Jan 1 and 4 in the week of Jan 15 (also the deployments of the weekly trend and weekly CFR examples).
MW_WEEKS_DEPLOYS = [
    MW_FROM + timedelta(hours=12),
    MW_FROM + timedelta(hours=24),
    MW_FOURTH_WEEK - timedelta(days=4),
    MW_FOURTH_WEEK - timedelta(days=2),
    MW_FOURTH_WEEK - timedelta(hours=6),
    MW_FOURTH_WEEK - timedelta(minutes=30),
]
MW_MARCH_END = datetime(2024, 3, 31, tzinfo=UTC)
MW_FEBRUARY = datetime(2024, 2, 1, tzinfo=UTC)
MW_EARLIER_DEPLOY = deploy("d0", "2023-12-01T10:00:00Z", "s0")


@pytest.mark.parametrize(
    ("until", "finished", "expected"),
    [
        pytest.param(
            MW_FIRST_WEEK + timedelta(days=4),
            [MW_FROM + timedelta(hours=12), MW_FROM + timedelta(days=1), MW_FROM + timedelta(days=2)]
            + [MW_FIRST_WEEK + timedelta(days=24)],  # after the interval: not counted
            (3, 0, 3, 3),
            id="across-days",
        ),
        pytest.param(MW_FOURTH_WEEK + timedelta(days=1), MW_WEEKS_DEPLOYS, (6, 0, 1, 6), id="across-weeks"),
        pytest.param(
            MW_MARCH_END,
            [
                *MW_WEEKS_DEPLOYS,
                MW_FEBRUARY + timedelta(days=3),
                MW_FEBRUARY + timedelta(days=2),
                MW_FEBRUARY + timedelta(minutes=30),
                MW_MARCH_END - timedelta(days=3),
                MW_MARCH_END - timedelta(days=2),
                MW_MARCH_END - timedelta(days=1),
                MW_MARCH_END - timedelta(days=1),  # two deployments at the same instant
            ],
            (13, 0, 1, 4),
            id="across-months",
        ),
    ],
)
def test_middleware_deployment_frequency_examples_of_its_test_suite(
    store: Store, until: datetime, finished: list[datetime], expected: tuple[int, int, int, int]
) -> None:
    # test_deployment_frequency.py, tests ..._across_days, ..._across_weeks and ..._across_months: deployments in
    # Interval(Jan 2 2024, until) give get_deployment_frequency_metrics(total, daily, weekly, monthly) of (3, 0, 3,
    # 3), (6, 0, 1, 6) and (13, 0, 1, 4). The interval touches 4, 22 and 90 days, 1, 4 and 13 Monday weeks, 1, 1
    # and 3 months; each figure is the deployments // those buckets.
    load(store, *(deploy(f"d{n}", iso(moment), f"s{n}") for n, moment in enumerate(finished)))
    frequency = report(store, closed(MW_FROM, until), definitions="middleware")["overall"]["deployment_frequency"]
    assert (frequency["deployments"], frequency["per_day"], frequency["per_week"], frequency["per_month"]) == expected
    assert frequency["tier"] == "high"  # under a deployment a day, at least one a week


def test_middleware_frequency_interval_is_closed(store: Store) -> None:
    # The "across days" example ends at Fri Jan 5 00:00, inside Middleware's interval: Jan 5 is a day bucket, so 3
    # deployments // 4 days = 0 a day. The half-open window ending at that instant touches 3 days: 1 a day, elite.
    finished = [MW_FROM + timedelta(hours=12), MW_FROM + timedelta(days=1), MW_FROM + timedelta(days=2)]
    load(store, *(deploy(f"d{n}", iso(moment), f"s{n}") for n, moment in enumerate(finished)))
    half_open = Window(MW_FROM, MW_FIRST_WEEK + timedelta(days=4))
    frequency = report(store, half_open, definitions="middleware")["overall"]["deployment_frequency"]
    assert (frequency["per_day"], frequency["tier"]) == (1, "elite")


def test_middleware_weekly_trends_of_its_test_suite(store: Store) -> None:
    # test_deployment_frequency.py (test_weekly_deployment_frequency_trends_for_deployments): the weekly counts of
    # those six deployments are {Jan 1: 2, Jan 8: 0, Jan 15: 4, Jan 22: 0}. test_change_failure_rate.py
    # (test_get_weekly_change_failure_rate_for_incidents_and_deployments) adds incidents: i0 before the first
    # deployment (no deployment), i1 and i2 after d1 (the second, Jan 3 00:00), i3 and i4 after d2 (Jan 18), i5 and
    # i6 after d4 (Jan 21 18:00); failed {d1} of {d0, d1} in the week of Jan 1, {d2, d4} of {d2, d3, d4, d5} in the
    # week of Jan 15, and no deployment in the others. shipscope's trend is monthly: one window per Monday week
    # (Middleware links incidents over the whole interval, but here none follows a deployment of an earlier week).
    opened = [
        MW_FROM + timedelta(hours=10),
        MW_FROM + timedelta(hours=28),
        MW_FROM + timedelta(hours=29),
        MW_FOURTH_WEEK - timedelta(days=3),
        MW_FOURTH_WEEK - timedelta(days=3),
        MW_FOURTH_WEEK - timedelta(hours=3),
        MW_FOURTH_WEEK - timedelta(hours=2),
    ]
    load(
        store,
        *(deploy(f"d{n}", iso(moment), f"s{n}") for n, moment in enumerate(MW_WEEKS_DEPLOYS)),
        *(incident(f"i{n}", iso(moment)) for n, moment in enumerate(opened)),
    )
    weeks = [MW_FIRST_WEEK + timedelta(weeks=n) for n in range(4)]
    by_week = [report(store, Window(week, week + timedelta(weeks=1)), definitions="middleware") for week in weeks]
    deployments = [shape["overall"]["deployment_frequency"]["deployments"] for shape in by_week]
    assert deployments == [2, 0, 4, 0]
    rates = [shape["overall"]["change_failure_rate"] for shape in by_week]
    assert [(rate["failed"], rate["deployments"]) for rate in rates] == [(1, 2), (0, 0), (2, 4), (0, 0)]
    assert [failed_ids(shape["overall"]) for shape in by_week] == [["d1"], [], ["d2", "d4"], []]
    # Over Middleware's whole interval, Jan 2 to Jan 24 00:00: 3 of the 6 deployments failed.
    whole = report(store, closed(MW_FROM, MW_FOURTH_WEEK + timedelta(days=2)), definitions="middleware")["overall"]
    assert (whole["change_failure_rate"]["failed"], whole["change_failure_rate"]["rate"]) == (3, 0.5)


def test_middleware_change_failure_rate_of_its_test_suite(store: Store) -> None:
    # test_change_failure_rate.py (test_get_change_failure_rate_for_multi_incidents_multi_deployments), with its
    # times relative to "now": an incident 10 days ago, before every deployment, fails none; each later incident
    # fails the latest deployment at or before it; the deployment 30 minutes ago has no incident. Failed: 4 of 6,
    # a change_failure_rate of 4 / 6 * 100.
    now = datetime(2024, 1, 20, 12, tzinfo=UTC)
    deployments = [
        timedelta(days=7),
        timedelta(days=6),
        timedelta(days=4),
        timedelta(days=2),
        timedelta(hours=6),
        timedelta(minutes=30),
    ]
    incidents = [
        timedelta(days=10),
        timedelta(days=5),
        timedelta(days=3),
        timedelta(hours=20),
        timedelta(hours=4),
        timedelta(hours=2),
        timedelta(hours=1),
    ]
    load(
        store,
        *(deploy(f"d{n}", iso(now - ago), f"s{n}") for n, ago in enumerate(deployments, start=1)),
        *(incident(f"i{n}", iso(now - ago)) for n, ago in enumerate(incidents)),
    )
    overall = report(store, Window(now - timedelta(days=14), now), definitions="middleware")["overall"]
    assert overall["change_failure_rate"] == {
        "failed": 4,
        "deployments": 6,
        "rate": pytest.approx(4 / 6),
        "tier": "low",
    }
    assert failed_ids(overall) == ["d2", "d3", "d4", "d5"]


def test_middleware_mean_time_to_recovery_of_its_test_suite(store: Store) -> None:
    # test_mean_time_to_recovery.py (test_get_incidents_mean_time_to_recovery_for_incidents): incidents resolved
    # 100, 300 and 800 s after they were created have a mean time to recovery of 400 s over 3 incidents; with a
    # fourth of 90 s, 322.5 s over 4. No deployment is involved there; shipscope learns its production
    # environments from deployments, so one, before the window, makes the store's incidents count.
    window = Window(MW_FIRST_WEEK, MW_FIRST_WEEK + timedelta(weeks=1))
    created = iso(MW_FIRST_WEEK)
    durations = [100, 300, 800]
    load(
        store,
        MW_EARLIER_DEPLOY,
        *(
            incident(f"i{n}", created, resolved_at=iso(MW_FIRST_WEEK + timedelta(seconds=seconds)))
            for n, seconds in enumerate(durations, start=1)
        ),
    )
    recovery = report(store, window, definitions="middleware")["overall"]["recovery_time"]
    assert (recovery["failures"], recovery["mean_seconds"], recovery["tier"]) == (3, 400.0, "elite")
    load(store, incident("i4", created, resolved_at=iso(MW_FIRST_WEEK + timedelta(seconds=90))))
    recovery = report(store, window, definitions="middleware")["overall"]["recovery_time"]
    assert recovery == {
        "failures": 4,
        "unresolved": 0,
        "median_seconds": 200.0,  # shipscope's extra: Middleware reports no median
        "mean_seconds": 322.5,
        "tier": "elite",
    }


def test_middleware_weekly_mean_time_to_recovery_of_its_test_suite(store: Store) -> None:
    # test_mean_time_to_recovery.py (the trend test named test_get_change_failure_rate_for_one_incidents_bw_two_
    # deployments): incidents resolved 100, 100 and 400 s after creation in the week of Jan 1, and four of 100 s in
    # the week of Jan 15, bucketed by resolution week: {Jan 1: 200 s over 3, Jan 8: none, Jan 15: 100 s over 4,
    # Jan 22: none}.
    third_week = MW_FIRST_WEEK + timedelta(weeks=2)
    samples = [
        (MW_FIRST_WEEK + timedelta(hours=10), 100),
        (MW_FIRST_WEEK + timedelta(hours=28), 100),
        (MW_FIRST_WEEK + timedelta(hours=29), 400),
        (third_week + timedelta(days=2), 100),
        (third_week + timedelta(days=4), 100),
        (third_week + timedelta(days=4), 100),
        (third_week + timedelta(days=3), 100),
    ]
    load(
        store,
        *(
            incident(f"i{n}", iso(opened), resolved_at=iso(opened + timedelta(seconds=seconds)))
            for n, (opened, seconds) in enumerate(samples)
        ),
        MW_EARLIER_DEPLOY,
    )
    weeks = [MW_FIRST_WEEK + timedelta(weeks=n) for n in range(4)]
    recoveries = [
        report(store, Window(week, week + timedelta(weeks=1)), definitions="middleware")["overall"]["recovery_time"]
        for week in weeks
    ]
    assert [(item["mean_seconds"], item["failures"]) for item in recoveries] == [
        (200.0, 3),
        (None, 0),
        (100.0, 4),
        (None, 0),
    ]


# ----- one dataset, four presets -------------------------------------------------------------------------------


def test_the_presets_differ_on_one_dataset(store: Store) -> None:
    load(
        store,
        deploy("d0", "2026-02-27T10:00:00Z", "s0"),
        deploy("d1", "2026-03-02T10:00:00Z", "s1"),
        change("p1a", "2026-03-01T10:00:00Z", "d1", pr_number=1),  # PR 1's first commit
        change("p1b", "2026-03-02T09:00:00Z", "d1", pr_number=1),
        deploy("d2", "2026-03-03T10:00:00Z", "s2"),
        deploy("d3", "2026-03-03T15:00:00Z", "s3"),
        change("x", "2026-03-03T14:00:00Z", "d3"),  # a direct commit
        deploy("d4", "2026-03-10T10:00:00Z", "s4"),
        change("q", "2026-03-09T14:00:00Z", "d4", pr_number=2),
        # Opened the instant d3 finished, naming d1.
        incident("i1", "2026-03-03T15:00:00Z", resolved_at="2026-03-03T17:00:00Z", caused_by_deployment_id="d1"),
        incident("i2", "2026-03-10T12:00:00Z", resolved_at="2026-03-10T13:00:00Z"),  # names nothing
    )
    shapes = {name: report(store, definitions=name) for name in PRESETS}
    assert {name: shape["definitions"] for name, shape in shapes.items()} == {name: name for name in PRESETS}
    overall = {name: shape["overall"] for name, shape in shapes.items()}

    # Frequency: 4 deployments on 3 dates (Mar 2, 3, 10). shipscope: 4 / 30 a day < 1/7: medium. devlake: Monday
    # weeks have 0, 2, 1, 0, 0, 0 deployment days, lower median 0; 3 in March: medium. fourkeys: Sunday weeks 2, 1,
    # 0, 0, 0: median 0, 2 of 5 weeks deployed; March has 2 deployed weeks: medium. middleware: 4 // 30, 4 // 6,
    # 4 // 1: medium. Same tier, four different numbers.
    frequency = {name: metrics["deployment_frequency"] for name, metrics in overall.items()}
    assert {name: (f["per_day"], f["per_week"], f["per_month"]) for name, f in frequency.items()} == {
        "shipscope": (pytest.approx(4 / 30), pytest.approx(28 / 30), pytest.approx(4 * 30.44 / 30)),
        "devlake": (pytest.approx(3 / 30), 0, 3),
        "fourkeys": (pytest.approx(3 / 30), 0, 2),
        "middleware": (0, 0, 4),
    }
    assert {f["tier"] for f in frequency.values()} == {"medium"}

    # Lead time. shipscope: every change from its PR's first commit: x 1 h, q 20 h, p1a and p1b 24 h; median 22 h.
    # devlake: PRs only (x has none): 24 h and 20 h, lower median 20 h. fourkeys: every commit from its own time:
    # 1 h, 1 h, 20 h, 24 h; median 10.5 h. middleware: PRs, mean of 24 h and 20 h = 22 h.
    lead = {name: metrics["lead_time"] for name, metrics in overall.items()}
    assert {name: (item["changes"], item["median_seconds"]) for name, item in lead.items()} == {
        "shipscope": (4, 22 * HOUR),
        "devlake": (2, 20 * HOUR),
        "fourkeys": (4, 10.5 * HOUR),
        "middleware": (2, 22 * HOUR),
    }
    assert lead["middleware"]["mean_seconds"] == 22 * HOUR and "mean_seconds" not in lead["shipscope"]

    # Which deployments failed. i1: shipscope and fourkeys follow its link (d1); devlake takes the latest deployment
    # finished strictly before it opened (d2: d3 finished at that very instant); middleware the latest at or
    # before (d3). i2 names nothing: shipscope, devlake and middleware give it to d4, fourkeys to nobody.
    assert {name: failed_ids(metrics) for name, metrics in overall.items()} == {
        "shipscope": ["d1", "d4"],
        "devlake": ["d2", "d4"],
        "fourkeys": ["d1"],
        "middleware": ["d3", "d4"],
    }
    rates = {name: metrics["change_failure_rate"]["rate"] for name, metrics in overall.items()}
    assert rates == {"shipscope": 0.5, "devlake": 0.5, "fourkeys": 0.25, "middleware": 0.5}

    # Recovery. shipscope, fourkeys, middleware: opened → resolved, 2 h and 1 h (median = mean = 1.5 h). devlake:
    # from the linked deployment's finish: d2 10:00 → 17:00 = 7 h, d4 10:00 → 13:00 = 3 h; lower median 3 h.
    recovery = {name: metrics["recovery_time"] for name, metrics in overall.items()}
    assert {name: (item["median_seconds"], item["mean_seconds"]) for name, item in recovery.items()} == {
        "shipscope": (1.5 * HOUR, 1.5 * HOUR),
        "devlake": (3 * HOUR, 5 * HOUR),
        "fourkeys": (1.5 * HOUR, 1.5 * HOUR),
        "middleware": (1.5 * HOUR, 1.5 * HOUR),
    }
    # The trend follows each preset's median too.
    assert [point["recovery_median_seconds"] for point in overall["devlake"]["trend"]] == [3 * HOUR]

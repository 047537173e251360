"""DORA four keys (shipscope.metrics.dora): hand-computed values on both backends, and the demo data.

Unless a test says otherwise the window is [2026-03-01, 2026-03-31): 30 days. Every deployment is a production
deployment of ``checkout`` (environment ``production``) that succeeded; times are UTC unless they carry an offset.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from shipscope.demo import DORA_TIERS, generate
from shipscope.errors import InputError
from shipscope.metrics.common import Filters, MetricsConfig, Window
from shipscope.metrics.dora import PRESETS, SHIPSCOPE, DoraView, dora_report, dora_reports, tier_for
from shipscope.store import Store
from tests.factories import delivery, deployment, run

SINCE = datetime(2026, 3, 1, tzinfo=UTC)
UNTIL = datetime(2026, 3, 31, tzinfo=UTC)
WINDOW = Window(SINCE, UNTIL)
HOUR = 3600.0
DAY = 86400.0


# ----- builders -------------------------------------------------------------------------------------------------


def deploy(
    deployment_id: str,
    finished: str,
    sha: str,
    *,
    service: str = "checkout",
    environment: str = "production",
    status: str = "success",
    **fields: Any,
) -> dict[str, Any]:
    return deployment(
        deployment_id,
        status,
        service=service,
        environment=environment,
        sha=sha,
        started_at=finished,
        finished_at=finished,
        **fields,
    )


def change(sha: str, authored: str, deployment_id: str | None = None, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "change", "sha": sha, "repo": "acme/shop", "authored_at": authored}
    if deployment_id is not None:
        event["deployment_id"] = deployment_id
    event.update(fields)
    return event


def incident(incident_id: str, opened: str, service: str = "checkout", **fields: Any) -> dict[str, Any]:
    return {
        "type": "incident",
        "id": incident_id,
        "service": service,
        "title": f"{service} is failing",
        "opened_at": opened,
        **fields,
    }


def pull_request(number: int, opened: str, labels: list[str], repo: str = "acme/shop") -> dict[str, Any]:
    return {
        "type": "pull_request",
        "repo": repo,
        "number": number,
        "author": "dev",
        "opened_at": opened,
        "base_branch": "main",
        "labels": labels,
    }


def load(store: Store, *events: dict[str, Any]) -> None:
    store.ingest([delivery(event) for event in events])


def report(store: Store, window: Window = WINDOW, **options: Any) -> dict[str, Any]:
    return dora_report(store, window, **options).to_json(explain=True)


def explained(
    deployment_id: str,
    finished_at: str,
    signals: tuple[str, ...] = (),
    incident_ids: tuple[str, ...] = (),
) -> dict[str, Any]:
    return {
        "id": deployment_id,
        "finished_at": finished_at,
        "failed": bool(signals),
        "failure_signals": list(signals),
        "incident_ids": list(incident_ids),
    }


def signals_of(metrics: dict[str, Any]) -> dict[str, list[str]]:
    return {entry["id"]: entry["failure_signals"] for entry in metrics["explain"]["deployments"]}


# ----- no data, one deployment --------------------------------------------------------------------------------------


def test_no_data_gives_nulls_with_reasons_and_no_tier(store: Store) -> None:
    load(
        store,
        deploy("s1", "2026-03-05T10:00:00Z", "a1", environment="staging"),  # not production
        deploy("f1", "2026-03-06T10:00:00Z", "a2", status="failure"),  # not successful
        deploy("old", "2026-02-20T10:00:00Z", "a0"),  # before the window
        deploy("late", "2026-03-31T00:00:00Z", "a3"),  # at `until`: the window is half-open
    )
    shape = report(store)
    assert shape["window"] == {"since": "2026-03-01T00:00:00Z", "until": "2026-03-31T00:00:00Z"}
    assert shape["definitions"] == "shipscope"
    assert shape["services"] == {}
    overall = shape["overall"]
    frequency = overall["deployment_frequency"]
    assert frequency == {
        "deployments": 0,
        "deployment_days": 0,
        "per_day": None,
        "per_week": None,
        "per_month": None,
        "tier": None,
        "no_data": frequency["no_data"],
    }
    assert frequency["no_data"]
    lead = overall["lead_time"]
    assert (lead["changes"], lead["median_seconds"], lead["p95_seconds"], lead["tier"]) == (0, None, None, None)
    assert lead["no_data"]
    failure = overall["change_failure_rate"]
    assert (failure["failed"], failure["deployments"], failure["rate"], failure["tier"]) == (0, 0, None, None)
    assert failure["no_data"]
    recovery = overall["recovery_time"]
    assert (recovery["failures"], recovery["median_seconds"], recovery["mean_seconds"], recovery["tier"]) == (
        0,
        None,
        None,
        None,
    )
    assert recovery["no_data"]
    assert overall["trend"] == [
        {
            "month": "2026-03",
            "deployments": 0,
            "lead_time_median_seconds": None,
            "change_failure_rate": None,
            "recovery_median_seconds": None,
        }
    ]
    assert overall["explain"] == {"deployments": [], "changes": [], "incidents": []}


def test_one_deployment_counts_but_measures_no_lead_time(store: Store) -> None:
    load(
        store,
        deploy("d1", "2026-03-10T12:00:00Z", "a1"),
        change("a1", "2026-03-09T12:00:00Z", "d1"),  # shipped by d1, but d1 has no previous deploy
    )
    shape = report(store)
    overall = shape["overall"]
    # 1 deployment in 30 days: per_day 1/30, per_week 7/30, per_month 30.44/30 = 1.0147 ≥ 1 → medium.
    frequency = overall["deployment_frequency"]
    assert frequency["deployments"] == 1
    assert frequency["deployment_days"] == 1
    assert frequency["per_day"] == pytest.approx(1 / 30)
    assert frequency["per_week"] == pytest.approx(7 / 30)
    assert frequency["per_month"] == pytest.approx(30.44 / 30)
    assert frequency["tier"] == "medium"
    assert "no_data" not in frequency
    lead = overall["lead_time"]
    assert lead["changes"] == 0 and lead["median_seconds"] is None and lead["tier"] is None
    assert "earlier" in lead["no_data"]
    # 0 failed of 1: a measured rate of 0, not missing data.
    assert overall["change_failure_rate"] == {"failed": 0, "deployments": 1, "rate": 0.0, "tier": "elite"}
    assert overall["recovery_time"]["failures"] == 0
    assert overall["recovery_time"]["no_data"]
    assert overall["explain"] == {
        "deployments": [explained("d1", "2026-03-10T12:00:00Z")],
        "changes": [],
        "incidents": [],
    }
    assert list(shape["services"]) == ["checkout"]
    assert shape["services"]["checkout"] == overall
    assert "explain" not in dora_report(store, WINDOW).to_json()["overall"]


# ----- lead time -------------------------------------------------------------------------------------------------


def test_lead_time_across_the_window_edge_time_zones_and_first_commits(store: Store) -> None:
    load(
        store,
        # Finished before `since`: the previous deploy of d1, not counted itself.
        deploy("d0", "2026-02-28T23:00:00Z", "s0"),
        change("s0", "2026-02-28T20:00:00Z", "d0"),
        # d1 ships a direct commit and two commits of PR 7, whose first commit (c-p1) d1 did not ship.
        deploy("d1", "2026-03-02T12:00:00Z", "s1"),
        change("c-a", "2026-03-02T06:00:00Z", "d1"),  # 12:00 − 06:00 = 6 h = 21600 s
        change("c-p1", "2026-03-01T12:00:00Z", pr_number=7),  # PR 7's first commit, shipped by nobody
        change("c-p2", "2026-03-01T20:00:00Z", "d1", pr_number=7),  # from c-p1: 24 h = 86400 s
        change("c-p3", "2026-03-02T10:00:00Z", "d1", pr_number=7),  # from c-p1: 86400 s
        change("c-other", "2026-02-01T10:00:00Z", pr_number=7, repo="acme/other"),  # another repo's PR 7
        # d2 in -07:00: March 1st there, 03-02T05:00Z, so before d1 and on d1's UTC date. No change names it, so
        # the unlinked change with its sha is its change.
        deploy("d2", "2026-03-01T22:00:00-07:00", "s2"),
        change("s2", "2026-03-01T19:00:00-07:00"),  # 05:00Z − 02:00Z = 3 h = 10800 s
        # d3 on the window's last second.
        deploy("d3", "2026-03-30T23:59:59Z", "s3"),
        change("c-late", "2026-03-28T23:59:59Z", "d3"),  # 2 days = 172800 s
        # d4 at `until`: outside, and so is its change.
        deploy("d4", "2026-03-31T00:00:00Z", "s4"),
        change("c-next", "2026-03-30T00:00:00Z", "d4"),
    )
    overall = report(store)["overall"]
    frequency = overall["deployment_frequency"]
    # d2, d1, d3 on two UTC dates (03-02, 03-30); 3/30 per day, 0.7 per week, 3.044 per month → medium.
    assert (frequency["deployments"], frequency["deployment_days"], frequency["tier"]) == (3, 2, "medium")
    assert frequency["per_week"] == pytest.approx(0.7)
    # Samples, sorted: 10800, 21600, 86400, 86400, 172800.
    # median = 86400 (1 day: not < 1 day, so high); p95: rank 4 × 0.95 = 3.8 → 86400 + 0.8 × 86400 = 155520.
    lead = overall["lead_time"]
    assert lead == {"changes": 5, "median_seconds": 86400.0, "p95_seconds": 155520.0, "tier": "high"}
    assert overall["explain"]["changes"] == [
        {"sha": "s2", "pr_number": None, "deployment_id": "d2", "lead_time_seconds": 10800.0},
        {"sha": "c-p2", "pr_number": 7, "deployment_id": "d1", "lead_time_seconds": 86400.0},
        {"sha": "c-p3", "pr_number": 7, "deployment_id": "d1", "lead_time_seconds": 86400.0},
        {"sha": "c-a", "pr_number": None, "deployment_id": "d1", "lead_time_seconds": 21600.0},
        {"sha": "c-late", "pr_number": None, "deployment_id": "d3", "lead_time_seconds": 172800.0},
    ]
    assert overall["explain"]["deployments"] == [
        explained("d2", "2026-03-02T05:00:00Z"),
        explained("d1", "2026-03-02T12:00:00Z"),
        explained("d3", "2026-03-30T23:59:59Z"),
    ]


def test_history_long_before_the_window(store: Store) -> None:
    load(
        store,
        # Three weeks before the window: the previous deploy of g1, and the first to ship sha "old".
        deploy("g0", "2026-02-10T10:00:00Z", "old"),
        change("old", "2026-02-10T09:00:00Z"),  # unlinked: g0 shipped it (its sha), not g2
        deploy("g1", "2026-03-03T10:00:00Z", "new"),
        change("new", "2026-03-03T09:00:00Z"),  # unlinked, sha of g1: 1 h
        deploy("g2", "2026-03-04T10:00:00Z", "old"),  # back to February's sha
    )
    overall = report(store)["overall"]
    assert overall["lead_time"] == {"changes": 1, "median_seconds": 3600.0, "p95_seconds": 3600.0, "tier": "elite"}
    assert overall["explain"]["changes"] == [
        {"sha": "new", "pr_number": None, "deployment_id": "g1", "lead_time_seconds": 3600.0}
    ]
    assert signals_of(overall) == {"g1": ["older_sha_redeploy"], "g2": []}


def test_ties_order_by_id_and_interpolate(store: Store) -> None:
    load(
        store,
        # Same instant: "t-a" sorts before "t-b", so t-a is first (unmeasured) and t-b has a previous deploy.
        deploy("t-b", "2026-03-05T12:00:00Z", "x2"),
        deploy("t-a", "2026-03-05T12:00:00Z", "x1"),
        change("x1", "2026-03-05T08:00:00Z", "t-a"),
        change("x2-1", "2026-03-05T11:00:00Z", "t-b"),  # 1 h
        change("x2-2", "2026-03-05T10:00:00Z", "t-b"),  # 2 h
        # Opened the instant both finished: the last deploy at or before it, t-b, caused it.
        incident("i1", "2026-03-05T12:00:00Z", resolved_at="2026-03-05T12:30:00Z"),
    )
    overall = report(store)["overall"]
    assert overall["deployment_frequency"]["deployment_days"] == 1
    # [3600, 7200]: median 5400; p95 = 3600 + 0.95 × 3600 = 7020.
    assert overall["lead_time"] == {"changes": 2, "median_seconds": 5400.0, "p95_seconds": 7020.0, "tier": "elite"}
    assert overall["explain"]["deployments"] == [
        explained("t-a", "2026-03-05T12:00:00Z"),
        explained("t-b", "2026-03-05T12:00:00Z", ("incident",), ("i1",)),
    ]
    # 1 failed of 2; recovery 12:00 → 12:30 = 1800 s: elite.
    assert overall["change_failure_rate"] == {"failed": 1, "deployments": 2, "rate": 0.5, "tier": "low"}
    assert overall["recovery_time"] == {
        "failures": 1,
        "unresolved": 0,
        "median_seconds": 1800.0,
        "mean_seconds": 1800.0,
        "tier": "elite",
    }
    assert overall["explain"]["incidents"] == [{"id": "i1", "deployment_id": "t-b", "recovery_seconds": 1800.0}]


def test_a_deployment_without_commits_counts_and_ships_nothing(store: Store) -> None:
    load(
        store,
        deploy("n1", "2026-03-05T10:00:00Z", "a1"),
        deploy("n2", "2026-03-06T10:00:00Z", "a2"),  # a redeploy with new config: no change names it or its sha
        change("a1", "2026-03-05T09:00:00Z", "n1"),
    )
    overall = report(store)["overall"]
    assert overall["deployment_frequency"]["deployments"] == 2
    assert overall["lead_time"]["changes"] == 0
    assert overall["lead_time"]["no_data"]
    assert overall["explain"]["changes"] == []


def test_two_production_environments_both_count(store: Store) -> None:
    events = [
        deploy("s1", "2026-03-02T09:00:00Z", "v1", environment="staging"),
        deploy("p1", "2026-03-02T10:00:00Z", "v1"),
        deploy("p1-eu", "2026-03-02T10:30:00Z", "v1", environment="production-eu"),
        deploy("p2", "2026-03-03T10:00:00Z", "v2"),
        deploy("p2-eu", "2026-03-03T10:20:00Z", "v2", environment="production-eu"),
        deploy("p3-us", "2026-03-04T10:00:00Z", "v2", environment="PROD-us"),  # matches prod* case-insensitively
        change("v1", "2026-03-02T08:00:00Z", "p1"),
        change("v2", "2026-03-03T07:00:00Z", "p2"),  # 3 h; p2-eu and p3-us ship the same sha but not the change
    ]
    load(store, *events)
    overall = report(store)["overall"]
    # 5 production deployments on 3 UTC dates; staging is not production.
    frequency = overall["deployment_frequency"]
    assert (frequency["deployments"], frequency["deployment_days"]) == (5, 3)
    assert overall["lead_time"]["changes"] == 1
    assert overall["lead_time"]["median_seconds"] == 3 * HOUR
    assert [entry["id"] for entry in overall["explain"]["deployments"]] == ["p1", "p1-eu", "p2", "p2-eu", "p3-us"]

    eu = report(store, filters=Filters(environment="production-eu"))["overall"]
    # Only p1-eu and p2-eu; p2-eu follows p1-eu but ships no change of its own.
    assert eu["deployment_frequency"]["deployments"] == 2
    assert eu["lead_time"]["changes"] == 0
    assert [entry["id"] for entry in eu["explain"]["deployments"]] == ["p1-eu", "p2-eu"]

    exact = report(store, config=MetricsConfig(production_environments=("production", "production-eu")))
    assert exact["overall"]["deployment_frequency"]["deployments"] == 4


# ----- change failure rate ---------------------------------------------------------------------------------------


def test_rollback_to_an_older_sha(store: Store) -> None:
    load(
        store,
        deploy("r1", "2026-03-05T10:00:00Z", "aaa"),
        deploy("r2", "2026-03-06T10:00:00Z", "bbb"),
        deploy("r3", "2026-03-06T11:00:00Z", "aaa", kind="rollback"),  # back to r1's sha, an hour later
        # search: an explicit rollback_of four days later still counts; the older sha too.
        deploy("q1", "2026-03-07T10:00:00Z", "q-one", service="search"),
        deploy("q2", "2026-03-08T10:00:00Z", "q-two", service="search"),
        deploy("q3", "2026-03-12T10:00:00Z", "q-one", service="search", kind="rollback", rollback_of="q2"),
        # cart: a rollback exactly 24 h after its predecessor counts; 24 h and 1 s does not.
        deploy("k1", "2026-03-07T10:00:00Z", "k-one", service="cart"),
        deploy("k2", "2026-03-08T10:00:00Z", "k-two", service="cart", kind="rollback"),
        deploy("k3", "2026-03-09T10:00:01Z", "k-three", service="cart", kind="rollback"),
    )
    shape = report(store)
    checkout = shape["services"]["checkout"]
    assert signals_of(checkout) == {"r1": [], "r2": ["rollback", "older_sha_redeploy"], "r3": []}
    # 1 of 3 failed; r2 recovers at the next deploy of its stream, r3: 1 h = 3600 s, not < 1 hour → high.
    assert checkout["change_failure_rate"] == {"failed": 1, "deployments": 3, "rate": 1 / 3, "tier": "low"}
    assert checkout["recovery_time"] == {
        "failures": 1,
        "unresolved": 0,
        "median_seconds": 3600.0,
        "mean_seconds": 3600.0,
        "tier": "high",
    }
    assert checkout["explain"]["incidents"] == [{"id": None, "deployment_id": "r2", "recovery_seconds": 3600.0}]
    search = shape["services"]["search"]
    assert signals_of(search) == {"q1": [], "q2": ["rollback", "older_sha_redeploy"], "q3": []}
    cart = shape["services"]["cart"]
    assert signals_of(cart) == {"k1": ["rollback"], "k2": [], "k3": []}
    # Overall: r2, q2, k1 failed of 9.
    assert shape["overall"]["change_failure_rate"]["failed"] == 3
    assert shape["overall"]["change_failure_rate"]["deployments"] == 9


def test_hotfix_deploys_labels_and_branches(store: Store) -> None:
    load(
        store,
        deploy("h1", "2026-03-05T10:00:00Z", "h-1"),
        deploy("h2", "2026-03-06T10:00:00Z", "h-2"),
        deploy("h3", "2026-03-06T12:00:00Z", "h-3", kind="hotfix"),  # 2 h after h2
        deploy("h4", "2026-03-08T10:00:00Z", "h-4"),
        deploy("h5", "2026-03-08T15:00:00Z", "h-5"),  # ships PR 42, labeled as a hotfix
        change("h-5", "2026-03-08T14:00:00Z", "h5", pr_number=42),
        pull_request(42, "2026-03-08T13:00:00Z", ["bug", "HOTFIX-urgent"]),
        deploy("h6", "2026-03-10T10:00:00Z", "h-6"),
        deploy("h7", "2026-03-10T12:00:00Z", "h-7"),  # ships PR 43, built on a hotfix/ branch
        change("h-7", "2026-03-10T11:00:00Z", "h7", pr_number=43),
        pull_request(43, "2026-03-10T10:30:00Z", []),
        run("run-43", repo="acme/shop", trigger="pull_request", branch="hotfix/43-null-cart", pr_number=43, sha="h-7"),
        deploy("h8", "2026-03-20T10:00:00Z", "h-8"),
        deploy("h9", "2026-03-21T10:00:01Z", "h-9", kind="hotfix"),  # 24 h and 1 s later: too late
    )
    overall = report(store)["overall"]
    failed = {name: signals for name, signals in signals_of(overall).items() if signals}
    assert failed == {"h2": ["hotfix"], "h4": ["hotfix"], "h6": ["hotfix"]}
    # 3 of 9 deployments, hotfix deployments included in the count.
    assert overall["change_failure_rate"] == {"failed": 3, "deployments": 9, "rate": 1 / 3, "tier": "low"}

    plain = report(store, config=MetricsConfig(hotfix_patterns=()))["overall"]
    assert {name for name, signals in signals_of(plain).items() if signals} == {"h2"}  # kind=hotfix still counts


def test_revert_commits(store: Store) -> None:
    bad = "bad" + "0" * 37
    good = "600d" + "1" * 36
    load(
        store,
        deploy("v1", "2026-03-05T10:00:00Z", "v-1"),
        deploy("v2", "2026-03-06T10:00:00Z", "v-2"),
        change(bad, "2026-03-06T09:00:00Z", "v2", message="feat: faster cart"),
        deploy("v3", "2026-03-07T10:00:00Z", "v-3"),
        change(
            "e" * 40, "2026-03-07T09:00:00Z", "v3", message=f'Revert "feat: faster cart"\n\nThis reverts commit {bad}.'
        ),
        deploy("v4", "2026-03-08T10:00:00Z", "v-4"),
        change(good, "2026-03-08T09:00:00Z", "v4", message="feat: coupons"),
        deploy("v5", "2026-03-08T10:30:00Z", "v-5"),  # ships no change: the next one that does is v6
        deploy("v6", "2026-03-09T10:00:00Z", "v-6"),
        change("f" * 40, "2026-03-09T09:00:00Z", "v6", message=f"This reverts commit {good[:7]}."),  # a short sha
    )
    overall = report(store)["overall"]
    assert {name for name, signals in signals_of(overall).items() if signals} == {"v2", "v4"}
    assert signals_of(overall)["v2"] == ["revert"]
    # 2 of 6. Recovery (no incidents): v2 → v3 = 86400 s, v4 → v5 = 1800 s; median and mean (86400 + 1800) / 2 =
    # 44100 < 1 day → high.
    assert overall["change_failure_rate"]["rate"] == pytest.approx(2 / 6)
    assert overall["recovery_time"] == {
        "failures": 2,
        "unresolved": 0,
        "median_seconds": 44100.0,
        "mean_seconds": 44100.0,
        "tier": "high",
    }
    assert overall["explain"]["incidents"] == [
        {"id": None, "deployment_id": "v2", "recovery_seconds": 86400.0},
        {"id": None, "deployment_id": "v4", "recovery_seconds": 1800.0},
    ]


# ----- incidents and recovery ------------------------------------------------------------------------------------


def test_unresolved_incidents_recover_at_the_next_deploy_or_stay_unresolved(store: Store) -> None:
    load(
        store,
        deploy("e0", "2026-03-10T10:00:00Z", "e-0"),
        deploy("e1", "2026-03-11T10:00:00Z", "e-1"),
        incident("i1", "2026-03-11T11:00:00Z"),  # unlinked: e1 is the last deploy before it; no resolved_at
        deploy("e2", "2026-03-11T13:30:00Z", "e-2"),  # i1 recovers here: 13:30 − 11:00 = 9000 s
        incident("i2", "2026-03-12T09:00:00Z", caused_by_deployment_id="e2"),  # nothing deploys after e2
    )
    overall = report(store)["overall"]
    assert overall["explain"]["deployments"] == [
        explained("e0", "2026-03-10T10:00:00Z"),
        explained("e1", "2026-03-11T10:00:00Z", ("incident",), ("i1",)),
        explained("e2", "2026-03-11T13:30:00Z", ("incident",), ("i2",)),
    ]
    # 2 of 3 failed; one recovery of 9000 s (< 1 day → high), one unresolved: out of the median, in the counts.
    assert overall["change_failure_rate"] == {"failed": 2, "deployments": 3, "rate": 2 / 3, "tier": "low"}
    assert overall["recovery_time"] == {
        "failures": 2,
        "unresolved": 1,
        "median_seconds": 9000.0,
        "mean_seconds": 9000.0,
        "tier": "high",
    }
    assert overall["explain"]["incidents"] == [
        {"id": "i1", "deployment_id": "e1", "recovery_seconds": 9000.0},
        {"id": "i2", "deployment_id": "e2", "recovery_seconds": None},
    ]
    assert overall["trend"][0]["recovery_median_seconds"] == 9000.0


def test_only_unresolved_failures_have_no_recovery_time(store: Store) -> None:
    load(
        store,
        deploy("u1", "2026-03-10T10:00:00Z", "u-1"),
        incident("i1", "2026-03-10T10:05:00Z"),
    )
    recovery = report(store)["overall"]["recovery_time"]
    assert (recovery["failures"], recovery["unresolved"], recovery["median_seconds"], recovery["tier"]) == (
        1,
        1,
        None,
        None,
    )
    assert recovery["no_data"]


def test_infra_only_and_out_of_window_incidents_are_not_failures(store: Store) -> None:
    load(
        store,
        deploy("f0", "2026-03-10T10:00:00Z", "f-0"),
        deploy("f1", "2026-03-11T10:00:00Z", "f-1"),
        incident("x1", "2026-03-11T11:00:00Z", labels=["infra-only"]),
        incident("x2", "2026-03-11T12:00:00Z", labels=["network", "Infra-Only"], caused_by_deployment_id="f1"),
        incident("x3", "2026-03-11T13:00:00Z", service="search"),  # another service, which never deployed
        incident("x4", "2026-03-31T01:00:00Z"),  # after the window: the implicit link stays inside it
    )
    overall = report(store)["overall"]
    assert overall["change_failure_rate"] == {"failed": 0, "deployments": 2, "rate": 0.0, "tier": "elite"}
    assert overall["recovery_time"]["failures"] == 0
    assert all(entry["incident_ids"] == [] for entry in overall["explain"]["deployments"])
    assert overall["explain"]["incidents"] == []


# ----- tiers -----------------------------------------------------------------------------------------------------


def test_tier_boundaries() -> None:
    # Deployment frequency, in deployments per day: ≥ 1 elite, ≥ 1/7 high, ≥ 1/30.44 medium.
    assert tier_for("deployment_frequency", 1.0) == "elite"
    assert tier_for("deployment_frequency", 0.999) == "high"
    assert tier_for("deployment_frequency", 4 / 28) == "high"  # exactly weekly
    assert tier_for("deployment_frequency", 1 / 7 - 1e-6) == "medium"
    assert tier_for("deployment_frequency", 1 / 30.44) == "medium"  # exactly monthly
    assert tier_for("deployment_frequency", 1 / 30.44 - 1e-6) == "low"
    assert tier_for("deployment_frequency", 0.0) == "low"
    # Lead time: < 1 day elite, < 1 week high, < 30 days medium.
    assert tier_for("lead_time", DAY - 1) == "elite"
    assert tier_for("lead_time", DAY) == "high"
    assert tier_for("lead_time", 7 * DAY) == "medium"
    assert tier_for("lead_time", 30 * DAY - 1) == "medium"
    assert tier_for("lead_time", 30 * DAY) == "low"
    # Change failure rate: ≤ 5% elite, ≤ 10% high, ≤ 15% medium.
    assert tier_for("change_failure_rate", 1 / 20) == "elite"
    assert tier_for("change_failure_rate", 0.0501) == "high"
    assert tier_for("change_failure_rate", 2 / 20) == "high"
    assert tier_for("change_failure_rate", 3 / 20) == "medium"
    assert tier_for("change_failure_rate", 0.1501) == "low"
    # Recovery: < 1 hour elite, < 1 day high, < 1 week medium.
    assert tier_for("recovery_time", HOUR - 1) == "elite"
    assert tier_for("recovery_time", HOUR) == "high"
    assert tier_for("recovery_time", DAY) == "medium"
    assert tier_for("recovery_time", 7 * DAY) == "low"
    assert tier_for("recovery_time", None) is None
    with pytest.raises(InputError, match="lead_time"):
        tier_for("mttr", 1.0)


def test_tiers_at_boundaries_from_data(store: Store) -> None:
    # 19 deploys a day apart from 03-01, then a rollback of the 19th to the 18th's sha: 20 deployments, 1 failed.
    events = [deploy(f"b{day:02d}", f"2026-03-{day:02d}T10:00:00Z", f"sha-{day}") for day in range(1, 20)]
    events.append(deploy("b20", "2026-03-20T10:00:00Z", "sha-18", kind="rollback"))
    load(store, *events)
    # [03-01, 03-21): 20 days, 20 deployments → exactly 1 a day → elite; 1/20 = 5% → elite.
    twenty_days = Window(SINCE, datetime(2026, 3, 21, tzinfo=UTC))
    overall = report(store, twenty_days)["overall"]
    assert overall["deployment_frequency"]["per_day"] == 1.0
    assert overall["deployment_frequency"]["tier"] == "elite"
    assert overall["change_failure_rate"] == {"failed": 1, "deployments": 20, "rate": 0.05, "tier": "elite"}
    assert signals_of(overall)["b19"] == ["rollback", "older_sha_redeploy"]
    # A second more and it is no longer daily.
    longer = Window(SINCE, datetime(2026, 3, 21, 0, 0, 1, tzinfo=UTC))
    assert report(store, longer)["overall"]["deployment_frequency"]["tier"] == "high"
    # [03-01, 07-19): 140 days, 20 deployments → per_week 20 × 7 / 140 = 1 → exactly weekly: high.
    weekly = Window(SINCE, datetime(2026, 7, 19, tzinfo=UTC))
    frequency = report(store, weekly)["overall"]["deployment_frequency"]
    assert frequency["per_week"] == pytest.approx(1.0)
    assert frequency["tier"] == "high"


# ----- filters, trend, definitions -------------------------------------------------------------------------------


def test_filters_by_service_team_and_repo(store: Store) -> None:
    load(
        store,
        deploy("c1", "2026-03-05T10:00:00Z", "c-1"),
        deploy("c2", "2026-03-06T10:00:00Z", "c-2"),
        change("c-2", "2026-03-06T09:00:00Z", "c2"),  # acme/shop, 1 h
        deploy("s1", "2026-03-05T11:00:00Z", "s-1", service="search"),
        deploy("s2", "2026-03-06T11:00:00Z", "s-2", service="search"),
        change("s-2", "2026-03-06T09:00:00Z", "s2", repo="acme/search"),  # 2 h
        change("s-2b", "2026-03-06T08:00:00Z", "s2", repo="acme/shop"),  # 3 h, a shared library change
    )
    whole = report(store)
    assert sorted(whole["services"]) == ["checkout", "search"]
    assert whole["overall"]["lead_time"]["changes"] == 3

    service = report(store, filters=Filters(service="search"))
    assert list(service["services"]) == ["search"]
    assert service["overall"] == service["services"]["search"]
    assert service["overall"]["deployment_frequency"]["deployments"] == 2

    config = MetricsConfig(teams={"web": ["checkout", "acme/shop"]})
    team = report(store, filters=Filters(team="web"), config=config)
    assert list(team["services"]) == ["checkout"]
    with pytest.raises(InputError, match="unknown team"):
        dora_report(store, WINDOW, Filters(team="nobody"), config)

    # Only search shipped acme/search's changes; its lead time counts only that repository's change.
    repo = report(store, filters=Filters(repo="acme/search"))
    assert list(repo["services"]) == ["search"]
    assert repo["overall"]["lead_time"]["changes"] == 1
    assert repo["overall"]["lead_time"]["median_seconds"] == 2 * HOUR
    shop = report(store, filters=Filters(repo="acme/shop"))
    assert sorted(shop["services"]) == ["checkout", "search"]
    assert shop["services"]["search"]["lead_time"]["median_seconds"] == 3 * HOUR


def test_monthly_trend(store: Store) -> None:
    load(
        store,
        deploy("a0", "2026-02-21T10:00:00Z", "a-0"),
        deploy("a1", "2026-02-25T10:00:00Z", "a-1"),
        change("a-1", "2026-02-25T09:00:00Z", "a1"),  # 1 h
        deploy("a2", "2026-03-05T10:00:00Z", "a-2"),
        change("a-2", "2026-03-05T08:00:00Z", "a2"),  # 2 h
        incident("i1", "2026-03-05T10:10:00Z", resolved_at="2026-03-05T10:40:00Z"),  # 1800 s
    )
    window = Window(datetime(2026, 2, 20, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC))
    assert report(store, window)["overall"]["trend"] == [
        {
            "month": "2026-02",
            "deployments": 2,
            "lead_time_median_seconds": 3600.0,
            "change_failure_rate": 0.0,
            "recovery_median_seconds": None,
        },
        {
            "month": "2026-03",
            "deployments": 1,
            "lead_time_median_seconds": 7200.0,
            "change_failure_rate": 1.0,
            "recovery_median_seconds": 1800.0,
        },
    ]


def test_weekly_trend(store: Store) -> None:
    load(
        store,
        deploy("a0", "2026-02-21T10:00:00Z", "a-0"),
        deploy("a1", "2026-02-25T10:00:00Z", "a-1"),
        change("a-1", "2026-02-25T09:00:00Z", "a1"),  # 1 h
        # Sunday 23:30 at UTC-2 is Monday 01:30 UTC: the week of 2026-03-02.
        deploy("a2", "2026-03-01T23:30:00-02:00", "a-2"),
        change("a-2", "2026-03-01T21:30:00-02:00", "a2"),  # 2 h
        incident("i1", "2026-03-02T01:40:00Z", resolved_at="2026-03-02T02:10:00Z"),  # 1800 s
    )
    # Friday 2026-02-20 to Tuesday 2026-03-10: the weeks of Feb 16, Feb 23, Mar 2 and Mar 9.
    window = Window(datetime(2026, 2, 20, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC))
    trend = report(store, window, trend="week")["overall"]["trend"]
    assert [(point["week"], point["deployments"]) for point in trend] == [
        ("2026-02-16", 1),
        ("2026-02-23", 1),
        ("2026-03-02", 1),
        ("2026-03-09", 0),
    ]
    assert trend[1]["lead_time_median_seconds"] == 3600.0
    assert trend[2] == {
        "week": "2026-03-02",
        "deployments": 1,
        "lead_time_median_seconds": 7200.0,
        "change_failure_rate": 1.0,
        "recovery_median_seconds": 1800.0,
    }
    assert trend[3]["change_failure_rate"] is None and trend[3]["lead_time_median_seconds"] is None
    overall_only = dora_report(store, window, trend="week", per_service=False)
    assert overall_only.services == {} and [point.to_json() for point in overall_only.overall.trend] == trend


def test_definitions_presets(store: Store) -> None:
    assert PRESETS == ("shipscope", "devlake", "fourkeys", "middleware")
    assert SHIPSCOPE.name == "shipscope" and SHIPSCOPE.center == "median"
    with pytest.raises(InputError, match="shipscope, devlake, fourkeys, middleware"):
        dora_report(store, WINDOW, definitions="four-keys")


# ----- demo data -------------------------------------------------------------------------------------------------

DEMO_WINDOW = Window(datetime(2026, 8, 3, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def demo_events() -> list[dict[str, Any]]:
    return list(generate(days=90, seed=7, until=date(2026, 11, 1)))


@pytest.mark.slow
def test_demo_data_spans_the_tiers(store: Store, demo_events: list[dict[str, Any]]) -> None:
    events = iter(demo_events)
    while chunk := list(itertools.islice(events, 5000)):
        store.ingest([delivery(event) for event in chunk])
    shape = dora_report(store, DEMO_WINDOW).to_json(explain=True)

    # Deployment counts recomputed from the events: successful prod* deployments finished in the window.
    expected: Counter[str] = Counter()
    for event in demo_events:
        if event["type"] == "deployment" and event["status"] == "success" and event["environment"].startswith("prod"):
            if DEMO_WINDOW.since <= datetime.fromisoformat(event["finished_at"]) < DEMO_WINDOW.until:
                expected[event["service"]] += 1
    services = shape["services"]
    assert {name: metrics["deployment_frequency"]["deployments"] for name, metrics in services.items()} == expected
    assert shape["overall"]["deployment_frequency"]["deployments"] == sum(expected.values())

    tiers = {name: metrics["deployment_frequency"]["tier"] for name, metrics in services.items()}
    for name in ("api-gateway", "storefront-web"):
        assert DORA_TIERS[name] == "elite" and tiers[name] == "elite"
    for name in ("warehouse-loader", "legacy-ldap-sync"):
        assert DORA_TIERS[name] == "low" and tiers[name] == "low"

    # Every deployment an incident names (other than infra-only ones) failed with the incident signal.
    counted = {entry["id"]: entry for metrics in services.values() for entry in metrics["explain"]["deployments"]}
    caused = [
        event
        for event in demo_events
        if event["type"] == "incident"
        and event.get("caused_by_deployment_id") in counted
        and "infra-only" not in event.get("labels", [])
    ]
    assert caused
    for event in caused:
        entry = counted[event["caused_by_deployment_id"]]
        assert "incident" in entry["failure_signals"] and event["id"] in entry["incident_ids"]
    infra = {
        event["id"] for event in demo_events if event["type"] == "incident" and "infra-only" in event.get("labels", [])
    }
    assert infra and not infra & {i for entry in counted.values() for i in entry["incident_ids"]}

    # The explain rows are the numbers' rows, for every service and overall.
    for metrics in [shape["overall"], *services.values()]:
        explain = metrics["explain"]
        failed = [entry for entry in explain["deployments"] if entry["failed"]]
        assert len(explain["deployments"]) == metrics["change_failure_rate"]["deployments"]
        assert len(failed) == metrics["change_failure_rate"]["failed"]
        assert all(entry["failure_signals"] for entry in failed)
        assert len(explain["changes"]) == metrics["lead_time"]["changes"]
        assert len(explain["incidents"]) == metrics["recovery_time"]["failures"]
        assert (
            sum(1 for row in explain["incidents"] if row["recovery_seconds"] is None)
            == (metrics["recovery_time"]["unresolved"])
        )
        assert sum(point["deployments"] for point in metrics["trend"]) == metrics["deployment_frequency"]["deployments"]
    assert [point["month"] for point in shape["overall"]["trend"]] == ["2026-08", "2026-09", "2026-10"]
    # Pages left open at the end of the demo (search, ledger) stay unresolved unless a later deploy recovered them.
    assert shape["overall"]["recovery_time"]["unresolved"] >= 1


@pytest.mark.slow
def test_reports_sharing_one_load_equal_reports_made_alone(store: Store, demo_events: list[dict[str, Any]]) -> None:
    """The overview asks for the window and its twelve-week trend at once: each report is the one made alone, under
    every definitions preset, with and without filters, for windows starting before and after each other."""
    events = iter(demo_events)
    while chunk := list(itertools.islice(events, 5000)):
        store.ingest([delivery(event) for event in chunk])
    until = DEMO_WINDOW.until
    views = [
        DoraView(Window(datetime(2026, 10, 2, tzinfo=UTC), until)),
        DoraView(Window(datetime(2026, 8, 10, tzinfo=UTC), until), "week", per_service=False),
        DoraView(Window(datetime(2026, 9, 14, 13, tzinfo=UTC), until), "week"),
    ]
    for filters in (Filters(), Filters(repo="acme/payments"), Filters(service="ledger")):
        for preset in PRESETS:
            shared = dora_reports(store, views, filters, definitions=preset)
            alone = [
                dora_report(
                    store, view.window, filters, definitions=preset, trend=view.trend, per_service=view.per_service
                )
                for view in views
            ]
            assert shared[1].overall.deployment_frequency.deployments > 0
            assert [report.to_json(explain=True) for report in shared] == [
                report.to_json(explain=True) for report in alone
            ], (filters, preset)
    with pytest.raises(ValueError, match="same moment"):
        dora_reports(store, [views[0], DoraView(Window(DEMO_WINDOW.since, until - timedelta(days=1)))])

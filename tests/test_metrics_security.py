"""Security trend: weekly open findings, new and fixed, critical_up and top rules, on DuckDB and PostgreSQL."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from shipscope.demo import generate
from shipscope.metrics.common import Filters, MetricsConfig, Window
from shipscope.metrics.security import security_report
from shipscope.store import Store
from tests.factories import delivery

# Mondays 2 March … 23 March 2026: four ISO weeks (W10 … W13).
MARCH = Window(datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC))
NULL_OPEN = {"critical": None, "high": None, "medium": None, "low": None, "info": None, "total": None}


def finding(
    scan_id: str,
    fingerprint: str,
    severity: str,
    scanned_at: str,
    *,
    tool: str = "trivy",
    rule_id: str | None = None,
    repo: str = "acme/shop",
) -> dict[str, Any]:
    return {
        "type": "finding",
        "scan_id": scan_id,
        "repo": repo,
        "tool": tool,
        "rule_id": rule_id or f"rule-{fingerprint}",
        "severity": severity,
        "fingerprint": fingerprint,
        "scanned_at": scanned_at,
    }


def load(store: Store, *events: dict[str, Any]) -> None:
    store.ingest([delivery(event) for event in events])


def weeks_of(report: dict[str, Any], repo: str = "acme/shop") -> dict[str, dict[str, Any]]:
    (entry,) = [entry for entry in report["repos"] if entry["repo"] == repo]
    return {week["week"]: week for week in entry["weeks"]}


def test_no_data(store: Store) -> None:
    report = security_report(store, MARCH).to_json()
    assert report == {
        "window": {"since": "2026-03-02T00:00:00Z", "until": "2026-03-30T00:00:00Z"},
        "filters": {},
        "weeks": ["2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23"],
        "repos": [],
        "no_data": "no scans in the window",
    }


def test_three_scanned_weeks_a_gap_and_two_tools(store: Store) -> None:
    load(
        store,
        # Week of 2 March, trivy: an early scan (not the week's last, ignored) and the last one on Tuesday.
        finding("t0", "A", "critical", "2026-03-02T09:00:00Z"),
        finding("t0", "X", "critical", "2026-03-02T09:00:00Z"),
        finding("t1", "A", "critical", "2026-03-03T10:00:00Z", rule_id="CVE-1"),
        finding("t1", "B", "high", "2026-03-03T10:00:00Z"),
        finding("t1", "C", "medium", "2026-03-03T10:00:00Z"),
        # Week of 2 March, semgrep: its first scan.
        finding("s1", "S1", "high", "2026-03-04T10:00:00Z", tool="semgrep", rule_id="sg.rule"),
        # Week of 9 March, trivy only.
        finding("t2", "A", "critical", "2026-03-10T10:00:00Z", rule_id="CVE-1"),
        finding("t2", "B", "high", "2026-03-10T10:00:00Z"),
        finding("t2", "D", "critical", "2026-03-10T10:00:00Z"),
        finding("t2", "E", "low", "2026-03-10T10:00:00Z", rule_id="CVE-1"),
        # Week of 16 March: no scan.
        # Week of 23 March: both tools.
        finding("t3", "A", "critical", "2026-03-24T10:00:00Z", rule_id="CVE-1"),
        finding("t3", "E", "low", "2026-03-24T10:00:00Z", rule_id="CVE-1"),
        finding("s2", "S1", "high", "2026-03-25T10:00:00Z", tool="semgrep", rule_id="sg.rule"),
        finding("s2", "S2", "info", "2026-03-25T10:00:00Z", tool="semgrep", rule_id="sg.info"),
    )
    report = security_report(store, MARCH).to_json()
    weeks = weeks_of(report)
    assert list(weeks) == ["2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23"]

    first = weeks["2026-03-02"]
    assert [(scan["tool"], scan["scan_id"], scan["previous_scan_id"]) for scan in first["scans"]] == [
        ("semgrep", "s1", None),
        ("trivy", "t1", None),
    ]
    # t1 ∪ s1 = A (critical), B, S1 (high), C (medium); t0's X is not the week's last trivy scan.
    assert first["open"] == {"critical": 1, "high": 2, "medium": 1, "low": 0, "info": 0, "total": 4}
    # Neither tool has an earlier scan: nothing to compare with.
    assert (first["new"], first["fixed"], first["critical_previous"], first["critical_up"]) == (None, None, None, False)

    second = weeks["2026-03-09"]
    assert [(scan["scan_id"], scan["previous_scan_id"]) for scan in second["scans"]] == [("t2", "t1")]
    # t2 = A, D (critical), B (high), E (low); vs t1 {A, B, C}: new D, E = 2; fixed C = 1.
    assert second["open"] == {"critical": 2, "high": 1, "medium": 0, "low": 1, "info": 0, "total": 4}
    assert (second["new"], second["fixed"]) == (2, 1)
    # t1 had 1 critical, t2 has 2: up.
    assert (second["critical_previous"], second["critical_up"]) == (1, True)

    gap = weeks["2026-03-16"]
    assert gap == {
        "week": "2026-03-16",
        "iso_week": "2026-W12",
        "scanned": False,
        "scans": [],
        "open": NULL_OPEN,
        "reason": "no scan this week",
        "new": None,
        "fixed": None,
        "critical_previous": None,
        "critical_up": None,
    }

    last = weeks["2026-03-23"]
    assert [(scan["scan_id"], scan["previous_scan_id"]) for scan in last["scans"]] == [("s2", "s1"), ("t3", "t2")]
    # t3 ∪ s2 = A (critical), S1 (high), E (low), S2 (info).
    assert last["open"] == {"critical": 1, "high": 1, "medium": 0, "low": 1, "info": 1, "total": 4}
    # trivy vs t2 (the gap week is skipped): new 0, fixed B, D = 2; semgrep vs s1 (two weeks back): new S2 = 1.
    assert (last["new"], last["fixed"]) == (1, 2)
    # Previous criticals: t2 2 + s1 0 = 2; now 1: not up.
    assert (last["critical_previous"], last["critical_up"]) == (2, False)
    assert last["scans"][1]["scanned_at"] == "2026-03-24T10:00:00Z"

    # Top rules at each tool's latest scan (t3, s2): CVE-1 on A and E (2, worst critical), then the 1-counts by
    # severity: sg.rule (high), sg.info (info).
    (entry,) = report["repos"]
    assert entry["top_rules"] == [
        {"tool": "trivy", "rule_id": "CVE-1", "count": 2, "max_severity": "critical"},
        {"tool": "semgrep", "rule_id": "sg.rule", "count": 1, "max_severity": "high"},
        {"tool": "semgrep", "rule_id": "sg.info", "count": 1, "max_severity": "info"},
    ]


def test_baseline_before_the_window_and_a_mid_week_start(store: Store) -> None:
    load(
        store,
        finding("w9", "A", "critical", "2026-02-24T10:00:00Z"),  # the week before: baseline only
        finding("w9", "B", "high", "2026-02-24T10:00:00Z"),
        finding("tue", "A", "critical", "2026-03-03T10:00:00Z"),  # before since (Wednesday): baseline only
        finding("tue", "C", "critical", "2026-03-03T10:00:00Z"),
        finding("thu", "A", "critical", "2026-03-05T10:00:00Z"),
        finding("thu", "C", "critical", "2026-03-05T10:00:00Z"),
        finding("thu", "D", "critical", "2026-03-05T10:00:00Z"),
        finding("next", "A", "critical", "2026-03-09T00:00:00Z"),  # at until: out
    )
    window = Window(datetime(2026, 3, 4, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC))
    report = security_report(store, window).to_json()
    assert report["weeks"] == ["2026-03-02"]
    week = weeks_of(report)["2026-03-02"]
    assert [(scan["scan_id"], scan["previous_scan_id"]) for scan in week["scans"]] == [("thu", "tue")]
    # thu {A, C, D} vs tue {A, C}: new 1, fixed 0; criticals 3 vs 2: up.
    assert week["open"]["critical"] == 3
    assert (week["new"], week["fixed"], week["critical_previous"], week["critical_up"]) == (1, 0, 2, True)

    # From Monday 2 March the whole week is in: thu is its last scan, and its baseline the week before's w9.
    whole_week = security_report(store, Window(datetime(2026, 3, 2, tzinfo=UTC), window.until)).to_json()
    week = weeks_of(whole_week)["2026-03-02"]
    assert [(scan["scan_id"], scan["previous_scan_id"]) for scan in week["scans"]] == [("thu", "w9")]
    # thu {A, C, D} vs w9 {A, B}: new C, D = 2; fixed B = 1; criticals 3 vs 1.
    assert (week["new"], week["fixed"], week["critical_previous"], week["critical_up"]) == (2, 1, 1, True)


def test_non_utc_offsets_pick_the_utc_week(store: Store) -> None:
    load(
        store,
        # 9 March 01:00 +02:00 is Sunday 8 March 23:00 UTC: the week of 2 March.
        finding("late-sunday", "A", "high", "2026-03-09T01:00:00+02:00"),
        # 8 March 20:00 −05:00 is Monday 9 March 01:00 UTC: the week of 9 March.
        finding("early-monday", "A", "high", "2026-03-08T20:00:00-05:00"),
    )
    weeks = weeks_of(security_report(store, MARCH).to_json())
    assert [scan["scan_id"] for scan in weeks["2026-03-02"]["scans"]] == ["late-sunday"]
    assert weeks["2026-03-02"]["scans"][0]["scanned_at"] == "2026-03-08T23:00:00Z"
    assert [scan["scan_id"] for scan in weeks["2026-03-09"]["scans"]] == ["early-monday"]
    # Same fingerprint both weeks: nothing new, nothing fixed.
    assert (weeks["2026-03-09"]["new"], weeks["2026-03-09"]["fixed"]) == (0, 0)
    plus_two = timezone(timedelta(hours=2))
    shifted = Window(datetime(2026, 3, 2, 2, 0, tzinfo=plus_two), datetime(2026, 3, 9, 2, 0, tzinfo=plus_two))
    # [2 March 00:00Z, 9 March 00:00Z): one week, the late Sunday scan only.
    report = security_report(store, shifted).to_json()
    assert report["weeks"] == ["2026-03-02"]
    assert [scan["scan_id"] for scan in weeks_of(report)["2026-03-02"]["scans"]] == ["late-sunday"]


def test_one_scan_with_two_tools_and_ties(store: Store) -> None:
    load(
        store,
        # One SARIF upload holding two tools' runs: each tool's part is that tool's scan.
        finding("both", "A", "critical", "2026-03-03T10:00:00Z", tool="trivy", rule_id="R"),
        finding("both", "B", "critical", "2026-03-03T10:00:00Z", tool="semgrep", rule_id="R"),
        # Two trivy scans at the same moment the next week: the greater scan id is the week's last.
        finding("x-1", "A", "critical", "2026-03-10T10:00:00Z", rule_id="R"),
        finding("x-2", "A", "critical", "2026-03-10T10:00:00Z", rule_id="R"),
        finding("x-2", "C", "low", "2026-03-10T10:00:00Z", rule_id="R"),
    )
    report = security_report(store, MARCH).to_json()
    weeks = weeks_of(report)
    assert [(scan["tool"], scan["scan_id"]) for scan in weeks["2026-03-02"]["scans"]] == [
        ("semgrep", "both"),
        ("trivy", "both"),
    ]
    assert weeks["2026-03-02"]["open"]["critical"] == 2
    second = weeks["2026-03-09"]
    assert [(scan["tool"], scan["scan_id"], scan["previous_scan_id"]) for scan in second["scans"]] == [
        ("trivy", "x-2", "both")
    ]
    # trivy x-2 {A, C} vs trivy's part of "both" {A}: new 1, fixed 0; semgrep did not scan: its B is not "fixed".
    assert (second["new"], second["fixed"]) == (1, 0)
    # Previous criticals of the same tools: trivy's 1 (A); now 1: not up.
    assert (second["critical_previous"], second["critical_up"]) == (1, False)
    # Top rules: trivy's latest scan x-2 (R twice, worst critical) and semgrep's latest "both" (R once).
    (entry,) = report["repos"]
    assert entry["top_rules"] == [
        {"tool": "trivy", "rule_id": "R", "count": 2, "max_severity": "critical"},
        {"tool": "semgrep", "rule_id": "R", "count": 1, "max_severity": "critical"},
    ]


def test_repo_and_team_filters(store: Store) -> None:
    load(
        store,
        finding("a", "A", "high", "2026-03-03T10:00:00Z", repo="acme/shop"),
        finding("b", "A", "high", "2026-03-03T10:00:00Z", repo="acme/other"),
    )
    assert [entry["repo"] for entry in security_report(store, MARCH).to_json()["repos"]] == ["acme/other", "acme/shop"]
    by_repo = security_report(store, MARCH, Filters(repo="acme/other")).to_json()
    assert [entry["repo"] for entry in by_repo["repos"]] == ["acme/other"]
    config = MetricsConfig(teams={"shop": ["acme/shop"]})
    by_team = security_report(store, MARCH, Filters(team="shop"), config).to_json()
    assert [entry["repo"] for entry in by_team["repos"]] == ["acme/shop"]
    nothing = security_report(store, MARCH, Filters(repo="acme/none")).to_json()
    assert nothing["repos"] == [] and nothing["no_data"] == "no scans in the window"


@pytest.mark.slow
def test_demo_dataset(store: Store) -> None:
    events = list(generate(days=21, seed=7, until=date(2026, 11, 1)))
    store.ingest([delivery(event) for event in events])
    window = Window(datetime(2026, 10, 11, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
    report = security_report(store, window).to_json()
    assert report["repos"]
    # Recomputed from the events: criticals at each tool's last scan of each week, summed per repo and week.
    last: dict[tuple[str, str, date], tuple[str, str]] = {}
    criticals: Counter[str] = Counter()
    for event in events:
        if event["type"] != "finding":
            continue
        scanned = datetime.fromisoformat(event["scanned_at"]).astimezone(UTC)
        monday = scanned.date() - timedelta(days=scanned.weekday())
        key = (event["repo"], event["tool"], monday)
        last[key] = max(last.get(key, ("", "")), (event["scanned_at"], event["scan_id"]))
        criticals[event["scan_id"]] += event["severity"] == "critical"
    expected: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (repo, _tool, monday), (_at, scan_id) in last.items():
        expected[repo][monday.isoformat()] += criticals[scan_id]
    for entry in report["repos"]:
        critical_by_week = {week["week"]: week["open"]["critical"] for week in entry["weeks"] if week["scanned"]}
        assert critical_by_week == dict(expected[entry["repo"]])
        assert entry["top_rules"]
        latest = [week for week in entry["weeks"] if week["scanned"]][-1]
        assert latest["open"]["total"] > 0
    assert any(week["new"] for entry in report["repos"] for week in entry["weeks"])

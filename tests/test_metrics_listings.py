"""The rows behind the numbers (deployments, one deployment, incidents, filter values) on DuckDB and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from shipscope.errors import InputError
from shipscope.metrics.common import Filters, MetricsConfig, Window
from shipscope.metrics.listings import (
    DeploymentFilter,
    deployment_detail,
    deployment_list,
    filter_options,
    incident_list,
)
from shipscope.store import Store
from tests.factories import delivery

WINDOW = Window(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 8, tzinfo=UTC))
NOW = datetime(2026, 3, 10, tzinfo=UTC)


def deploy(deployment_id: str, finished: str, sha: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "deployment",
        "id": deployment_id,
        "service": "checkout",
        "environment": "production",
        "sha": sha,
        "status": "success",
        "finished_at": finished,
        **fields,
    }


def change(sha: str, authored: str, **fields: Any) -> dict[str, Any]:
    return {"type": "change", "repo": "acme/shop", "sha": sha, "authored_at": authored, **fields}


def incident(incident_id: str, opened: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "incident",
        "id": incident_id,
        "service": "checkout",
        "title": f"{incident_id} went wrong",
        "opened_at": opened,
        **fields,
    }


@pytest.fixture
def loaded(store: Store) -> Store:
    events = [
        deploy("d1", "2026-03-02T10:00:00Z", "a1", version="v1.0.0", actor="bob"),
        change("a1", "2026-03-02T09:00:00Z", deployment_id="d1", message="First", author="bob"),
        incident("i2", "2026-03-02T11:00:00Z", resolved_at="2026-03-02T12:00:00Z", caused_by_deployment_id="d1"),
        deploy("s1", "2026-03-03T09:00:00Z", "a2", environment="staging", version="v2.0.0"),
        deploy(
            "d2",
            "2026-03-03T10:00:00Z",
            "a2",
            version="V2.0.0",
            actor="alice",
            image_digest="sha256:" + "ab" * 32,
        ),
        change("a2", "2026-03-03T08:00:00Z", deployment_id="d2", message="Second\n\nbody", author="alice", pr_number=7),
        # Opened after d2 finished, naming no deployment: linked to d2 by time.
        incident("i1", "2026-03-03T10:30:00Z", severity="SEV2", resolved_at="2026-03-03T11:00:00Z"),
        # d2 is rolled back to a1, which d1 shipped before: a rollback and an older-sha redeploy.
        deploy("d3", "2026-03-03T12:00:00Z", "a1", kind="rollback", rollback_of="d2"),
        # Outside the window.
        deploy("d0", "2026-02-20T10:00:00Z", "a0", service="search"),
    ]
    store.ingest([delivery(event) for event in events])
    return store


def test_deployments_newest_first_with_dora_failure_signals(loaded: Store) -> None:
    listing = deployment_list(loaded, WINDOW)
    assert listing.total == 4
    assert [row.id for row in listing.rows] == ["d3", "d2", "s1", "d1"]
    rows = {row.id: row for row in listing.rows}
    assert rows["d2"].failure_signals == ("rollback", "older_sha_redeploy", "incident")
    assert rows["d2"].incident_ids == ("i1",)
    assert rows["d1"].failure_signals == ("incident",)
    assert rows["d3"].kind == "rollback" and rows["d3"].failure_signals == ()
    assert rows["s1"].production is False and rows["s1"].counted is False and rows["s1"].failed is False
    assert rows["d1"].kind == "deploy"
    # Per ISO week of the finish: all four in the week of Monday 2026-03-02, two failed.
    assert [(week.week, week.deployments, week.failed) for week in listing.weeks] == [(date(2026, 3, 2), 4, 2)]


@pytest.mark.parametrize(
    ("narrow", "filters", "expected"),
    [
        (DeploymentFilter(version="v2"), Filters(), ["d2", "s1"]),  # case-insensitive substring
        (DeploymentFilter(actor="ALI"), Filters(), ["d2"]),
        (DeploymentFilter(image_digest="abab"), Filters(), ["d2"]),
        (DeploymentFilter(sha="a1"), Filters(), ["d3", "d1"]),
        (DeploymentFilter(kind="rollback"), Filters(), ["d3"]),
        (DeploymentFilter(kind="deploy"), Filters(), ["d2", "s1", "d1"]),
        (DeploymentFilter(status="failure"), Filters(), []),
        (DeploymentFilter(failure_signal="any"), Filters(), ["d2", "d1"]),
        (DeploymentFilter(failure_signal="older_sha_redeploy"), Filters(), ["d2"]),
        (DeploymentFilter(), Filters(environment="STAG*"), ["s1"]),
        (DeploymentFilter(), Filters(service="search"), []),
        (DeploymentFilter(), Filters(team="shop"), ["d3", "d2", "s1", "d1"]),
        (DeploymentFilter(), Filters(repo="acme/shop"), ["d3", "d2", "s1", "d1"]),
        (DeploymentFilter(), Filters(repo="acme/other"), []),
    ],
)
def test_deployment_list_narrowing(
    loaded: Store, narrow: DeploymentFilter, filters: Filters, expected: list[str]
) -> None:
    config = MetricsConfig(teams={"shop": ["checkout", "acme/shop"]})
    listing = deployment_list(loaded, WINDOW, filters, config, narrow)
    assert [row.id for row in listing.rows] == expected
    assert listing.total == len(expected)


@pytest.mark.parametrize("weekly", [True, False])
def test_list_limit_keeps_the_total(loaded: Store, weekly: bool) -> None:
    listing = deployment_list(loaded, WINDOW, limit=2, weekly=weekly)
    assert [row.id for row in listing.rows] == ["d3", "d2"]
    assert listing.total == 4
    assert len(listing.weeks) == (1 if weekly else 0)
    production = deployment_list(loaded, WINDOW, Filters(environment="Prod*"), limit=2, weekly=weekly)
    assert [row.id for row in production.rows] == ["d3", "d2"] and production.total == 3


def test_unknown_failure_signal_is_an_input_error() -> None:
    with pytest.raises(InputError, match="failure_signal: expected one of any, rollback"):
        DeploymentFilter(failure_signal="meteor")


def test_deployment_detail_with_changes_lead_times_and_incidents(loaded: Store) -> None:
    detail = deployment_detail(loaded, "d2", now=NOW)
    assert detail is not None
    assert detail.deployment.failure_signals == ("rollback", "older_sha_redeploy", "incident")
    assert [(change.sha, change.pr_number, change.lead_time_seconds) for change in detail.changes] == [
        ("a2", 7, 7200.0)  # authored 08:00, deployed 10:00
    ]
    assert detail.lead_time_reason is None
    assert detail.previous is not None and detail.previous.id == "d1"
    assert [(row.id, row.linked_by, row.resolution_seconds) for row in detail.incidents] == [("i1", "time", 1800.0)]


def test_first_deployment_changes_have_no_lead_time_and_say_why(loaded: Store) -> None:
    detail = deployment_detail(loaded, "d1", now=NOW)
    assert detail is not None
    assert [(change.sha, change.message, change.lead_time_seconds) for change in detail.changes] == [
        ("a1", "First", None)
    ]
    assert detail.lead_time_reason is not None and "no earlier production deployment" in detail.lead_time_reason
    assert [(row.id, row.linked_by) for row in detail.incidents] == [("i2", "explicit")]
    staging = deployment_detail(loaded, "s1", now=NOW)
    assert staging is not None
    # Sha a2's change names d2: nothing is assigned to the staging deployment.
    assert staging.changes == () and staging.lead_time_reason is None
    assert deployment_detail(loaded, "nope", now=NOW) is None
    assert deployment_detail(loaded, "d1", "github", now=NOW) is None


def test_incidents_newest_first_with_their_deployment(loaded: Store) -> None:
    listing = incident_list(loaded, WINDOW)
    rows = listing.rows
    assert [(row.id, row.deployment_id, row.linked_by) for row in rows] == [
        ("i1", "d2", "time"),
        ("i2", "d1", "explicit"),
    ]
    assert rows[0].severity == "SEV2" and rows[0].resolution_seconds == 1800.0
    assert rows[0].recovery_seconds == 1800.0
    assert listing.total == 2
    assert listing.weeks == ((date(2026, 3, 2), {"SEV2": 1, "unknown": 1}),)
    assert incident_list(loaded, WINDOW, Filters(service="search")).rows == ()
    # checkout shipped acme/shop's changes; no service shipped acme/other's.
    assert incident_list(loaded, WINDOW, Filters(repo="acme/shop")).total == 2
    assert incident_list(loaded, WINDOW, Filters(repo="acme/other")).total == 0
    assert [row.id for row in incident_list(loaded, WINDOW, limit=1).rows] == ["i1"]


def test_filter_options(loaded: Store) -> None:
    options = filter_options(loaded, MetricsConfig(teams={"shop": ["checkout"]}))
    assert options.services == ("checkout", "search")
    assert options.environments == ("production", "staging")
    assert options.kinds == ("deploy", "rollback")
    assert options.teams == ("shop",)
    assert options.definitions == ("shipscope", "devlake", "fourkeys", "middleware")
    assert options.repos == ()  # no pipeline runs or pull requests stored

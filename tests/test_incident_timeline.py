"""An incident in context, on both backends: the deploys it may follow from with each link's signal and confidence,
one ordered timeline (a demo incident resolved by a rollback), its Markdown export, the API and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from itertools import islice
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from shipscope.cli.main import app
from shipscope.config import Settings
from shipscope.demo import generate
from shipscope.ingest.generic import read_record
from shipscope.metrics.incidents import incident_timeline
from shipscope.store import Store
from shipscope.web.app import create_app
from tests.factories import delivery, deployment

runner = CliRunner()


@pytest.fixture
def demo(db_url: str) -> tuple[str, dict[str, Any]]:
    """The demo's 30 days, and its incident resolved by a rollback."""
    events = list(generate(days=30, seed=7, until=date(2026, 11, 1)))
    store = Store(db_url)
    try:
        stream = iter(events)
        while batch := list(islice(stream, 5000)):
            store.ingest([read_record(0, orjson.dumps(event)) for event in batch])  # type: ignore[misc]
    finally:
        store.close()
    deployments = {event["id"]: event for event in events if event["type"] == "deployment"}
    [incident] = [
        event
        for event in events
        if event["type"] == "incident"
        and deployments.get(event.get("resolved_by_deployment_id", ""), {}).get("kind") == "rollback"
    ]
    return db_url, incident


def test_a_demo_incident_resolved_by_a_rollback_has_its_whole_story_in_order(demo: tuple[str, Any]) -> None:
    db, incident = demo
    store = Store(db)
    try:
        found = incident_timeline(store, incident["id"])
    finally:
        store.close()
    assert found is not None
    [explicit, *others] = found.links
    assert explicit.deployment.id == incident["caused_by_deployment_id"] and explicit.confidence == "certain"
    assert explicit.changes and all(change.sha for change in explicit.changes)
    assert all(link.signal in ("near", "lookback") for link in others)

    kinds = [item.kind for item in found.items]

    def first(kind: str, title: str = "") -> int:
        return next(i for i, item in enumerate(found.items) if item.kind == kind and title in item.title)

    caused = next(
        i for i, item in enumerate(found.items) if item.details.get("deployment_id") == explicit.deployment.id
    )
    order = [
        caused,
        first("alert", "Firing"),
        first("incident_opened"),
        first("flag_toggle", incident["id"]),
        first("infra", "Scaled"),
        first("rollback"),
        first("alert", "Resolved"),
        first("incident_resolved"),
    ]
    assert order == sorted(order), list(zip(kinds, [item.title for item in found.items], strict=True))
    moments = [item.at for item in found.items]
    assert moments == sorted(moments)
    rollback = found.items[first("rollback")]
    assert rollback.version is not None and rollback.version != explicit.deployment.version
    # Items that name no version carry the one running in production then: the bad one until the rollback.
    assert found.items[first("flag_toggle", incident["id"])].version == explicit.deployment.version
    assert found.items[first("incident_resolved")].version == rollback.version

    markdown = found.to_markdown()
    assert markdown.startswith(f"# {incident['title']}\n")
    assert "## Deploys before it" in markdown and "## Timeline" in markdown
    assert f"`{explicit.deployment.version}` to {explicit.deployment.environment}" in markdown
    assert "named by the incident, confidence certain" in markdown
    assert explicit.changes[0].sha[:12] in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| 20")]
    assert len(rows) == len(found.items)
    assert rows[first("rollback")].startswith("| ") and "Rollback of" in rows[first("rollback")]


def _deployment(identifier: str, finished: str, **fields: Any) -> dict[str, Any]:
    return deployment(identifier, started_at=finished.replace(":05:", ":00:"), finished_at=finished, **fields)


@pytest.fixture
def linked(db_url: str) -> str:
    store = Store(db_url)
    try:
        store.ingest(
            [
                delivery(event)
                for event in (
                    _deployment("old", "2026-03-01T02:05:00Z", version="v1"),
                    _deployment("labelled", "2026-03-01T06:05:00Z", version="v2"),
                    _deployment("recent", "2026-03-01T11:05:00Z", version="v3"),
                    _deployment("staging", "2026-03-01T11:35:00Z", version="v4", environment="staging"),
                    _deployment("after", "2026-03-01T13:05:00Z", version="v4"),
                    {
                        "type": "incident",
                        "id": "INC-1",
                        "service": "checkout",
                        "title": "Checkout errors",
                        "opened_at": "2026-03-01T12:00:00Z",
                        "labels": ["version=v2", "team=payments"],
                    },
                    {
                        "type": "timeline_event",
                        "id": "flag-1",
                        "kind": "flag_toggle",
                        "service": "checkout",
                        "at": "2026-03-01T12:10:00Z",
                        "title": "Disabled flag new-cart",
                    },
                    {
                        "type": "timeline_event",
                        "id": "elsewhere",
                        "kind": "flag_toggle",
                        "service": "search",
                        "at": "2026-03-01T12:10:00Z",
                        "title": "Another service's flag",
                    },
                )
            ]
        )
    finally:
        store.close()
    return db_url


def test_links_are_ranked_by_signal_and_each_is_shown(linked: str) -> None:
    store = Store(linked)
    try:
        found = incident_timeline(store, "INC-1")
        assert incident_timeline(store, "INC-404") is None
    finally:
        store.close()
    assert found is not None
    shown = [(link.deployment.id, link.signal, link.confidence, link.minutes_before) for link in found.links]
    assert shown == [
        ("labelled", "version label", "high", 355.0),
        ("recent", "near", "medium", 55.0),
        ("old", "lookback", "low", 595.0),
    ]  # the staging deploy and the one after it opened are not links
    titles = [item.title for item in found.items]
    assert "Disabled flag new-cart" in titles and "Another service's flag" not in titles
    assert any(item.details.get("deployment_id") == "after" for item in found.items)  # in the timeline, not a link


@pytest.fixture
def client(linked: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(db=linked, alert_interval_seconds=0))) as test_client:
        yield test_client


def test_the_api_serves_the_incident_its_timeline_and_markdown(client: TestClient) -> None:
    detail = client.get("/api/v1/incidents/INC-1")
    assert detail.status_code == 200
    assert [link["signal"] for link in detail.json()["links"]] == ["version label", "near", "lookback"]
    timeline = client.get("/api/v1/incidents/INC-1/timeline").json()
    assert timeline["incident"]["id"] == "INC-1" and timeline["items"][0]["kind"] == "deployment"
    assert [item["at"] for item in timeline["items"]] == sorted(item["at"] for item in timeline["items"])
    markdown = client.get("/api/v1/incidents/INC-1/timeline", params={"format": "markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith("# Checkout errors\n")
    missing = client.get("/api/v1/incidents/INC-404/timeline")
    assert missing.status_code == 404 and "no incident with id 'INC-404'" in missing.text
    assert client.get("/api/v1/incidents/INC-1/timeline", params={"format": "pdf"}).status_code == 400


def test_the_cli_prints_the_timeline_as_json_markdown_or_tables(linked: str) -> None:
    as_json = runner.invoke(app, ["incident", "timeline", "INC-1", "--db", linked, "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["links"][0]["deployment"]["id"] == "labelled"
    markdown = runner.invoke(app, ["incident", "timeline", "INC-1", "--db", linked, "--markdown"])
    assert markdown.exit_code == 0 and markdown.stdout.startswith("# Checkout errors\n")
    tables = runner.invoke(app, ["incident", "timeline", "INC-1", "--db", linked], env={"COLUMNS": "200"})
    assert tables.exit_code == 0 and "version label" in tables.stdout and "Disabled flag new-cart" in tables.stdout
    missing = runner.invoke(app, ["incident", "timeline", "INC-404", "--db", linked])
    assert missing.exit_code == 2 and "no incident with id 'INC-404'" in missing.output
    assert "Traceback" not in missing.output

"""Postmortems and the runbook, on both backends: opened from the timeline, action items validated and tracked to
completion, no close without a prevent-recurrence item (API 422, CLI exit 1), overdue items in the API and in
`shipscope check`, runbook steps ticked with their time boxes, and MTTR per month."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from shipscope.cli.main import app
from shipscope.config import Settings
from shipscope.store import Store
from shipscope.web.app import create_app
from tests.factories import delivery, deployment

runner = CliRunner()
NOW = datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def db(db_url: str) -> str:
    opened = NOW - timedelta(hours=3)
    store = Store(db_url)
    try:
        store.ingest(
            [
                delivery(
                    deployment(
                        "deploy-7",
                        version="v7",
                        started_at=_iso(opened - timedelta(minutes=40)),
                        finished_at=_iso(opened - timedelta(minutes=30)),
                    )
                ),
                delivery(
                    {
                        "type": "incident",
                        "id": "INC-7",
                        "service": "checkout",
                        "title": "Checkout errors",
                        "opened_at": _iso(opened),
                        "resolved_at": _iso(opened + timedelta(minutes=50)),
                    }
                ),
                delivery(
                    {
                        "type": "incident",
                        "id": "INC-8",
                        "service": "checkout",
                        "title": "Slow checkout",
                        "opened_at": _iso(opened + timedelta(minutes=5)),
                        "resolved_at": _iso(opened + timedelta(minutes=15)),
                    }
                ),
            ]
        )
    finally:
        store.close()
    return db_url


@pytest.fixture
def client(db: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(db=db, alert_interval_seconds=0))) as test_client:
        yield test_client


def _item(client: TestClient, **fields: Any) -> Any:
    body = {"title": "Add a canary step", "owner": "ana", "due": "2099-01-31", "kind": "detect", **fields}
    return client.post("/api/v1/incidents/INC-7/postmortem/items", json=body)


def test_a_postmortem_closes_only_with_a_prevent_recurrence_item(client: TestClient, db: str) -> None:
    assert _item(client).status_code == 404  # no postmortem yet
    opened = client.post("/api/v1/incidents/INC-7/postmortem", json={"summary": "bad cache key"})
    assert opened.status_code == 201, opened.text
    document = opened.json()
    assert document["status"] == "draft" and document["title"] == "Postmortem: Checkout errors"
    assert document["timeline_markdown"].startswith("# Checkout errors\n")
    assert "`v7` to production" in document["timeline_markdown"]
    assert client.post("/api/v1/incidents/INC-7/postmortem", json={}).status_code == 200  # already open

    assert _item(client).status_code == 201
    refused = client.post("/api/v1/incidents/INC-7/postmortem/close")
    assert refused.status_code == 422
    assert "needs at least one prevent-recurrence action item" in refused.json()["error"]
    cli = runner.invoke(app, ["incident", "postmortem", "INC-7", "--close", "--db", db])
    assert cli.exit_code == 1 and "refused" in cli.output and "prevent-recurrence" in cli.output

    item = _item(client, kind="prevent-recurrence", title="Test the cache key", link="https://ci.example.com/t/1")
    assert item.status_code == 201
    done = client.patch(f"/api/v1/action-items/{item.json()['id']}", json={"status": "done"})
    assert done.status_code == 200 and done.json()["done_at"] is not None and done.json()["status"] == "done"
    closed = client.post("/api/v1/incidents/INC-7/postmortem/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert _item(client).status_code == 422  # a closed postmortem takes no more items
    shown = client.get("/api/v1/incidents/INC-7/postmortem").json()
    assert [one["kind"] for one in shown["items"]] == ["detect", "prevent-recurrence"]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"kind": "blame"}, "kind: expected one of prevent-recurrence, mitigate, detect"),
        ({"due": "next week"}, "due: 'next week' is not a date"),
        ({"owner": " "}, "owner: required text"),
        ({"link": "ftp://x"}, "link: expected an http(s) URL"),
    ],
)
def test_a_bad_action_item_is_400_with_the_field(client: TestClient, fields: dict[str, Any], problem: str) -> None:
    client.post("/api/v1/incidents/INC-7/postmortem", json={})
    answer = _item(client, **fields)
    assert answer.status_code == 400 and problem in answer.json()["error"]
    assert client.get("/api/v1/incidents/INC-7/postmortem").json()["items"] == []


def test_overdue_items_show_in_the_api_and_in_check(client: TestClient, db: str) -> None:
    client.post("/api/v1/incidents/INC-7/postmortem", json={})
    overdue = _item(client, due=(NOW - timedelta(days=3)).date().isoformat(), title="Alert on the queue")
    assert overdue.status_code == 201 and overdue.json()["overdue"] is True
    assert _item(client).json()["overdue"] is False
    listed = client.get("/api/v1/action-items", params={"overdue": "true"}).json()["items"]
    assert [item["title"] for item in listed] == ["Alert on the queue"]
    assert len(client.get("/api/v1/action-items").json()["items"]) == 2
    assert client.patch("/api/v1/action-items/nope", json={"status": "done"}).status_code == 404
    client.close()
    check = runner.invoke(app, ["check", "--db", db, "--json"])
    assert check.exit_code == 1, check.output
    [violation] = [v for v in json.loads(check.stdout) if v["threshold"] == "action_item_overdue"]
    assert violation["value"] == 3.0 and "Alert on the queue" in violation["message"]


def test_the_runbook_is_ticked_with_its_time_boxes(client: TestClient) -> None:
    steps = client.get("/api/v1/incidents/INC-7/runbook").json()["steps"]
    assert [step["key"] for step in steps] == [
        "ack",
        "identify",
        "compare",
        "decide",
        "execute",
        "verify",
        "postmortem",
    ]
    assert all(step["ticked_at"] is None for step in steps)
    ticked = client.post("/api/v1/incidents/INC-7/runbook/ack", json={"by": "ana"}).json()["steps"]
    first = ticked[0]
    assert first["ticked_by"] == "ana" and first["late"] is True  # ticked now, hours after its 5-minute box
    # The next step's box starts at this tick.
    due = datetime.fromisoformat(ticked[1]["due_at"])
    assert due == datetime.fromisoformat(first["ticked_at"]) + timedelta(minutes=5)
    again = client.post("/api/v1/incidents/INC-7/runbook/ack", json={"by": "bo"}).json()["steps"][0]
    assert again["ticked_by"] == "ana"  # the first tick stands
    bad = client.post("/api/v1/incidents/INC-7/runbook/pray")
    assert bad.status_code == 400 and "expected one of ack" in bad.text
    assert client.get("/api/v1/incidents/INC-404/runbook").status_code == 404


def test_mttr_per_month(client: TestClient) -> None:
    months = client.get("/api/v1/mttr", params={"since": "30d"}).json()["months"]
    month = NOW - timedelta(hours=3)
    [row] = [row for row in months if row["month"] == month.strftime("%Y-%m")]
    assert row["incidents"] == 2 and row["resolved"] == 2
    assert row["mttr_seconds"] == pytest.approx((50 * 60 + 10 * 60) / 2)


def test_the_incident_page_forms_need_a_writing_token(db: str) -> None:
    settings = Settings(db=db, api_tokens="writer:ingest,read reader:read", alert_interval_seconds=0)
    with TestClient(create_app(settings)) as client:
        client.cookies.set("shipscope_token", "reader")
        assert client.get("/incidents/INC-7").status_code == 200
        refused = client.post("/incidents/INC-7/runbook/ack", follow_redirects=False)
        assert refused.status_code == 403
        client.cookies.set("shipscope_token", "writer")
        done = client.post("/incidents/INC-7/runbook/ack", data={"by": "ana"}, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == "/incidents/INC-7"
        steps = client.get("/api/v1/incidents/INC-7/runbook", headers={"Authorization": "Bearer reader"}).json()
        assert steps["steps"][0]["ticked_by"] == "ana"


def test_a_cross_site_form_post_is_refused(client: TestClient) -> None:
    evil = client.post(
        "/incidents/INC-7/runbook/ack", headers={"Origin": "https://evil.example"}, follow_redirects=False
    )
    assert evil.status_code == 403 and "not from this dashboard" in evil.text
    login = client.post("/login", data={"token": "x"}, headers={"Referer": "https://evil.example/page"})
    assert login.status_code == 403
    assert client.get("/api/v1/incidents/INC-7/runbook").json()["steps"][0]["ticked_at"] is None
    ours = client.post("/incidents/INC-7/runbook/ack", headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert ours.status_code == 303
    page = client.get("/incidents/INC-7")
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Referrer-Policy"] == "same-origin"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]

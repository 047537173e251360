"""A real Alertmanager routes an alert to a served shipscope, which forwards it to a local server standing in for
PagerDuty's Events API v2 (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/: POST /v2/enqueue,
routing_key, event_action trigger|resolve, dedup_key, payload.summary/source/severity/timestamp, custom_details,
links; answered 202) with the last deploy's context; the resolution closes the same page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from shipscope.store import Store
from tests.factories import delivery, deployment
from tests.services import alertmanager, shipscope_serve, wait_until
from tests.vendors import Received, VendorServer

ROUTING_KEY = "R0UT1NGKEY0000000000000000000000"
RUNBOOK = "https://runbooks.example.com/checkout/rollback"
SEVERITIES = {"critical", "error", "warning", "info"}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _seed(url: str, now: datetime) -> None:
    store = Store(url)
    store.ensure_schema()
    finished = now - timedelta(minutes=25)
    store.ingest(
        [
            delivery(
                deployment(
                    "deploy-42",
                    source="shipscope",
                    sha="4" * 40,
                    version="v4.2.0",
                    actor="ana",
                    image_digest="sha256:" + "d" * 64,
                    url="https://ci.example.com/runs/42",
                    started_at=_iso(finished - timedelta(minutes=5)),
                    finished_at=_iso(finished),
                )
            ),
            delivery(
                {
                    "type": "timeline_event",
                    "source": "shipscope",
                    "id": "gate:deploy-42",
                    "kind": "gate",
                    "service": "checkout",
                    "at": _iso(finished - timedelta(minutes=6)),
                    "title": "Gate passed: burn 0.4 ≤ 2",
                    "details": '{"deployment_id": "deploy-42", "outcome": "pass"}',
                }
            ),
            delivery(
                {
                    "type": "change",
                    "sha": "4" * 40,
                    "repo": "acme/shop",
                    "authored_at": _iso(finished - timedelta(hours=2)),
                    "message": "feat(cart): faster totals\n\nbody",
                    "deployment_id": "deploy-42",
                }
            ),
        ]
    )
    store.close()


def _enqueued(vendors: VendorServer) -> list[Received]:
    return vendors.at("/v2/enqueue")


def _post_alert(am: str, starts: datetime, ends: datetime | None = None) -> None:
    alert: dict[str, Any] = {
        "labels": {"alertname": "HighErrorRate", "service": "checkout", "severity": "critical", "instance": "web-1"},
        "annotations": {"summary": "checkout 5xx above 5%"},
        "startsAt": _iso(starts),
        "generatorURL": "http://prometheus.example.com/graph",
    }
    if ends is not None:
        alert["endsAt"] = _iso(ends)
    answer = httpx.post(f"{am}/api/v2/alerts", json=[alert], timeout=10)
    assert answer.status_code == 200, answer.text


def test_an_alert_through_alertmanager_reaches_pagerduty_with_the_deploy_context(
    tmp_path: Path, vendors: VendorServer
) -> None:
    vendors.plan("POST", "/v2/enqueue", (202, {}, {"status": "success", "message": "Event processed"}, 0.0))
    now = datetime.now(UTC).replace(microsecond=0)
    url = f"duckdb:///{tmp_path / 'paging.duckdb'}"
    _seed(url, now)
    env = {
        "SHIPSCOPE_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "SHIPSCOPE_PAGERDUTY_EVENTS_URL": f"{vendors.base}/v2/enqueue",
        "SHIPSCOPE_RUNBOOK_URL": RUNBOOK,
        "SHIPSCOPE_DASHBOARD_URL": "https://shipscope.example.com",
    }
    with (
        shipscope_serve(url, tmp_path, env=env) as base,
        alertmanager(tmp_path, f"{base}/webhooks/alertmanager") as am,
    ):
        starts = now - timedelta(minutes=1)
        _post_alert(am, starts)
        wait_until(lambda: len(_enqueued(vendors)) >= 1, "the trigger reaching PagerDuty")
        trigger = _enqueued(vendors)[0]
        assert trigger.method == "POST" and trigger.headers["Content-Type"] == "application/json"
        body = trigger.body
        assert body["routing_key"] == ROUTING_KEY and body["event_action"] == "trigger"
        assert body["dedup_key"].startswith("shipscope-") and len(body["dedup_key"]) <= 255
        payload = body["payload"]
        assert payload["summary"] == "[checkout] checkout 5xx above 5%"
        assert payload["severity"] in SEVERITIES and payload["severity"] == "critical"
        assert payload["source"] == "web-1" and payload["component"] == "checkout"
        assert datetime.fromisoformat(payload["timestamp"]) == starts
        details = payload["custom_details"]
        assert details["last_deploy_sha"] == "4" * 40 and details["last_deploy_version"] == "v4.2.0"
        assert datetime.fromisoformat(details["last_deploy_at"]) == now - timedelta(minutes=25)
        assert details["last_deploy_actor"] == "ana"
        assert details["last_deploy_image_digest"] == "sha256:" + "d" * 64
        assert details["pipeline_url"] == "https://ci.example.com/runs/42"
        assert details["gate_verdict"] == "Gate passed: burn 0.4 ≤ 2"
        assert details["changes"] == ["444444444444 feat(cart): faster totals"]
        assert details["runbook_url"] == RUNBOOK
        links = {link["text"]: link["href"] for link in body["links"]}
        assert links["Rollback runbook"] == RUNBOOK and links["Deploy pipeline"] == "https://ci.example.com/runs/42"
        assert links["Incident timeline"].startswith("https://shipscope.example.com/api/v1/incidents/")

        _post_alert(am, starts, ends=datetime.now(UTC))
        wait_until(
            lambda: any(request.body["event_action"] == "resolve" for request in _enqueued(vendors)),
            "the resolution reaching PagerDuty",
        )
        [resolve] = [request for request in _enqueued(vendors) if request.body["event_action"] == "resolve"]
        assert resolve.body == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": body["dedup_key"]}
        incidents = httpx.get(f"{base}/api/v1/events", params={"type": "incident"}, timeout=10).json()["events"]
    [incident] = incidents
    assert incident["source"] == "alertmanager" and incident["service"] == "checkout"
    assert incident["resolved_at"] is not None and body["dedup_key"] == f"shipscope-{incident['id']}"


def test_pagerduty_failing_answers_502_so_alertmanager_retries(tmp_path: Path, vendors: VendorServer) -> None:
    from fastapi.testclient import TestClient

    from shipscope.config import Settings
    from shipscope.web.app import create_app
    from tests.conftest import FIXTURES

    vendors.plan("POST", "/v2/enqueue", (400, {}, {"status": "invalid event", "errors": ["bad"]}, 0.0))
    url = f"duckdb:///{tmp_path / 'failing.duckdb'}"
    settings = Settings(
        db=url,
        pagerduty_routing_key=ROUTING_KEY,
        pagerduty_events_url=f"{vendors.base}/v2/enqueue",
        alert_interval_seconds=0,
    )
    body = (FIXTURES / "alertmanager/firing.simple.json").read_bytes()
    with TestClient(create_app(settings)) as client:
        answer = client.post("/webhooks/alertmanager", content=body)
        assert answer.status_code == 502 and "not forwarded to PagerDuty" in answer.text
        assert ROUTING_KEY not in answer.text
        assert answer.json()["stored"] == 2
        again = client.post("/webhooks/alertmanager", content=body)  # Alertmanager's retry
        assert again.status_code == 502 and again.json()["duplicates"] == 2
    assert len(_enqueued(vendors)) == 2

"""Automatic rollback on an SLO breach, on both backends: the configured strategy runs once, a second breach within
the guard window is refused, a rollback never goes past the last known-good version, dry run changes nothing,
approval waits for an admin, and every attempt is on the service's timeline."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from shipscope.config import Settings
from shipscope.errors import ConfigError
from shipscope.store import Store
from shipscope.web.app import create_app
from tests.factories import delivery, deployment
from tests.services import wait_until
from tests.vendors import VendorServer

ADMIN = {"Authorization": "Bearer admin-token"}
TOKENS = "admin-token:admin,read reader:read"


def _deployments(*events: dict[str, Any]) -> list[Any]:
    return [delivery(event) for event in events]


GOOD = deployment(
    "deploy-1", version="v1.0.0", sha="1" * 40, started_at="2026-03-01T09:00:00Z", finished_at="2026-03-01T09:05:00Z"
)
BAD = deployment(
    "deploy-2", version="v1.1.0", sha="2" * 40, started_at="2026-03-01T10:00:00Z", finished_at="2026-03-01T10:05:00Z"
)


@pytest.fixture
def seeded(db_url: str) -> str:
    store = Store(db_url)
    try:
        store.ingest(_deployments(GOOD, BAD))
    finally:
        store.close()
    return db_url


def _policy(tmp_path: Path, **top: Any) -> dict[str, Any]:
    record = tmp_path / "rollbacks.log"
    command = [sys.executable, "-c", f"open({str(record)!r}, 'a').write('rolled back\\n')"]
    return {"window": "1h", **top, "services": {"checkout": {"strategy": "command", "command": command}}}


def _runs(tmp_path: Path) -> int:
    record = tmp_path / "rollbacks.log"
    return len(record.read_text().splitlines()) if record.exists() else 0


def _client(db: str, policy: dict[str, Any], **settings: Any) -> TestClient:
    return TestClient(
        create_app(Settings(db=db, api_tokens=TOKENS, auto_rollback=policy, alert_interval_seconds=0, **settings))
    )


def _attempts(client: TestClient) -> list[dict[str, Any]]:
    answer = client.get("/api/v1/rollbacks", params={"service": "checkout"}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    attempts: list[dict[str, Any]] = answer.json()["attempts"]
    return attempts


def _finished(client: TestClient) -> Callable[[], bool]:
    return lambda: bool(_attempts(client)) and _attempts(client)[-1]["outcome"] in ("rolled_back", "failed")


def _store_deployments(client: TestClient) -> dict[str, dict[str, Any]]:
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    return {event["id"]: event for event in store.list_events("deployment", limit=100).events}


def test_a_breach_rolls_back_once_and_a_second_within_the_window_is_refused(
    seeded: str, tmp_path: Path, vendors: VendorServer
) -> None:
    slack = f"{vendors.base}/slack/hook"
    with _client(seeded, _policy(tmp_path), slack_webhook_urls=slack) as client:
        breach = {"event_type": "slo_breach", "client_payload": {"service": "checkout", "reason": "burn 14x"}}
        answer = client.post("/api/v1/rollbacks", json=breach, headers=ADMIN)
        assert answer.status_code == 202, answer.text
        [started] = answer.json()["attempts"]
        assert started["outcome"] == "started" and started["rolled_back"] == "deploy-2"
        assert started["target_version"] == "v1.0.0"
        wait_until(_finished(client), "the rollback finishing")
        [done] = _attempts(client)
        assert done["outcome"] == "rolled_back" and done["id"] == started["id"]
        assert _runs(tmp_path) == 1
        rollback = _store_deployments(client)[done["rollback_id"]]
        assert (rollback["kind"], rollback["rollback_of"], rollback["version"]) == ("rollback", "deploy-2", "v1.0.0")
        assert rollback["actor"] == "shipscope (automatic rollback)"
        wait_until(lambda: bool(vendors.at("/slack/hook")), "the Slack notice")
        assert "Rolled back checkout" in json.dumps(vendors.at("/slack/hook")[0].body)

        again = client.post("/api/v1/rollbacks", json={"service": "checkout", "reason": "still burning"}, headers=ADMIN)
        assert again.status_code == 200
        [refused] = again.json()["attempts"]
        assert refused["outcome"] == "refused" and "at most one per 1:00:00 per service" in refused["problem"]
        assert _runs(tmp_path) == 1
        store: Store = client.app.state.store  # type: ignore[attr-defined]
        timeline = [
            e for e in store.list_events("timeline_event", service="checkout").events if e["kind"] == "auto_rollback"
        ]
    assert sorted(orjson.loads(event["details"])["outcome"] for event in timeline) == ["refused", "rolled_back"]
    assert any("refused" in event["title"] for event in timeline)


def test_dry_run_records_what_would_run_and_changes_nothing(seeded: str, tmp_path: Path) -> None:
    with _client(seeded, _policy(tmp_path, dry_run=True)) as client:
        answer = client.post("/api/v1/rollbacks", json={"service": "checkout"}, headers=ADMIN)
        assert answer.status_code == 200
        [attempt] = answer.json()["attempts"]
        assert attempt["outcome"] == "dry_run" and attempt["steps"][0][0] == sys.executable
        assert set(_store_deployments(client)) == {"deploy-1", "deploy-2"}
        assert [one["outcome"] for one in _attempts(client)] == ["dry_run"]
    assert _runs(tmp_path) == 0


def test_approval_waits_for_an_admin_and_then_runs(seeded: str, tmp_path: Path) -> None:
    with _client(seeded, _policy(tmp_path, approval=True)) as client:
        [waiting] = client.post("/api/v1/rollbacks", json={"service": "checkout"}, headers=ADMIN).json()["attempts"]
        assert waiting["outcome"] == "awaiting_approval" and _runs(tmp_path) == 0
        reader = {"Authorization": "Bearer reader"}
        assert client.post(f"/api/v1/rollbacks/{waiting['id']}/approve", headers=reader).status_code == 403
        approved = client.post(f"/api/v1/rollbacks/{waiting['id']}/approve", headers=ADMIN)
        assert approved.status_code == 202 and approved.json()["attempts"][0]["outcome"] == "started"
        wait_until(_finished(client), "the approved rollback finishing")
        assert [one["outcome"] for one in _attempts(client)] == ["rolled_back"] and _runs(tmp_path) == 1
        twice = client.post(f"/api/v1/rollbacks/{waiting['id']}/approve", headers=ADMIN)
        assert twice.status_code == 400 and "not awaiting approval" in twice.text
        missing = client.post("/api/v1/rollbacks/auto_rollback:checkout:nope/approve", headers=ADMIN)
        assert missing.status_code == 404


def test_never_past_the_last_known_good_version(db_url: str, tmp_path: Path) -> None:
    store = Store(db_url)
    try:
        store.ingest(_deployments(BAD))
    finally:
        store.close()
    with _client(db_url, _policy(tmp_path)) as client:
        [alone] = client.post("/api/v1/rollbacks", json={"service": "checkout"}, headers=ADMIN).json()["attempts"]
        assert alone["outcome"] == "refused" and "nothing known-good to go back to" in alone["problem"]
        store = client.app.state.store  # type: ignore[attr-defined]
        rolled = deployment(
            "rollback-9",
            version="v0.9.0",
            sha="9" * 40,
            kind="rollback",
            rollback_of="deploy-2",
            started_at="2026-03-01T11:00:00Z",
            finished_at="2026-03-01T11:05:00Z",
        )
        client.post("/api/v1/events", content=orjson.dumps(GOOD) + b"\n" + orjson.dumps(rolled), headers=ADMIN)
        [past] = client.post("/api/v1/rollbacks", json={"service": "checkout"}, headers=ADMIN).json()["attempts"]
        assert past["outcome"] == "refused" and "already a rollback" in past["problem"]
        [other] = client.post("/api/v1/rollbacks", json={"service": "search"}, headers=ADMIN).json()["attempts"]
        assert "no automatic rollback is configured for search" in other["problem"]
    assert _runs(tmp_path) == 0


def test_an_alertmanager_route_rolls_back_the_services_with_firing_alerts(seeded: str, tmp_path: Path) -> None:
    notification = {
        "version": "4",
        "status": "firing",
        "commonAnnotations": {"summary": "checkout burns its error budget 14x"},
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "ErrorBudgetBurn", "service": "checkout", "severity": "critical"},
                "annotations": {},
                "startsAt": "2026-03-01T10:20:00Z",
            }
        ],
    }
    with _client(seeded, _policy(tmp_path)) as client:
        assert client.post("/webhooks/alertmanager/rollback", json=notification).status_code == 401
        answer = client.post("/webhooks/alertmanager/rollback", json=notification, headers=ADMIN)
        assert answer.status_code == 202
        [attempt] = answer.json()["attempts"]
        assert attempt["reason"] == "alert checkout burns its error budget 14x" and attempt["trigger"] == "alertmanager"
        wait_until(_finished(client), "the rollback finishing")
        resolved = {**notification, "status": "resolved"}
        resolved["alerts"] = [{**notification["alerts"][0], "status": "resolved", "endsAt": "2026-03-01T10:40:00Z"}]
        answer = client.post("/webhooks/alertmanager/rollback", json=resolved, headers=ADMIN)
        assert answer.status_code == 200 and answer.json()["attempts"] == []
        bad = client.post("/webhooks/alertmanager/rollback", content=b"{", headers=ADMIN)
        assert bad.status_code == 400 and "invalid JSON" in bad.text
    assert _runs(tmp_path) == 1


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"windows": "1h"}, "unknown settings windows"),
        ({"window": "soon"}, "window"),
        ({"dry_run": "yes"}, "dry_run: expected true or false"),
        ({"services": {"checkout": {"strategy": "helm"}}}, "the helm rollback needs --release"),
    ],
)
def test_a_wrong_policy_stops_the_server_with_the_setting_named(
    db_url: str, table: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        create_app(Settings(db=db_url, auto_rollback=table))
    assert problem in raised.value.message

"""Incident receivers: Alertmanager, PagerDuty v3 and Opsgenie fixtures parsed with their values asserted, and over
HTTP on both backends: signatures, idempotency, and firing then resolved in either order (and twice) as one incident
with both times."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from shipscope.config import Settings
from shipscope.errors import AuthError, InputError
from shipscope.events import Incident, TimelineEvent
from shipscope.ingest import alertmanager, opsgenie, pagerduty
from shipscope.ingest.registry import decode
from shipscope.store import Store, schema
from shipscope.web.app import create_app
from tests.conftest import FIXTURES

PD_SECRET = "pd-subscription-secret"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def incidents(events: list[Any]) -> list[Incident]:
    return [event for event in events if isinstance(event, Incident)]


def timeline(events: list[Any]) -> list[TimelineEvent]:
    return [event for event in events if isinstance(event, TimelineEvent)]


# ----- Alertmanager -------------------------------------------------------------------------------------------------


def test_alertmanager_simple_firing_alert() -> None:
    events = alertmanager.parse_delivery(load("alertmanager/firing.simple.json"))
    [incident] = incidents(events)
    assert incident.service == "prometheus_bot" and incident.severity == "warning"
    assert incident.title == "Oops, something happend!"
    assert incident.opened_at == datetime(2016, 4, 27, 20, 46, 37, 903000, UTC)
    assert incident.resolved_at is None  # endsAt is Go's zero time
    assert "instance=server01.int:9100" in (incident.labels or [])
    [alert] = timeline(events)
    assert alert.kind == "alert" and alert.title == "Firing: Oops, something happend!"
    assert json.loads(alert.details or "{}")["generator_url"] == "https://example.com/graph#..."


def test_alertmanager_grouped_alerts_are_one_incident_each() -> None:
    events = alertmanager.parse_delivery(load("alertmanager/firing.production_example.json"))
    assert len(incidents(events)) == 11 and len({incident.id for incident in incidents(events)}) == 11
    first = incidents(events)[0]
    assert first.service == "statsd" and first.severity == "critical"  # the job label names it; Critical lowered
    assert first.title == "LoadAverage_15MIN"  # no summary annotation: the alert's name
    assert first.opened_at == datetime(2017, 1, 26, 13, 31, 54, 865000, UTC)


def test_alertmanager_fingerprints_are_used_when_sent() -> None:
    events = alertmanager.parse_delivery(load("alertmanager/firing.two-alerts.zulip.json"))
    found = incidents(events)
    assert [incident.id for incident in found] == ["a1bc48475b20e73d-1580948278", "c2ea85182f28cbd9-1580948278"]
    assert {incident.service for incident in found} == {"unknown"}  # no service, app or job label
    assert found[0].title == "High CPU core temperature"


def test_an_old_resolved_notification_without_end_times_leaves_the_incidents_open() -> None:
    payload = load("alertmanager/resolved.noGenURL.json")
    events = alertmanager.parse_delivery(payload)
    found = incidents(events)
    assert len(found) == len(payload["alerts"]) and {incident.service for incident in found} == {"wakeup"}
    assert all(incident.resolved_at is None for incident in found)
    assert timeline(events) == []  # a resolution at an unknown time is not put on the timeline at a guess


def _resolved(payload: dict[str, Any], ends: str) -> dict[str, Any]:
    resolved = copy.deepcopy(payload)
    resolved["status"] = "resolved"
    for alert in resolved["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = ends
    return resolved


def test_alertmanager_bad_payloads_name_the_field() -> None:
    with pytest.raises(InputError, match="alerts: required field is missing"):
        alertmanager.parse_delivery({"status": "firing"})
    broken = load("alertmanager/firing.simple.json")
    broken["alerts"][0]["startsAt"] = "yesterday"
    with pytest.raises(InputError, match=r"alerts\[0\]\.startsAt"):
        alertmanager.parse_delivery(broken)
    broken = load("alertmanager/firing.simple.json")
    broken["alerts"][0]["status"] = "pending"
    with pytest.raises(InputError, match=r"alerts\[0\]\.status: expected firing or resolved"):
        alertmanager.parse_delivery(broken)


# ----- PagerDuty ----------------------------------------------------------------------------------------------------


def test_pagerduty_triggered_opens_the_incident() -> None:
    events = pagerduty.parse_delivery(load("incidents/pagerduty.v3.incident.triggered.json"))
    [incident] = incidents(events)
    assert (incident.id, incident.service, incident.title) == ("PFQZPSY", "pig208", "Test Incident 3")
    assert incident.opened_at == datetime(2021, 6, 4, 13, 35, 29, 781000, UTC)
    assert incident.severity == "high" and incident.labels == ["pagerduty_number=9"]
    [page] = timeline(events)
    assert page.id == "01BZYIL05THJDFF2Y08X9SVMTU" and page.kind == "page"
    assert json.loads(page.details or "{}")["agent"] == "PIG 208"


def test_pagerduty_acknowledged_and_resolved_set_their_times() -> None:
    [acknowledged] = incidents(pagerduty.parse_delivery(load("incidents/pagerduty.v3.incident.acknowledged.json")))
    assert acknowledged.acknowledged_at == datetime(2021, 6, 4, 13, 55, 30, 394000, UTC)
    [resolved] = incidents(pagerduty.parse_delivery(load("incidents/pagerduty.v3.incident.resolved.json")))
    assert (resolved.id, resolved.title) == ("PCPZE64", "Test Incident")
    assert resolved.resolved_at == datetime(2021, 6, 4, 13, 16, 53, 816000, UTC)


def test_pagerduty_signatures() -> None:
    body = (FIXTURES / "incidents/pagerduty.v3.incident.triggered.json").read_bytes()
    good = "v1=" + hmac.new(PD_SECRET.encode(), body, hashlib.sha256).hexdigest()
    pagerduty.verify_signature(body, good, [PD_SECRET])
    pagerduty.verify_signature(body, f"v1=deadbeef, {good}", ["old", PD_SECRET])  # one of several matches
    for header in (None, "v0=abc", "v1=deadbeef"):
        with pytest.raises(AuthError):
            pagerduty.verify_signature(body, header, [PD_SECRET])


# ----- Opsgenie -----------------------------------------------------------------------------------------------------


def test_opsgenie_create_and_close() -> None:
    created = opsgenie.parse_delivery(load("incidents/opsgenie.create.json"))
    [incident] = incidents(created)
    assert (incident.id, incident.service, incident.title) == (
        "ec03dad6-62c8-4c94-b38b-d88f398e900f",
        "Server",
        "another alert",
    )
    assert incident.opened_at == datetime(2017, 8, 14, 11, 25, 56, 288000, UTC)
    assert incident.severity == "moderate" and incident.labels == ["vip"]
    closed = opsgenie.parse_delivery(load("incidents/opsgenie.close.json"))
    [incident] = incidents(closed)
    assert incident.opened_at == datetime(2015, 1, 5, 10, 3, 11, 104000, UTC)
    # updatedAt is in nanoseconds, past 2^53: read exactly, not through a float.
    assert incident.resolved_at == datetime(2015, 1, 5, 10, 6, 14, 669001, UTC)
    assert incident.service == "unknown"  # an empty entity and no service: tag
    [page] = timeline(closed)
    assert page.title == "Opsgenie close: test alert"


# ----- over HTTP ----------------------------------------------------------------------------------------------------


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    settings = Settings(db=db_url, pagerduty_webhook_secrets=PD_SECRET, alert_interval_seconds=0)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _store(client: TestClient) -> Store:
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    return store


def _incidents(client: TestClient) -> list[dict[str, Any]]:
    return sorted(_store(client).list_events("incident", limit=1000).events, key=lambda row: row["id"])


def _pd(client: TestClient, body: bytes, secret: str = PD_SECRET) -> Any:
    signature = "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return client.post("/webhooks/pagerduty", content=body, headers={"X-PagerDuty-Signature": signature})


@pytest.mark.parametrize("order", ["firing first", "resolved first"])
def test_firing_and_resolved_in_either_order_and_twice_are_one_incident(client: TestClient, order: str) -> None:
    firing = load("alertmanager/firing.two-alerts.zulip.json")
    resolved = _resolved(firing, "2020-02-06T00:47:58.432911368Z")
    bodies = [orjson.dumps(firing), orjson.dumps(resolved)]
    if order == "resolved first":
        bodies.reverse()
    for body in [*bodies, *bodies]:
        answer = client.post("/webhooks/alertmanager", content=body)
        assert answer.status_code == 200, answer.text
    found = _incidents(client)
    assert len(found) == 2
    for incident in found:
        assert incident["opened_at"].startswith("2020-02-06T00:17:58.432911")
        assert incident["resolved_at"].startswith("2020-02-06T00:47:58.432911")
        assert incident["title"] == "High CPU core temperature"
    counts = _store(client).counts()
    assert counts["raw_events"] == 2 and counts["timeline_events"] == 4  # two deliveries; firing + resolved each


def test_pagerduty_over_http_merges_the_incident_in_any_order(client: TestClient) -> None:
    triggered = json.loads((FIXTURES / "incidents/pagerduty.v3.incident.triggered.json").read_text())
    acknowledged = copy.deepcopy(triggered)
    acknowledged["event"].update(id="01ACK", event_type="incident.acknowledged", occurred_at="2021-06-04T13:40:00Z")
    resolved = copy.deepcopy(triggered)
    resolved["event"].update(id="01RES", event_type="incident.resolved", occurred_at="2021-06-04T14:05:00Z")
    for payload in (resolved, acknowledged, triggered, triggered):
        answer = _pd(client, orjson.dumps(payload))
        assert answer.status_code == 200, answer.text
    [incident] = _incidents(client)
    assert incident["opened_at"].startswith("2021-06-04T13:35:29.781")  # the trigger's time, though it came last
    assert incident["acknowledged_at"].startswith("2021-06-04T13:40:00")
    assert incident["resolved_at"].startswith("2021-06-04T14:05:00")
    assert _store(client).counts()["raw_events"] == 3  # the repeated trigger is a duplicate delivery


def test_a_wrong_pagerduty_signature_is_401_and_leaves_only_a_rejection(client: TestClient) -> None:
    body = (FIXTURES / "incidents/pagerduty.v3.incident.triggered.json").read_bytes()
    answer = _pd(client, body, secret="not-the-secret")
    assert answer.status_code == 401 and "X-PagerDuty-Signature does not match" in answer.text
    assert {name: count for name, count in _store(client).counts().items() if count} == {"ingest_rejections": 1}
    (rejection,) = _store(client).rows(schema.ingest_rejections)
    assert rejection["source"] == "pagerduty"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/webhooks/alertmanager", b'{"status": "firing", "alerts": [', "invalid JSON"),
        ("/webhooks/alertmanager", b'{"alerts": [{"labels": {}}]}', "alerts[0].status"),
        ("/webhooks/opsgenie", b'{"action": "Create", "alert": {"alertId": "x", "message": "m"}}', "createdAt"),
        ("/webhooks/opsgenie", b'{"action": "Create"}', "alert: required field is missing"),
    ],
)
def test_malformed_incident_payloads_are_400_with_the_field(
    client: TestClient, path: str, body: bytes, message: str
) -> None:
    answer = client.post(path, content=body)
    assert answer.status_code == 400 and message in answer.text, answer.text
    assert {name: count for name, count in _store(client).counts().items() if count} == {"ingest_rejections": 1}


def test_opsgenie_over_http_and_the_journal_reprocesses_every_receiver(client: TestClient) -> None:
    for name in ("incidents/opsgenie.create.json", "incidents/opsgenie.close.json"):
        assert client.post("/webhooks/opsgenie", content=(FIXTURES / name).read_bytes()).status_code == 200
    assert len(_incidents(client)) == 2
    for kind, name in (
        ("alertmanager", "alertmanager/firing.simple.json"),
        ("pagerduty", "incidents/pagerduty.v3.incident.triggered.json"),
        ("opsgenie", "incidents/opsgenie.create.json"),
    ):
        assert incidents(list(decode(kind, (FIXTURES / name).read_bytes(), {})))


def test_api_tokens_guard_the_bearer_receivers(db_url: str) -> None:
    settings = Settings(db=db_url, api_tokens="ingest-token:ingest reader:read", alert_interval_seconds=0)
    body = (FIXTURES / "alertmanager/firing.simple.json").read_bytes()
    with TestClient(create_app(settings)) as client:
        assert client.post("/webhooks/alertmanager", content=body).status_code == 401
        reader = {"Authorization": "Bearer reader"}
        assert client.post("/webhooks/opsgenie", content=body, headers=reader).status_code == 403
        writer = {"Authorization": "Bearer ingest-token"}
        assert client.post("/webhooks/alertmanager", content=body, headers=writer).status_code == 200
        # No PagerDuty secret on a server with tokens: refused rather than accepted unsigned.
        assert client.post("/webhooks/pagerduty", content=body, headers=writer).status_code == 401

"""Flag audit webhooks (LaunchDarkly's documented shape, https://docs.launchdarkly.com/home/connecting/webhooks,
signed with X-LD-Signature) and Kubernetes Event objects
(https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/) as timeline events, over HTTP on
both backends."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from shipscope.config import Settings
from shipscope.errors import InputError
from shipscope.ingest import flags, kubernetes
from shipscope.ingest.registry import decode
from shipscope.store import Store
from shipscope.web.app import create_app

SECRET = "ld-webhook-secret"
FLAG_CHANGE: dict[str, Any] = {
    "_id": "61e1c0a4f1e2a30e5b1c2d3e",
    "kind": "flag",
    "name": "New checkout flow",
    "title": "Ana Lima turned off the flag New checkout flow in Production",
    "titleVerb": "turned off the flag",
    "date": 1772359200000,
    "member": {"email": "ana@example.com", "firstName": "Ana", "lastName": "Lima"},
    "accesses": [{"action": "updateOn", "resource": "proj/default:env/production:flag/new-checkout-flow"}],
    "currentVersion": {"key": "new-checkout-flow", "tags": ["service:checkout", "team:payments"], "on": False},
}
CLUSTER_EVENT: dict[str, Any] = {
    "kind": "Event",
    "apiVersion": "v1",
    "metadata": {"name": "checkout-7d9f.17a2", "namespace": "shop", "uid": "0f3c9a52-11aa-4d7e-9b1e-5a8e2c1d0b77"},
    "involvedObject": {
        "kind": "Pod",
        "name": "checkout-7d9f-x2k4p",
        "namespace": "shop",
        "labels": {"app.kubernetes.io/name": "checkout"},
    },
    "reason": "OOMKilled",
    "message": "Container checkout exceeded its memory limit",
    "type": "Warning",
    "count": 3,
    "firstTimestamp": "2026-03-01T10:00:00Z",
    "lastTimestamp": "2026-03-01T10:04:00Z",
}


def test_a_flag_change_is_a_flag_toggle_of_its_tagged_service() -> None:
    [event] = flags.parse_delivery(FLAG_CHANGE)
    assert (event.kind, event.service, event.id) == ("flag_toggle", "checkout", "61e1c0a4f1e2a30e5b1c2d3e")
    assert event.title == "Ana Lima turned off the flag New checkout flow in Production"
    assert event.at.isoformat() == "2026-03-01T10:00:00+00:00"
    details = json.loads(event.details or "{}")
    assert details["environments"] == ["production"] and details["by"] == "Ana Lima"
    [named] = flags.parse_delivery(FLAG_CHANGE, service="storefront")
    assert named.service == "storefront"  # the webhook URL's ?service= wins over the tag
    assert flags.parse_delivery({**FLAG_CHANGE, "kind": "segment"}) == []
    with pytest.raises(InputError, match="date"):
        flags.parse_delivery({**FLAG_CHANGE, "date": "yesterday"})


def test_a_cluster_event_is_an_infra_entry_per_count() -> None:
    [event] = kubernetes.parse_delivery(CLUSTER_EVENT)
    assert (event.kind, event.service) == ("infra", "checkout")
    assert event.title == (
        "Warning OOMKilled: Pod/checkout-7d9f-x2k4p in shop: Container checkout exceeded its memory limit"
    )
    assert event.at.isoformat() == "2026-03-01T10:04:00+00:00"
    assert event.id.endswith("-3")
    with pytest.raises(InputError, match="involvedObject: required"):
        kubernetes.parse_delivery({key: value for key, value in CLUSTER_EVENT.items() if key != "involvedObject"})
    with pytest.raises(InputError, match="lastTimestamp"):
        kubernetes.parse_delivery({**CLUSTER_EVENT, "lastTimestamp": None, "firstTimestamp": None})


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(db=db_url, flag_webhook_secrets=SECRET, alert_interval_seconds=0))) as test:
        yield test


def _timeline(client: TestClient) -> list[dict[str, Any]]:
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    return store.list_events("timeline_event", limit=100).events


def test_flag_and_cluster_webhooks_over_http(client: TestClient) -> None:
    body = orjson.dumps(FLAG_CHANGE)
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert client.post("/webhooks/flags", content=body, headers={"X-LD-Signature": "0" * 64}).status_code == 401
    answer = client.post("/webhooks/flags?service=storefront", content=body, headers={"X-LD-Signature": signature})
    assert answer.status_code == 200 and answer.json()["stored"] == 1
    again = client.post("/webhooks/flags?service=storefront", content=body, headers={"X-LD-Signature": signature})
    assert again.json()["duplicates"] == 1
    assert client.post("/webhooks/kubernetes", content=orjson.dumps(CLUSTER_EVENT)).status_code == 200
    repeated = {**CLUSTER_EVENT, "count": 4, "lastTimestamp": "2026-03-01T10:06:00Z"}
    assert client.post("/webhooks/kubernetes", content=orjson.dumps(repeated)).json()["stored"] == 1
    bad = client.post("/webhooks/kubernetes", content=b'{"kind": "Pod"}')
    assert bad.status_code == 400 and "kind: expected Event" in bad.text
    found = {(event["kind"], event["service"]) for event in _timeline(client)}
    assert found == {("flag_toggle", "storefront"), ("infra", "checkout")}
    assert len(_timeline(client)) == 3
    # The journal keeps the URL's service: reprocessing gives the same entries.
    assert decode("flags", body, {"X-Shipscope-Service": "storefront"})[0].service == "storefront"

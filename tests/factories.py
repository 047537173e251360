"""Small builders of canonical event dicts for tests."""

from __future__ import annotations

from typing import Any

import orjson

from shipscope.ingest import Delivery
from shipscope.ingest.generic import read_record
from shipscope.store import Store


def run(run_id: str = "r1", status: str = "success", **fields: Any) -> dict[str, Any]:
    event = {
        "type": "pipeline_run",
        "id": run_id,
        "repo": "acme/shop",
        "workflow": "ci",
        "trigger": "push",
        "branch": "main",
        "sha": "abc123",
        "status": status,
        "created_at": "2026-03-01T10:00:00Z",
    }
    if status not in ("queued",):
        event["started_at"] = "2026-03-01T10:01:00Z"
    if status in ("success", "failure", "cancelled", "skipped"):
        event["finished_at"] = "2026-03-01T10:09:00Z"
    event.update(fields)
    return event


def deployment(deployment_id: str = "d1", status: str = "success", **fields: Any) -> dict[str, Any]:
    event = {
        "type": "deployment",
        "id": deployment_id,
        "service": "checkout",
        "environment": "production",
        "sha": "abc123",
        "status": status,
        "started_at": "2026-03-01T11:00:00Z",
    }
    if status != "in_progress":
        event["finished_at"] = "2026-03-01T11:05:00Z"
    event.update(fields)
    return event


def delivery(event: dict[str, Any]) -> Delivery:
    parsed = read_record(1, orjson.dumps(event))
    assert isinstance(parsed, Delivery), parsed
    return parsed


def ndjson(*events: dict[str, Any]) -> bytes:
    return b"\n".join(orjson.dumps(event) for event in events) + b"\n"


def recorded_timeline(db: str, kind: str, service: str = "checkout") -> list[dict[str, Any]]:
    """The timeline events of one kind a command recorded in the database, their details decoded."""
    store = Store(db)
    try:
        events = store.list_events("timeline_event", service=service, limit=1000).events
    finally:
        store.close()
    return [{**event, "details": orjson.loads(event["details"])} for event in events if event["kind"] == kind]

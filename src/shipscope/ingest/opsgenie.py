"""Opsgenie webhook integration → incidents and page timeline events.

Opsgenie posts ``{"action": "Create" | "Acknowledge" | "Close" | …, "alert": {...}}`` for each alert action
(https://support.atlassian.com/opsgenie/docs/integrate-opsgenie-with-webhook/). The alert id is the incident id;
``createdAt`` is in milliseconds, ``updatedAt`` in nanoseconds (larger than 2^53, so never read through a float).
The affected service is the tag ``service:NAME`` when there is one, else the alert's ``entity``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from shipscope.errors import InputError
from shipscope.events import Event, Incident, TimelineEvent, timeline_details
from shipscope.ingest.alertmanager import UNKNOWN_SERVICE
from shipscope.ingest.payload import Node

SOURCE: Final = "opsgenie"
_PRIORITIES: Final = {1: "critical", 2: "high", 3: "moderate", 4: "low", 5: "informational"}


def _epoch(node: Node, key: str, per_second: int) -> datetime | None:
    value = node.opt_integer(key)
    if value is None:
        return None
    seconds, fraction = divmod(value, per_second)
    try:
        return datetime.fromtimestamp(seconds, UTC).replace(microsecond=fraction * 1_000_000 // per_second)
    except (OverflowError, OSError, ValueError):
        raise InputError(f"{node.where(key)}: {value} is not a time") from None


def _moment(alert: Node) -> datetime | None:
    """When this action happened: updatedAt (ns), which Opsgenie sets on every change."""
    return _epoch(alert, "updatedAt", 1_000_000_000)


def action_of(payload: Mapping[str, Any]) -> str:
    action = payload.get("action")
    return action if isinstance(action, str) and action else "unknown"


def parse_delivery(payload: Mapping[str, Any]) -> list[Event]:
    root = Node(payload)
    action = root.text("action")
    alert = root.node("alert")
    identifier = alert.text("alertId")
    created = _epoch(alert, "createdAt", 1000)
    if created is None:
        raise InputError(f"{alert.where('createdAt')}: required field is missing")
    moment = _moment(alert) or created
    tags = alert.opt_texts("tags") or []
    tagged = [tag.split(":", 1)[1] for tag in tags if tag.startswith("service:") and tag[8:]]
    service = tagged[0] if tagged else alert.opt_text("entity") or UNKNOWN_SERVICE
    title = alert.text("message")
    priority = alert.data.get("priority")
    lowered = action.lower()
    events: list[Event] = [
        Incident(
            source=SOURCE,
            id=identifier,
            service=service,
            severity=_PRIORITIES.get(priority) if isinstance(priority, int) else None,
            title=title,
            opened_at=created,
            acknowledged_at=moment if lowered == "acknowledge" else None,
            resolved_at=moment if lowered == "close" else None,
            labels=sorted(tags) or None,
        )
    ]
    details = {
        "incident_id": identifier,
        "action": action,
        "alias": alert.opt_text("alias"),
        "user": alert.opt_text("username"),
        "tiny_id": alert.opt_text("tinyId"),
    }
    events.append(
        TimelineEvent(
            source=SOURCE,
            id=f"{identifier}-{lowered}-{alert.data.get('updatedAt') or alert.data.get('createdAt')}",
            kind="page",
            service=service,
            at=moment,
            title=f"Opsgenie {lowered}: {title}",
            details=timeline_details(details),
        )
    )
    return events

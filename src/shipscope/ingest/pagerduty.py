"""PagerDuty v3 webhooks → incidents and page timeline events.

A v3 delivery is ``{"event": {id, event_type, resource_type, occurred_at, agent, data}}``
(https://developer.pagerduty.com/docs/webhooks/v3-overview/), signed in ``X-PagerDuty-Signature`` as
``v1=<hex HMAC-SHA256 of the body>``, one entry per secret while a secret is rotated
(https://developer.pagerduty.com/docs/webhooks/webhook-signatures/).

``incident.triggered`` opens the incident at ``data.created_at`` (or, when the payload has none, the time the
event occurred); acknowledged and resolved set their times; every event of an incident is also a timeline event,
so escalations, reassignments, notes and reopenings are in the incident's history. The event id is the delivery's
idempotency key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from shipscope.errors import AuthError
from shipscope.events import Event, Incident, TimelineEvent, timeline_details
from shipscope.ingest.payload import Node
from shipscope.ingest.signatures import hmac_sha256_matches

SOURCE: Final = "pagerduty"
SIGNATURE_HEADER: Final = "X-PagerDuty-Signature"


def verify_signature(body: bytes, header: str | None, secrets: Sequence[str]) -> None:
    """One of the header's ``v1=`` signatures must be the HMAC-SHA256 of the body under one of the secrets."""
    if not header:
        raise AuthError(f"missing {SIGNATURE_HEADER} header: a PagerDuty webhook secret is configured")
    presented = [part.strip()[3:] for part in header.split(",") if part.strip().startswith("v1=")]
    if not presented:
        raise AuthError(f"{SIGNATURE_HEADER} has no v1= signature")
    if not hmac_sha256_matches(body, presented, secrets):
        raise AuthError(f"{SIGNATURE_HEADER} does not match the body under any configured secret")


def event_id(payload: Mapping[str, Any]) -> str | None:
    event = payload.get("event")
    identifier = event.get("id") if isinstance(event, Mapping) else None
    return identifier if isinstance(identifier, str) and identifier else None


def event_type(payload: Mapping[str, Any]) -> str:
    event = payload.get("event")
    kind = event.get("event_type") if isinstance(event, Mapping) else None
    return kind if isinstance(kind, str) and kind else "unknown"


def parse_delivery(payload: Mapping[str, Any]) -> list[Event]:
    event = Node(payload).node("event")
    kind = event.text("event_type")
    if event.opt_text("resource_type") not in (None, "incident") or not kind.startswith("incident."):
        return []  # services, and other resources: nothing shipscope measures
    occurred = event.time("occurred_at")
    data = event.node("data")
    # incident.annotated and a few others carry the incident as data.incident, not as data itself.
    incident = data.node("incident") if data.opt_text("type") != "incident" and "incident" in data.data else data
    identifier = incident.ident("id")
    service_node = incident.opt_node("service") or data.opt_node("service")
    service = (service_node.opt_text("summary") or service_node.opt_text("id")) if service_node else None
    title = incident.opt_text("title") or incident.opt_text("summary") or f"PagerDuty incident {identifier}"
    agent = event.opt_node("agent")
    action = kind.removeprefix("incident.")
    events: list[Event] = []
    if "title" in incident.data and service:
        created = incident.opt_time("created_at")
        events.append(
            Incident(
                source=SOURCE,
                id=identifier,
                service=service,
                severity=incident.opt_text("urgency"),
                title=title,
                opened_at=created or occurred,
                acknowledged_at=occurred if action == "acknowledged" else None,
                resolved_at=occurred if action == "resolved" else None,
                labels=[f"pagerduty_number={incident.data['number']}"] if "number" in incident.data else None,
            )
        )
    details = {
        "incident_id": identifier,
        "event_type": kind,
        "agent": agent.opt_text("summary") if agent else None,
        "url": incident.opt_text("html_url"),
        "status": incident.opt_text("status"),
    }
    events.append(
        TimelineEvent(
            source=SOURCE,
            id=event.text("id"),
            kind="page",
            service=service,
            at=occurred,
            title=f"PagerDuty {action.replace('_', ' ')}: {title}",
            details=timeline_details(details),
        )
    )
    return events

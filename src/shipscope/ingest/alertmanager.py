"""Prometheus Alertmanager webhook notifications → incidents and alert timeline events.

Alertmanager posts a whole alert group each time (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config):
every alert in it, firing or resolved. Each alert is one incident, keyed by its fingerprint and its ``startsAt``:
the same alert firing again after it resolved is a new incident, while repeated notifications of one firing (the
group is re-sent every ``repeat_interval``) and its resolution, in any order, are the same one.

Old payloads (version 0–3) carry no per-alert ``status`` or ``fingerprint``: the group's status stands in for the
first, and a digest of the labels, which is what Alertmanager's fingerprint is made of, for the second.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from shipscope.errors import InputError
from shipscope.events import Event, Incident, TimelineEvent, timeline_details
from shipscope.ingest.payload import Node

SOURCE: Final = "alertmanager"
SERVICE_LABELS: Final = ("service", "app", "application", "job")
"""The labels naming the affected service, first present wins."""
UNKNOWN_SERVICE: Final = "unknown"
_STATUSES: Final = frozenset({"firing", "resolved"})


def _strings(node: Node, key: str) -> dict[str, str]:
    values = node.data.get(key)
    if values is None:
        return {}
    if not isinstance(values, Mapping) or not all(isinstance(value, str) for value in values.values()):
        raise InputError(f"{node.where(key)}: expected an object of strings")
    return {str(name): value for name, value in values.items()}


def fingerprint_of(labels: Mapping[str, str]) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name in sorted(labels):
        digest.update(f"{name}\0{labels[name]}\0".encode())
    return digest.hexdigest()


def service_of(labels: Mapping[str, str], service_labels: Sequence[str] = SERVICE_LABELS) -> str:
    return next((labels[name] for name in service_labels if labels.get(name)), UNKNOWN_SERVICE)


def _ends_at(alert: Node) -> datetime | None:
    ends = alert.opt_time("endsAt")
    # Go's zero time (0001-01-01T00:00:00Z) is what Alertmanager sends for "not ended".
    return ends if ends is not None and ends.year > 1 else None


def parse_delivery(payload: Mapping[str, Any]) -> list[Event]:
    root = Node(payload)
    group_status = root.opt_text("status")
    receiver = root.opt_text("receiver")
    if "alerts" not in payload:
        raise InputError("alerts: required field is missing")
    alerts = root.nodes("alerts")
    events: list[Event] = []
    for alert in alerts:
        labels = _strings(alert, "labels")
        annotations = _strings(alert, "annotations")
        status = alert.opt_text("status") or group_status
        if status not in _STATUSES:
            raise InputError(f"{alert.where('status')}: expected firing or resolved, got {status!r}")
        starts = alert.time("startsAt")
        ends = _ends_at(alert)
        fingerprint = alert.opt_text("fingerprint") or fingerprint_of(labels)
        key = f"{fingerprint}-{int(starts.timestamp())}"
        service = service_of(labels)
        title = annotations.get("summary") or labels.get("alertname") or f"alert {fingerprint}"
        resolved_at = ends if status == "resolved" else None
        events.append(
            Incident(
                source=SOURCE,
                id=key,
                service=service,
                severity=labels["severity"].lower() if labels.get("severity") else None,
                title=title,
                opened_at=starts,
                resolved_at=resolved_at,
                labels=sorted(f"{name}={value}" for name, value in labels.items()),
            )
        )
        if status == "resolved" and resolved_at is None:
            continue  # resolved at an unknown time: the incident stays open rather than closing at a guess
        details = {
            "status": status,
            "incident_id": key,
            "fingerprint": fingerprint,
            "receiver": receiver,
            "labels": labels,
            "annotations": annotations,
            "generator_url": alert.opt_text("generatorURL"),
        }
        events.append(
            TimelineEvent(
                source=SOURCE,
                id=f"{key}-{status}",
                kind="alert",
                service=service,
                at=resolved_at or starts,
                title=f"{'Resolved' if status == 'resolved' else 'Firing'}: {title}",
                details=timeline_details(details),
            )
        )
    return events

"""Kubernetes events (``v1 Event`` objects, as event exporters post them) → ``infra`` timeline events.

An event exporter's webhook sink posts each Event object: ``{metadata {uid, namespace}, involvedObject {kind, name,
namespace, labels?}, reason, message, type (Normal or Warning), count, firstTimestamp, lastTimestamp, eventTime}``
(https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/). A repeated event keeps its uid
and counts up: each count is its own timeline entry. The service is the ``?service=`` of the webhook's URL, else
the object's ``app.kubernetes.io/name`` or ``app`` label, else none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from shipscope.errors import InputError
from shipscope.events import Event, TimelineEvent, timeline_details
from shipscope.ingest.payload import Node

SOURCE: Final = "kubernetes"
_SERVICE_LABELS: Final = ("app.kubernetes.io/name", "app")


def delivery_id(payload: Mapping[str, Any]) -> str:
    """The event's uid and count: a repeat of the event is a new delivery, a re-sent one is not."""
    metadata = payload.get("metadata")
    uid = metadata.get("uid") if isinstance(metadata, Mapping) else None
    return f"{uid}-{payload.get('count') or 1}"


def parse_delivery(payload: Mapping[str, Any], service: str | None = None) -> list[Event]:
    root = Node(payload)
    if root.opt_text("kind") not in (None, "Event"):
        raise InputError(f"kind: expected Event, got {root.data['kind']!r}")
    metadata = root.node("metadata")
    metadata.text("uid")
    involved = root.node("involvedObject")
    at = root.opt_time("lastTimestamp") or root.opt_time("eventTime") or root.opt_time("firstTimestamp")
    if at is None:
        raise InputError("lastTimestamp: required (or eventTime, or firstTimestamp)")
    labels = involved.data.get("labels")
    labelled = (
        next((labels[name] for name in _SERVICE_LABELS if isinstance(labels.get(name), str)), None)
        if isinstance(labels, Mapping)
        else None
    )
    kind, name = involved.text("kind"), involved.text("name")
    namespace = involved.opt_text("namespace") or metadata.opt_text("namespace")
    reason = root.opt_text("reason") or "Event"
    severity = root.opt_text("type") or "Normal"
    count = root.opt_integer("count") or 1
    where = f"{kind}/{name}" + (f" in {namespace}" if namespace else "")
    message = root.opt_text("message") or ""
    details = {"reason": reason, "type": severity, "object": where, "message": message, "count": count}
    return [
        TimelineEvent(
            source=SOURCE,
            id=delivery_id(payload),
            kind="infra",
            service=service or labelled,
            at=at,
            title=f"{severity} {reason}: {where}" + (f": {message}" if message else ""),
            details=timeline_details(details),
        )
    ]

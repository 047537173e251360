"""Alerts received from Alertmanager, forwarded to PagerDuty's Events API v2 with what on-call needs at 3 AM: the
service's last production deploy (sha, time, actor, image digest, pipeline URL), its gate, canary and smoke
verdicts, the changes it shipped, and the rollback runbook.

The dedup key is the incident's id (the alert's fingerprint and start), so a resolution closes the page its firing
opened, and a notification Alertmanager repeats updates that page instead of opening another.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from shipscope.config import Settings
from shipscope.events import Event, Incident
from shipscope.ingest import alertmanager
from shipscope.integrations.http import OutboundRequest
from shipscope.integrations.pagerduty import alert_event_request
from shipscope.metrics.common import MetricsConfig
from shipscope.metrics.incidents import deploy_context
from shipscope.store import Store

_SOURCE_LABELS = ("instance", "pod", "host", "node")


def _labels(incident: Incident) -> dict[str, str]:
    return dict(label.split("=", 1) for label in incident.labels or () if "=" in label)


def forward_requests(
    store: Store, events: Sequence[Event], settings: Settings, config: MetricsConfig
) -> list[OutboundRequest]:
    """One Events API v2 request per alert of a notification: a trigger with deploy context, or a resolve."""
    key = settings.pagerduty_routing_key.strip()
    if not key:
        return []
    requests: list[OutboundRequest] = []
    for incident in events:
        if not isinstance(incident, Incident) or incident.source != alertmanager.SOURCE:
            continue
        labels = _labels(incident)
        details: dict[str, object] = {"service": incident.service, "alert_labels": labels}
        links = {"Rollback runbook": settings.runbook_url}
        if incident.resolved_at is None:
            context = deploy_context(store, incident.service, incident.opened_at, config)
            if context is not None:
                details.update(context.details())
                links["Deploy pipeline"] = context.deployment.url or ""
            else:
                details["last_deploy"] = "no production deploy of the service in the last 24 h"
            details["runbook_url"] = settings.runbook_url or None
            if settings.dashboard_url:
                base = settings.dashboard_url.rstrip("/")
                links["Incident timeline"] = f"{base}/api/v1/incidents/{quote(incident.id, safe='')}/timeline"
        source = next((labels[name] for name in _SOURCE_LABELS if labels.get(name)), incident.service)
        requests.append(
            alert_event_request(
                key,
                dedup_key=f"shipscope-{incident.id}",
                resolve=incident.resolved_at is not None,
                summary=f"[{incident.service}] {incident.title}",
                source=source,
                severity=incident.severity,
                at=incident.opened_at,
                component=incident.service,
                custom_details={name: value for name, value in details.items() if value not in (None, "", [])},
                links=links,
                events_url=settings.pagerduty_events_url,
            )
        )
    return requests

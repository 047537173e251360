"""PagerDuty: a note on an incident (REST API), alert events and change events (Events API v2).

Events API v2 (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/): ``POST /v2/enqueue`` with
``{routing_key, event_action: trigger|resolve, dedup_key, payload: {summary, source, severity, timestamp,
component, group, class, custom_details}, links, client}``; a resolve names the trigger's ``dedup_key``.
Change events (https://developer.pagerduty.com/docs/events-api-v2/send-change-events/): ``POST /v2/change/enqueue``
with ``{routing_key, payload: {summary, timestamp, source, custom_details}, links}``. Both answer 202.

https://developer.pagerduty.com/api-reference/3c0ad6ec5b0ef-create-a-note-on-an-incident — headers
``Authorization: Token token=<API key>``, ``From: <email of a PagerDuty user>`` and
``Accept: application/vnd.pagerduty+json;version=2``; body ``{"note": {"content": …}}``.

Notes are configured by ``PAGERDUTY_API_TOKEN`` and ``PAGERDUTY_FROM``; ``PAGERDUTY_API_URL`` replaces
https://api.pagerduty.com. A deployment marker is a change event, sent when ``PAGERDUTY_CHANGE_ROUTING_KEY`` (the
service's Change Events integration key) is set, for production environments (``prod*``, or the comma-separated
globs of ``PAGERDUTY_CHANGE_ENVIRONMENTS``); ``PAGERDUTY_EVENTS_URL`` replaces https://events.pagerduty.com.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from fnmatch import fnmatch
from typing import Any
from urllib.parse import quote

from shipscope.deploy.context import DeployInfo
from shipscope.errors import InputError
from shipscope.integrations.http import OutboundRequest

NAME = "pagerduty"


def note_request(incident_id: str, content: str, environ: Mapping[str, str]) -> OutboundRequest:
    token = environ.get("PAGERDUTY_API_TOKEN", "").strip()
    sender = environ.get("PAGERDUTY_FROM", "").strip()
    if not token or not sender:
        raise InputError("a note on a PagerDuty incident needs PAGERDUTY_API_TOKEN and PAGERDUTY_FROM")
    base = (environ.get("PAGERDUTY_API_URL", "").strip() or "https://api.pagerduty.com").rstrip("/")
    return OutboundRequest(
        NAME,
        "POST",
        f"{base}/incidents/{quote(incident_id, safe='')}/notes",
        {
            "Authorization": f"Token token={token}",
            "From": sender,
            "Accept": "application/vnd.pagerduty+json;version=2",
            "Content-Type": "application/json",
        },
        {"note": {"content": content[:25000]}},
        secrets=(token,),
        what=f"add a note to incident {incident_id}",
    )


EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
CHANGE_EVENTS_URL = "https://events.pagerduty.com/v2/change/enqueue"
_SEVERITIES = {
    "critical": "critical",
    "sev1": "critical",
    "p1": "critical",
    "error": "error",
    "high": "error",
    "sev2": "error",
    "p2": "error",
    "warning": "warning",
    "moderate": "warning",
    "sev3": "warning",
    "p3": "warning",
}


def severity_of(severity: str | None) -> str:
    """An alert's severity as one of the four the Events API takes (critical, error, warning, info)."""
    return _SEVERITIES.get((severity or "").strip().lower(), "info")


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alert_event_request(
    routing_key: str,
    *,
    dedup_key: str,
    resolve: bool,
    summary: str,
    source: str,
    severity: str | None,
    at: datetime,
    component: str | None,
    custom_details: Mapping[str, Any],
    links: Mapping[str, str],
    events_url: str = EVENTS_URL,
) -> OutboundRequest:
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": "resolve" if resolve else "trigger"}
    body["dedup_key"] = dedup_key
    if not resolve:
        payload: dict[str, Any] = {
            "summary": summary[:1024],
            "source": source,
            "severity": severity_of(severity),
            "timestamp": _timestamp(at),
            "custom_details": dict(custom_details),
        }
        if component:
            payload["component"] = component
        body["payload"] = payload
        body["links"] = [{"href": href, "text": text} for text, href in links.items() if href]
        body["client"] = "shipscope"
    return OutboundRequest(
        NAME,
        "POST",
        events_url,
        {"Content-Type": "application/json"},
        body,
        secrets=(routing_key,),
        what=f"{'resolve' if resolve else 'trigger'} {dedup_key}",
    )


def change_event_request(
    routing_key: str,
    *,
    summary: str,
    source: str,
    at: datetime,
    custom_details: Mapping[str, Any],
    links: Mapping[str, str],
    url: str = CHANGE_EVENTS_URL,
) -> OutboundRequest:
    body = {
        "routing_key": routing_key,
        "payload": {
            "summary": summary[:1024],
            "timestamp": _timestamp(at),
            "source": source,
            "custom_details": dict(custom_details),
        },
        "links": [{"href": href, "text": text} for text, href in links.items() if href],
    }
    return OutboundRequest(
        NAME, "POST", url, {"Content-Type": "application/json"}, body, secrets=(routing_key,), what="change event"
    )


def configured(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("PAGERDUTY_CHANGE_ROUTING_KEY", "").strip())


def _production(environment: str, environ: Mapping[str, str]) -> bool:
    patterns = [part.strip() for part in environ.get("PAGERDUTY_CHANGE_ENVIRONMENTS", "prod*").split(",")]
    return any(fnmatch(environment.lower(), pattern.lower()) for pattern in patterns if pattern)


def marker_requests(info: DeployInfo, status: str, environ: Mapping[str, str], at: datetime) -> list[OutboundRequest]:
    """A change event for a production deploy (none for other environments): PagerDuty shows it beside the
    service's incidents, so on-call sees what changed."""
    if not _production(info.environment, environ):
        return []
    base = (environ.get("PAGERDUTY_EVENTS_URL", "").strip() or "https://events.pagerduty.com").rstrip("/")
    details = {
        "service": info.service,
        "environment": info.environment,
        "version": info.version,
        "sha": info.sha,
        "image_digest": info.image_digest,
        "actor": info.actor,
        "status": status,
        "deployment_id": info.id,
    }
    return [
        change_event_request(
            environ["PAGERDUTY_CHANGE_ROUTING_KEY"].strip(),
            summary=f"Deployed {info.label} ({status})",
            source=info.repo or info.service,
            at=at,
            custom_details={name: value for name, value in details.items() if value},
            links={"Pipeline": info.url or ""},
            url=f"{base}/v2/change/enqueue",
        )
    ]

"""One incident in context: the deploys it may follow from, with the signal and confidence of each link, and one
ordered timeline around it (deploys and their changes, pipeline runs, gate, canary and smoke verdicts, alerts,
pages, flag toggles, infra events, rollbacks), each item with the version that was running then.

Correlation, strongest first (every link is shown with its signal, never folded into a ratio):

- ``explicit``: the incident names the deployment (``caused_by_deployment_id``): certain;
- ``version label``: the alert's ``version`` label is the version a deploy of the service shipped: high;
- ``same service within N minutes``: a production deploy of the service finished at most N minutes (default 60)
  before it opened: medium;
- ``same service within the lookback``: an earlier production deploy of the service in the lookback (24 h): low.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from shipscope.metrics.common import DEFAULT_CONFIG, Filters, MetricsConfig, Window, as_aware, in_window, iso_utc
from shipscope.metrics.listings import (
    DeploymentRow,
    IncidentRow,
    ShippedChange,
    deployment_detail,
    deployment_list,
    incident_list,
)
from shipscope.store import Store, schema

LOOKBACK = timedelta(hours=24)
NEAR = timedelta(minutes=60)
_AFTER = timedelta(minutes=30)
"""How long after the resolution the timeline goes on: the verification, the rollback's own aftermath."""
_CONFIDENCE = {"explicit": "certain", "version label": "high", "near": "medium", "lookback": "low"}


@dataclass(frozen=True)
class DeployLink:
    deployment: DeploymentRow
    changes: tuple[ShippedChange, ...]
    signal: str
    """explicit, version label, near or lookback (see the module's text)."""
    minutes_before: float | None

    @property
    def confidence(self) -> str:
        return _CONFIDENCE[self.signal]

    @property
    def described(self) -> str:
        if self.signal == "near":
            return f"same service, deployed {self.minutes_before:.0f} min before"
        if self.signal == "lookback":
            hours = LOOKBACK.total_seconds() / 3600
            return f"same service, deployed {self.minutes_before:.0f} min before (within {hours:g} h)"
        return "named by the incident" if self.signal == "explicit" else "the alert's version label"

    def to_json(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment.to_json(),
            "changes": [change.to_json() for change in self.changes],
            "signal": self.signal,
            "described": self.described,
            "confidence": self.confidence,
            "minutes_before": None if self.minutes_before is None else round(self.minutes_before, 1),
        }


@dataclass(frozen=True)
class TimelineItem:
    at: datetime
    kind: str
    title: str
    version: str | None
    """The version this item names, else the one running in production then."""
    source: str
    details: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "at": iso_utc(self.at),
            "kind": self.kind,
            "title": self.title,
            "version": self.version,
            "source": self.source,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class IncidentTimeline:
    incident: IncidentRow
    links: tuple[DeployLink, ...]
    items: tuple[TimelineItem, ...]
    window: Window

    def to_json(self) -> dict[str, Any]:
        return {
            "incident": self.incident.to_json(),
            "links": [link.to_json() for link in self.links],
            "window": self.window.to_json(),
            "items": [item.to_json() for item in self.items],
        }

    def to_markdown(self) -> str:
        """The timeline as the postmortem's starting point."""
        incident = self.incident
        lines = [
            f"# {incident.title}",
            "",
            f"- Incident: `{incident.id}` ({incident.source}), service **{incident.service}**, "
            f"severity {incident.severity or 'unknown'}",
            f"- Opened {iso_utc(incident.opened_at)}"
            + (f", acknowledged {iso_utc(incident.acknowledged_at)}" if incident.acknowledged_at else "")
            + (f", resolved {iso_utc(incident.resolved_at)}" if incident.resolved_at else ", not resolved"),
        ]
        if incident.resolution_seconds is not None:
            lines.append(f"- Time to resolve: {incident.resolution_seconds / 60:.0f} min")
        lines += ["", "## Deploys before it", ""]
        if not self.links:
            lines.append(f"No production deploy of {incident.service} in the {LOOKBACK} before it opened.")
        for link in self.links:
            deployment = link.deployment
            lines.append(
                f"- `{deployment.version or deployment.sha[:12]}` to {deployment.environment} by "
                f"{deployment.actor or 'unknown'}, finished {iso_utc(deployment.finished_at) or 'not finished'} "
                f"({deployment.status}): {link.described}, confidence {link.confidence}"
            )
            for change in link.changes:
                subject = (change.message or "").splitlines()[0] if change.message else ""
                lines.append(f"  - {change.sha[:12]} {_cell(subject)} ({change.author or 'unknown'})")
        lines += ["", "## Timeline", "", "| time (UTC) | what | version |", "|---|---|---|"]
        for item in self.items:
            moment = item.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
            lines.append(f"| {moment} | {_cell(item.title)} | {_cell(item.version or '')} |")
        return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _link(
    deployment: DeploymentRow, incident: IncidentRow, explicit: str | None, versions: set[str]
) -> tuple[str, float | None] | None:
    finished = deployment.finished_at or deployment.started_at
    minutes = None if finished is None else (incident.opened_at - finished).total_seconds() / 60
    if deployment.id == explicit:
        return "explicit", minutes
    if not deployment.production or deployment.kind == "rollback" or minutes is None or minutes < 0:
        return None
    if deployment.version and deployment.version in versions:
        return "version label", minutes
    return ("near" if minutes <= NEAR.total_seconds() / 60 else "lookback"), minutes


def find_incident(
    store: Store,
    incident_id: str,
    source: str | None = None,
    config: MetricsConfig = DEFAULT_CONFIG,
    *,
    definitions: str = "shipscope",
) -> IncidentRow | None:
    """The incident ``incident_id`` (of ``source``, when given), with DORA's link and recovery; None if unknown."""
    incidents = schema.incidents
    query = sa.select(incidents.c.source, incidents.c.opened_at, incidents.c.service).where(
        incidents.c.id == incident_id
    )
    if source is not None:
        query = query.where(incidents.c.source == source)
    found = store.query(query.order_by(incidents.c.source).limit(1))
    if not found:
        return None
    opened = as_aware(found[0]["opened_at"])
    assert opened is not None  # a required column
    window = Window(opened - LOOKBACK, opened + timedelta(seconds=1))
    listed = incident_list(store, window, Filters(service=found[0]["service"]), config, definitions=definitions)
    return next(row for row in listed.rows if row.id == incident_id and row.source == found[0]["source"])


def incident_timeline(
    store: Store,
    incident_id: str,
    source: str | None = None,
    config: MetricsConfig = DEFAULT_CONFIG,
    *,
    definitions: str = "shipscope",
    now: datetime | None = None,
) -> IncidentTimeline | None:
    """The incident ``incident_id`` (of ``source``, when given) in context; None when there is none."""
    incident = find_incident(store, incident_id, source, config, definitions=definitions)
    if incident is None:
        return None
    opened, filters = incident.opened_at, Filters(service=incident.service)
    before = Window(opened - LOOKBACK, opened + timedelta(seconds=1))
    versions = {label.split("=", 1)[1] for label in incident.labels if label.startswith("version=")}
    earlier = deployment_list(store, before, filters, config, definitions=definitions, weekly=False).rows
    links: list[DeployLink] = []
    for deployment in sorted(earlier, key=lambda listed: listed.finished_at or listed.started_at or opened):
        explicit = incident.deployment_id if incident.linked_by == "explicit" else None
        linked = _link(deployment, incident, explicit, versions)
        if linked is None:
            continue
        detail = deployment_detail(store, deployment.id, deployment.source, config, definitions=definitions)
        links.append(DeployLink(deployment, detail.changes if detail else (), *linked))
    links.sort(key=lambda link: (list(_CONFIDENCE).index(link.signal), link.minutes_before or 0.0))

    moments = [link.deployment.started_at or link.deployment.finished_at for link in links]
    since = min([opened - timedelta(hours=1), *(moment for moment in moments if moment is not None)])
    end = (incident.resolved_at or now or datetime.now(UTC)) + _AFTER
    window = Window(since - timedelta(minutes=5), max(end, opened + _AFTER))
    items = _items(store, incident, window, earlier, config, definitions)
    return IncidentTimeline(incident, tuple(links), items, window)


def _items(
    store: Store,
    incident: IncidentRow,
    window: Window,
    earlier: tuple[DeploymentRow, ...],
    config: MetricsConfig,
    definitions: str,
) -> tuple[TimelineItem, ...]:
    filters = Filters(service=incident.service)
    deployments = deployment_list(store, window, filters, config, definitions=definitions, weekly=False).rows
    items: list[TimelineItem] = []
    for deployment in deployments:
        moment = deployment.finished_at or deployment.started_at
        if moment is None:
            continue
        what = "Rollback" if deployment.kind == "rollback" else "Deploy"
        items.append(
            TimelineItem(
                moment,
                "rollback" if deployment.kind == "rollback" else "deployment",
                f"{what} of {deployment.service} {deployment.version or deployment.sha[:12]} to "
                f"{deployment.environment}: {deployment.status}"
                + (f" (by {deployment.actor})" if deployment.actor else ""),
                deployment.version or deployment.sha[:12],
                deployment.source,
                {
                    "deployment_id": deployment.id,
                    "sha": deployment.sha,
                    "image_digest": deployment.image_digest,
                    "rollback_of": deployment.rollback_of,
                    "url": deployment.url,
                },
            )
        )
    shas = sorted({deployment.sha for deployment in deployments})
    runs = schema.pipeline_runs
    for run in (
        store.query(
            sa.select(runs)
            .where(runs.c.sha.in_(shas), in_window(runs.c.created_at, window))
            .order_by(runs.c.created_at)
        )
        if shas
        else []
    ):
        moment = as_aware(run["finished_at"]) or as_aware(run["created_at"])
        assert moment is not None
        items.append(
            TimelineItem(
                moment,
                "pipeline_run",
                f"Pipeline {run['workflow']} on {run['branch']} ({run['sha'][:12]}): {run['status']}",
                None,
                run["source"],
                {"run_id": run["id"], "repo": run["repo"], "url": run["url"]},
            )
        )
    events = schema.timeline_events
    for event in store.query(
        sa.select(events)
        .where(sa.or_(events.c.service == incident.service, events.c.service.is_(None)), in_window(events.c.at, window))
        .order_by(events.c.at, events.c.id)
    ):
        details = orjson.loads(event["details"]) if event["details"] else {}
        if not isinstance(details, dict):
            details = {"details": details}
        moment = as_aware(event["at"])
        assert moment is not None
        version = details.get("version")
        items.append(
            TimelineItem(
                moment,
                event["kind"],
                event["title"],
                str(version) if version else None,
                event["source"],
                details,
            )
        )
    items += [
        TimelineItem(moment, kind, f"Incident {verb}: {incident.title}", None, incident.source, {"id": incident.id})
        for moment, kind, verb in (
            (incident.opened_at, "incident_opened", "opened"),
            (incident.acknowledged_at, "incident_acknowledged", "acknowledged"),
            (incident.resolved_at, "incident_resolved", "resolved"),
        )
        if moment is not None
    ]
    items.sort(key=lambda item: (item.at, item.kind, item.title))
    running = sorted(
        (deployment.finished_at, deployment.version or deployment.sha[:12])
        for deployment in {(listed.source, listed.id): listed for listed in (*earlier, *deployments)}.values()
        if deployment.production and deployment.status == "success" and deployment.finished_at is not None
    )
    return tuple(item if item.version else _with_running_version(item, running) for item in items)


def _with_running_version(item: TimelineItem, running: list[tuple[datetime, str]]) -> TimelineItem:
    live = [version for finished, version in running if finished <= item.at]
    if not live:
        return item
    return TimelineItem(item.at, item.kind, item.title, live[-1], item.source, item.details)


# ----- what on-call needs on the page ------------------------------------------------------------------------------

VERDICT_KINDS = ("gate", "analysis", "smoke")
_SHOWN_CHANGES = 10


@dataclass(frozen=True)
class DeployContext:
    """The last production deploy of a service before a moment, as a page's details show it."""

    deployment: DeploymentRow
    verdicts: Mapping[str, str]
    """Timeline kind (gate, analysis, smoke) → the last verdict's title for this deploy."""
    changes: tuple[ShippedChange, ...]

    def details(self) -> dict[str, Any]:
        deployment = self.deployment
        return {
            "last_deploy_id": deployment.id,
            "last_deploy_version": deployment.version,
            "last_deploy_sha": deployment.sha,
            "last_deploy_at": iso_utc(deployment.finished_at or deployment.started_at),
            "last_deploy_actor": deployment.actor,
            "last_deploy_image_digest": deployment.image_digest,
            "last_deploy_environment": deployment.environment,
            "last_deploy_status": deployment.status,
            "pipeline_url": deployment.url,
            **{f"{kind}_verdict": title for kind, title in self.verdicts.items()},
            "changes": [
                f"{change.sha[:12]} {(change.message or '').splitlines()[0] if change.message else ''}".strip()
                for change in self.changes[:_SHOWN_CHANGES]
            ],
        }


def deploy_context(
    store: Store, service: str, at: datetime, config: MetricsConfig = DEFAULT_CONFIG
) -> DeployContext | None:
    """The last production deploy of ``service`` started before ``at`` (within the lookback), its gate, canary and
    smoke verdicts and the changes it shipped; None when there is none."""
    window = Window(at - LOOKBACK, at + timedelta(seconds=1))
    rows = deployment_list(store, window, Filters(service=service), config, weekly=False).rows
    started = [row for row in rows if row.production and (row.started_at or row.finished_at or at) <= at]
    if not started:
        return None
    last = max(started, key=lambda row: row.started_at or row.finished_at or at)
    events = schema.timeline_events
    verdicts: dict[str, str] = {}
    for event in store.query(
        sa.select(events.c.kind, events.c.title, events.c.details)
        .where(events.c.service == service, events.c.kind.in_(VERDICT_KINDS), in_window(events.c.at, window))
        .order_by(events.c.at)
    ):
        details = orjson.loads(event["details"]) if event["details"] else {}
        if isinstance(details, dict) and details.get("deployment_id") == last.id:
            verdicts[event["kind"]] = event["title"]
    detail = deployment_detail(store, last.id, last.source, config)
    return DeployContext(last, verdicts, detail.changes if detail else ())

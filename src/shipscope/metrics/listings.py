"""The rows behind the numbers: deployments, one deployment with the changes it shipped, incidents, and the values
the filters can take.

Failure signals, shipped changes, lead times and incident links come from ``dora_report`` (explain), so a list
shows what the DORA numbers counted, by the same definitions. What DORA does not count (a staging deployment, a
deployment whose stream has no earlier production deploy) is still listed, without those.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa

from shipscope.errors import InputError
from shipscope.metrics.common import (
    DEFAULT_CONFIG,
    NO_FILTERS,
    Filters,
    MetricsConfig,
    Window,
    as_aware,
    in_window,
    iso_utc,
    job_belongs_to,
    matches_any,
    monday,
    teams_members,
)
from shipscope.metrics.dora import DEFINITIONS, FAILURE_SIGNALS, DeploymentRecord, DoraReport, dora_report, parse_labels
from shipscope.store import Store, schema

__all__ = [
    "DeploymentDetail",
    "DeploymentFilter",
    "DeploymentList",
    "DeploymentRow",
    "DeploymentWeek",
    "FilterOptions",
    "IncidentList",
    "IncidentRow",
    "ShippedChange",
    "DeploymentTotal",
    "deployment_detail",
    "deployment_totals",
    "deployment_list",
    "filter_options",
    "incident_list",
]

LIST_LIMIT = 500
"""Rows a list returns at most (newest first); ``total`` says how many matched."""

_deployments = schema.deployments
_incidents = schema.incidents
_changes = schema.changes


@dataclass(frozen=True)
class DeploymentFilter:
    """Narrows the deployment list beyond the metric filters. Text fields match a case-insensitive substring;
    ``failure_signal`` is a signal name, or ``any`` for every failed deployment."""

    version: str | None = None
    sha: str | None = None
    image_digest: str | None = None
    actor: str | None = None
    status: str | None = None
    kind: str | None = None
    failure_signal: str | None = None

    def __post_init__(self) -> None:
        allowed = ("any", *FAILURE_SIGNALS)
        if self.failure_signal is not None and self.failure_signal not in allowed:
            raise InputError(f"failure_signal: expected one of {', '.join(allowed)}, got {self.failure_signal!r}")

    def to_json(self) -> dict[str, str]:
        return {name: value for name, value in self.__dict__.items() if value is not None}


@dataclass(frozen=True)
class DeploymentRow:
    source: str
    id: str
    service: str
    environment: str
    sha: str
    version: str | None
    image_digest: str | None
    actor: str | None
    url: str | None
    started_at: datetime | None
    finished_at: datetime | None
    status: str
    kind: str
    rollback_of: str | None
    production: bool
    counted: bool
    """Counted by DORA in the window (a successful production deployment)."""
    failure_signals: tuple[str, ...] = ()
    incident_ids: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return bool(self.failure_signals)

    def to_json(self) -> dict[str, Any]:
        shape = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in ("started_at", "finished_at"):
            shape[name] = iso_utc(shape[name])
        shape["failure_signals"] = list(self.failure_signals)
        shape["incident_ids"] = list(self.incident_ids)
        shape["failed"] = self.failed
        return shape


@dataclass(frozen=True)
class DeploymentList:
    window: Window
    rows: tuple[DeploymentRow, ...]
    total: int
    """How many deployments matched; ``rows`` holds the newest ``LIST_LIMIT``."""
    weeks: tuple[DeploymentWeek, ...] = ()
    """Every matched deployment counted by ISO week (Monday, UTC) of its finish, oldest first."""


@dataclass(frozen=True)
class DeploymentWeek:
    week: date
    deployments: int
    failed: int
    """With a DORA failure signal."""


@dataclass(frozen=True)
class ShippedChange:
    repo: str
    sha: str
    message: str | None
    author: str | None
    authored_at: datetime | None
    pr_number: int | None
    lead_time_seconds: float | None
    """None when DORA did not measure it (not a counted deployment, or no earlier production deploy)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "sha": self.sha,
            "message": self.message,
            "author": self.author,
            "authored_at": iso_utc(self.authored_at),
            "pr_number": self.pr_number,
            "lead_time_seconds": self.lead_time_seconds,
        }


@dataclass(frozen=True)
class DeploymentDetail:
    deployment: DeploymentRow
    changes: tuple[ShippedChange, ...]
    previous: DeploymentRow | None
    """The stream's (service and environment) deployment before this one."""
    incidents: tuple[IncidentRow, ...]
    lead_time_reason: str | None
    """Why the changes have no lead times, when they have none."""

    def to_json(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment.to_json(),
            "previous": self.previous.to_json() if self.previous is not None else None,
            "changes": [change.to_json() for change in self.changes],
            "lead_time_reason": self.lead_time_reason,
            "incidents": [incident.to_json() for incident in self.incidents],
        }


@dataclass(frozen=True)
class IncidentRow:
    source: str
    id: str
    service: str
    severity: str | None
    title: str
    opened_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    labels: tuple[str, ...]
    deployment_id: str | None
    """The deployment it is linked to: named by the incident, else DORA's link by time."""
    linked_by: str | None
    """``explicit`` or ``time``."""
    recovery_seconds: float | None

    @property
    def resolution_seconds(self) -> float | None:
        if self.resolved_at is None:
            return None
        return max(0.0, (self.resolved_at - self.opened_at).total_seconds())

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "id": self.id,
            "service": self.service,
            "severity": self.severity,
            "title": self.title,
            "opened_at": iso_utc(self.opened_at),
            "acknowledged_at": iso_utc(self.acknowledged_at),
            "resolved_at": iso_utc(self.resolved_at),
            "resolution_seconds": self.resolution_seconds,
            "labels": list(self.labels),
            "deployment_id": self.deployment_id,
            "linked_by": self.linked_by,
            "recovery_seconds": self.recovery_seconds,
        }


@dataclass(frozen=True)
class IncidentList:
    rows: tuple[IncidentRow, ...]
    total: int
    """How many incidents matched; ``rows`` holds the newest ``LIST_LIMIT``."""
    weeks: tuple[tuple[date, dict[str, int]], ...]
    """Every matched incident counted by ISO week (Monday, UTC) of its opening and by severity, oldest first."""


@dataclass(frozen=True)
class FilterOptions:
    repos: tuple[str, ...]
    services: tuple[str, ...]
    environments: tuple[str, ...]
    teams: tuple[str, ...]
    definitions: tuple[str, ...]
    statuses: tuple[str, ...]
    kinds: tuple[str, ...]
    failure_signals: tuple[str, ...] = field(default=FAILURE_SIGNALS)


# ----- deployments -------------------------------------------------------------------------------------------------


def _service_conditions(
    column: sa.ColumnElement[str], filters: Filters, config: MetricsConfig
) -> list[sa.ColumnElement[bool]]:
    """The service and team filters on a service column (deployments, incidents)."""
    conditions: list[sa.ColumnElement[bool]] = []
    if filters.service is not None:
        conditions.append(column == filters.service)
    members = teams_members(config, filters.team)
    if members is not None:
        conditions.append(column.in_(list(members)))
    return conditions


def _contains(column: sa.ColumnElement[Any], text: str | None) -> list[sa.ColumnElement[bool]]:
    if not text:
        return []
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return [sa.func.lower(column).like(f"%{escaped}%", escape="\\")]


def _counted(dora: DoraReport | None) -> dict[str, DeploymentRecord]:
    return {record.id: record for record in dora.overall.deployments} if dora is not None else {}


def _row(row: dict[str, Any], config: MetricsConfig, counted: dict[str, DeploymentRecord]) -> DeploymentRow:
    record = counted.get(row["id"])
    return DeploymentRow(
        source=row["source"],
        id=row["id"],
        service=row["service"],
        environment=row["environment"],
        sha=row["sha"],
        version=row["version"],
        image_digest=row["image_digest"],
        actor=row["actor"],
        url=row["url"],
        started_at=as_aware(row["started_at"]),
        finished_at=as_aware(row["finished_at"]),
        status=row["status"],
        kind=row["kind"] or "deploy",
        rollback_of=row["rollback_of"],
        production=matches_any(row["environment"], config.production_environments),
        counted=record is not None,
        failure_signals=record.failure_signals if record is not None else (),
        incident_ids=record.incident_ids if record is not None else (),
    )


def deployment_list(
    store: Store,
    window: Window,
    filters: Filters = NO_FILTERS,
    config: MetricsConfig = DEFAULT_CONFIG,
    narrow: DeploymentFilter = DeploymentFilter(),  # noqa: B008 - frozen, never mutated
    *,
    definitions: str = "shipscope",
    dora: DoraReport | None = None,
    limit: int = LIST_LIMIT,
    weekly: bool = True,
) -> DeploymentList:
    """Deployments finished (or, unfinished, started) in the window, newest first, with their DORA failure signals.

    ``filters``: service, team and environment (a case-insensitive glob, as in DORA); ``repo`` keeps the services
    that shipped one of the repository's changes in the window, as DORA does (deployments carry no repository).
    ``dora``: the DORA report of the same window, filters and definitions, when the caller has it already.
    ``weekly=False`` leaves ``weeks`` empty, so only the newest ``limit`` rows are read (a count gives ``total``).
    """
    if dora is None:
        dora = dora_report(store, window, filters, config, definitions=definitions)
    moment = sa.func.coalesce(_deployments.c.finished_at, _deployments.c.started_at)
    conditions = [
        in_window(moment, window),
        *_service_conditions(_deployments.c.service, filters, config),
        *_contains(_deployments.c.version, narrow.version),
        *_contains(_deployments.c.sha, narrow.sha),
        *_contains(_deployments.c.image_digest, narrow.image_digest),
        *_contains(_deployments.c.actor, narrow.actor),
    ]
    if narrow.status:
        conditions.append(_deployments.c.status == narrow.status)
    if narrow.kind:
        kind = sa.func.coalesce(_deployments.c.kind, "deploy")
        conditions.append(kind == narrow.kind)
    if filters.repo is not None:
        conditions.append(_deployments.c.service.in_(list(dora.services)))
    if filters.environment is not None:
        known = store.query(sa.select(_deployments.c.environment.label("name")).distinct())
        matching = [row["name"] for row in known if matches_any(row["name"], (filters.environment,))]
        conditions.append(_deployments.c.environment.in_(matching))
    query = (
        sa.select(_deployments)
        .where(*conditions)
        .order_by(moment.desc(), _deployments.c.id.desc(), _deployments.c.source)
    )
    counted = _counted(dora)
    if not weekly and narrow.failure_signal is None:
        total = store.query(sa.select(sa.func.count().label("total")).where(*conditions))[0]["total"]
        newest = [_row(row, config, counted) for row in store.query(query.limit(limit))]
        return DeploymentList(window, tuple(newest), int(total))
    rows = [_row(row, config, counted) for row in store.query(query)]
    signal = narrow.failure_signal
    if signal == "any":
        rows = [row for row in rows if row.failed]
    elif signal is not None:
        rows = [row for row in rows if signal in row.failure_signals]
    return DeploymentList(window, tuple(rows[:limit]), len(rows), _weeks(rows))


def finished_deployments_by_key(
    store: Store, keys: Collection[tuple[str, str]], config: MetricsConfig = DEFAULT_CONFIG
) -> list[DeploymentRow]:
    """The finished deployments of these (source, id) keys, oldest first, without DORA's view of them."""
    if not keys:
        return []
    rows = store.query(
        sa.select(_deployments)
        .where(
            sa.tuple_(_deployments.c.source, _deployments.c.id).in_(list(keys)),
            _deployments.c.finished_at.is_not(None),
        )
        .order_by(_deployments.c.finished_at, _deployments.c.id)
    )
    return [_row(row, config, {}) for row in rows]


def _weeks(rows: list[DeploymentRow]) -> tuple[DeploymentWeek, ...]:
    counts: dict[date, list[int]] = {}
    for row in rows:
        moment = row.finished_at or row.started_at
        if moment is None:
            continue
        week = counts.setdefault(monday(moment), [0, 0])
        week[0] += 1
        week[1] += row.failed
    return tuple(DeploymentWeek(week, total, failed) for week, (total, failed) in sorted(counts.items()))


def deployment_detail(
    store: Store,
    deployment_id: str,
    source: str | None = None,
    config: MetricsConfig = DEFAULT_CONFIG,
    *,
    definitions: str = "shipscope",
    now: datetime | None = None,
) -> DeploymentDetail | None:
    """One deployment with the changes it shipped and their lead times, its stream's previous deployment, and the
    incidents linked to it; None when no deployment has that id (in ``source``, when given).

    DORA is evaluated over ``[finished_at, now)`` for the deployment's service, so every later signal (a rollback,
    an incident opened since) shows.
    """
    query = sa.select(_deployments).where(_deployments.c.id == deployment_id)
    if source is not None:
        query = query.where(_deployments.c.source == source)
    found = store.query(query.order_by(_deployments.c.source).limit(1))
    if not found:
        return None
    row = found[0]
    finished = as_aware(row["finished_at"])
    dora: DoraReport | None = None
    end = max(now or datetime.now(UTC), (finished or datetime.min.replace(tzinfo=UTC)) + timedelta(seconds=1))
    if finished is not None:
        dora = dora_report(
            store, Window(finished, end), Filters(service=row["service"]), config, definitions=definitions
        )
    deployment = _row(row, config, _counted(dora))
    lead_times = {
        (record.repo, record.sha): record.lead_time_seconds
        for record in (dora.overall.changes if dora is not None else ())
        if record.deployment_id == deployment_id
    }
    changes = _shipped(store, deployment, lead_times)
    reason = None
    if changes and not lead_times:
        if not deployment.production:
            reason = "lead time is measured on production deployments only"
        elif not deployment.counted:
            reason = "lead time is measured on successful, finished deployments only"
        else:
            reason = "no earlier production deployment of the service: the first one's changes are not measured"
    previous_query = (
        sa.select(_deployments)
        .where(
            _deployments.c.service == row["service"],
            _deployments.c.environment == row["environment"],
            _deployments.c.finished_at < row["finished_at"],
        )
        .order_by(_deployments.c.finished_at.desc())
        .limit(1)
    )
    earlier = store.query(previous_query) if row["finished_at"] is not None else []
    window = Window(finished, end) if finished is not None else None
    incidents = (
        tuple(
            incident
            for incident in incident_list(
                store, window, Filters(service=row["service"]), config, definitions=definitions, dora=dora
            ).rows
            if incident.deployment_id == deployment_id
        )
        if window is not None
        else ()
    )
    return DeploymentDetail(
        deployment,
        changes,
        _row(earlier[0], config, {}) if earlier else None,
        incidents,
        reason,
    )


def _shipped(
    store: Store, deployment: DeploymentRow, lead_times: dict[tuple[str, str], float]
) -> tuple[ShippedChange, ...]:
    """The changes naming the deployment, else those of its sha (as DORA assigns them), with DORA's lead times."""
    columns = (
        _changes.c.repo,
        _changes.c.sha,
        _changes.c.message,
        _changes.c.author,
        _changes.c.authored_at,
        _changes.c.pr_number,
    )
    rows = store.query(sa.select(*columns).where(_changes.c.deployment_id == deployment.id))
    if not rows:
        rows = store.query(
            sa.select(*columns).where(_changes.c.sha == deployment.sha, _changes.c.deployment_id.is_(None))
        )
    keys = {(row["repo"], row["sha"]) for row in rows}
    missing = [key for key in lead_times if key not in keys]
    if missing:
        rows += store.query(sa.select(*columns).where(sa.tuple_(_changes.c.repo, _changes.c.sha).in_(missing)))
    changes = [
        ShippedChange(
            row["repo"],
            row["sha"],
            row["message"],
            row["author"],
            as_aware(row["authored_at"]),
            row["pr_number"],
            lead_times.get((row["repo"], row["sha"])),
        )
        for row in rows
    ]
    changes.sort(key=lambda change: (change.authored_at or datetime.min.replace(tzinfo=UTC), change.sha))
    return tuple(changes)


# ----- incidents ---------------------------------------------------------------------------------------------------


def incident_list(
    store: Store,
    window: Window,
    filters: Filters = NO_FILTERS,
    config: MetricsConfig = DEFAULT_CONFIG,
    *,
    definitions: str = "shipscope",
    dora: DoraReport | None = None,
    limit: int = LIST_LIMIT,
) -> IncidentList:
    """Incidents opened in the window, newest first, each with the deployment it is linked to (named by the
    incident, else DORA's link by time) and its recovery time as DORA measured it.

    ``filters``: service and team; ``repo`` keeps the services that shipped one of the repository's changes in the
    window, as DORA does. Incidents carry no environment: ``environment`` does not apply.
    """
    report = dora if dora is not None else dora_report(store, window, filters, config, definitions=definitions)
    linked: dict[str, str] = {}
    for record in report.overall.deployments:
        for incident_id in record.incident_ids:
            linked.setdefault(incident_id, record.id)
    recovery = {record.id: record.recovery_seconds for record in report.overall.recoveries if record.id is not None}
    conditions = [
        in_window(_incidents.c.opened_at, window),
        *_service_conditions(_incidents.c.service, filters, config),
    ]
    if filters.repo is not None:
        conditions.append(_incidents.c.service.in_(list(report.services)))
    query = sa.select(_incidents).where(*conditions).order_by(_incidents.c.opened_at.desc(), _incidents.c.id)
    rows = []
    for row in store.query(query):
        explicit = row["caused_by_deployment_id"]
        deployment_id = explicit or linked.get(row["id"])
        rows.append(
            IncidentRow(
                source=row["source"],
                id=row["id"],
                service=row["service"],
                severity=row["severity"],
                title=row["title"],
                opened_at=as_aware(row["opened_at"]) or window.since,
                acknowledged_at=as_aware(row["acknowledged_at"]),
                resolved_at=as_aware(row["resolved_at"]),
                labels=parse_labels(row["labels"]),
                deployment_id=deployment_id,
                linked_by=("explicit" if explicit else "time") if deployment_id else None,
                recovery_seconds=recovery.get(row["id"]),
            )
        )
    weeks: dict[date, dict[str, int]] = {}
    for incident in rows:
        severities = weeks.setdefault(monday(incident.opened_at), {})
        severities[incident.severity or "unknown"] = severities.get(incident.severity or "unknown", 0) + 1
    return IncidentList(tuple(rows[:limit]), len(rows), tuple(sorted(weeks.items())))


# ----- filter values -----------------------------------------------------------------------------------------------


def filter_options(store: Store, config: MetricsConfig = DEFAULT_CONFIG) -> FilterOptions:
    """The values the dashboard's filters offer: what the store holds, and the configured teams."""

    def distinct(*columns: sa.ColumnElement[Any]) -> tuple[str, ...]:
        values: set[str] = set()
        for column in columns:
            values.update(
                row["value"] for row in store.query(sa.select(column.label("value")).distinct()) if row["value"]
            )
        return tuple(sorted(values))

    return FilterOptions(
        repos=distinct(schema.pipeline_runs.c.repo, schema.pull_requests.c.repo),
        services=distinct(_deployments.c.service, _incidents.c.service),
        environments=distinct(_deployments.c.environment),
        teams=tuple(sorted(config.teams)),
        definitions=tuple(DEFINITIONS),
        statuses=distinct(_deployments.c.status),
        kinds=tuple(sorted({"deploy", *distinct(_deployments.c.kind)})),
    )


@dataclass(frozen=True)
class DeploymentTotal:
    """Deployments of one service to one environment with one status, over the whole store."""

    service: str
    environment: str
    status: str
    kind: str
    """deploy when the deployment names no kind."""
    count: int
    last_finished_at: datetime | None


def deployment_totals(store: Store) -> tuple[DeploymentTotal, ...]:
    """Every stored deployment counted by service, environment, status and kind, with the latest finish time."""
    deployments = _deployments
    kind = sa.func.coalesce(deployments.c.kind, "deploy").label("kind")
    query = (
        sa.select(
            deployments.c.service,
            deployments.c.environment,
            deployments.c.status,
            kind,
            sa.func.count().label("deployments"),
            sa.func.max(deployments.c.finished_at).label("last_finished_at"),
        )
        .group_by(deployments.c.service, deployments.c.environment, deployments.c.status, kind)
        .order_by(deployments.c.service, deployments.c.environment, deployments.c.status, kind)
    )
    return tuple(
        DeploymentTotal(
            row["service"],
            row["environment"],
            row["status"],
            row["kind"],
            int(row["deployments"]),
            as_aware(row["last_finished_at"]),
        )
        for row in store.query(query)
    )


# ----- runs with their jobs and steps (traces) ---------------------------------------------------------------------


@dataclass(frozen=True)
class StepRecord:
    number: int
    name: str
    stage: str
    status: str
    started_at: datetime
    finished_at: datetime


@dataclass(frozen=True)
class JobRecord:
    id: str
    name: str
    stage: str | None
    runner: str | None
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    failure_reason: str | None
    steps: tuple[StepRecord, ...]


@dataclass(frozen=True)
class RunRecord:
    source: str
    id: str
    attempt: int
    repo: str
    workflow: str
    trigger: str
    branch: str
    pr_number: int | None
    sha: str
    actor: str | None
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime
    url: str | None
    jobs: tuple[JobRecord, ...]


_Record = TypeVar("_Record", StepRecord, JobRecord, RunRecord)


def finished_runs(store: Store, window: Window) -> list[RunRecord]:
    """Every run attempt that finished in ``window``, oldest first, with its jobs (by ``job_belongs_to``) and their
    steps."""
    return _finished_run_records(store, in_window(schema.pipeline_runs.c.finished_at, window))


def finished_runs_by_key(store: Store, keys: Collection[tuple[str, str, int]]) -> list[RunRecord]:
    """The finished run attempts of these (source, run id, attempt) keys, as ``finished_runs`` gives them."""
    if not keys:
        return []
    runs = schema.pipeline_runs
    return _finished_run_records(store, sa.tuple_(runs.c.source, runs.c.id, runs.c.attempt).in_(list(keys)))


def _finished_run_records(store: Store, condition: sa.ColumnElement[bool]) -> list[RunRecord]:
    runs, jobs, steps = schema.pipeline_runs, schema.jobs, schema.steps
    latest = (
        sa.select(runs.c.source, runs.c.id, sa.func.max(runs.c.attempt).label("latest"))
        .group_by(runs.c.source, runs.c.id)
        .subquery("latest_attempts")
    )
    finished = (
        sa.select(runs, latest.c.latest)
        .join(latest, sa.and_(runs.c.source == latest.c.source, runs.c.id == latest.c.id))
        .where(runs.c.finished_at.is_not(None), condition)
        .subquery("finished_runs")
    )
    run_rows = store.query(sa.select(finished).order_by(finished.c.finished_at, finished.c.id, finished.c.attempt))
    if not run_rows:
        return []
    job_rows = store.query(
        sa.select(jobs, finished.c.attempt.label("run_attempt"))
        .select_from(jobs.join(finished, job_belongs_to(jobs, finished)))
        .order_by(jobs.c.created_at, jobs.c.id)
    )
    steps_of: dict[tuple[str, str], list[StepRecord]] = {}
    if job_rows:
        job_keys = sa.select(jobs.c.source, jobs.c.id).join(finished, job_belongs_to(jobs, finished))
        step_rows = store.query(
            sa.select(steps).where(sa.tuple_(steps.c.source, steps.c.job_id).in_(job_keys)).order_by(steps.c.number)
        )
        for row in step_rows:
            steps_of.setdefault((row["source"], row["job_id"]), []).append(_record(StepRecord, row))
    jobs_of: dict[tuple[str, str, int], list[JobRecord]] = {}
    for row in job_rows:
        job = _record(JobRecord, row, steps=tuple(steps_of.get((row["source"], row["id"]), ())))
        jobs_of.setdefault((row["source"], row["run_id"], row["run_attempt"]), []).append(job)
    return [
        _record(RunRecord, row, jobs=tuple(jobs_of.get((row["source"], row["id"], row["attempt"]), ())))
        for row in run_rows
    ]


def _record(kind: type[_Record], row: dict[str, Any], **more: Any) -> _Record:
    """A record of ``kind`` from the row's columns of its field names, timestamps made timezone-aware."""
    values = {name: row[name] for name in kind.__dataclass_fields__ if name not in more}
    for name, value in values.items():
        if isinstance(value, datetime):
            values[name] = as_aware(value)
    return kind(**values, **more)

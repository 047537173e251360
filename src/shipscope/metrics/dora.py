"""DORA's four keys (DESIGN.md §3): deployment frequency, lead time for changes, change failure rate and failed
deployment recovery time, overall and per service, with a monthly trend and, on request, the rows behind each
number.

SQL does the set work, in a handful of selects (the production environments; the production deployments from a
day before the window on, with window functions answering what the earlier history holds; the changes they ship,
each with its pull request's first commit; those pull requests' hotfix labels and branches; the incidents), the
same SQLAlchemy Core text on DuckDB and PostgreSQL. What is left is sequence logic over those deployments ("the
previous deploy", "the next deploy", "within 24 hours"), done in Python in O(n log n): sorts, one pass per
sequence and binary searches, never a query per deployment. Percentiles are computed there the way
``percentile_cont`` does (linear interpolation between closest ranks), since the changes are measured there.

Definitions of the ``shipscope`` preset (``SHIPSCOPE``), where DESIGN.md left a choice:

- A production deployment is a deployment whose environment matches one of ``config.production_environments``
  (``fnmatch`` globs, case-insensitive; the ``environment`` filter, also a case-insensitive glob, narrows that set).
  It counts when its status is ``success`` and its ``finished_at`` lies in the window; ``kind`` rollback and hotfix
  deploys count like any other. Deployments are ordered by ``(finished_at, id, source)``: of two that finished at
  the same instant, the one with the smaller id comes first.
- Two sequences per service: the service's production deployments across its production environments (used for
  "previous deploy" in lead time and for the incident rule), and one stream per (service, environment) (used for
  rollback, hotfix, older-sha and recovery: a release rolled out to ``production`` then ``production-eu`` is two
  deploys, and the eu one is not "the next deploy" of the first).
- Deployment frequency: per_day = deployments ÷ window days (fractional days), per_week = deployments × 7 ÷ days,
  per_month = deployments × 30.44 ÷ days; deployment_days = distinct UTC dates with a counted deploy. Tier cut-offs
  (DORA 2023), on per_day: elite ≥ 1 (on demand: at least daily on average), high ≥ 1/7 (at least weekly), medium
  ≥ 1/30.44 (at least monthly), low below. Comparisons allow a relative 1e-9, so 4 deploys in 28 days is weekly.
- Lead time: a deployment ships the changes whose ``deployment_id`` names it; when no change names it, the changes
  without a ``deployment_id`` whose sha equals its sha (each such change goes to the earliest production deploy of
  that sha in each service). Only deployments with an earlier successful production deploy of the service (which
  may lie before the window) have measured changes. Lead time = ``finished_at −`` the change's start: the earliest
  ``authored_at`` among the changes of its pull request in the same repository, or its own ``authored_at``. A
  change counts once per service, and once overall (at its earliest deploy). Median and p95 are exact
  (``percentile_cont`` interpolation). Tier on the median: elite < 1 day, high < 1 week, medium < 30 days, low.
- Change failure rate = failed ÷ counted deployments. Signals, each named in ``failure_signals``:
  ``rollback``: a deployment with ``rollback_of`` naming this one (any time later), or a ``kind=rollback``
  deployment (any status) of the same stream whose immediate predecessor this is, finishing within 24 h of it.
  ``hotfix``: the same for a hotfix deployment: ``kind=hotfix``, or one shipping a change whose pull request has a
  label, or ran CI on a branch, containing one of ``config.hotfix_patterns`` (case-insensitive).
  ``older_sha_redeploy``: the next deploy of the stream ships a sha other than this one's that an earlier deploy of
  the stream shipped. ``revert``: the next deployment of the service that ships changes ships one whose message
  says ``This reverts commit <sha>`` (7 to 40 hex digits, prefix match) of a change this deployment shipped.
  ``incident``: an incident with ``caused_by_deployment_id`` naming it, or an incident with no
  ``caused_by_deployment_id``, of the same service, opened in the window at or after this deploy finished and
  before the service's next production deploy finished. Incidents labeled ``infra-only`` never count.
  Signals may come from data after ``until`` (a deploy on the window's last evening rolled back the next morning
  failed); the implicit incident link alone is bounded by the window, as DESIGN.md says. Tier: elite ≤ 5%, high
  ≤ 10%, medium ≤ 15%, low above.
- Recovery time: one sample per counted incident of a failed deployment (its ``opened_at`` to its
  ``resolved_at``), and one per failed deployment without an incident (its ``finished_at`` onwards). Without a
  resolution time, the sample ends at the next successful deploy of the failed deployment's stream finishing after
  the sample's start; with none, the sample is unresolved: counted in ``failures`` and ``unresolved``, not in the
  median or mean. A resolution before the start counts as 0 s. Tier on the median: elite < 1 hour, high < 1 day,
  medium < 1 week, low.
- Filters: ``service``; ``team`` (the services among ``config.teams[team]``); ``environment`` (which production
  environments count); ``repo``: lead time counts only that repository's changes, and only services that shipped
  one of its changes in the window are reported (deployments carry no repository).
- ``services`` lists the services with a counted deployment in the window. A metric without data has null values,
  a ``no_data`` reason and a null tier, never 0 (a failure rate of 0 failed of n is data). The trend has one row
  per calendar month (UTC) overlapping the window, each over the counted deployments that finished in that month
  (and the window); its months without deployments have 0 deployments and null values.
- Explain: ``deployments`` are the counted deployments, ``changes`` the measured changes, ``incidents`` the recovery
  samples: one per counted incident of a failed deployment, and one with a null ``id`` per failed deployment
  without an incident; ``recovery_seconds`` is null when unresolved.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from statistics import fmean
from typing import Any, Literal, NamedTuple

import orjson
import sqlalchemy as sa

from shipscope.errors import InputError
from shipscope.metrics.common import (
    DEFAULT_CONFIG,
    NO_FILTERS,
    Filters,
    MetricsConfig,
    Window,
    in_window,
    teams_members,
)
from shipscope.store import Store, schema

__all__ = [
    "DEFINITIONS",
    "FAILURE_SIGNALS",
    "METRICS",
    "PRESETS",
    "SHIPSCOPE",
    "TIER_CUTOFFS",
    "ChangeFailureRate",
    "DeploymentFrequency",
    "DeploymentRecord",
    "DoraDefinitions",
    "DoraMetrics",
    "DoraReport",
    "LeadTime",
    "LeadTimeRecord",
    "RecoveryRecord",
    "RecoveryTime",
    "TrendPoint",
    "dora_report",
    "tier_for",
]

Tier = Literal["elite", "high", "medium", "low"]
Signal = Literal["rollback", "hotfix", "older_sha_redeploy", "revert", "incident"]

FAILURE_SIGNALS: tuple[Signal, ...] = ("rollback", "hotfix", "older_sha_redeploy", "revert", "incident")
"""Every failure signal, in the order ``failure_signals`` lists them."""

DAY_SECONDS = 86_400.0
HOUR_SECONDS = 3_600.0
WEEK_SECONDS = 7 * DAY_SECONDS
_TOLERANCE = 1e-9
"""Relative slack of the frequency cut-offs and absolute slack of the rate cut-offs, for float noise."""
_RANKED: tuple[Tier, Tier, Tier] = ("elite", "high", "medium")

TIER_CUTOFFS: Mapping[str, tuple[Literal["at_least", "at_most", "below"], tuple[float, float, float]]] = {
    "deployment_frequency": ("at_least", (1.0, 1 / 7, 1 / 30.44)),
    "lead_time": ("below", (DAY_SECONDS, WEEK_SECONDS, 30 * DAY_SECONDS)),
    "change_failure_rate": ("at_most", (0.05, 0.10, 0.15)),
    "recovery_time": ("below", (HOUR_SECONDS, DAY_SECONDS, WEEK_SECONDS)),
}
"""DORA 2023, per metric: how a value compares with the elite, high and medium bounds (anything else is low).
Deployment frequency is in deployments per day (daily, weekly, monthly of 30.44 days), times in seconds (the lead
time's month is 30 days), the failure rate a fraction."""
METRICS: tuple[str, ...] = tuple(TIER_CUTOFFS)
_REVERT_MARK = "This reverts commit "
_REVERT = re.compile(_REVERT_MARK + r"([0-9a-fA-F]{7,40})")

_deployments = schema.deployments
_changes = schema.changes
_pull_requests = schema.pull_requests
_runs = schema.pipeline_runs
_incidents = schema.incidents


# ----- definitions -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DoraDefinitions:
    """The choices behind the four keys. A preset is an instance: presets are data, the code reads these fields."""

    name: str
    center: Literal["median", "mean"] = "median"
    """The statistic lead time and recovery time are tiered on."""
    frequency_unit: Literal["day"] = "day"
    """The calendar unit deployment frequency is tiered in. ``day``: the rate (deployments ÷ window days) against
    DORA's on-demand / daily–weekly / weekly–monthly cut-offs. Presets counting active weeks or months (Four Keys,
    DevLake) will add ``week`` and ``month``."""
    week_start: int = 0
    """First day of a calendar week (0 = Monday) for presets that bucket by week; rates need no weeks."""
    month_days: float = 30.44
    """Days in the month of ``per_month`` (DORA's tiers, ``TIER_CUTOFFS``, use 30.44 too)."""
    failure_horizon: timedelta = timedelta(hours=24)
    """How soon after a deploy a rollback or hotfix deploy marks it failed."""
    incident_linking: Literal["explicit", "explicit_or_last_deploy"] = "explicit_or_last_deploy"
    """``explicit``: only ``caused_by_deployment_id``; ``explicit_or_last_deploy``: unlinked incidents go to the
    service's last production deploy before they opened, within the window."""
    recovery_start: Literal["incident_opened", "deploy_finished"] = "incident_opened"
    """Where recovery from an incident starts; a failure without an incident always starts at its deploy."""
    excluded_incident_labels: tuple[str, ...] = ("infra-only",)
    """Incidents with one of these labels (case-insensitive) are never failures."""
    failure_signals: tuple[Signal, ...] = FAILURE_SIGNALS
    """The signals that mark a deployment failed."""


SHIPSCOPE = DoraDefinitions(name="shipscope")
DEFINITIONS: Mapping[str, DoraDefinitions] = {SHIPSCOPE.name: SHIPSCOPE}
PRESETS: tuple[str, ...] = tuple(DEFINITIONS)


def _definitions(name: str) -> DoraDefinitions:
    chosen = DEFINITIONS.get(name)
    if chosen is None:
        raise InputError(f"unknown DORA definitions {name!r}; known: {', '.join(PRESETS)}")
    return chosen


# ----- tiers -----------------------------------------------------------------------------------------------------


def tier_for(metric: str, value: float | None) -> Tier | None:
    """The DORA 2023 tier of a value, or None without one.

    ``metric`` is one of ``METRICS``; ``value`` is deployments per day for deployment_frequency, seconds (the
    median) for lead_time and recovery_time, a fraction for change_failure_rate. Cut-offs: ``TIER_CUTOFFS``.
    """
    if metric not in TIER_CUTOFFS:
        raise InputError(f"unknown DORA metric {metric!r}; known: {', '.join(METRICS)}")
    if value is None or math.isnan(value):
        return None
    rule, bounds = TIER_CUTOFFS[metric]
    for tier, bound in zip(_RANKED, bounds, strict=True):
        if rule == "at_least" and value >= bound * (1 - _TOLERANCE):
            return tier
        if rule == "at_most" and value <= bound + _TOLERANCE:
            return tier
        if rule == "below" and value < bound:
            return tier
    return "low"


# ----- results -----------------------------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _no_data(shape: dict[str, Any], reason: str | None) -> dict[str, Any]:
    if reason is not None:
        shape["no_data"] = reason
    return shape


@dataclass(frozen=True)
class DeploymentFrequency:
    deployments: int
    deployment_days: int
    """Distinct UTC dates with a counted deployment."""
    per_day: float | None
    per_week: float | None
    per_month: float | None
    tier: Tier | None
    no_data: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _no_data(
            {
                "deployments": self.deployments,
                "deployment_days": self.deployment_days,
                "per_day": self.per_day,
                "per_week": self.per_week,
                "per_month": self.per_month,
                "tier": self.tier,
            },
            self.no_data,
        )


@dataclass(frozen=True)
class LeadTime:
    changes: int
    median_seconds: float | None
    p95_seconds: float | None
    tier: Tier | None
    no_data: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _no_data(
            {
                "changes": self.changes,
                "median_seconds": self.median_seconds,
                "p95_seconds": self.p95_seconds,
                "tier": self.tier,
            },
            self.no_data,
        )


@dataclass(frozen=True)
class ChangeFailureRate:
    failed: int
    deployments: int
    rate: float | None
    """A fraction."""
    tier: Tier | None
    no_data: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _no_data(
            {"failed": self.failed, "deployments": self.deployments, "rate": self.rate, "tier": self.tier},
            self.no_data,
        )


@dataclass(frozen=True)
class RecoveryTime:
    failures: int
    """Recovery samples: resolved and unresolved."""
    unresolved: int
    median_seconds: float | None
    mean_seconds: float | None
    tier: Tier | None
    no_data: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _no_data(
            {
                "failures": self.failures,
                "unresolved": self.unresolved,
                "median_seconds": self.median_seconds,
                "mean_seconds": self.mean_seconds,
                "tier": self.tier,
            },
            self.no_data,
        )


@dataclass(frozen=True)
class DeploymentRecord:
    """A counted deployment (explain)."""

    id: str
    finished_at: datetime
    failed: bool
    failure_signals: tuple[Signal, ...]
    incident_ids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "finished_at": _iso(self.finished_at),
            "failed": self.failed,
            "failure_signals": list(self.failure_signals),
            "incident_ids": list(self.incident_ids),
        }


class LeadTimeRecord(NamedTuple):
    """A measured change (explain). A named tuple: a year of a busy organization has hundreds of thousands."""

    repo: str
    sha: str
    pr_number: int | None
    deployment_id: str
    lead_time_seconds: float
    deployed_at: datetime
    """The deployment's ``finished_at`` (for the trend; not in the JSON)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "sha": self.sha,
            "pr_number": self.pr_number,
            "deployment_id": self.deployment_id,
            "lead_time_seconds": self.lead_time_seconds,
        }


@dataclass(frozen=True)
class RecoveryRecord:
    """A recovery sample (explain): an incident of a failed deployment, or (id None) a failure without one."""

    id: str | None
    deployment_id: str
    recovery_seconds: float | None
    """None when unresolved."""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "deployment_id": self.deployment_id, "recovery_seconds": self.recovery_seconds}


@dataclass(frozen=True)
class TrendPoint:
    month: str
    """``YYYY-MM`` (UTC)."""
    deployments: int
    lead_time_median_seconds: float | None
    change_failure_rate: float | None
    recovery_median_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "deployments": self.deployments,
            "lead_time_median_seconds": self.lead_time_median_seconds,
            "change_failure_rate": self.change_failure_rate,
            "recovery_median_seconds": self.recovery_median_seconds,
        }


@dataclass(frozen=True)
class DoraMetrics:
    """The four keys over one scope (everything, or one service)."""

    deployment_frequency: DeploymentFrequency
    lead_time: LeadTime
    change_failure_rate: ChangeFailureRate
    recovery_time: RecoveryTime
    trend: tuple[TrendPoint, ...]
    deployments: tuple[DeploymentRecord, ...]
    """Every counted deployment, in order."""
    changes: tuple[LeadTimeRecord, ...]
    """Every measured change, by deployment order."""
    recoveries: tuple[RecoveryRecord, ...]
    """Every recovery sample, by deployment order."""

    def to_json(self, explain: bool = False) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "deployment_frequency": self.deployment_frequency.to_json(),
            "lead_time": self.lead_time.to_json(),
            "change_failure_rate": self.change_failure_rate.to_json(),
            "recovery_time": self.recovery_time.to_json(),
            "trend": [point.to_json() for point in self.trend],
        }
        if explain:
            shape["explain"] = {
                "deployments": [record.to_json() for record in self.deployments],
                "changes": [record.to_json() for record in self.changes],
                "incidents": [record.to_json() for record in self.recoveries],
            }
        return shape


@dataclass(frozen=True)
class DoraReport:
    window: Window
    definitions: DoraDefinitions
    overall: DoraMetrics
    services: Mapping[str, DoraMetrics] = field(default_factory=dict)
    """Per service with a counted deployment, by name."""

    def to_json(self, explain: bool = False) -> dict[str, Any]:
        return {
            "window": self.window.to_json(),
            "definitions": self.definitions.name,
            "overall": self.overall.to_json(explain),
            "services": {name: metrics.to_json(explain) for name, metrics in self.services.items()},
        }


# ----- loading -------------------------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Deploy:
    source: str
    id: str
    service: str
    environment: str
    sha: str
    finished_at: datetime
    status: str
    kind: str
    rollback_of: str | None
    service_before: bool
    """Whether the service had a successful production deploy before the loaded stretch (``_load_deploys``)."""
    sha_before_in_service: bool
    """Whether a successful production deploy of the service shipped this sha before the loaded stretch."""
    sha_before_in_stream: bool
    """The same, in this deploy's environment."""

    @property
    def key(self) -> tuple[datetime, str, str]:
        return (self.finished_at, self.id, self.source)


class _Change(NamedTuple):
    repo: str
    sha: str
    pr_number: int | None
    message: str | None
    """Only a revert's message (the rest are not needed)."""
    deployment_id: str | None
    started_at: datetime
    """The pull request's first commit's authored_at, or the change's own."""


@dataclass(frozen=True, slots=True)
class _Incident:
    id: str
    service: str
    opened_at: datetime
    resolved_at: datetime | None
    caused_by: str | None


@dataclass(frozen=True)
class _Data:
    deploys: list[_Deploy]
    """The finished production deployments in scope from the window's start less the failure horizon on."""
    changes: list[_Change]
    hotfix_prs: set[tuple[str, int]]
    incidents: list[_Incident]


def _aware(moment: datetime) -> datetime:
    """A stored time with its offset (both backends return UTC sessions' times with one; a bare one is UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _utc(moment: datetime) -> datetime:
    """A stored time in UTC, for calendar dates and months."""
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _matches(value: str, patterns: Iterable[str]) -> bool:
    lowered = value.lower()
    return any(fnmatchcase(lowered, pattern.lower()) for pattern in patterns)


def _production_environments(store: Store, config: MetricsConfig, filters: Filters) -> list[str]:
    known = store.query(sa.select(_deployments.c.environment).distinct())
    names = sorted(row["environment"] for row in known)
    chosen = [name for name in names if _matches(name, config.production_environments)]
    if filters.environment is not None:
        chosen = [name for name in chosen if _matches(name, (filters.environment,))]
    return chosen


def _service_conditions(
    column: sa.ColumnElement[str], filters: Filters, members: Sequence[str] | None
) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    if filters.service is not None:
        conditions.append(column == filters.service)
    if members is not None:
        conditions.append(column.in_(list(members)))
    return conditions


def _load(
    store: Store,
    window: Window,
    filters: Filters,
    config: MetricsConfig,
    definitions: DoraDefinitions,
    environments: list[str],
) -> _Data:
    members = teams_members(config, filters.team)
    scope = [
        _deployments.c.environment.in_(environments),
        *_service_conditions(_deployments.c.service, filters, members),
    ]
    # Successful production deploys from the window's start on: the ones counted, and the later ones whose changes
    # can reveal a revert or a hotfix. Earlier ones only matter as "previous" deploys, which needs no changes.
    recent = sa.select(_deployments.c.id).where(
        *scope, _deployments.c.status == "success", _deployments.c.finished_at >= window.since
    )
    shipped = (
        sa.select(
            _changes.c.repo,
            _changes.c.sha,
            _changes.c.pr_number,
            _changes.c.message,
            _changes.c.deployment_id,
            _changes.c.authored_at,
        )
        .where(
            sa.or_(
                _changes.c.deployment_id.in_(recent),
                sa.and_(
                    _changes.c.deployment_id.is_(None),
                    _changes.c.sha.in_(recent.with_only_columns(_deployments.c.sha)),
                ),
            )
        )
        .cte("shipped")
    )
    pr_keys = (
        sa.select(shipped.c.repo, shipped.c.pr_number)
        .where(shipped.c.pr_number.is_not(None))
        .distinct()
        .subquery("pr_keys")
    )
    changes = _load_changes(store, shipped, pr_keys)
    patterns = [pattern.lower() for pattern in config.hotfix_patterns if pattern]
    hotfix_prs: set[tuple[str, int]] = set()
    if patterns and "hotfix" in definitions.failure_signals and any(c.pr_number is not None for c in changes):
        hotfix_prs = _load_hotfix_prs(store, pr_keys, patterns)
    linked = _incidents.c.caused_by_deployment_id.in_(recent)
    if definitions.incident_linking == "explicit_or_last_deploy":
        unlinked = sa.and_(
            _incidents.c.caused_by_deployment_id.is_(None),
            in_window(_incidents.c.opened_at, window),
            *_service_conditions(_incidents.c.service, filters, members),
        )
        which: sa.ColumnElement[bool] = sa.or_(linked, unlinked)
    else:
        which = linked
    incidents = _load_incidents(store, which, definitions)
    deploys = _load_deploys(store, scope, window.since - definitions.failure_horizon)
    return _Data(deploys, changes, hotfix_prs, incidents)


def _load_deploys(store: Store, scope: Sequence[sa.ColumnElement[bool]], cutoff: datetime) -> list[_Deploy]:
    """The finished production deployments in scope from ``cutoff`` on: successful ones, and failed or cancelled
    rollbacks and hotfixes (their signals count too).

    Every question about a counted deployment looks at deploys after ``cutoff`` (the window's start less the
    failure horizon), but for three about the time before, which window functions over the whole history answer:
    whether the service deployed before (lead time is measured from a previous deploy), and whether the service or
    the environment shipped the sha before (the sha-match fallback of changes, the older-sha signal).
    """
    success = _deployments.c.status == "success"
    good_at = sa.case((success, _deployments.c.finished_at))

    def first_good(*partition: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.func.min(good_at).over(partition_by=list(partition))

    history = (
        sa.select(
            _deployments.c.source,
            _deployments.c.id,
            _deployments.c.service,
            _deployments.c.environment,
            _deployments.c.sha,
            _deployments.c.finished_at,
            _deployments.c.status,
            _deployments.c.kind,
            _deployments.c.rollback_of,
            first_good(_deployments.c.service).label("service_first_at"),
            first_good(_deployments.c.service, _deployments.c.sha).label("service_sha_first_at"),
            first_good(_deployments.c.service, _deployments.c.environment, _deployments.c.sha).label(
                "stream_sha_first_at"
            ),
        )
        .where(*scope, _deployments.c.finished_at.is_not(None))
        .subquery("history")
    )
    signal_only = sa.and_(
        history.c.status != "success",
        sa.or_(history.c.kind.in_(("rollback", "hotfix")), history.c.rollback_of.is_not(None)),
    )
    rows = store.query(
        sa.select(history).where(history.c.finished_at >= cutoff, sa.or_(history.c.status == "success", signal_only))
    )

    def before(moment: datetime | None) -> bool:
        return moment is not None and _aware(moment) < cutoff

    return [
        _Deploy(
            row["source"],
            row["id"],
            row["service"],
            row["environment"],
            row["sha"],
            _utc(row["finished_at"]),
            row["status"],
            row["kind"] or "deploy",
            row["rollback_of"],
            before(row["service_first_at"]),
            before(row["service_sha_first_at"]),
            before(row["stream_sha_first_at"]),
        )
        for row in rows
    ]


def _load_changes(store: Store, shipped: sa.CTE, pr_keys: sa.Subquery) -> list[_Change]:
    """The shipped changes, each with its pull request's first commit time (over all that PR's changes)."""
    every = _changes.alias("every_change")
    first_commit = (
        sa.select(every.c.repo, every.c.pr_number, sa.func.min(every.c.authored_at).label("first_authored_at"))
        .join(pr_keys, sa.and_(every.c.repo == pr_keys.c.repo, every.c.pr_number == pr_keys.c.pr_number))
        .group_by(every.c.repo, every.c.pr_number)
        .subquery("first_commit")
    )
    revert_message = sa.case((shipped.c.message.contains(_REVERT_MARK), shipped.c.message))
    rows = store.query(
        sa.select(
            shipped.c.repo,
            shipped.c.sha,
            shipped.c.pr_number,
            revert_message.label("message"),
            shipped.c.deployment_id,
            sa.func.coalesce(first_commit.c.first_authored_at, shipped.c.authored_at).label("started_at"),
        ).select_from(
            shipped.outerjoin(
                first_commit,
                sa.and_(shipped.c.repo == first_commit.c.repo, shipped.c.pr_number == first_commit.c.pr_number),
            )
        )
    )
    return [
        _Change(
            row["repo"], row["sha"], row["pr_number"], row["message"], row["deployment_id"], _aware(row["started_at"])
        )
        for row in rows
    ]


def _load_hotfix_prs(store: Store, pr_keys: sa.Subquery, patterns: Sequence[str]) -> set[tuple[str, int]]:
    """The shipped pull requests with a hotfix label, or with CI runs on a hotfix branch."""
    on_hotfix_branch = sa.exists().where(
        _runs.c.repo == pr_keys.c.repo,
        _runs.c.pr_number == pr_keys.c.pr_number,
        sa.or_(*(sa.func.lower(_runs.c.branch).contains(pattern, autoescape=True) for pattern in patterns)),
    )
    # Labels are JSON text: a pattern inside it marks a candidate, which Python checks label by label.
    labeled = sa.or_(
        *(sa.func.lower(_pull_requests.c.labels).contains(pattern, autoescape=True) for pattern in patterns)
    )
    rows = store.query(
        sa.select(pr_keys.c.repo, pr_keys.c.pr_number, _pull_requests.c.labels, on_hotfix_branch.label("hotfix_branch"))
        .select_from(
            pr_keys.outerjoin(
                _pull_requests,
                sa.and_(_pull_requests.c.repo == pr_keys.c.repo, _pull_requests.c.number == pr_keys.c.pr_number),
            )
        )
        .where(sa.or_(labeled, on_hotfix_branch))
    )
    found: set[tuple[str, int]] = set()
    for row in rows:
        labels = [label.lower() for label in _labels(row["labels"])]
        if row["hotfix_branch"] or any(pattern in label for label in labels for pattern in patterns):
            found.add((row["repo"], row["pr_number"]))
    return found


def _load_incidents(store: Store, which: sa.ColumnElement[bool], definitions: DoraDefinitions) -> list[_Incident]:
    rows = store.query(
        sa.select(
            _incidents.c.id,
            _incidents.c.service,
            _incidents.c.opened_at,
            _incidents.c.resolved_at,
            _incidents.c.caused_by_deployment_id,
            _incidents.c.labels,
        ).where(which)
    )
    excluded = {label.lower() for label in definitions.excluded_incident_labels}
    incidents = []
    for row in rows:
        labels = _labels(row["labels"])
        if excluded.intersection(label.lower() for label in labels):
            continue
        resolved_at = row["resolved_at"]
        incidents.append(
            _Incident(
                row["id"],
                row["service"],
                _aware(row["opened_at"]),
                _aware(resolved_at) if resolved_at is not None else None,
                row["caused_by_deployment_id"],
            )
        )
    return incidents


def _labels(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return (text,)
    if isinstance(value, list):
        return tuple(str(item) for item in value)
    return (str(value),)


# ----- sequences and signals -------------------------------------------------------------------------------------


class _Sequence:
    """Deployments in order, with their finish times for binary search."""

    def __init__(self, deploys: list[_Deploy]) -> None:
        self.deploys = deploys
        self.keys = [deploy.key for deploy in deploys]
        self.times = [deploy.finished_at for deploy in deploys]

    def before(self, deploy: _Deploy) -> _Deploy | None:
        """The deployment just before ``deploy`` (which need not be in the sequence)."""
        index = bisect.bisect_left(self.keys, deploy.key)
        return self.deploys[index - 1] if index > 0 else None

    def last_at_or_before(self, moment: datetime) -> _Deploy | None:
        index = bisect.bisect_right(self.times, moment)
        return self.deploys[index - 1] if index > 0 else None

    def first_after(self, deploy: _Deploy, moment: datetime) -> _Deploy | None:
        """The first deployment after ``deploy`` in order that finished after ``moment``."""
        index = max(bisect.bisect_right(self.keys, deploy.key), bisect.bisect_right(self.times, moment))
        return self.deploys[index] if index < len(self.deploys) else None


@dataclass(eq=False, slots=True)
class _Outcome:
    """A counted deployment and what the definitions make of it."""

    deploy: _Deploy
    signals: set[Signal] = field(default_factory=set)
    incidents: list[_Incident] = field(default_factory=list)
    shipped: list[_Change] = field(default_factory=list)
    """Every change it shipped (whatever the repo filter), for the revert and repo checks."""
    measured: bool = False
    """Whether an earlier production deploy of the service exists, so that its changes have a lead time."""
    leads: list[LeadTimeRecord] = field(default_factory=list)
    """The lead times of its shipped changes (of the filtered repo), by start; empty unless measured."""
    recoveries: list[RecoveryRecord] = field(default_factory=list)


@dataclass
class _Timeline:
    """The loaded deployments as sequences, and an outcome for each counted one."""

    good: list[_Deploy]
    """Successful production deployments, in order."""
    services: dict[str, _Sequence]
    streams: dict[tuple[str, str], _Sequence]
    """Per (service, environment)."""
    by_id: dict[str, list[_Deploy]]
    counted: dict[_Deploy, _Outcome]
    shipped: dict[_Deploy, list[_Change]]

    @classmethod
    def build(cls, data: _Data, window: Window) -> _Timeline:
        good = sorted((deploy for deploy in data.deploys if deploy.status == "success"), key=lambda d: d.key)
        per_service: dict[str, list[_Deploy]] = defaultdict(list)
        per_stream: dict[tuple[str, str], list[_Deploy]] = defaultdict(list)
        by_id: dict[str, list[_Deploy]] = defaultdict(list)
        for deploy in good:
            per_service[deploy.service].append(deploy)
            per_stream[(deploy.service, deploy.environment)].append(deploy)
            by_id[deploy.id].append(deploy)
        counted = {deploy: _Outcome(deploy) for deploy in good if window.since <= deploy.finished_at < window.until}
        shipped = _shipped_changes(good, by_id, data.changes)
        for deploy, outcome in counted.items():
            outcome.shipped = shipped.get(deploy, [])
        for deploys in per_service.values():
            for index, deploy in enumerate(deploys):
                if deploy in counted:
                    counted[deploy].measured = index > 0 or deploy.service_before
        return cls(
            good,
            {name: _Sequence(deploys) for name, deploys in per_service.items()},
            {name: _Sequence(deploys) for name, deploys in per_stream.items()},
            by_id,
            counted,
            shipped,
        )

    def mark(self, deploy: _Deploy | None, signal: Signal) -> None:
        if deploy is not None and deploy in self.counted:
            self.counted[deploy].signals.add(signal)


def _outcomes(data: _Data, window: Window, definitions: DoraDefinitions) -> list[_Outcome]:
    """The counted deployments in order, with their failure signals, incidents, shipped changes and recoveries."""
    timeline = _Timeline.build(data, window)
    signals = set(definitions.failure_signals)
    if signals & {"rollback", "hotfix"}:
        _rollbacks_and_hotfixes(timeline, data, definitions)
    if "older_sha_redeploy" in signals:
        _older_shas(timeline)
    if "revert" in signals:
        _reverts(timeline)
    if "incident" in signals:
        _incidents_of(timeline, data.incidents, window, definitions)
    for deploy, outcome in timeline.counted.items():
        if outcome.signals:
            stream = timeline.streams[(deploy.service, deploy.environment)]
            outcome.recoveries = _recoveries(outcome, stream, definitions)
    return [timeline.counted[deploy] for deploy in timeline.good if deploy in timeline.counted]


def _rollbacks_and_hotfixes(timeline: _Timeline, data: _Data, definitions: DoraDefinitions) -> None:
    """A rollback naming a deploy marks it; a rollback or hotfix deploy marks its stream's previous deploy when
    that finished at most the failure horizon before it."""
    signals = definitions.failure_signals

    def mark_previous(deploy: _Deploy, signal: Signal) -> None:
        stream = timeline.streams.get((deploy.service, deploy.environment))
        previous = stream.before(deploy) if stream is not None else None
        if previous is not None and deploy.finished_at - previous.finished_at <= definitions.failure_horizon:
            timeline.mark(previous, signal)

    for deploy in data.deploys:
        if "rollback" in signals and deploy.rollback_of is not None:
            for target in timeline.by_id.get(deploy.rollback_of, ()):
                if target.service == deploy.service:
                    timeline.mark(target, "rollback")
        elif "rollback" in signals and deploy.kind == "rollback":
            mark_previous(deploy, "rollback")
        if "hotfix" in signals and (
            deploy.kind == "hotfix"
            or any(
                change.pr_number is not None and (change.repo, change.pr_number) in data.hotfix_prs
                for change in timeline.shipped.get(deploy, ())
            )
        ):
            mark_previous(deploy, "hotfix")


def _older_shas(timeline: _Timeline) -> None:
    """Marks deploys whose stream's next deploy ships a different sha the stream had shipped before them."""
    for stream in timeline.streams.values():
        seen: set[str] = set()
        for deploy, following in zip(stream.deploys, stream.deploys[1:], strict=False):
            if following.sha != deploy.sha and (following.sha in seen or following.sha_before_in_stream):
                timeline.mark(deploy, "older_sha_redeploy")
            seen.add(deploy.sha)


def _reverts(timeline: _Timeline) -> None:
    """Marks deploys a change of the service's next change-shipping deploy reverts (by the git message)."""
    for sequence in timeline.services.values():
        reverted: list[str] = []  # the (possibly short) shas the next deploy that ships changes reverts
        for deploy in reversed(sequence.deploys):
            changes = timeline.shipped.get(deploy, [])
            if not changes:
                continue
            if reverted and deploy in timeline.counted:
                if any(change.sha.lower().startswith(target) for change in changes for target in reverted):
                    timeline.mark(deploy, "revert")
            reverted = [target.lower() for change in changes for target in _REVERT.findall(change.message or "")]


def _incidents_of(
    timeline: _Timeline, incidents: Sequence[_Incident], window: Window, definitions: DoraDefinitions
) -> None:
    """Links each incident to the deploy it names, or (when it names none) to its service's last deploy before it
    opened, if it opened in the window."""
    for incident in sorted(incidents, key=lambda i: (i.opened_at, i.id)):
        if incident.caused_by is not None:
            targets = timeline.by_id.get(incident.caused_by, [])
        elif (
            definitions.incident_linking == "explicit_or_last_deploy"
            and incident.service in timeline.services
            and window.since <= incident.opened_at < window.until
        ):
            last = timeline.services[incident.service].last_at_or_before(incident.opened_at)
            targets = [last] if last is not None else []
        else:
            targets = []
        for deploy in targets:
            if deploy in timeline.counted:
                timeline.mark(deploy, "incident")
                timeline.counted[deploy].incidents.append(incident)


def _shipped_changes(
    good: list[_Deploy], by_id: Mapping[str, list[_Deploy]], changes: list[_Change]
) -> dict[_Deploy, list[_Change]]:
    """The changes each successful production deployment shipped: those naming it, or when none does, those
    naming no deployment whose sha is its sha (at the service's earliest deploy of that sha)."""
    shipped: dict[_Deploy, list[_Change]] = defaultdict(list)
    unlinked: list[_Change] = []
    for change in changes:
        if change.deployment_id is None:
            unlinked.append(change)
            continue
        for deploy in by_id.get(change.deployment_id, ()):
            shipped[deploy].append(change)
    named = set(shipped)
    first_of_sha: dict[tuple[str, str], _Deploy] = {}
    for deploy in good:
        if not deploy.sha_before_in_service:
            first_of_sha.setdefault((deploy.service, deploy.sha), deploy)
    by_sha: dict[str, list[_Deploy]] = defaultdict(list)
    for (_, sha), deploy in first_of_sha.items():
        if deploy not in named:
            by_sha[sha].append(deploy)
    for change in unlinked:
        for deploy in by_sha.get(change.sha, ()):
            shipped[deploy].append(change)
    return shipped


def _recoveries(outcome: _Outcome, stream: _Sequence, definitions: DoraDefinitions) -> list[RecoveryRecord]:
    deploy = outcome.deploy
    samples: list[tuple[str | None, datetime, datetime | None]] = []
    for incident in outcome.incidents:
        start = incident.opened_at if definitions.recovery_start == "incident_opened" else deploy.finished_at
        samples.append((incident.id, start, incident.resolved_at))
    if not samples:
        samples.append((None, deploy.finished_at, None))
    records = []
    for incident_id, start, end in samples:
        if end is None:
            following = stream.first_after(deploy, start)
            end = following.finished_at if following is not None else None
        seconds = None if end is None else max(0.0, (end - start).total_seconds())
        records.append(RecoveryRecord(incident_id, deploy.id, seconds))
    return records


# ----- aggregation -----------------------------------------------------------------------------------------------


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks, as ``percentile_cont``."""
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _median(values: Iterable[float]) -> float | None:
    ordered = sorted(values)
    return _percentile(ordered, 0.5) if ordered else None


def _center(values: Sequence[float], definitions: DoraDefinitions) -> float | None:
    if not values:
        return None
    return _median(values) if definitions.center == "median" else fmean(values)


def _measure(outcome: _Outcome, repo: str | None) -> list[LeadTimeRecord]:
    if not outcome.measured:
        return []
    deploy = outcome.deploy
    return [
        LeadTimeRecord(
            change.repo,
            change.sha,
            change.pr_number,
            deploy.id,
            (deploy.finished_at - change.started_at).total_seconds(),
            deploy.finished_at,
        )
        for change in sorted(outcome.shipped, key=lambda c: (c.started_at, c.repo, c.sha))
        if repo is None or change.repo == repo
    ]


def _lead_times(outcomes: Sequence[_Outcome]) -> list[LeadTimeRecord]:
    """One record per change, at the earliest counted deploy that shipped it."""
    seen: set[tuple[str, str]] = set()
    records: list[LeadTimeRecord] = []
    for outcome in outcomes:
        for record in outcome.leads:
            key = (record.repo, record.sha)
            if key not in seen:
                seen.add(key)
                records.append(record)
    return records


def _month(moment: datetime) -> tuple[int, int]:
    return (moment.year, moment.month)


def _months(window: Window) -> list[tuple[int, int]]:
    """The calendar months (UTC) overlapping the window."""
    since = window.since.astimezone(UTC)
    start = datetime(since.year, since.month, 1, tzinfo=UTC)
    months = []
    while start < window.until:
        months.append(_month(start))
        start = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
    return months


def _frequency(outcomes: Sequence[_Outcome], window: Window, definitions: DoraDefinitions) -> DeploymentFrequency:
    count = len(outcomes)
    if not count:
        return DeploymentFrequency(0, 0, None, None, None, None, "no successful production deployment in the window")
    days = (window.until - window.since).total_seconds() / DAY_SECONDS
    per_day = count / days
    return DeploymentFrequency(
        count,
        len({outcome.deploy.finished_at.date() for outcome in outcomes}),
        per_day,
        count * 7 / days,
        count * definitions.month_days / days,
        tier_for("deployment_frequency", per_day),
    )


def _lead_time(changes: Sequence[LeadTimeRecord], deployments: int, definitions: DoraDefinitions) -> LeadTime:
    values = sorted(record.lead_time_seconds for record in changes)
    if not values:
        reason = (
            "no successful production deployment in the window"
            if not deployments
            else "no change shipped by a production deployment with an earlier one to measure from"
        )
        return LeadTime(0, None, None, None, reason)
    return LeadTime(
        len(values),
        _percentile(values, 0.5),
        _percentile(values, 0.95),
        tier_for("lead_time", _center(values, definitions)),
    )


def _failure_rate(outcomes: Sequence[_Outcome]) -> ChangeFailureRate:
    count = len(outcomes)
    if not count:
        return ChangeFailureRate(0, 0, None, None, "no successful production deployment in the window")
    failed = sum(1 for outcome in outcomes if outcome.signals)
    return ChangeFailureRate(failed, count, failed / count, tier_for("change_failure_rate", failed / count))


def _recovery(recoveries: Sequence[RecoveryRecord], definitions: DoraDefinitions) -> RecoveryTime:
    resolved = [record.recovery_seconds for record in recoveries if record.recovery_seconds is not None]
    unresolved = len(recoveries) - len(resolved)
    if not resolved:
        reason = "no failed deployment in the window" if not recoveries else "no failure has recovered yet"
        return RecoveryTime(len(recoveries), unresolved, None, None, None, reason)
    return RecoveryTime(
        len(recoveries),
        unresolved,
        _median(resolved),
        fmean(resolved),
        tier_for("recovery_time", _center(resolved, definitions)),
    )


def _trend(outcomes: Sequence[_Outcome], changes: Sequence[LeadTimeRecord], window: Window) -> list[TrendPoint]:
    deployed: dict[tuple[int, int], int] = defaultdict(int)
    failed: dict[tuple[int, int], int] = defaultdict(int)
    leads: dict[tuple[int, int], list[float]] = defaultdict(list)
    recoveries: dict[tuple[int, int], list[float]] = defaultdict(list)
    for outcome in outcomes:
        month = _month(outcome.deploy.finished_at)
        deployed[month] += 1
        failed[month] += bool(outcome.signals)
        recoveries[month].extend(r.recovery_seconds for r in outcome.recoveries if r.recovery_seconds is not None)
    for record in changes:
        leads[_month(record.deployed_at)].append(record.lead_time_seconds)
    return [
        TrendPoint(
            f"{month[0]:04d}-{month[1]:02d}",
            deployed[month],
            _median(leads[month]),
            failed[month] / deployed[month] if deployed[month] else None,
            _median(recoveries[month]),
        )
        for month in _months(window)
    ]


def _metrics(outcomes: Sequence[_Outcome], window: Window, definitions: DoraDefinitions) -> DoraMetrics:
    changes = _lead_times(outcomes)
    recoveries = [record for outcome in outcomes for record in outcome.recoveries]
    deployments = tuple(
        DeploymentRecord(
            outcome.deploy.id,
            outcome.deploy.finished_at,
            bool(outcome.signals),
            tuple(signal for signal in FAILURE_SIGNALS if signal in outcome.signals),
            tuple(sorted({incident.id for incident in outcome.incidents})),
        )
        for outcome in outcomes
    )
    return DoraMetrics(
        _frequency(outcomes, window, definitions),
        _lead_time(changes, len(outcomes), definitions),
        _failure_rate(outcomes),
        _recovery(recoveries, definitions),
        tuple(_trend(outcomes, changes, window)),
        deployments,
        tuple(changes),
        tuple(recoveries),
    )


# ----- entry point -----------------------------------------------------------------------------------------------


def dora_report(
    store: Store,
    window: Window,
    filters: Filters = NO_FILTERS,
    config: MetricsConfig = DEFAULT_CONFIG,
    definitions: str = "shipscope",
) -> DoraReport:
    """The four keys over ``window``, overall and per service, by the named definitions (see the module doc)."""
    chosen = _definitions(definitions)
    environments = _production_environments(store, config, filters)
    if environments:
        outcomes = _outcomes(_load(store, window, filters, config, chosen, environments), window, chosen)
    else:
        teams_members(config, filters.team)  # an unknown team is an error even with nothing to report
        outcomes = []
    if filters.repo is not None:
        shipping = {
            outcome.deploy.service
            for outcome in outcomes
            if any(change.repo == filters.repo for change in outcome.shipped)
        }
        outcomes = [outcome for outcome in outcomes if outcome.deploy.service in shipping]
    by_service: dict[str, list[_Outcome]] = defaultdict(list)
    for outcome in outcomes:
        outcome.leads = _measure(outcome, filters.repo)
        by_service[outcome.deploy.service].append(outcome)
    return DoraReport(
        window,
        chosen,
        _metrics(outcomes, window, chosen),
        {name: _metrics(by_service[name], window, chosen) for name in sorted(by_service)},
    )

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
- Lead time: a deployment ships the changes whose ``deployment_id`` names it; when no change names it and its
  commit's history is stored (changes with ``parents``, from ``shipscope git import``), the commits of
  ``PREV..THIS`` as ``git rev-list`` lists them, PREV being the service's previous successful production deploy;
  otherwise the changes without a ``deployment_id`` whose sha equals its sha (each such change goes to the earliest
  production deploy of that sha in each service). Only deployments with an earlier successful production deploy
  of the service (which may lie before the window) have measured changes. Lead time = ``finished_at −`` the
  change's start: the earliest ``authored_at`` among the changes of its pull request in the same repository, or its
  own ``authored_at``. A change counts once per service, and once overall (at its earliest deploy). Median and p95
  are exact (``percentile_cont`` interpolation). Tier on the median: elite < 1 day, high < 1 week, medium < 30
  days, low.
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
  (and the window); its months without deployments have 0 deployments and null values. With ``trend="week"`` the
  rows are ISO weeks (Monday 00:00 UTC) instead, keyed ``week`` (the Monday) rather than ``month``.
- Explain: ``deployments`` are the counted deployments, ``changes`` the measured changes, ``incidents`` the recovery
  samples: one per counted incident of a failed deployment, and one with a null ``id`` per failed deployment
  without an incident; ``recovery_seconds`` is null when unresolved.

Other presets (``definitions=NAME``; ``DoraDefinitions`` holds every choice as data) reproduce the peers' rules on
shipscope's events, written here from their documentation and code. What they leave out is shipscope's: production
environments, the window, ``(finished_at, id)`` order, which changes a deployment ships, per-service scopes, the
DORA 2023 tiers of lead time, failure rate and recovery (``TIER_CUTOFFS``).

- ``devlake``, Apache DevLake's DORA dashboard. Sources: devlake.apache.org/docs/Metrics/DeploymentFrequency,
  LeadTimeForChanges, CFR and MTTR; the dashboard SQL of apache/incubator-devlake (grafana/dashboards/DORA.json).
  Deployment frequency counts deployment days: per calendar week (starting Monday: ``WEEKDAY``) and per calendar
  month of the window, the UTC dates with a deployment; ``per_week`` / ``per_month`` are their "lower" medians
  (the greatest value whose ``percent_rank`` is ≤ 0.5: element ``floor((n - 1) / 2)`` of the sorted values).
  Elite when ``per_week`` ≥ 7, high when ≥ 1, medium when ``per_month`` ≥ 1, low otherwise; ``per_day`` is
  deployment days ÷ window dates. Lead time is PR cycle time: the first deployment shipping a pull request's
  change (with an earlier production deploy: commits are diffed between consecutive deploys), less the PR's first
  commit, in whole minutes; commits without a PR are not measured; lower median. An incident (any, whatever it
  names; no label is excluded) opened in the window fails the service's latest production deploy finished strictly
  before it opened; recovery runs from that deploy's finish to the incident's resolution (unresolved: no
  fallback); lower median. Only incidents are failure signals.
- ``fourkeys``, Google's Four Keys. Sources: GoogleCloudPlatform/fourkeys (dora-team/fourkeys) METRICS.md and the
  dashboard queries. Frequency over calendar weeks starting Sunday (BigQuery ``WEEK``): elite ("Daily") when the
  median of days with a deployment per week is ≥ 3, high ("Weekly") when the median of "the week had a
  deployment" (0 or 1) is ≥ 1, medium ("Monthly") when the median over weeks of their month's weeks with a
  deployment (``per_month``) is ≥ 1, low ("Yearly") otherwise; ``percentile_cont`` medians. Lead time per change,
  from the change's own commit (not its PR's first), in whole minutes, only > 0 ("automated pushes" dropped), and
  the first deployment's changes count. A deployment fails only by an incident naming it (the root cause link).
  Time to restore: every incident of the services in scope opened in the window, linked or not, opened to
  resolved in whole hours, median (unresolved ones are counted apart).
- ``middleware``, Middleware (middlewarehq/middleware, backend/analytics_server/mhq/service/deployments/analytics.py,
  mhq/utils/dict.py, mhq/service/incidents/incidents.py). Frequency: deployments ``//`` the calendar days, weeks
  (Monday) and months touching the window (empty buckets included, as ``get_average_of_dict_values``); elite
  when ``per_day`` ≥ 1, high when ``per_week`` ≥ 1, medium when ``per_month`` ≥ 1 (shipscope's mapping of those
  floors). Lead time: one per pull request (deploy − its first commit; no earlier deploy needed), tiered on the
  mean (``mean_seconds``). An incident opened in the window fails the service's latest deploy finished at or
  before it opened (``conducted_at <= creation_date <`` next), whatever it names. Recovery: the mean over the
  incidents resolved in the window of resolved − opened.

With incident samples (fourkeys, middleware), ``explain.incidents`` rows name the deployment the incident failed,
or null, and a service's recovery counts the incidents of that service.

Differences (the docs table; "weeks ½": most weeks have a deploy; "last": the service's latest production deploy
finished before the incident opened; incidents opened / resolved in the window):

| choice | shipscope | devlake | fourkeys | middleware |
|---|---|---|---|---|
| frequency | deploys ÷ days | deploy days a week, a month | deploy days a week | deploys `//` days, weeks, months |
| its tiers | 1/day, 1/week, 1/month | days/week 7, 1; days/month 1 | days/week 3; weeks ½; weeks/month 1 | floors ≥ 1 |
| week starts | — | Monday | Sunday | Monday |
| median | interpolated | lower (`floor((n-1)/2)`) | interpolated | interpolated |
| tiered statistic | median | median | median | mean |
| lead time sample | each change | each PR | each change | each PR |
| lead time start | PR's first commit | PR's first commit | the commit | PR's first commit |
| needs an earlier deploy | yes | yes | no | no |
| lead time unit | exact | whole minutes | whole minutes, > 0 only | exact |
| failure signals | rollback, hotfix, older sha, revert, incident | incident | incident | incident |
| incident → deployment | named, else last at or before | last strictly before | named only | last at or before |
| infra-only incidents | excluded | counted | counted | counted |
| recovery samples | failed deploys' incidents (or deploy) | failed deploys' incidents | incidents opened | resolved |
| recovery start | incident opened | deploy finished | incident opened | incident opened |
| unresolved | ends at next deploy | no sample | no sample | not counted |
| recovery unit | exact | exact | whole hours | exact |
"""

from __future__ import annotations

import bisect
import math
import re
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter, itemgetter
from statistics import fmean
from typing import Any, Literal, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy.sql.util import ClauseAdapter

from shipscope.errors import InputError
from shipscope.metrics.common import (
    DEFAULT_CONFIG,
    NO_FILTERS,
    Filters,
    MetricsConfig,
    Window,
    in_window,
    matches_any,
    monday,
    teams_members,
)
from shipscope.store import Store, schema

__all__ = [
    "DEFINITIONS",
    "DEVLAKE",
    "FAILURE_SIGNALS",
    "FOURKEYS",
    "METRICS",
    "MIDDLEWARE",
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
TrendPeriod = Literal["month", "week"]

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
    """The statistic lead time and recovery time are tiered on (``mean`` also reports the lead time's mean)."""
    median: Literal["interpolated", "lower"] = "interpolated"
    """``interpolated``: ``percentile_cont``; ``lower``: the element at ``floor((n - 1) / 2)`` of the sorted values."""
    frequency: Literal["rate", "deployment_days", "floor_mean"] = "rate"
    """How deployment frequency is measured and tiered. ``rate``: deployments ÷ window days against DORA's
    cut-offs (``TIER_CUTOFFS``). ``deployment_days``: per calendar week (and month) of the window, the days with a
    deployment; ``per_week`` and ``per_month`` are medians over those buckets, tiered by ``frequency_cutoffs``.
    ``floor_mean``: deployments ``//`` calendar days, weeks and months touching the window; elite when
    ``per_day`` ≥ 1, high when ``per_week`` ≥ 1, medium when ``per_month`` ≥ 1."""
    frequency_cutoffs: tuple[float, float, float] = (7.0, 1.0, 1.0)
    """``deployment_days``: elite when ``per_week`` ≥ the first, high when ``per_week`` (or, with
    ``high_on_deployed_weeks``, the median of "the week had a deployment" as 0 or 1) ≥ the second, medium when
    ``per_month`` ≥ the third."""
    high_on_deployed_weeks: bool = False
    month_measure: Literal["deployment_days", "deployed_weeks"] = "deployment_days"
    """``deployment_days``: ``per_month`` is the median over calendar months of their deployment days.
    ``deployed_weeks``: every calendar week carries the number of weeks with a deployment that start in its month,
    and ``per_month`` is the median over weeks."""
    week_start: int = 0
    """First day of a calendar week (0 = Monday, 6 = Sunday) for the frequencies that bucket by week."""
    month_days: float = 30.44
    """Days in the month of ``per_month`` of the ``rate`` frequency (DORA's tiers, ``TIER_CUTOFFS``, use 30.44 too)."""
    failure_horizon: timedelta = timedelta(hours=24)
    """How soon after a deploy a rollback or hotfix deploy marks it failed."""
    incident_linking: Literal["explicit", "explicit_or_last_deploy", "last_deploy", "last_earlier_deploy"] = (
        "explicit_or_last_deploy"
    )
    """``explicit``: only ``caused_by_deployment_id``; ``explicit_or_last_deploy``: unlinked incidents go to the
    service's last production deploy at or before they opened, within the window. ``last_deploy`` and
    ``last_earlier_deploy`` ignore ``caused_by_deployment_id``: every incident opened in the window goes to its
    service's last production deploy finished at or before (strictly before) it opened."""
    recovery_start: Literal["incident_opened", "deploy_finished"] = "incident_opened"
    """Where recovery from an incident of a failed deployment starts; a failure without an incident always starts at
    its deploy."""
    recovery_samples: Literal["failures", "incidents_opened", "incidents_resolved"] = "failures"
    """``failures``: one sample per incident of a failed deployment (or per failure without one).
    ``incidents_opened`` / ``incidents_resolved``: one sample (``opened_at`` to ``resolved_at``) per incident of the
    services in scope opened / resolved in the window, linked to a deployment or not."""
    recovery_fallback: bool = True
    """Whether a failure without a resolution time recovers at its stream's next successful deploy."""
    recovery_unit: float = 0.0
    """Recovery samples are truncated to whole multiples of this many seconds (0: exact)."""
    excluded_incident_labels: tuple[str, ...] = ("infra-only",)
    """Incidents with one of these labels (case-insensitive) are never failures."""
    failure_signals: tuple[Signal, ...] = FAILURE_SIGNALS
    """The signals that mark a deployment failed."""
    lead_time_start: Literal["first_commit", "commit"] = "first_commit"
    """``first_commit``: the change's pull request's first commit (or the change); ``commit``: the change itself."""
    lead_time_per: Literal["change", "pull_request"] = "change"
    """``change``: one sample per change; ``pull_request``: one per pull request (changes without one are not
    measured), at the first deployment shipping one of its changes."""
    lead_time_needs_previous: bool = True
    """Whether only deployments with an earlier successful production deploy of the service have measured changes."""
    lead_time_positive_only: bool = False
    """Whether lead times ≤ 0 (after truncation) are dropped."""
    lead_time_unit: float = 0.0
    """Lead times are truncated to whole multiples of this many seconds (0: exact)."""


SHIPSCOPE = DoraDefinitions(name="shipscope")
DEVLAKE = DoraDefinitions(
    name="devlake",
    median="lower",
    frequency="deployment_days",
    frequency_cutoffs=(7.0, 1.0, 1.0),
    week_start=0,
    incident_linking="last_earlier_deploy",
    recovery_start="deploy_finished",
    recovery_fallback=False,
    excluded_incident_labels=(),
    failure_signals=("incident",),
    lead_time_per="pull_request",
    lead_time_unit=60.0,
)
"""Apache DevLake's DORA dashboard (see the module doc)."""
FOURKEYS = DoraDefinitions(
    name="fourkeys",
    frequency="deployment_days",
    frequency_cutoffs=(3.0, 1.0, 1.0),
    high_on_deployed_weeks=True,
    month_measure="deployed_weeks",
    week_start=6,
    incident_linking="explicit",
    recovery_samples="incidents_opened",
    recovery_fallback=False,
    recovery_unit=HOUR_SECONDS,
    excluded_incident_labels=(),
    failure_signals=("incident",),
    lead_time_start="commit",
    lead_time_needs_previous=False,
    lead_time_positive_only=True,
    lead_time_unit=60.0,
)
"""Google's Four Keys dashboard queries (see the module doc)."""
MIDDLEWARE = DoraDefinitions(
    name="middleware",
    center="mean",
    frequency="floor_mean",
    week_start=0,
    incident_linking="last_deploy",
    recovery_samples="incidents_resolved",
    recovery_fallback=False,
    excluded_incident_labels=(),
    failure_signals=("incident",),
    lead_time_per="pull_request",
    lead_time_needs_previous=False,
)
"""Middleware's analytics service (see the module doc)."""
DEFINITIONS: Mapping[str, DoraDefinitions] = {
    preset.name: preset for preset in (SHIPSCOPE, DEVLAKE, FOURKEYS, MIDDLEWARE)
}
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
    mean_seconds: float | None = None
    """Only for definitions centered on the mean (and then in the JSON)."""

    def to_json(self) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "changes": self.changes,
            "median_seconds": self.median_seconds,
            "p95_seconds": self.p95_seconds,
            "tier": self.tier,
        }
        if self.mean_seconds is not None:
            shape["mean_seconds"] = self.mean_seconds
        return _no_data(shape, self.no_data)


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
    deployment_id: str | None
    """The failed deployment; with incident samples (``recovery_samples``), None for an incident linked to none."""
    recovery_seconds: float | None
    """None when unresolved."""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "deployment_id": self.deployment_id, "recovery_seconds": self.recovery_seconds}


@dataclass(frozen=True)
class TrendPoint:
    period: TrendPeriod
    start: str
    """``YYYY-MM`` for a month, the Monday's ``YYYY-MM-DD`` for a week (UTC)."""
    deployments: int
    lead_time_median_seconds: float | None
    change_failure_rate: float | None
    recovery_median_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            self.period: self.start,
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
    key: tuple[datetime, str, str] = field(init=False)
    """The deployment order: (finished_at, id, source); kept, since sorts and binary searches read it often."""

    def __post_init__(self) -> None:
        self.key = (self.finished_at, self.id, self.source)


class _Change(NamedTuple):
    repo: str
    sha: str
    pr_number: int | None
    message: str | None
    """Only a revert's message (the rest are not needed)."""
    deployment_id: str | None
    started_at: datetime
    """The pull request's first commit's authored_at, or the change's own; naive UTC, as both times are read (a
    deployment's lead times subtract them from its own time made naive once, rather than each made aware)."""
    authored_at: datetime


@dataclass(frozen=True, slots=True)
class _Incident:
    id: str
    service: str
    opened_at: datetime
    resolved_at: datetime | None
    caused_by: str | None


@dataclass
class _History:
    """The commits of the deployed repositories that carry their parents (``shipscope git import``), and per service
    the sha of its last successful production deploy before the loaded stretch."""

    parents: dict[str, tuple[str, ...]]
    commits: dict[str, _Change]
    """The commits naming no deployment, which a deploy ships by the graph."""
    earlier_sha: dict[str, str]
    _ancestors: dict[str, frozenset[str]] = field(default_factory=dict)

    def ancestors(self, sha: str) -> frozenset[str]:
        """``sha`` and every commit reachable from it (what ``git rev-list SHA`` lists, as far as it is stored)."""
        known = self._ancestors.get(sha)
        if known is None:
            seen: set[str] = set()
            pending = [sha]
            while pending:
                commit = pending.pop()
                if commit in seen:
                    continue
                seen.add(commit)
                pending.extend(self.parents.get(commit, ()))
            known = self._ancestors[sha] = frozenset(seen)
        return known

    def between(self, previous: str, sha: str) -> list[_Change]:
        """The commits of ``previous..sha``: reachable from this deploy's commit and not from the previous one's."""
        before = self.ancestors(previous)
        return [self.commits[commit] for commit in self.ancestors(sha) - before if commit in self.commits]


@dataclass(frozen=True)
class _Data:
    deploys: list[_Deploy]
    """The finished production deployments in scope from the window's start less the failure horizon on."""
    changes: list[_Change]
    hotfix_prs: set[tuple[str, int]]
    incidents: list[_Incident]
    """The incidents that may mark a deployment failed."""
    recovery_incidents: list[_Incident] = field(default_factory=list)
    """With incident samples (``recovery_samples``): the incidents in scope opened or resolved in the window."""
    history: _History | None = None
    """The commit graph of the deployed repositories, when their changes carry parents."""


def _aware(moment: datetime) -> datetime:
    """A stored time with its offset (both backends return UTC sessions' times with one; a bare one is UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _utc(moment: datetime) -> datetime:
    """A stored time in UTC, for calendar dates and months."""
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _naive_utc(moment: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A stored time as a naive UTC timestamp (sessions are in UTC on both backends), for reads of many rows:
    DuckDB hands a naive value to Python three times faster than a time-zone-aware one."""
    return sa.cast(moment, sa.DateTime())


def _production_environments(store: Store, config: MetricsConfig, filters: Filters) -> list[str]:
    known = store.query(sa.select(_deployments.c.environment).distinct())
    names = sorted(row["environment"] for row in known)
    chosen = [name for name in names if matches_any(name, config.production_environments)]
    if filters.environment is not None:
        chosen = [name for name in chosen if matches_any(name, (filters.environment,))]
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
    change_columns = [
        _changes.c.repo,
        _changes.c.sha,
        _changes.c.pr_number,
        _changes.c.message,
        _changes.c.deployment_id,
        _changes.c.authored_at,
    ]
    # Two disjoint halves rather than one OR, so that each can look its changes up by an index.
    shipped = sa.union_all(
        sa.select(*change_columns).where(_changes.c.deployment_id.in_(recent)),
        sa.select(*change_columns).where(
            _changes.c.deployment_id.is_(None), _changes.c.sha.in_(recent.with_only_columns(_deployments.c.sha))
        ),
    ).cte("shipped")
    pr_keys = (
        sa.select(shipped.c.repo, shipped.c.pr_number)
        .where(shipped.c.pr_number.is_not(None))
        .distinct()
        .subquery("pr_keys")
    )
    patterns = [pattern.lower() for pattern in config.hotfix_patterns if pattern]
    with_hotfixes = bool(patterns) and "hotfix" in definitions.failure_signals
    changes, hotfix_prs = _load_changes(store, shipped, pr_keys, patterns if with_hotfixes else [])
    linked = _incidents.c.caused_by_deployment_id.in_(recent)
    incident_scope = _service_conditions(_incidents.c.service, filters, members)
    opened = sa.and_(in_window(_incidents.c.opened_at, window), *incident_scope)
    which: sa.ColumnElement[bool]
    if definitions.incident_linking == "explicit_or_last_deploy":
        which = sa.or_(linked, sa.and_(_incidents.c.caused_by_deployment_id.is_(None), opened))
    elif definitions.incident_linking == "explicit":
        which = linked
    else:
        which = opened
    incidents = _load_incidents(store, which, definitions)
    recovery_incidents: list[_Incident] = []
    if definitions.recovery_samples == "incidents_opened":
        recovery_incidents = _load_incidents(store, opened, definitions)
    elif definitions.recovery_samples == "incidents_resolved":
        resolved = sa.and_(in_window(_incidents.c.resolved_at, window), *incident_scope)
        recovery_incidents = _load_incidents(store, resolved, definitions)
    cutoff = window.since - definitions.failure_horizon
    deploys = _load_deploys(store, scope, cutoff)
    history = _load_history(store, scope, recent, cutoff)
    return _Data(deploys, changes, hotfix_prs, incidents, recovery_incidents, history)


def _load_history(
    store: Store, scope: Sequence[sa.ColumnElement[bool]], recent: sa.Select[Any], cutoff: datetime
) -> _History | None:
    """The commit graph of the repositories whose commits the recent deploys shipped, when their changes carry
    parents; None otherwise (webhook and API changes do not, and lead time then matches deploys by sha)."""
    deployed_repos = (
        sa.select(_changes.c.repo).where(_changes.c.sha.in_(recent.with_only_columns(_deployments.c.sha))).distinct()
    )
    rows = store.query_rows(
        sa.select(
            _changes.c.repo,
            _changes.c.sha,
            _changes.c.parents,
            _changes.c.pr_number,
            _changes.c.message,
            _changes.c.deployment_id,
            _naive_utc(_changes.c.authored_at),
        ).where(_changes.c.parents.is_not(None), _changes.c.repo.in_(deployed_repos))
    )
    if not rows:
        return None
    first: dict[tuple[str, int], datetime] = {}
    for row in rows:
        if row[3] is not None:
            authored = row[6]
            key = (row[0], row[3])
            first[key] = min(first.get(key, authored), authored)
    parents: dict[str, tuple[str, ...]] = {}
    commits: dict[str, _Change] = {}
    for repo, sha, listed, number, message, deployment_id, authored_at in rows:
        parents[sha] = tuple(orjson.loads(listed))
        if deployment_id is None:
            started = first.get((repo, number), authored_at) if number is not None else authored_at
            revert = message if message and _REVERT_MARK in message else None
            commits[sha] = _Change(repo, sha, number, revert, None, started, authored_at)
    last_before = (
        sa.select(_deployments.c.service, sa.func.max(_deployments.c.finished_at).label("finished_at"))
        .where(*scope, _deployments.c.status == "success", _deployments.c.finished_at < cutoff)
        .group_by(_deployments.c.service)
        .subquery("last_before")
    )
    earlier = store.query_rows(
        sa.select(_deployments.c.service, _deployments.c.sha)
        .join(
            last_before,
            sa.and_(
                _deployments.c.service == last_before.c.service,
                _deployments.c.finished_at == last_before.c.finished_at,
            ),
        )
        .where(*scope, _deployments.c.status == "success")
    )
    return _History(parents, commits, {service: sha for service, sha in earlier})


def _load_deploys(store: Store, scope: Sequence[sa.ColumnElement[bool]], cutoff: datetime) -> list[_Deploy]:
    """The finished production deployments in scope from ``cutoff`` on: successful ones, and failed or cancelled
    rollbacks and hotfixes (their signals count too).

    Every question about a counted deployment looks at deploys after ``cutoff`` (the window's start less the
    failure horizon), but for three about the time before, which the successful deploys before ``cutoff`` answer,
    grouped: whether the service deployed before (lead time is measured from a previous deploy), and whether the
    service or the environment shipped the sha before (the sha-match fallback of changes, the older-sha signal).
    """
    earlier = _deployments.alias("earlier")
    earlier_scope = [ClauseAdapter(earlier).traverse(condition) for condition in scope]

    def shipped_before(*keys: str) -> sa.Subquery:
        columns = [earlier.c[key] for key in keys]
        return (
            sa.select(*columns)
            .where(*earlier_scope, earlier.c.status == "success", earlier.c.finished_at < cutoff)
            .group_by(*columns)
            .subquery(f"before_{'_'.join(keys)}")
        )

    service = shipped_before("service")
    service_sha = shipped_before("service", "sha")
    stream_sha = shipped_before("service", "environment", "sha")
    deploys = _deployments
    signal_only = sa.and_(
        deploys.c.status != "success",
        sa.or_(deploys.c.kind.in_(("rollback", "hotfix")), deploys.c.rollback_of.is_not(None)),
    )
    rows = store.query_rows(
        sa.select(
            deploys.c.source,
            deploys.c.id,
            deploys.c.service,
            deploys.c.environment,
            deploys.c.sha,
            _naive_utc(deploys.c.finished_at),
            deploys.c.status,
            deploys.c.kind,
            deploys.c.rollback_of,
            service.c.service.is_not(None).label("service_before"),
            service_sha.c.service.is_not(None).label("sha_before_in_service"),
            stream_sha.c.service.is_not(None).label("sha_before_in_stream"),
        )
        .select_from(
            deploys.outerjoin(service, service.c.service == deploys.c.service)
            .outerjoin(
                service_sha, sa.and_(service_sha.c.service == deploys.c.service, service_sha.c.sha == deploys.c.sha)
            )
            .outerjoin(
                stream_sha,
                sa.and_(
                    stream_sha.c.service == deploys.c.service,
                    stream_sha.c.environment == deploys.c.environment,
                    stream_sha.c.sha == deploys.c.sha,
                ),
            )
        )
        .where(*scope, deploys.c.finished_at >= cutoff, sa.or_(deploys.c.status == "success", signal_only))
    )
    return [
        _Deploy(
            source,
            id,
            service_name,
            environment,
            sha,
            _utc(finished_at),
            status,
            kind or "deploy",
            rollback_of,
            bool(service_before),
            bool(sha_before_in_service),
            bool(sha_before_in_stream),
        )
        for (
            source,
            id,
            service_name,
            environment,
            sha,
            finished_at,
            status,
            kind,
            rollback_of,
            service_before,
            sha_before_in_service,
            sha_before_in_stream,
        ) in rows
    ]


def _load_changes(
    store: Store, shipped: sa.CTE, pr_keys: sa.Subquery, hotfix_patterns: Sequence[str]
) -> tuple[list[_Change], set[tuple[str, int]]]:
    """The shipped changes, each with its pull request's first commit time (over all that PR's changes), and, with
    ``hotfix_patterns``, the shipped pull requests with a hotfix label or with CI runs on a hotfix branch (in the
    same statement, which reads the shipped changes once)."""
    every = _changes.alias("every_change")
    first_commit = (
        sa.select(every.c.repo, every.c.pr_number, sa.func.min(every.c.authored_at).label("first_authored_at"))
        .join(pr_keys, sa.and_(every.c.repo == pr_keys.c.repo, every.c.pr_number == pr_keys.c.pr_number))
        .group_by(every.c.repo, every.c.pr_number)
        .subquery("first_commit")
    )
    revert_message = sa.case((shipped.c.message.contains(_REVERT_MARK), shipped.c.message))
    joined = shipped.outerjoin(
        first_commit,
        sa.and_(shipped.c.repo == first_commit.c.repo, shipped.c.pr_number == first_commit.c.pr_number),
    )
    hotfix_columns: list[sa.ColumnElement[Any]] = []
    if hotfix_patterns:
        candidates = _hotfix_candidates(pr_keys, hotfix_patterns)
        joined = joined.outerjoin(
            candidates, sa.and_(candidates.c.repo == shipped.c.repo, candidates.c.pr_number == shipped.c.pr_number)
        )
        hotfix_columns = [candidates.c.labels, candidates.c.hotfix_branch]
    rows = store.query_rows(
        sa.select(
            shipped.c.repo,
            shipped.c.sha,
            shipped.c.pr_number,
            revert_message.label("message"),
            shipped.c.deployment_id,
            _naive_utc(sa.func.coalesce(first_commit.c.first_authored_at, shipped.c.authored_at)).label("started_at"),
            _naive_utc(shipped.c.authored_at).label("authored_at"),
            *hotfix_columns,
        ).select_from(joined)
    )
    changes = [_Change(*row[:7]) for row in rows]
    hotfix_prs: set[tuple[str, int]] = set()
    if hotfix_patterns:
        judged: set[tuple[str, int]] = set()
        for row in rows:
            key = (row[0], row[2])
            # A candidate has a hotfix_branch verdict (true or false); the rest are NULL from the outer join.
            if row[8] is None or key in judged:
                continue
            judged.add(key)
            labels = [label.lower() for label in parse_labels(row[7])]
            if row[8] or any(pattern in label for label in labels for pattern in hotfix_patterns):
                hotfix_prs.add(key)
    return changes, hotfix_prs


def _hotfix_candidates(pr_keys: sa.Subquery, patterns: Sequence[str]) -> sa.Subquery:
    """The shipped pull requests that may be hotfixes: with CI runs on a hotfix branch (``hotfix_branch``), or with
    a pattern somewhere in their labels' JSON text, which Python then checks label by label."""
    hotfix_branches = (
        sa.select(pr_keys.c.repo, pr_keys.c.pr_number)
        .join(_runs, sa.and_(_runs.c.repo == pr_keys.c.repo, _runs.c.pr_number == pr_keys.c.pr_number))
        .where(sa.or_(*(sa.func.lower(_runs.c.branch).contains(pattern, autoescape=True) for pattern in patterns)))
        .distinct()
        .subquery("hotfix_branches")
    )
    on_hotfix_branch = hotfix_branches.c.repo.is_not(None)
    labeled = sa.or_(
        *(sa.func.lower(_pull_requests.c.labels).contains(pattern, autoescape=True) for pattern in patterns)
    )
    return (
        sa.select(pr_keys.c.repo, pr_keys.c.pr_number, _pull_requests.c.labels, on_hotfix_branch.label("hotfix_branch"))
        .select_from(
            pr_keys.outerjoin(
                _pull_requests,
                sa.and_(_pull_requests.c.repo == pr_keys.c.repo, _pull_requests.c.number == pr_keys.c.pr_number),
            ).outerjoin(
                hotfix_branches,
                sa.and_(hotfix_branches.c.repo == pr_keys.c.repo, hotfix_branches.c.pr_number == pr_keys.c.pr_number),
            )
        )
        .where(sa.or_(labeled, on_hotfix_branch))
        .subquery("hotfix_candidates")
    )


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
        labels = parse_labels(row["labels"])
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


def parse_labels(text: str | None) -> tuple[str, ...]:
    """Stored labels: a JSON list, or one plain label."""
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

    def last_before(self, moment: datetime) -> _Deploy | None:
        index = bisect.bisect_left(self.times, moment)
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
    record: DeploymentRecord = field(init=False)
    """Its explain row, made once its signals and incidents are known (every scope of every view shares it)."""


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
        good = sorted((deploy for deploy in data.deploys if deploy.status == "success"), key=_DEPLOY_ORDER)
        per_service: dict[str, list[_Deploy]] = defaultdict(list)
        per_stream: dict[tuple[str, str], list[_Deploy]] = defaultdict(list)
        by_id: dict[str, list[_Deploy]] = defaultdict(list)
        for deploy in good:
            per_service[deploy.service].append(deploy)
            per_stream[(deploy.service, deploy.environment)].append(deploy)
            by_id[deploy.id].append(deploy)
        counted = {deploy: _Outcome(deploy) for deploy in good if window.since <= deploy.finished_at < window.until}
        shipped = _shipped_changes(good, by_id, data.changes, data.history)
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
        outcome.record = DeploymentRecord(
            deploy.id,
            deploy.finished_at,
            bool(outcome.signals),
            tuple(signal for signal in FAILURE_SIGNALS if signal in outcome.signals) if outcome.signals else (),
            tuple(sorted({incident.id for incident in outcome.incidents})) if outcome.incidents else (),
        )
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

    hotfix_numbers = {number for _, number in data.hotfix_prs}  # a set of ints rules most changes out cheaply
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
                change.pr_number in hotfix_numbers and (change.repo, change.pr_number) in data.hotfix_prs
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
    linking = definitions.incident_linking
    for incident in sorted(incidents, key=lambda i: (i.opened_at, i.id)):
        if linking in ("last_deploy", "last_earlier_deploy"):
            sequence = timeline.services.get(incident.service)
            if sequence is None or not window.since <= incident.opened_at < window.until:
                targets = []
            else:
                last = (
                    sequence.last_at_or_before(incident.opened_at)
                    if linking == "last_deploy"
                    else sequence.last_before(incident.opened_at)
                )
                targets = [last] if last is not None else []
        elif incident.caused_by is not None:
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
    good: list[_Deploy], by_id: Mapping[str, list[_Deploy]], changes: list[_Change], history: _History | None
) -> dict[_Deploy, list[_Change]]:
    """The changes each successful production deployment shipped: those naming it, or when none does, the commits
    between the service's previous deploy and it when the history is known (``git rev-list PREV..THIS``), else
    those naming no deployment whose sha is its sha (at the service's earliest deploy of that sha)."""
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
    by_graph: set[_Deploy] = set()
    if history is not None:
        previous: dict[str, str] = dict(history.earlier_sha)
        for deploy in good:
            before = previous.get(deploy.service)
            previous[deploy.service] = deploy.sha
            if deploy in named or before is None or deploy.sha not in history.parents:
                continue
            by_graph.add(deploy)
            shipped[deploy].extend(history.between(before, deploy.sha))
    for change in unlinked:
        for deploy in by_sha.get(change.sha, ()):
            if deploy not in by_graph:
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
        if end is None and definitions.recovery_fallback:
            following = stream.first_after(deploy, start)
            end = following.finished_at if following is not None else None
        seconds = None if end is None else _truncate(max(0.0, (end - start).total_seconds()), definitions.recovery_unit)
        records.append(RecoveryRecord(incident_id, deploy.id, seconds))
    return records


class _Sample(NamedTuple):
    """A recovery sample, with the service and the moment (UTC) whose month it belongs to in the trend."""

    service: str
    moment: datetime
    record: RecoveryRecord


def _incident_samples(
    incidents: Sequence[_Incident], outcomes: Sequence[_Outcome], definitions: DoraDefinitions
) -> list[_Sample]:
    """One sample per incident (``recovery_samples`` other than ``failures``): opened to resolved, by the month it
    opened or resolved in."""
    caused = {incident.id: outcome.deploy.id for outcome in outcomes for incident in outcome.incidents}
    samples = []
    for incident in sorted(incidents, key=lambda i: (i.opened_at, i.id)):
        seconds = None
        if incident.resolved_at is not None:
            elapsed = max(0.0, (incident.resolved_at - incident.opened_at).total_seconds())
            seconds = _truncate(elapsed, definitions.recovery_unit)
        moment = incident.opened_at
        if definitions.recovery_samples == "incidents_resolved" and incident.resolved_at is not None:
            moment = incident.resolved_at
        record = RecoveryRecord(incident.id, caused.get(incident.id), seconds)
        samples.append(_Sample(incident.service, moment.astimezone(UTC), record))
    return samples


# ----- aggregation -----------------------------------------------------------------------------------------------


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks, as ``percentile_cont``."""
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _median(values: Iterable[float], kind: Literal["interpolated", "lower"] = "interpolated") -> float | None:
    """The median: interpolated as ``percentile_cont``, or the lower one (element ``floor((n - 1) / 2)``)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return _percentile(ordered, 0.5) if kind == "interpolated" else ordered[(len(ordered) - 1) // 2]


def _center(values: Sequence[float], definitions: DoraDefinitions) -> float | None:
    if not values:
        return None
    return _median(values, definitions.median) if definitions.center == "median" else fmean(values)


def _truncate(seconds: float, unit: float) -> float:
    """``seconds`` truncated (toward zero) to whole ``unit`` s, as SQL's ``TIMESTAMPDIFF``; a unit of 0 keeps it."""
    return float(math.trunc(seconds / unit) * unit) if unit else seconds


_DEPLOY_ORDER = attrgetter("key")
_CHANGE_ORDER = attrgetter("started_at", "repo", "sha")


def _measure(outcome: _Outcome, repo: str | None, definitions: DoraDefinitions) -> list[LeadTimeRecord]:
    if not outcome.measured and definitions.lead_time_needs_previous:
        return []
    deploy = outcome.deploy
    finished = deploy.finished_at.replace(tzinfo=None)  # naive UTC, as the changes' times
    records = []
    for change in sorted(outcome.shipped, key=_CHANGE_ORDER):
        if repo is not None and change.repo != repo:
            continue
        if definitions.lead_time_per == "pull_request" and change.pr_number is None:
            continue
        start = change.started_at if definitions.lead_time_start == "first_commit" else change.authored_at
        seconds = _truncate((finished - start).total_seconds(), definitions.lead_time_unit)
        if definitions.lead_time_positive_only and seconds <= 0:
            continue
        records.append(
            LeadTimeRecord(change.repo, change.sha, change.pr_number, deploy.id, seconds, deploy.finished_at)
        )
    return records


_CHANGE_KEY = itemgetter(0, 1)
"""A lead-time record's change: (repo, sha)."""
_PULL_REQUEST_KEY = itemgetter(0, 2)
"""A lead-time record's pull request: (repo, pr_number)."""


def _lead_times(outcomes: Sequence[_Outcome], definitions: DoraDefinitions) -> list[LeadTimeRecord]:
    """One record per change (or pull request), at the earliest counted deploy that shipped it."""
    seen: set[tuple[str, str | int | None]] = set()
    records: list[LeadTimeRecord] = []
    key_of = _PULL_REQUEST_KEY if definitions.lead_time_per == "pull_request" else _CHANGE_KEY
    for outcome in outcomes:
        for record in outcome.leads:
            key = key_of(record)
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


def _trend_periods(window: Window, period: TrendPeriod) -> tuple[Callable[[datetime], Hashable], list[Hashable], str]:
    """How a moment maps to its trend period, the periods overlapping the window, and how a period is labeled."""
    if period == "month":
        return _month, list(_months(window)), "{0[0]:04d}-{0[1]:02d}"
    first, last = monday(window.since), monday(window.until - timedelta(microseconds=1))
    return monday, [first + timedelta(weeks=index) for index in range((last - first).days // 7 + 1)], "{0}"


def _window_dates(window: Window) -> list[date]:
    """The UTC calendar dates the window touches."""
    first = window.since.astimezone(UTC).date()
    last = (window.until - timedelta(microseconds=1)).astimezone(UTC).date()
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def _week_of(day: date, week_start: int) -> date:
    """The first day of ``day``'s calendar week."""
    return day - timedelta(days=(day.weekday() - week_start) % 7)


def _ranked(checks: tuple[bool, bool, bool]) -> Tier:
    for tier, passed in zip(_RANKED, checks, strict=True):
        if passed:
            return tier
    return "low"


def _frequency(outcomes: Sequence[_Outcome], window: Window, definitions: DoraDefinitions) -> DeploymentFrequency:
    count = len(outcomes)
    if not count:
        return DeploymentFrequency(0, 0, None, None, None, None, "no successful production deployment in the window")
    deployed = {outcome.deploy.finished_at.date() for outcome in outcomes}
    if definitions.frequency == "rate":
        days = (window.until - window.since).total_seconds() / DAY_SECONDS
        per_day = count / days
        return DeploymentFrequency(
            count,
            len(deployed),
            per_day,
            count * 7 / days,
            count * definitions.month_days / days,
            tier_for("deployment_frequency", per_day),
        )
    dates = _window_dates(window)
    weeks: dict[date, int] = {}
    months: dict[tuple[int, int], int] = {}
    for day in dates:
        week = _week_of(day, definitions.week_start)
        weeks[week] = weeks.get(week, 0) + (day in deployed)
        months[(day.year, day.month)] = months.get((day.year, day.month), 0) + (day in deployed)
    if definitions.frequency == "floor_mean":
        floored = (count // len(dates), count // len(weeks), count // len(months))
        tier = _ranked((floored[0] >= 1, floored[1] >= 1, floored[2] >= 1))
        return DeploymentFrequency(count, len(deployed), *floored, tier)

    def median(values: Iterable[float]) -> float:
        found = _median(values, definitions.median)
        assert found is not None  # the window touches at least one day
        return found

    per_week = median(weeks.values())
    if definitions.month_measure == "deployment_days":
        per_month = median(months.values())
    else:
        deployed_weeks: dict[tuple[int, int], int] = defaultdict(int)
        for week, days_deployed in weeks.items():
            deployed_weeks[(week.year, week.month)] += days_deployed > 0
        per_month = median(deployed_weeks[(week.year, week.month)] for week in weeks)
    weekly = median(float(days > 0) for days in weeks.values()) if definitions.high_on_deployed_weeks else per_week
    elite, high, medium = definitions.frequency_cutoffs
    tier = _ranked((per_week >= elite, weekly >= high, per_month >= medium))
    return DeploymentFrequency(count, len(deployed), len(deployed) / len(dates), per_week, per_month, tier)


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
        _median(values, definitions.median),
        _percentile(values, 0.95),
        tier_for("lead_time", _center(values, definitions)),
        mean_seconds=fmean(values) if definitions.center == "mean" else None,
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
        _median(resolved, definitions.median),
        fmean(resolved),
        tier_for("recovery_time", _center(resolved, definitions)),
    )


def _trend(
    outcomes: Sequence[_Outcome],
    changes: Sequence[LeadTimeRecord],
    samples: Sequence[_Sample],
    window: Window,
    definitions: DoraDefinitions,
    period: TrendPeriod,
) -> list[TrendPoint]:
    period_of, periods, label = _trend_periods(window, period)
    deployed: dict[Hashable, int] = defaultdict(int)
    failed: dict[Hashable, int] = defaultdict(int)
    leads: dict[Hashable, list[float]] = defaultdict(list)
    recoveries: dict[Hashable, list[float]] = defaultdict(list)
    for outcome in outcomes:
        key = period_of(outcome.deploy.finished_at)
        deployed[key] += 1
        failed[key] += bool(outcome.signals)
    for sample in samples:
        if sample.record.recovery_seconds is not None:
            recoveries[period_of(sample.moment)].append(sample.record.recovery_seconds)
    deployed_at: datetime | None = None
    for record in changes:
        if record.deployed_at is not deployed_at:  # a deployment's records come together and share its time
            deployed_at = record.deployed_at
            lead_times = leads[period_of(deployed_at)]
        lead_times.append(record.lead_time_seconds)
    return [
        TrendPoint(
            period,
            label.format(key),
            deployed[key],
            _median(leads[key], definitions.median),
            failed[key] / deployed[key] if deployed[key] else None,
            _median(recoveries[key], definitions.median),
        )
        for key in periods
    ]


def _metrics(
    outcomes: Sequence[_Outcome],
    samples: Sequence[_Sample],
    window: Window,
    definitions: DoraDefinitions,
    period: TrendPeriod,
    changes: Sequence[LeadTimeRecord],
) -> DoraMetrics:
    """The four keys over ``outcomes``, whose measured changes (``_lead_times``) are ``changes``."""
    recoveries = [sample.record for sample in samples]
    deployments = tuple(outcome.record for outcome in outcomes)
    return DoraMetrics(
        _frequency(outcomes, window, definitions),
        _lead_time(changes, len(outcomes), definitions),
        _failure_rate(outcomes),
        _recovery(recoveries, definitions),
        tuple(_trend(outcomes, changes, samples, window, definitions, period)),
        deployments,
        tuple(changes),
        tuple(recoveries),
    )


# ----- entry point -----------------------------------------------------------------------------------------------


class DoraView(NamedTuple):
    """One report ``dora_reports`` answers: its window, its trend's period, and whether it has per-service parts."""

    window: Window
    trend: TrendPeriod = "month"
    per_service: bool = True


def dora_report(
    store: Store,
    window: Window,
    filters: Filters = NO_FILTERS,
    config: MetricsConfig = DEFAULT_CONFIG,
    definitions: str = "shipscope",
    trend: TrendPeriod = "month",
    per_service: bool = True,
) -> DoraReport:
    """The four keys over ``window``, overall and per service, by the named definitions (see the module doc), with
    a ``trend`` by calendar month or by ISO week; ``per_service=False`` leaves ``services`` empty (overall only)."""
    (report,) = dora_reports(store, [DoraView(window, trend, per_service)], filters, config, definitions)
    return report


def dora_reports(
    store: Store,
    views: Sequence[DoraView],
    filters: Filters = NO_FILTERS,
    config: MetricsConfig = DEFAULT_CONFIG,
    definitions: str = "shipscope",
) -> list[DoraReport]:
    """``dora_report`` for several windows ending at the same moment, from one load of the widest.

    A deployment's failure signals, shipped changes and recoveries do not depend on where the window starts: what
    comes before the start is read either from the loaded deploys or from the "before" answers of
    ``_load_deploys`` and ``_load_history``, and the incidents linked by time that open before a window's start
    link to deploys before it. So each window's outcomes are the widest window's that finished inside it."""
    until = {view.window.until for view in views}
    if len(until) != 1:
        raise ValueError("the windows of dora_reports must end at the same moment")
    span = Window(min(view.window.since for view in views), until.pop())
    chosen = _definitions(definitions)
    environments = _production_environments(store, config, filters)
    recovery_incidents: list[_Incident] = []
    if environments:
        data = _load(store, span, filters, config, chosen, environments)
        outcomes = _outcomes(data, span, chosen)
        recovery_incidents = data.recovery_incidents
    else:
        teams_members(config, filters.team)  # an unknown team is an error even with nothing to report
        outcomes = []
    for outcome in outcomes:
        outcome.leads = _measure(outcome, filters.repo, chosen)
    return [_report(view, outcomes, recovery_incidents, filters, chosen) for view in views]


def _report(
    view: DoraView,
    loaded: Sequence[_Outcome],
    recovery_incidents: Sequence[_Incident],
    filters: Filters,
    chosen: DoraDefinitions,
) -> DoraReport:
    window = view.window
    outcomes = [outcome for outcome in loaded if window.since <= outcome.deploy.finished_at]
    if chosen.recovery_samples == "failures":
        samples = [
            _Sample(outcome.deploy.service, outcome.deploy.finished_at, record)
            for outcome in outcomes
            for record in outcome.recoveries
        ]
    else:
        # Loaded for the widest window: those opened (or resolved) in this one.
        moment = attrgetter("resolved_at" if chosen.recovery_samples == "incidents_resolved" else "opened_at")
        incidents = [incident for incident in recovery_incidents if moment(incident) >= window.since]
        samples = _incident_samples(incidents, outcomes, chosen)
    if filters.repo is not None:
        shipping = {
            outcome.deploy.service
            for outcome in outcomes
            if any(change.repo == filters.repo for change in outcome.shipped)
        }
        outcomes = [outcome for outcome in outcomes if outcome.deploy.service in shipping]
        samples = [sample for sample in samples if sample.service in shipping]
    by_service: dict[str, list[_Outcome]] = defaultdict(list)
    samples_by_service: dict[str, list[_Sample]] = defaultdict(list)
    if view.per_service:
        for outcome in outcomes:
            by_service[outcome.deploy.service].append(outcome)
        for sample in samples:
            samples_by_service[sample.service].append(sample)
    changes = _lead_times(outcomes, chosen)
    # When no change (or pull request) was measured twice overall, none was within a service either: each service's
    # changes are then its deploys' records as they stand.
    distinct = len(changes) == sum(len(outcome.leads) for outcome in outcomes)

    def service_changes(group: Sequence[_Outcome]) -> list[LeadTimeRecord]:
        if distinct:
            return [record for outcome in group for record in outcome.leads]
        return _lead_times(group, chosen)

    return DoraReport(
        window,
        chosen,
        _metrics(outcomes, samples, window, chosen, view.trend, changes),
        {
            name: _metrics(
                by_service[name],
                samples_by_service[name],
                window,
                chosen,
                view.trend,
                service_changes(by_service[name]),
            )
            for name in sorted(by_service)
        },
    )

"""Pipeline SLIs (DESIGN.md §3): build duration, time to result, stage weeks and regressions, failure rate, queue
time and cache hit rate.

Each part is a function of ``(store, window, filters, config)`` that aggregates in SQL (a few set-based SQLAlchemy
Core selects, the same text on DuckDB and PostgreSQL but for one planner hint) and returns typed rows;
``pipeline_report`` gathers them.

Definitions shared by the parts:

- The window ``[since, until)`` applies to a run's ``created_at`` (a run created inside the window counts even when
  it finished after ``until``), to a job's ``created_at`` for queue time, and to a step's ``started_at`` for
  stages. The regression comparison is the exception: it looks at whole weeks, which may start before ``since``.
- Filters: ``repo`` and ``team`` (the repositories of ``config.teams[team]``) select runs by their repo; jobs,
  steps and caches follow the run they belong to. ``service`` and ``environment`` mean nothing for pipelines and
  are ignored.
- A completed run is one whose status is ``success`` or ``failure``: cancelled and skipped runs produced no
  result, and their cut-short durations would drag the percentiles down. Its duration is ``finished_at −
  started_at``; its time to result ``finished_at − created_at``.
- A pull-request run has trigger ``pull_request`` or a ``pr_number``. A default-branch run is any other run on
  ``default_branch``, or on ``main``/``master`` when the default branch is unknown. Other runs (feature-branch
  pushes, tags, …) are in neither group, but do count in the whole-run p95 of the regression check.
- Ids are scoped by ``source``: a job belongs to the run of its ``source`` and ``run_id``, a step to the job of its
  ``source`` and ``job_id``, a cache event to the run of its ``run_id``, or, when it names none, to its job's run.
  Runs are keyed by attempt too: a job belongs to the attempt it names, clamped to the highest stored attempt
  (GitLab counts job retries in ``attempt`` within one pipeline), or to the highest stored attempt when it names
  none; a cache event belongs to the attempt of its job, else to the highest stored attempt.
- Queries are shaped for both engines: durations come from each timestamp's epoch (``_elapsed``), weeks from epoch
  arithmetic (``_week_index``), and no join reads a grouped subquery except the last one of a query (PostgreSQL
  has no statistics for one, and its estimate of a handful of rows would turn the joins above into nested loops).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import orjson
import sqlalchemy as sa

from shipscope.metrics.common import (
    DEFAULT_CONFIG,
    EARLIEST,
    NO_FILTERS,
    Filters,
    MetricsConfig,
    Percentiles,
    Ratio,
    Window,
    in_window,
    job_belongs_to,
    monday,
    percentile_columns,
    teams_members,
)
from shipscope.store import Store, schema

BranchKind = Literal["pr", "default"]
FailureClass = Literal["infra", "test", "build", "security", "unknown"]

COMPLETED_STATUSES: tuple[str, ...] = ("success", "failure")
"""Statuses of a completed run, job or step: one that produced a result."""
FAILURE_CLASSES: tuple[FailureClass, ...] = ("test", "build", "security", "unknown")
"""Classes of a failed run that count in the failure rate (``infra`` is counted apart)."""
DEFAULT_BRANCH_FALLBACK: tuple[str, ...] = ("main", "master")
"""The default branch when a run does not say which it is."""
REGRESSION_THRESHOLD = 0.20
"""Growth of the whole-run p95 against the previous weeks that makes a regression."""
REGRESSION_BASELINE_WEEKS = 4
UNKNOWN_RUNNER = "unknown"
"""The runner label of jobs that name no runner."""

_runs = schema.pipeline_runs
_jobs = schema.jobs
_steps = schema.steps
_caches = schema.caches


# ----- results ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowDurations:
    """Completed runs of one workflow, pull-request or default-branch ones."""

    repo: str
    workflow: str
    branch_kind: BranchKind
    runs: int
    """Completed runs (success or failure) created in the window."""
    duration: Percentiles
    """``finished_at − started_at`` in seconds."""
    time_to_result: Percentiles
    """``finished_at − created_at`` in seconds (includes queueing)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "workflow": self.workflow,
            "branch_kind": self.branch_kind,
            "runs": self.runs,
            "duration_seconds": self.duration.to_json(),
            "time_to_result_seconds": self.time_to_result.to_json(),
        }


@dataclass(frozen=True)
class FailureRate:
    """Completed default-branch runs of one workflow: failed ÷ (succeeded + failed), infra failures apart."""

    repo: str
    workflow: str
    succeeded: int
    failed: int
    """Failed runs not classified infra."""
    infra: int
    """Failed runs all of whose failed jobs failed on infrastructure: in neither count above."""
    by_class: Mapping[str, int] = field(default_factory=dict)
    """``failed`` split by class (test, build, security, unknown)."""

    @property
    def ratio(self) -> Ratio:
        return Ratio(self.failed, self.succeeded + self.failed)

    def to_json(self) -> dict[str, Any]:
        shape: dict[str, Any] = {"repo": self.repo, "workflow": self.workflow, "succeeded": self.succeeded}
        shape.update(self.ratio.to_json("failed", "completed"))
        if "no_data" in shape:
            shape["no_data"] = "no succeeded or failed (non-infra) default-branch runs in the window"
        shape["infra"] = self.infra
        shape["by_class"] = dict(self.by_class)
        return shape


@dataclass(frozen=True)
class QueueTime:
    """``started_at − created_at`` of the jobs that asked for one runner label."""

    runner_label: str
    queue: Percentiles

    def to_json(self) -> dict[str, Any]:
        return {"runner_label": self.runner_label, **self.queue.to_json()}


@dataclass(frozen=True)
class CacheHitRate:
    """Cache lookups of one repository's runs on warm branches."""

    repo: str
    hits: int
    misses: int
    cold: int
    """Lookups left out because their run was the first on its branch."""

    @property
    def ratio(self) -> Ratio:
        return Ratio(self.hits, self.hits + self.misses)

    def to_json(self) -> dict[str, Any]:
        shape: dict[str, Any] = {"repo": self.repo}
        shape.update(self.ratio.to_json("hits", "lookups"))
        if "no_data" in shape:
            shape["no_data"] = "no cache lookups on warm branches in the window"
        shape["misses"] = self.misses
        shape["cold_lookups"] = self.cold
        return shape


@dataclass(frozen=True)
class Histogram:
    """Counts of durations at or below each bound (cumulative, as Prometheus histograms), per label set."""

    labels: Mapping[str, str]
    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    """Samples ≤ each bound, one per bound; the +Inf bucket is ``count``."""
    count: int
    total_seconds: float


@dataclass(frozen=True)
class DurationWeek:
    """Build durations of the completed PR or default-branch runs created in one ISO week."""

    week: date
    """The Monday (UTC) the week starts on."""
    branch_kind: BranchKind
    duration: Percentiles

    def to_json(self) -> dict[str, Any]:
        return {"week": self.week.isoformat(), "branch_kind": self.branch_kind, **self.duration.to_json()}


@dataclass(frozen=True)
class StageWeek:
    """Durations of the completed steps of one canonical stage that started in one ISO week."""

    stage: str
    week: date
    """The Monday (UTC) the week starts on."""
    duration: Percentiles

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "week": self.week.isoformat(), **self.duration.to_json()}


@dataclass(frozen=True)
class StageGrowth:
    """One stage's p95 in the checked week against the weeks before it."""

    stage: str
    current: Percentiles
    baseline: Percentiles

    @property
    def growth_seconds(self) -> float | None:
        if self.current.p95 is None or self.baseline.p95 is None:
            return None
        return self.current.p95 - self.baseline.p95

    @property
    def growth_fraction(self) -> float | None:
        grown = self.growth_seconds
        if grown is None or not self.baseline.p95:
            return None
        return grown / self.baseline.p95

    def to_json(self) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "stage": self.stage,
            "p95": self.current.p95,
            "baseline_p95": self.baseline.p95,
            "growth_seconds": self.growth_seconds,
            "growth_fraction": self.growth_fraction,
            "samples": self.current.samples,
            "baseline_samples": self.baseline.samples,
        }
        if self.baseline.samples == 0:
            shape["no_data"] = "no baseline samples: the stage is new in this week"
        return shape


@dataclass(frozen=True)
class RegressionCheck:
    """The window's last week against the four weeks before it (see ``regressions``)."""

    week: date
    """Monday of the checked week: the ISO week holding the window's last instant, up to ``until``."""
    baseline_since: date
    """Monday of the first baseline week; the baseline ends where ``week`` starts."""
    current: Percentiles
    """Whole-run duration (all completed runs) in the checked week."""
    baseline: Percentiles
    """Whole-run duration over the baseline weeks together."""
    stages: tuple[StageGrowth, ...]
    """Stages whose p95 grew, most seconds first; stages absent from the baseline last."""
    threshold: float = REGRESSION_THRESHOLD

    @property
    def growth_seconds(self) -> float | None:
        if self.current.p95 is None or self.baseline.p95 is None:
            return None
        return self.current.p95 - self.baseline.p95

    @property
    def growth_fraction(self) -> float | None:
        grown = self.growth_seconds
        if grown is None or not self.baseline.p95:
            return None
        return grown / self.baseline.p95

    @property
    def regressed(self) -> bool:
        grown = self.growth_fraction
        return grown is not None and grown >= self.threshold - 1e-12

    @property
    def reason(self) -> str | None:
        """Why there is no regression, or None when there is one."""
        if self.current.samples == 0:
            return f"no completed runs in the week of {self.week.isoformat()}"
        if self.baseline.samples == 0:
            return f"no completed runs in the {REGRESSION_BASELINE_WEEKS} weeks before {self.week.isoformat()}"
        grown = self.growth_fraction
        if grown is None:
            return "the baseline p95 is 0 s: growth is undefined"
        if self.regressed:
            return None
        return (
            f"the run p95 of the week of {self.week.isoformat()} ({self.current.p95:.1f} s) is {grown:+.1%} against "
            f"the {REGRESSION_BASELINE_WEEKS} weeks before ({self.baseline.p95:.1f} s): below {self.threshold:.0%}"
        )

    def to_json(self) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "week": self.week.isoformat(),
            "baseline_weeks": [
                (self.baseline_since + timedelta(weeks=index)).isoformat() for index in range(REGRESSION_BASELINE_WEEKS)
            ],
            "threshold": self.threshold,
            "run_seconds": self.current.to_json(),
            "baseline_run_seconds": self.baseline.to_json(),
            "growth_seconds": self.growth_seconds,
            "growth_fraction": self.growth_fraction,
            "regressed": self.regressed,
            "stages": [stage.to_json() for stage in self.stages],
        }
        reason = self.reason
        if reason is not None:
            shape["reason"] = reason
        return shape


@dataclass(frozen=True)
class PipelineReport:
    window: Window
    filters: Filters
    workflows: tuple[WorkflowDurations, ...]
    duration_weeks: tuple[DurationWeek, ...]
    failure_rate: tuple[FailureRate, ...]
    queue_seconds: tuple[QueueTime, ...]
    cache_hit_rate: tuple[CacheHitRate, ...]
    stages: tuple[StageWeek, ...]
    regression: RegressionCheck

    @property
    def regressions(self) -> tuple[RegressionCheck, ...]:
        """The regression of the window's last week, when there is one."""
        return (self.regression,) if self.regression.regressed else ()

    def to_json(self) -> dict[str, Any]:
        sections: dict[str, list[dict[str, Any]]] = {
            "workflows": [row.to_json() for row in self.workflows],
            "duration_weeks": [row.to_json() for row in self.duration_weeks],
            "failure_rate": [row.to_json() for row in self.failure_rate],
            "queue_seconds": [row.to_json() for row in self.queue_seconds],
            "cache_hit_rate": [row.to_json() for row in self.cache_hit_rate],
            "stages": [row.to_json() for row in self.stages],
            "regressions": [row.to_json() for row in self.regressions],
        }
        empty = {
            "workflows": "no completed pull-request or default-branch runs in the window",
            "duration_weeks": "no completed pull-request or default-branch runs in the window",
            "failure_rate": "no completed default-branch runs in the window",
            "queue_seconds": "no started jobs created in the window",
            "cache_hit_rate": "no cache lookups belonging to runs created in the window",
            "stages": "no completed steps started in the window",
            "regressions": self.regression.reason or "",
        }
        no_data = {name: reason for name, reason in empty.items() if not sections[name]}
        shape: dict[str, Any] = {"window": self.window.to_json(), "filters": self.filters.to_json(), **sections}
        shape["regression_check"] = self.regression.to_json()
        if no_data:
            shape["no_data"] = no_data
        return shape


# ----- the report --------------------------------------------------------------------------------------------------


def pipeline_report(
    store: Store, window: Window, filters: Filters = NO_FILTERS, config: MetricsConfig = DEFAULT_CONFIG
) -> PipelineReport:
    """Every pipeline SLI of DESIGN.md §3 for ``window`` and ``filters`` (see the module docstring).

    The parts are independent statements, so three run at a time, the slowest first: the database does the work
    with Python's lock released, and no one statement keeps both cores busy throughout (at 1,000,000 runs on
    DuckDB, 2 cores: 317 ms against 394 ms one after another, bench/README.md)."""
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="pipeline-report") as pool:
        arguments = (store, window, filters, config)
        failure_rate = pool.submit(failure_rates, *arguments)
        cache_hit_rate = pool.submit(cache_hit_rates, *arguments)
        queue_seconds = pool.submit(queue_times, *arguments)
        regression = pool.submit(regressions, *arguments)
        stages = pool.submit(stage_weeks, *arguments)
        workflows = pool.submit(workflow_durations, *arguments)
        weeks = pool.submit(duration_weeks, *arguments)
        return PipelineReport(
            window=window,
            filters=filters,
            workflows=workflows.result(),
            duration_weeks=weeks.result(),
            failure_rate=failure_rate.result(),
            queue_seconds=queue_seconds.result(),
            cache_hit_rate=cache_hit_rate.result(),
            stages=stages.result(),
            regression=regression.result(),
        )


# ----- shared SQL pieces -------------------------------------------------------------------------------------------


def _run_conditions(runs: sa.FromClause, filters: Filters, config: MetricsConfig) -> list[sa.ColumnElement[bool]]:
    """The repo and team filters on a run table (alias); service and environment do not apply to runs."""
    conditions: list[sa.ColumnElement[bool]] = []
    if filters.repo is not None:
        conditions.append(runs.c.repo == filters.repo)
    members = teams_members(config, filters.team)
    if members is not None:
        conditions.append(runs.c.repo.in_(list(members)))
    return conditions


def _filters_runs(filters: Filters) -> bool:
    return filters.repo is not None or filters.team is not None


def _branch_kind(runs: sa.FromClause) -> sa.ColumnElement[Any]:
    """``'pr'``, ``'default'`` or NULL for a run (a pull-request run on the default branch is a PR run)."""
    default_branch = sa.func.nullif(runs.c.default_branch, "")
    return sa.case(
        (sa.or_(runs.c.trigger == "pull_request", runs.c.pr_number.is_not(None)), "pr"),
        (
            sa.or_(
                sa.and_(default_branch.is_not(None), runs.c.branch == default_branch),
                sa.and_(default_branch.is_(None), runs.c.branch.in_(DEFAULT_BRANCH_FALLBACK)),
            ),
            "default",
        ),
        else_=sa.null(),
    )


def _run_of_job_exists(jobs: sa.FromClause, filters: Filters, config: MetricsConfig) -> sa.ColumnElement[bool]:
    """The job's run (any attempt) passes the run filters."""
    runs = _runs.alias("filtered_runs")
    return sa.exists(
        sa.select(sa.literal(1)).where(
            runs.c.source == jobs.c.source, runs.c.id == jobs.c.run_id, *_run_conditions(runs, filters, config)
        )
    )


def _week_start(moment: datetime) -> datetime:
    """Midnight UTC of the Monday starting ``moment``'s ISO week (as ``date_trunc('week', …)`` in UTC)."""
    return datetime.combine(monday(moment), time(), UTC)


_EPOCH_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)
"""The first Monday of the Unix epoch: weeks are counted from it."""
_WEEK_SECONDS = 7 * 86_400


_EPOCH_PART: sa.ColumnElement[str] = sa.literal_column("'epoch'")


def _epoch(moment: sa.ColumnElement[Any]) -> sa.ColumnElement[float]:
    """Seconds since the Unix epoch, as a double on both backends.

    ``date_part`` rather than ``extract``: on PostgreSQL ``extract`` returns ``numeric``, whose arithmetic made the
    queue-time percentiles of a million jobs take 3.0 s against 1.7 s; ``date_part`` returns the doubles that
    ``CAST(extract(…) AS DOUBLE)`` gave, without it. On DuckDB the two are one function.
    """
    return sa.func.date_part(_EPOCH_PART, moment, type_=sa.Double)


def _elapsed(start: sa.ColumnElement[Any], end: sa.ColumnElement[Any]) -> sa.ColumnElement[float]:
    """``end − start`` in seconds: the value of ``common.seconds_between``, computed from each side's epoch.

    ``extract(epoch from end − start)`` goes through an interval, which DuckDB evaluates an order of magnitude
    slower (0.31 s against 0.024 s for a million steps on two cores); this form is the fast one on both backends.
    """
    return _epoch(end) - _epoch(start)


def _week_index(moment: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The ISO week of ``moment`` in UTC, counted in weeks from ``_EPOCH_MONDAY``.

    The same weeks as ``date_trunc('week', moment)`` in a UTC session, without DuckDB's time-zone-aware (ICU)
    truncation, which costs 0.2 s a million rows.
    """
    return sa.func.floor((_epoch(moment) - _EPOCH_MONDAY.timestamp()) / float(_WEEK_SECONDS))


def _week_date(index: Any) -> date:
    return (_EPOCH_MONDAY + timedelta(weeks=int(index))).date()


def _percentiles(row: Mapping[str, Any], prefix: str = "") -> Percentiles:
    return Percentiles.of(row[f"{prefix}p50"], row[f"{prefix}p95"], row[f"{prefix}samples"])


# ----- build duration and time to result --------------------------------------------------------------------------


def workflow_durations(
    store: Store, window: Window, filters: Filters = NO_FILTERS, config: MetricsConfig = DEFAULT_CONFIG
) -> tuple[WorkflowDurations, ...]:
    """Build duration and time to result, p50/p95 per repo, workflow and branch kind (PR or default branch).

    Completed runs (success or failure) created in the window; runs that are neither PR nor default-branch runs are
    left out. A run without ``started_at`` counts in time to result only.
    """
    completed = _completed_runs(window, filters, config)
    query = (
        sa.select(
            completed.c.repo,
            completed.c.workflow,
            completed.c.branch_kind,
            sa.func.count().label("runs"),
            *percentile_columns(completed.c.duration, "duration_"),
            *percentile_columns(completed.c.to_result, "to_result_"),
        )
        .where(completed.c.branch_kind.is_not(None))
        .group_by(completed.c.repo, completed.c.workflow, completed.c.branch_kind)
        .order_by(completed.c.repo, completed.c.workflow, completed.c.branch_kind)
    )
    return tuple(
        WorkflowDurations(
            repo=row["repo"],
            workflow=row["workflow"],
            branch_kind=row["branch_kind"],
            runs=int(row["runs"]),
            duration=_percentiles(row, "duration_"),
            time_to_result=_percentiles(row, "to_result_"),
        )
        for row in store.query(query)
    )


def _completed_runs(window: Window, filters: Filters, config: MetricsConfig) -> sa.Subquery:
    """Completed runs created in the window with their branch kind, build duration, time to result and week."""
    runs = _runs
    return (
        sa.select(
            runs.c.repo,
            runs.c.workflow,
            _branch_kind(runs).label("branch_kind"),
            _week_index(runs.c.created_at).label("week"),
            _elapsed(runs.c.started_at, runs.c.finished_at).label("duration"),
            _elapsed(runs.c.created_at, runs.c.finished_at).label("to_result"),
        )
        .where(
            in_window(runs.c.created_at, window),
            runs.c.status.in_(COMPLETED_STATUSES),
            *_run_conditions(runs, filters, config),
        )
        .subquery("completed")
    )


def duration_weeks(
    store: Store, window: Window, filters: Filters = NO_FILTERS, config: MetricsConfig = DEFAULT_CONFIG
) -> tuple[DurationWeek, ...]:
    """Build duration p50/p95 per ISO week (by ``created_at``, Monday 00:00 UTC), PR and default-branch runs apart.

    The runs of ``workflow_durations``, pooled over repos and workflows; the first and last weeks hold only the part
    of the week inside the window. Ordered by week, then branch kind.
    """
    completed = _completed_runs(window, filters, config)
    query = (
        sa.select(completed.c.week, completed.c.branch_kind, *percentile_columns(completed.c.duration))
        .where(completed.c.branch_kind.is_not(None))
        .group_by(completed.c.week, completed.c.branch_kind)
        .order_by(completed.c.week, completed.c.branch_kind)
    )
    return tuple(
        DurationWeek(_week_date(row["week"]), row["branch_kind"], _percentiles(row)) for row in store.query(query)
    )


# ----- failure rate -------------------------------------------------------------------------------------------------


def _class_patterns(config: MetricsConfig) -> list[tuple[FailureClass, tuple[str, ...]]]:
    """Name patterns per class, in the order they are tried."""
    return [
        ("test", tuple(config.test_failure_patterns)),
        ("build", tuple(config.build_failure_patterns)),
        ("security", tuple(config.security_failure_patterns)),
    ]


def _text_matches(text: str | None, patterns: Sequence[str]) -> bool:
    if text is None:
        return False
    lowered = text.lower()
    return any(pattern.lower() in lowered for pattern in patterns)


def classify_failure(
    job_name: str,
    failure_reason: str | None,
    step_names: Sequence[str],
    config: MetricsConfig = DEFAULT_CONFIG,
    stage: str | None = None,
) -> FailureClass:
    """The class of one failed job: ``infra``, ``test``, ``build``, ``security`` or ``unknown``.

    Patterns are case-insensitive substrings from ``config``. The failure reason matching an infra pattern makes
    the job ``infra``. Otherwise the most specific evidence decides: the names of the job's failed steps
    (``step_names``), then the job's name, then its stage; within one piece of evidence the classes are tried in
    the order test, build, security. Nothing matching is ``unknown``. ``failure_rates`` applies the same rules in
    SQL.
    """
    if _text_matches(failure_reason, config.infra_failure_patterns):
        return "infra"
    for texts in (list(step_names), [job_name], [stage]):
        for failure_class, patterns in _class_patterns(config):
            if any(_text_matches(text, patterns) for text in texts):
                return failure_class
    return "unknown"


def _sql_matches(column: sa.ColumnElement[Any], patterns: Sequence[str]) -> sa.ColumnElement[bool]:
    """SQL twin of ``_text_matches``: NULL or no pattern is false."""
    if not patterns:
        return sa.false()
    lowered = sa.func.lower(column)
    return sa.or_(*(sa.func.strpos(lowered, pattern.lower()) > 0 for pattern in patterns))


_RANKS: dict[FailureClass, int] = {"test": 0, "build": 1, "security": 2, "unknown": 3, "infra": 4}
"""A run takes the lowest-ranked class among its failed jobs: a known class before unknown, infra only when every
failed job is infra."""


def _job_rank(jobs: sa.FromClause, config: MetricsConfig) -> sa.ColumnElement[int]:
    """SQL twin of ``classify_failure`` for a failed job row, as its rank in ``_RANKS``; NULL for no job (an
    outer join's empty side), without looking at steps."""
    steps = _steps
    classes = _class_patterns(config)
    # The first class (in the order tried) that any failed step's name matches: the lowest rank over the steps,
    # each taking its first matching class. One lookup of the job's steps rather than one per class.
    step_classes = [(_sql_matches(steps.c.name, patterns), _RANKS[name]) for name, patterns in classes if patterns]
    step_rank = (
        sa.select(sa.func.min(sa.case(*step_classes, else_=sa.null())))
        .where(steps.c.source == jobs.c.source, steps.c.job_id == jobs.c.id, steps.c.status == "failure")
        .scalar_subquery()
        if step_classes
        else sa.null()
    )
    by_job = sa.case(
        *((_sql_matches(jobs.c.name, patterns), _RANKS[name]) for name, patterns in classes),
        *((_sql_matches(jobs.c.stage, patterns), _RANKS[name]) for name, patterns in classes),
        else_=_RANKS["unknown"],
    )
    return sa.case(
        (jobs.c.id.is_(None), sa.null()),
        (_sql_matches(jobs.c.failure_reason, config.infra_failure_patterns), _RANKS["infra"]),
        else_=sa.func.coalesce(step_rank, by_job),
    )


def _recent_runs(window: Window, filters: Filters, config: MetricsConfig, *columns: str) -> sa.Select[Any]:
    """Runs created since ``since`` that pass the filters, with ``latest``: the highest attempt stored for their id.

    A re-run is created after the attempt it repeats, so every attempt above one created in the window is created
    at or after ``since``: ``latest`` is a window function over the runs created since then. Joins and
    aggregates of these are planned from table statistics on PostgreSQL (a join on a grouped subquery is not, and
    its estimate of a few rows turns the joins above it into nested loops).
    """
    runs = _runs
    names = dict.fromkeys(("source", "id", "attempt", "created_at", *columns))
    return sa.select(
        *(runs.c[name] for name in names),
        sa.func.max(runs.c.attempt).over(partition_by=(runs.c.source, runs.c.id)).label("latest"),
    ).where(runs.c.created_at >= window.since, *_run_conditions(runs, filters, config))


def _window_runs(window: Window, filters: Filters, config: MetricsConfig, *columns: str) -> sa.Subquery:
    """Runs created in the window that pass the filters, with ``latest`` (see ``_recent_runs``)."""
    return _created_before(_recent_runs(window, filters, config, *columns).subquery("recent_runs"), window.until)


def _created_before(recent: sa.FromClause, until: datetime) -> sa.Subquery:
    """Those of ``recent`` (``_recent_runs``) created before ``until``."""
    return sa.select(recent).where(recent.c.created_at < until).subquery("window_runs")


def failure_rates(
    store: Store,
    window: Window,
    filters: Filters = NO_FILTERS,
    config: MetricsConfig = DEFAULT_CONFIG,
    branch_kind: BranchKind = "default",
) -> tuple[FailureRate, ...]:
    """Failure rate of default-branch runs (or, with ``branch_kind="pr"``, of pull-request runs) per repo and
    workflow: failed ÷ (succeeded + failed).

    Completed (success or failure) default-branch runs created in the window; cancelled and skipped runs are
    excluded. Each failed job of a failed run is classified by ``classify_failure``. The run is ``infra`` when all
    its failed jobs are (a run that also failed for another reason would have failed anyway, so it counts in the
    rate); otherwise it takes the first class among its other failed jobs in the order test, build, security,
    unknown. A failed run with no failed job recorded is ``unknown``. ``infra`` runs are left out of the rate and
    counted apart; the others are split by class.
    """
    runs = _window_runs(
        window, filters, config, "repo", "workflow", "status", "trigger", "pr_number", "branch", "default_branch"
    )
    completed = (
        sa.select(runs.c.source, runs.c.id, runs.c.attempt, runs.c.latest, runs.c.repo, runs.c.workflow, runs.c.status)
        .where(runs.c.status.in_(COMPLETED_STATUSES), _branch_kind(runs) == branch_kind)
        .cte("completed_runs")
    )
    jobs = _jobs
    # Only failed runs look for their failed jobs. As one outer join with the run's status in its condition,
    # PostgreSQL probed the jobs of every run (98,000 index lookups in a month of a million runs) to keep 8,000.
    failed_runs = (
        sa.select(
            completed.c.repo,
            completed.c.workflow,
            completed.c.status,
            sa.func.coalesce(sa.func.min(_job_rank(jobs, config)), _RANKS["unknown"]).label("rank"),
        )
        .select_from(completed.outerjoin(jobs, sa.and_(job_belongs_to(jobs, completed), jobs.c.status == "failure")))
        .where(completed.c.status == "failure")
        .group_by(
            completed.c.source,
            completed.c.id,
            completed.c.attempt,
            completed.c.repo,
            completed.c.workflow,
            completed.c.status,
        )
    )
    succeeded_runs = sa.select(
        completed.c.repo, completed.c.workflow, completed.c.status, sa.null().label("rank")
    ).where(completed.c.status == "success")
    per_run = sa.union_all(failed_runs, succeeded_runs).subquery("classified_runs")
    failed = per_run.c.status == "failure"
    query = (
        sa.select(
            per_run.c.repo,
            per_run.c.workflow,
            sa.func.count().filter(per_run.c.status == "success").label("succeeded"),
            sa.func.count().filter(failed, per_run.c.rank < _RANKS["infra"]).label("failed"),
            sa.func.count().filter(failed, per_run.c.rank == _RANKS["infra"]).label("infra"),
            *(
                sa.func.count().filter(failed, per_run.c.rank == _RANKS[name]).label(f"class_{name}")
                for name in FAILURE_CLASSES
            ),
        )
        .group_by(per_run.c.repo, per_run.c.workflow)
        .order_by(per_run.c.repo, per_run.c.workflow)
    )
    return tuple(
        FailureRate(
            repo=row["repo"],
            workflow=row["workflow"],
            succeeded=int(row["succeeded"]),
            failed=int(row["failed"]),
            infra=int(row["infra"]),
            by_class={name: int(row[f"class_{name}"]) for name in FAILURE_CLASSES},
        )
        for row in store.query(query)
    )


# ----- queue time ---------------------------------------------------------------------------------------------------


def runner_labels(runner: str | None) -> list[str]:
    """The labels of a stored ``runner`` (JSON: a list of labels, or a group name, which is one label).

    Nothing (or an empty list) is ``unknown``; repeated labels count once.
    """
    if runner is None:
        return [UNKNOWN_RUNNER]
    try:
        value = orjson.loads(runner)
    except orjson.JSONDecodeError:
        value = runner
    items = value if isinstance(value, list) else [value]
    labels = list(dict.fromkeys(str(item) for item in items if item is not None and str(item) != ""))
    return labels or [UNKNOWN_RUNNER]


def queue_times(
    store: Store, window: Window, filters: Filters = NO_FILTERS, config: MetricsConfig = DEFAULT_CONFIG
) -> tuple[QueueTime, ...]:
    """Queue time (``started_at − created_at``) median and p95 per runner label.

    Jobs created in the window whose ``started_at`` is known, whatever their status. A job with several labels
    counts under each of them; a runner group name is one label; a job without a runner counts under
    ``unknown``. The stored runner texts are few, so they are read once and turned into a (runner, label) table
    that the aggregate joins.
    """
    queued = _queued_by_label(store, window, filters, config)
    if queued is None:
        return ()
    query = (
        sa.select(queued.c.label, *percentile_columns(queued.c.seconds))
        .group_by(queued.c.label)
        .order_by(queued.c.label)
    )
    return tuple(QueueTime(row["label"], _percentiles(row)) for row in store.query(query))


def _queued_by_label(store: Store, window: Window, filters: Filters, config: MetricsConfig) -> sa.Subquery | None:
    """(label, seconds) of ``queue_times``'s jobs, one row per job and runner label; None when there is no job."""
    jobs = _jobs
    conditions: list[sa.ColumnElement[bool]] = [in_window(jobs.c.created_at, window), jobs.c.started_at.is_not(None)]
    if _filters_runs(filters):
        conditions.append(_run_of_job_exists(jobs, filters, config))
    runners = [row["runner"] for row in store.query(sa.select(jobs.c.runner).where(*conditions).distinct())]
    if not runners:
        return None
    pairs = [(runner or "", label) for runner in runners for label in runner_labels(runner)]
    labels = sa.values(sa.column("runner", sa.String), sa.column("label", sa.String), name="runner_labels").data(pairs)
    return (
        sa.select(labels.c.label, _elapsed(jobs.c.created_at, jobs.c.started_at).label("seconds"))
        .select_from(jobs.join(labels, sa.func.coalesce(jobs.c.runner, "") == labels.c.runner))
        .where(*conditions)
        .subquery("queued_by_label")
    )


# ----- cache hit rate -----------------------------------------------------------------------------------------------


def cache_hit_rates(
    store: Store, window: Window, filters: Filters = NO_FILTERS, config: MetricsConfig = DEFAULT_CONFIG
) -> tuple[CacheHitRate, ...]:
    """Cache hit rate per repo on warm branches: hits ÷ (hits + misses).

    A cache event belongs to the run of its ``run_id`` (the attempt of its job when the run was re-run, else the
    latest attempt), or, when it names no run, to the run of its job; events that reach no stored run are left
    out, as are runs created outside the window. The run's branch is warm when another run on the same repo and
    branch was created strictly earlier (at any time, also before ``since``; two runs created at the same instant
    on a new branch are both cold). Lookups of cold runs are counted apart (``cold``).
    """
    caches, jobs = _caches, _jobs
    # One reading of the recent runs for the three branches on PostgreSQL, which sorted them for their latest attempt
    # once per reference otherwise; DuckDB reads them faster inline, each branch with its own filters pushed down
    # (materialized, the cache hit rates took 2.5 times as long).
    recent = (
        _recent_runs(window, filters, config, "repo", "branch")
        .cte("recent_runs")
        .prefix_with("NOT MATERIALIZED", dialect="duckdb")
    )
    runs = _created_before(recent, window.until)
    columns = (caches.c.hit, runs.c.repo, runs.c.branch, runs.c.created_at)
    # Three branches joined on plain columns, so that the common case (a run never re-run) does not read the jobs
    # table: by run_id when the run has one attempt; by run_id and the attempt of the event's job when it has
    # several; by the job's run when the event names no run.
    single_attempt = (
        sa.select(*columns)
        .select_from(caches.join(runs, sa.and_(runs.c.source == caches.c.source, runs.c.id == caches.c.run_id)))
        .where(runs.c.latest == 1)
    )
    rerun = (
        sa.select(recent.c.source, recent.c.id, recent.c.latest)
        .where(recent.c.latest > 1, recent.c.attempt == recent.c.latest)
        .subquery("rerun_runs")
    )
    # The event's job is looked up by its key (not through a subquery of the re-run runs' jobs, whose size
    # PostgreSQL underestimates into a nested loop over every pair).
    rerun_caches = (
        sa.select(
            caches.c.hit,
            caches.c.source,
            caches.c.run_id,
            sa.func.least(sa.func.coalesce(jobs.c.attempt, rerun.c.latest), rerun.c.latest).label("attempt"),
        )
        .select_from(
            caches.join(rerun, sa.and_(rerun.c.source == caches.c.source, rerun.c.id == caches.c.run_id)).outerjoin(
                jobs,
                sa.and_(
                    jobs.c.source == caches.c.source,
                    jobs.c.id == caches.c.job_id,
                    jobs.c.run_id == caches.c.run_id,
                ),
            )
        )
        .subquery("rerun_caches")
    )
    several_attempts = sa.select(rerun_caches.c.hit, runs.c.repo, runs.c.branch, runs.c.created_at).select_from(
        rerun_caches.join(
            runs,
            sa.and_(
                runs.c.source == rerun_caches.c.source,
                runs.c.id == rerun_caches.c.run_id,
                runs.c.attempt == rerun_caches.c.attempt,
            ),
        )
    )
    by_job = (
        sa.select(*columns)
        .select_from(
            caches.join(jobs, sa.and_(jobs.c.source == caches.c.source, jobs.c.id == caches.c.job_id)).join(
                runs, job_belongs_to(jobs, runs)
            )
        )
        .where(caches.c.run_id.is_(None))
    )
    lookups = sa.union_all(single_attempt, several_attempts, by_job).subquery("lookups")
    earlier = _runs.alias("branch_runs")
    first_runs = (
        sa.select(earlier.c.repo, earlier.c.branch, sa.func.min(earlier.c.created_at).label("first_created_at"))
        .where(*_run_conditions(earlier, filters, config))
        .group_by(earlier.c.repo, earlier.c.branch)
        .subquery("first_runs")
    )
    warm = lookups.c.created_at > first_runs.c.first_created_at
    query = (
        sa.select(
            lookups.c.repo,
            sa.func.count().filter(warm, lookups.c.hit.is_(True)).label("hits"),
            sa.func.count().filter(warm, lookups.c.hit.is_(False)).label("misses"),
            sa.func.count().filter(sa.not_(warm)).label("cold"),
        )
        .select_from(
            lookups.join(
                first_runs, sa.and_(first_runs.c.repo == lookups.c.repo, first_runs.c.branch == lookups.c.branch)
            )
        )
        .group_by(lookups.c.repo)
        .order_by(lookups.c.repo)
    )
    return tuple(
        CacheHitRate(row["repo"], int(row["hits"]), int(row["misses"]), int(row["cold"])) for row in store.query(query)
    )


# ----- stages and regressions ---------------------------------------------------------------------------------------


def _step_conditions(
    since: datetime, until: datetime, filters: Filters, config: MetricsConfig
) -> list[sa.ColumnElement[bool]]:
    """Completed steps started in ``[since, until)`` whose run passes the filters."""
    steps = _steps
    conditions: list[sa.ColumnElement[bool]] = [
        steps.c.started_at >= since,
        steps.c.started_at < until,
        steps.c.status.in_(COMPLETED_STATUSES),
    ]
    if _filters_runs(filters):
        jobs = _jobs.alias("step_jobs")
        conditions.append(
            sa.exists(
                sa.select(sa.literal(1)).where(
                    jobs.c.source == steps.c.source,
                    jobs.c.id == steps.c.job_id,
                    _run_of_job_exists(jobs, filters, config),
                )
            )
        )
    return conditions


def stage_weeks(
    store: Store, window: Window, filters: Filters = NO_FILTERS, config: MetricsConfig = DEFAULT_CONFIG
) -> tuple[StageWeek, ...]:
    """Step duration p50/p95 per canonical stage and ISO week (from Monday 00:00 UTC, as ``date_trunc('week')``).

    Completed steps (success or failure) started in the window, by their mapped ``stage``; the first and last
    weeks hold only the part of the week inside the window. Ordered by week, then stage.
    """
    steps = _steps
    timed = (
        sa.select(
            steps.c.stage,
            _week_index(steps.c.started_at).label("week"),
            _elapsed(steps.c.started_at, steps.c.finished_at).label("seconds"),
        )
        .where(*_step_conditions(window.since, window.until, filters, config))
        .subquery("timed_steps")
    )
    query = (
        sa.select(timed.c.stage, timed.c.week, *percentile_columns(timed.c.seconds))
        .group_by(timed.c.stage, timed.c.week)
        .order_by(timed.c.week, timed.c.stage)
    )
    return tuple(StageWeek(row["stage"], _week_date(row["week"]), _percentiles(row)) for row in store.query(query))


def regressions(
    store: Store,
    window: Window,
    filters: Filters = NO_FILTERS,
    config: MetricsConfig = DEFAULT_CONFIG,
    *,
    threshold: float = REGRESSION_THRESHOLD,
) -> RegressionCheck:
    """The regression check of the window's last week.

    The checked week is the ISO week (Monday 00:00 UTC) holding the window's last instant, from its Monday up to
    ``until``; the baseline is the four whole weeks before that Monday. Both are looked up whatever ``since`` is:
    the Monday and the baseline weeks may lie before ``since`` (a 3-day window still compares a week against four).
    The whole-run p95 is the duration (``finished_at − started_at``) of all completed runs (success or failure,
    every branch and workflow that pass the filters) by ``created_at``; the checked week regressed when it is at
    least ``threshold`` (20%) above the baseline's p95 (the four weeks' runs pooled, not an average of weekly p95s).
    ``stages`` then names the stages whose step p95 (completed steps by ``started_at``) grew against their
    baseline, with the growth in seconds and as a fraction, most seconds first; a stage with no baseline steps
    comes last, its growth unknown. ``RegressionCheck.regressed`` says whether this is a regression.
    """
    week = _week_start(window.until - timedelta(microseconds=1))
    baseline_since = week - timedelta(weeks=REGRESSION_BASELINE_WEEKS)
    runs = _runs
    run_rows = (
        sa.select(
            sa.case((runs.c.created_at >= week, 1), else_=0).label("current"),
            _elapsed(runs.c.started_at, runs.c.finished_at).label("seconds"),
        )
        .where(
            runs.c.created_at >= baseline_since,
            runs.c.created_at < window.until,
            runs.c.status.in_(COMPLETED_STATUSES),
            *_run_conditions(runs, filters, config),
        )
        .subquery("period_runs")
    )
    run_periods = {
        int(row["current"]): _percentiles(row)
        for row in store.query(
            sa.select(run_rows.c.current, *percentile_columns(run_rows.c.seconds)).group_by(run_rows.c.current)
        )
    }
    steps = _steps
    step_rows = (
        sa.select(
            steps.c.stage,
            sa.case((steps.c.started_at >= week, 1), else_=0).label("current"),
            _elapsed(steps.c.started_at, steps.c.finished_at).label("seconds"),
        )
        .where(*_step_conditions(baseline_since, window.until, filters, config))
        .subquery("period_steps")
    )
    stage_periods: dict[str, dict[int, Percentiles]] = {}
    for row in store.query(
        sa.select(step_rows.c.stage, step_rows.c.current, *percentile_columns(step_rows.c.seconds)).group_by(
            step_rows.c.stage, step_rows.c.current
        )
    ):
        stage_periods.setdefault(row["stage"], {})[int(row["current"])] = _percentiles(row)
    none = Percentiles.of(None, None, 0)
    growths = [
        StageGrowth(stage, periods[1], periods.get(0, none)) for stage, periods in stage_periods.items() if 1 in periods
    ]
    grown = sorted(
        (growth for growth in growths if (growth.growth_seconds or 0) > 0),
        key=lambda growth: (-(growth.growth_seconds or 0), growth.stage),
    )
    new = sorted((growth for growth in growths if growth.baseline.samples == 0), key=lambda growth: growth.stage)
    return RegressionCheck(
        week=week.date(),
        baseline_since=baseline_since.date(),
        current=run_periods.get(1, none),
        baseline=run_periods.get(0, none),
        stages=(*grown, *new),
        threshold=threshold,
    )


# ----- histograms (exporters) ---------------------------------------------------------------------------------------


def _histograms(
    store: Store, values: sa.Subquery, labels: Sequence[str], bounds: Sequence[float]
) -> tuple[Histogram, ...]:
    """One ``Histogram`` per distinct ``labels`` of ``values`` (a subquery with those columns and ``seconds``)."""
    ordered = tuple(sorted(bounds))
    query = (
        sa.select(
            *(values.c[name] for name in labels),
            *(
                sa.func.count().filter(values.c.seconds <= bound).label(f"le_{index}")
                for index, bound in enumerate(ordered)
            ),
            sa.func.count().label("samples"),
            sa.func.coalesce(sa.func.sum(values.c.seconds), 0.0).label("total"),
        )
        .where(values.c.seconds.is_not(None))
        .group_by(*(values.c[name] for name in labels))
        .order_by(*(values.c[name] for name in labels))
    )
    return tuple(
        Histogram(
            labels={name: str(row[name]) for name in labels},
            bounds=ordered,
            cumulative=tuple(int(row[f"le_{index}"]) for index in range(len(ordered))),
            count=int(row["samples"]),
            total_seconds=float(row["total"]),
        )
        for row in store.query(query)
    )


def duration_histograms(
    store: Store,
    window: Window,
    bounds: Sequence[float],
    filters: Filters = NO_FILTERS,
    config: MetricsConfig = DEFAULT_CONFIG,
) -> tuple[Histogram, ...]:
    """Build durations of ``workflow_durations``'s runs bucketed by ``bounds``, per repo, workflow and branch kind."""
    completed = _completed_runs(window, filters, config)
    values = (
        sa.select(
            completed.c.repo, completed.c.workflow, completed.c.branch_kind, completed.c.duration.label("seconds")
        )
        .where(completed.c.branch_kind.is_not(None))
        .subquery("durations")
    )
    return _histograms(store, values, ("repo", "workflow", "branch_kind"), bounds)


def queue_histograms(
    store: Store,
    window: Window,
    bounds: Sequence[float],
    filters: Filters = NO_FILTERS,
    config: MetricsConfig = DEFAULT_CONFIG,
) -> tuple[Histogram, ...]:
    """Queue times of ``queue_times``'s jobs bucketed by ``bounds``, per repo, workflow and branch kind of the run
    attempt the job belongs to; jobs of runs that are neither PR nor default-branch runs, or not stored, are left
    out."""
    runs = _window_runs(window, filters, config, "repo", "workflow", "trigger", "pr_number", "branch", "default_branch")
    jobs = _jobs
    values = (
        sa.select(
            runs.c.repo,
            runs.c.workflow,
            _branch_kind(runs).label("branch_kind"),
            _elapsed(jobs.c.created_at, jobs.c.started_at).label("seconds"),
        )
        .select_from(jobs.join(runs, job_belongs_to(jobs, runs)))
        .where(in_window(jobs.c.created_at, window), jobs.c.started_at.is_not(None))
        .subquery("queued_jobs")
    )
    kept = sa.select(values).where(values.c.branch_kind.is_not(None)).subquery("queue_values")
    return _histograms(store, kept, ("repo", "workflow", "branch_kind"), bounds)


def runner_queue_histograms(
    store: Store,
    window: Window,
    bounds: Sequence[float],
    filters: Filters = NO_FILTERS,
    config: MetricsConfig = DEFAULT_CONFIG,
) -> tuple[Histogram, ...]:
    """Queue times of ``queue_times``'s jobs bucketed by ``bounds``, per runner label (a job counts under each of
    its labels)."""
    queued = _queued_by_label(store, window, filters, config)
    if queued is None:
        return ()
    labeled = sa.select(queued.c.label.label("runner_label"), queued.c.seconds).subquery("labeled_queue")
    return _histograms(store, labeled, ("runner_label",), bounds)


def stage_histograms(
    store: Store,
    window: Window,
    bounds: Sequence[float],
    filters: Filters = NO_FILTERS,
    config: MetricsConfig = DEFAULT_CONFIG,
) -> tuple[Histogram, ...]:
    """Step durations of ``stage_weeks``'s steps bucketed by ``bounds``, per repo (of the step's run) and stage."""
    steps, jobs = _steps, _jobs
    runs = _window_runs(Window(EARLIEST, window.until), filters, config, "repo")
    values = (
        sa.select(runs.c.repo, steps.c.stage, _elapsed(steps.c.started_at, steps.c.finished_at).label("seconds"))
        .select_from(
            steps.join(jobs, sa.and_(jobs.c.source == steps.c.source, jobs.c.id == steps.c.job_id)).join(
                runs, job_belongs_to(jobs, runs)
            )
        )
        .where(*_step_conditions(window.since, window.until, NO_FILTERS, config))
        .subquery("stage_steps")
    )
    return _histograms(store, values, ("repo", "stage"), bounds)

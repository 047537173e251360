"""Developer experience (DESIGN.md §3): how long a developer waits, and whether they can fix CI on their own.

Four numbers, per repository and overall, each with the DESIGN "elite target" and whether it is met:

- **PR cycle time**: ``merged_at − opened_at`` of the pull requests *merged* in the window; median (target < 1 day).
- **Build feedback time**: from a commit being pushed to the first CI verdict on it, for the commits *pushed* in
  the window; p95 (target < 10 min). The store keeps no push time, so the commit's own time stands in for it
  (``changes.committed_at``, else ``authored_at``): a commit pushed long after it was made reads slow. The verdict
  is the earliest ``finished_at`` among the runs of that repository on that sha that ended ``success`` or
  ``failure``; a cancelled or skipped run tells the developer nothing and does not count. Commits no run was
  started for (the earlier commits of a multi-commit push, commits without CI) are not samples, nor are run shas
  without a change row (their push time is unknown).
- **Time to green**: from a pull request being opened to the first successful run on it (runs of the same
  repository with ``pr_number`` = the PR's number, earliest ``finished_at``), for the PRs *opened* in the window;
  p95 (target < 20 min). PRs with no successful run are counted apart as ``never_green``, not as samples.
- **Self-service rate**: of the failed default-branch or pull-request runs *created* in the window that were fixed,
  the share fixed without the platform team (target > 80%). See ``_self_service`` for the exact rules and the
  approximation of "the fixing commits".

Every aggregate runs in SQL (exact ``percentile_cont``, grouped with ``ROLLUP`` so one statement yields each
repository and the total). Filters: ``repo`` and ``team`` (a team's repositories, from ``MetricsConfig.teams``)
narrow these numbers; ``service`` and ``environment`` describe deployments and do not apply here, so they are
listed under ``filters_not_applied`` instead of silently changing nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa

from shipscope.metrics.common import (
    DEFAULT_CONFIG,
    NO_FILTERS,
    Filters,
    MetricsConfig,
    Percentiles,
    Ratio,
    Window,
    in_window,
    percentile_columns,
    seconds_between,
    teams_members,
)
from shipscope.store import Store, schema

__all__ = [
    "BUILD_FEEDBACK_TARGET_SECONDS",
    "PR_CYCLE_TARGET_SECONDS",
    "SELF_SERVICE_TARGET",
    "TIME_TO_GREEN_TARGET_SECONDS",
    "DevexMetrics",
    "DevexReport",
    "DurationMetric",
    "SelfServiceRate",
    "devex_report",
]

PR_CYCLE_TARGET_SECONDS = 86_400.0
"""Elite: PR cycle time median under one day."""
BUILD_FEEDBACK_TARGET_SECONDS = 600.0
"""Elite: build feedback time p95 under 10 minutes."""
TIME_TO_GREEN_TARGET_SECONDS = 1_200.0
"""Elite: time to green p95 under 20 minutes."""
SELF_SERVICE_TARGET = 0.8
"""Elite: more than 80% of fixed failures fixed without the platform team."""

VERDICT_STATUSES = ("success", "failure")
"""Run statuses that tell a developer something; cancelled and skipped runs do not."""
PR_TRIGGERS = ("pull_request", "pull_request_target", "merge_request_event")
FALLBACK_DEFAULT_BRANCHES = ("main", "master")
"""Taken as the default branch for runs that do not say which branch is the default."""

Statistic = Literal["p50", "p95"]
RepoFilter = Callable[[sa.ColumnElement[Any]], list[Any]]
"""A repository column → the conditions the filters put on it."""


@dataclass(frozen=True)
class DurationMetric:
    """A duration distribution in seconds, judged by one of its percentiles against the elite target."""

    percentiles: Percentiles
    statistic: Statistic
    """The percentile DESIGN.md names for this metric (``p50`` = median)."""
    target_seconds: float
    """Elite when ``statistic`` is below this."""
    no_data_reason: str | None = None
    """Why there are no samples, when something more specific than "no samples" is known."""

    @property
    def value(self) -> float | None:
        return self.percentiles.p50 if self.statistic == "p50" else self.percentiles.p95

    @property
    def meets_target(self) -> bool | None:
        value = self.value
        return None if value is None else value < self.target_seconds

    def to_json(self) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "statistic": self.statistic,
            "value": self.value,
            **self.percentiles.to_json(),
            "unit": "seconds",
            "target": {"statistic": self.statistic, "below_seconds": self.target_seconds},
            "meets_target": self.meets_target,
        }
        if self.no_data_reason is not None and self.percentiles.samples == 0:
            shape["no_data"] = self.no_data_reason
        return shape


@dataclass(frozen=True)
class TimeToGreen(DurationMetric):
    prs: int = 0
    """Pull requests opened in the window."""
    never_green: int = 0
    """Of those, the ones with no successful run (not among the samples)."""

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "prs": self.prs, "never_green": self.never_green}


@dataclass(frozen=True)
class SelfServiceRate:
    ratio: Ratio
    """Fixed failures without a platform-team author ÷ all fixed failures."""
    target: float = SELF_SERVICE_TARGET

    @property
    def rate(self) -> float | None:
        return self.ratio.rate

    @property
    def meets_target(self) -> bool | None:
        rate = self.ratio.rate
        return None if rate is None else rate > self.target

    def to_json(self) -> dict[str, Any]:
        return {
            **self.ratio.to_json("fixed_without_platform", "fixed_failures"),
            "target": {"above": self.target},
            "meets_target": self.meets_target,
        }


def _no_durations(statistic: Statistic, target: float) -> DurationMetric:
    return DurationMetric(Percentiles.of(None, None, 0), statistic, target)


@dataclass(frozen=True)
class DevexMetrics:
    pr_cycle_time: DurationMetric = field(default_factory=lambda: _no_durations("p50", PR_CYCLE_TARGET_SECONDS))
    build_feedback_time: DurationMetric = field(
        default_factory=lambda: _no_durations("p95", BUILD_FEEDBACK_TARGET_SECONDS)
    )
    time_to_green: TimeToGreen = field(
        default_factory=lambda: TimeToGreen(Percentiles.of(None, None, 0), "p95", TIME_TO_GREEN_TARGET_SECONDS)
    )
    self_service_rate: SelfServiceRate = field(default_factory=lambda: SelfServiceRate(Ratio(0, 0)))

    def to_json(self) -> dict[str, Any]:
        return {
            "pr_cycle_time": self.pr_cycle_time.to_json(),
            "build_feedback_time": self.build_feedback_time.to_json(),
            "time_to_green": self.time_to_green.to_json(),
            "self_service_rate": self.self_service_rate.to_json(),
        }


@dataclass(frozen=True)
class DevexReport:
    window: Window
    filters: Filters
    overall: DevexMetrics
    repos: dict[str, DevexMetrics]
    """Per repository, in name order; a repository appears when any of the four numbers has data for it."""

    def to_json(self) -> dict[str, Any]:
        not_applied = [name for name in ("service", "environment") if getattr(self.filters, name) is not None]
        shape: dict[str, Any] = {
            "window": self.window.to_json(),
            "filters": self.filters.to_json(),
            "overall": self.overall.to_json(),
            "repos": [{"repo": repo, **metrics.to_json()} for repo, metrics in self.repos.items()],
        }
        if not_applied:
            shape["filters_not_applied"] = not_applied
        return shape


# ----- queries -------------------------------------------------------------------------------------------------


def _repo_conditions(column: sa.ColumnElement[Any], filters: Filters, config: MetricsConfig) -> list[Any]:
    conditions: list[Any] = []
    if filters.repo is not None:
        conditions.append(column == filters.repo)
    members = teams_members(config, filters.team)
    if members is not None:
        conditions.append(column.in_(list(members)) if members else sa.false())
    return conditions


def _by_repo(rows: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """Splits ``GROUP BY ROLLUP(repo)`` rows into (the total row, rows by repository). ``repo`` is never NULL in
    the tables, so the NULL row is the total."""
    total = next((row for row in rows if row["repo"] is None), None)
    return total, {row["repo"]: row for row in rows if row["repo"] is not None}


def _percentiles(row: dict[str, Any] | None) -> Percentiles:
    if row is None:
        return Percentiles.of(None, None, 0)
    return Percentiles.of(row["p50"], row["p95"], row["samples"])


def _pr_cycle_time(store: Store, window: Window, repo_filter: RepoFilter) -> list[dict[str, Any]]:
    prs = schema.pull_requests
    cycle = seconds_between(prs.c.opened_at, prs.c.merged_at)
    query = (
        sa.select(prs.c.repo, *percentile_columns(cycle))
        .where(prs.c.merged_at.is_not(None), in_window(prs.c.merged_at, window), *repo_filter(prs.c.repo))
        .group_by(sa.func.rollup(prs.c.repo))
    )
    return store.query(query)


def _build_feedback_time(store: Store, window: Window, repo_filter: RepoFilter) -> list[dict[str, Any]]:
    runs, changes = schema.pipeline_runs, schema.changes
    # A run that finished before the window opened cannot be the first verdict on a commit made inside it (short of
    # clock skew), so runs are read from the window's start on.
    first_verdict = (
        sa.select(runs.c.repo, runs.c.sha, sa.func.min(runs.c.finished_at).label("first_verdict_at"))
        .where(
            runs.c.status.in_(VERDICT_STATUSES),
            runs.c.finished_at.is_not(None),
            runs.c.finished_at >= window.since,
            *repo_filter(runs.c.repo),
        )
        .group_by(runs.c.repo, runs.c.sha)
        .subquery("first_verdict")
    )
    pushed_at = sa.func.coalesce(changes.c.committed_at, changes.c.authored_at)
    feedback = seconds_between(pushed_at, first_verdict.c.first_verdict_at)
    query = (
        sa.select(changes.c.repo, *percentile_columns(feedback))
        .select_from(
            changes.join(
                first_verdict,
                sa.and_(first_verdict.c.repo == changes.c.repo, first_verdict.c.sha == changes.c.sha),
            )
        )
        .where(in_window(pushed_at, window), *repo_filter(changes.c.repo))
        .group_by(sa.func.rollup(changes.c.repo))
    )
    return store.query(query)


def _time_to_green(store: Store, window: Window, repo_filter: RepoFilter) -> list[dict[str, Any]]:
    runs, prs = schema.pipeline_runs, schema.pull_requests
    # Runs on a PR come after it opened, so a PR opened in the window turns green no earlier than the window's start.
    first_green = (
        sa.select(runs.c.repo, runs.c.pr_number, sa.func.min(runs.c.finished_at).label("green_at"))
        .where(
            runs.c.status == "success",
            runs.c.pr_number.is_not(None),
            runs.c.finished_at.is_not(None),
            runs.c.finished_at >= window.since,
            *repo_filter(runs.c.repo),
        )
        .group_by(runs.c.repo, runs.c.pr_number)
        .subquery("first_green")
    )
    to_green = seconds_between(prs.c.opened_at, first_green.c.green_at)
    query = (
        sa.select(
            prs.c.repo,
            *percentile_columns(to_green),
            sa.func.count().label("prs"),
            sa.func.count().filter(first_green.c.green_at.is_(None)).label("never_green"),
        )
        .select_from(
            prs.outerjoin(
                first_green, sa.and_(first_green.c.repo == prs.c.repo, first_green.c.pr_number == prs.c.number)
            )
        )
        .where(in_window(prs.c.opened_at, window), *repo_filter(prs.c.repo))
        .group_by(sa.func.rollup(prs.c.repo))
    )
    return store.query(query)


def _self_service(
    store: Store, window: Window, repo_filter: RepoFilter, platform_team: list[str]
) -> list[dict[str, Any]]:
    """Fixed failures, and those fixed without the platform team, per repository.

    - A *failure* is a run with status ``failure`` created in the window, on the default branch (``branch =
      default_branch``; ``main`` or ``master`` when the run does not name its default branch, as for the pipeline
      SLIs) or for a pull request (``pr_number`` set, or a pull-request trigger).
    - It is *fixed* when the next run of the same repository, workflow and branch (by ``created_at``, then attempt
      and id; counting only runs that ended ``success`` or ``failure``) succeeded. The workflow is part of the key
      because a push usually starts several workflows: a lint run that passes next to a failing test run fixes
      nothing. The fixing run may be created after the window closes; failures not fixed yet are left out.
    - The store does not record which commits lie between two shas (no git graph), so *the fixing commits* are
      approximated as the change rows of the same repository made (``committed_at``, else ``authored_at``) in
      ``(failed run created_at, fixing run created_at]``, plus the fixing run's own sha. This can take in commits
      pushed to other branches meanwhile; the error leans towards crediting the platform team.
    - It was fixed *without the platform team* when none of those commits has an author among
      ``MetricsConfig.platform_team`` (logins compared case-insensitively; a commit with no author counts as not
      the platform team's).
    """
    runs, changes = schema.pipeline_runs, schema.changes
    order = (runs.c.repo, runs.c.workflow, runs.c.branch)
    sequence = [runs.c.created_at, runs.c.attempt, runs.c.id]

    def following(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.func.lead(column).over(partition_by=order, order_by=sequence)

    # The run after a failure created in the window was created later, so the window's start bounds both.
    verdicts = (
        sa.select(
            runs.c.repo,
            runs.c.branch,
            runs.c.default_branch,
            runs.c.pr_number,
            runs.c.trigger,
            runs.c.status,
            runs.c.created_at,
            following(runs.c.status).label("next_status"),
            following(runs.c.sha).label("next_sha"),
            following(runs.c.created_at).label("next_created_at"),
        )
        .where(runs.c.status.in_(VERDICT_STATUSES), runs.c.created_at >= window.since, *repo_filter(runs.c.repo))
        .subquery("verdicts")
    )
    named_default = sa.func.nullif(verdicts.c.default_branch, "")
    default_branch = sa.or_(
        verdicts.c.branch == named_default,
        sa.and_(named_default.is_(None), verdicts.c.branch.in_(FALLBACK_DEFAULT_BRANCHES)),
    )
    pull_request = sa.or_(verdicts.c.pr_number.is_not(None), verdicts.c.trigger.in_(PR_TRIGGERS))
    if platform_team:
        made_at = sa.func.coalesce(changes.c.committed_at, changes.c.authored_at)
        by_platform: sa.ColumnElement[Any] = (
            sa.exists()
            .where(
                changes.c.repo == verdicts.c.repo,
                sa.func.lower(changes.c.author).in_(sorted({login.lower() for login in platform_team})),
                sa.or_(
                    sa.and_(made_at > verdicts.c.created_at, made_at <= verdicts.c.next_created_at),
                    changes.c.sha == verdicts.c.next_sha,
                ),
            )
            .label("by_platform")
        )
    else:
        by_platform = sa.false().label("by_platform")
    fixed = (
        sa.select(verdicts.c.repo, by_platform)
        .where(
            verdicts.c.status == "failure",
            verdicts.c.next_status == "success",
            verdicts.c.created_at < window.until,
            sa.or_(default_branch, pull_request),
        )
        .subquery("fixed")
    )
    query = sa.select(
        fixed.c.repo,
        sa.func.count().label("fixed"),
        sa.func.count().filter(sa.not_(fixed.c.by_platform)).label("self_served"),
    ).group_by(sa.func.rollup(fixed.c.repo))
    return store.query(query)


def devex_report(
    store: Store, window: Window, filters: Filters = NO_FILTERS, config: MetricsConfig = DEFAULT_CONFIG
) -> DevexReport:
    """The four developer-experience numbers of DESIGN.md §3 over ``window``, per repository and overall."""

    def repo_filter(column: sa.ColumnElement[Any]) -> list[Any]:
        return _repo_conditions(column, filters, config)

    teams_members(config, filters.team)  # an unknown team is an error before any query runs
    cycle_total, cycle = _by_repo(_pr_cycle_time(store, window, repo_filter))
    feedback_total, feedback = _by_repo(_build_feedback_time(store, window, repo_filter))
    green_total, green = _by_repo(_time_to_green(store, window, repo_filter))
    fixes_total, fixes = _by_repo(_self_service(store, window, repo_filter, list(config.platform_team)))

    def metrics(
        cycle_row: dict[str, Any] | None,
        feedback_row: dict[str, Any] | None,
        green_row: dict[str, Any] | None,
        fixes_row: dict[str, Any] | None,
    ) -> DevexMetrics:
        prs = int(green_row["prs"]) if green_row else 0
        never_green = int(green_row["never_green"]) if green_row else 0
        green_reason = (
            f"none of the {prs} pull requests opened in the window has a successful run"
            if prs
            else "no pull request was opened in the window"
        )
        return DevexMetrics(
            pr_cycle_time=DurationMetric(
                _percentiles(cycle_row), "p50", PR_CYCLE_TARGET_SECONDS, "no pull request was merged in the window"
            ),
            build_feedback_time=DurationMetric(
                _percentiles(feedback_row),
                "p95",
                BUILD_FEEDBACK_TARGET_SECONDS,
                "no commit made in the window has a finished run (success or failure) on its sha",
            ),
            time_to_green=TimeToGreen(
                _percentiles(green_row),
                "p95",
                TIME_TO_GREEN_TARGET_SECONDS,
                green_reason,
                prs=prs,
                never_green=never_green,
            ),
            self_service_rate=SelfServiceRate(
                Ratio(int(fixes_row["self_served"]), int(fixes_row["fixed"])) if fixes_row else Ratio(0, 0)
            ),
        )

    repos = sorted(set(cycle) | set(feedback) | set(green) | set(fixes))
    return DevexReport(
        window=window,
        filters=filters,
        overall=metrics(cycle_total, feedback_total, green_total, fixes_total),
        repos={repo: metrics(cycle.get(repo), feedback.get(repo), green.get(repo), fixes.get(repo)) for repo in repos},
    )

"""Test metrics (DESIGN.md §3): duration per suite, the flaky test rate and the quarantine list of flaky tests.

Attribution. A test case belongs to a run through its ``run_id`` (a ``pipeline_runs.id`` of the same source) or,
without one, through its ``job_id`` (``jobs.run_id``). The run gives the case its repository, commit and moment:
the window applies to the run's ``created_at`` and the repo/team filters to its repository. When the job names the
run attempt, that attempt's row is used; otherwise the run's first attempt. Test cases whose run is not in the
store have no repository, commit or time, so they are left out of every number and counted as ``unattributed``
(over the whole store: neither the window nor the filters can apply to them). The service and environment
filters do not apply to tests.

Suite duration. One execution of a suite is its cases in one (repository, suite, run, job); its duration is the
sum of the durations of each case's final attempt (the highest ``attempt``), so a retried case counts once, as
its last run. p50/p95 over executions; ``slow`` when any execution took longer than
``MetricsConfig.slow_suite_seconds``. Slowest (highest p95) suites first.

Flakiness. A test is (repository, suite, classname, name). It is flaky on a commit when, on that sha, it both
failed (``failed`` or ``error``) and passed, within one run's attempts or across runs. Executions of a test on a
sha are ordered by (run created_at, attempt); the flaky rate is the failed executions followed later by a pass of
the same test on the same sha ÷ all test executions (skipped cases are not executions). Only executions in the
window count: a sha whose runs straddle the window edge is judged on its in-window runs.

Quarantine. Each test flaky on at least one sha in the window, with ``flake_count`` (shas it flaked on),
``first_flake``/``last_flake`` (created_at of the earliest and latest run in which it failed on such a sha),
``expires_at`` = ``last_flake`` + ``flaky_quarantine_days``, and its owners from CODEOWNERS rules matched against
the test's ``file``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

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
    teams_members,
)
from shipscope.store import Store, schema

__all__ = [
    "CodeownersRules",
    "FlakyRate",
    "FlakyTest",
    "SuiteDuration",
    "TestReport",
    "owner_for",
    "parse_codeowners",
    "tests_report",
]

CodeownersRules = list[tuple[str, list[str]]]
"""CODEOWNERS rules in file order: (pattern, owners)."""

_FAILED = ("failed", "error")


# ----- results ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuiteDuration:
    repo: str
    suite: str
    durations: Percentiles
    """Seconds per execution (one run's, one job's cases of the suite, final attempts)."""
    max_seconds: float
    slow_executions: int
    """Executions longer than ``slow_suite_seconds``."""

    @property
    def slow(self) -> bool:
        return self.slow_executions > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "suite": self.suite,
            **self.durations.to_json(),
            "max_seconds": self.max_seconds,
            "slow": self.slow,
            "slow_executions": self.slow_executions,
        }


@dataclass(frozen=True)
class FlakyRate:
    ratio: Ratio
    """Failed executions passed later on the same sha ÷ executions (skipped cases excluded)."""
    flaky_tests: int
    repo: str | None = None
    """None for the total over every repository."""

    def to_json(self) -> dict[str, Any]:
        shape: dict[str, Any] = {"repo": self.repo} if self.repo is not None else {}
        shape.update(self.ratio.to_json("flaky_executions", "executions"))
        shape["flaky_tests"] = self.flaky_tests
        return shape


@dataclass(frozen=True)
class FlakyTest:
    repo: str
    suite: str
    classname: str | None
    name: str
    file: str | None
    owners: tuple[str, ...] | None
    """Owners of the last CODEOWNERS rule matching ``file``; None when no rule matches (or no file is known)."""
    flake_count: int
    """Commits (shas) the test both failed and passed on."""
    flaky_executions: int
    """Its failed executions followed by a pass on the same sha (the numerator of the rate)."""
    first_flake: datetime
    last_flake: datetime
    expires_at: datetime
    active: bool
    """Whether the quarantine still holds at the end of the window (``expires_at`` after ``until``)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "suite": self.suite,
            "classname": self.classname,
            "name": self.name,
            "file": self.file,
            "owner": " ".join(self.owners) if self.owners else None,
            "owners": list(self.owners) if self.owners is not None else None,
            "flake_count": self.flake_count,
            "flaky_executions": self.flaky_executions,
            "first_flake": _iso(self.first_flake),
            "last_flake": _iso(self.last_flake),
            "expires_at": _iso(self.expires_at),
            "active": self.active,
        }


@dataclass(frozen=True)
class TestReport:
    __test__ = False  # not a pytest class

    window: Window
    filters: Filters
    test_cases: int
    """Attributed test case rows in the window, skipped ones included."""
    unattributed: int
    """Test cases in the store whose run is unknown (left out of every number)."""
    suites: tuple[SuiteDuration, ...]
    flaky: FlakyRate
    flaky_by_repo: tuple[FlakyRate, ...]
    quarantine: tuple[FlakyTest, ...]

    def to_json(self) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "window": self.window.to_json(),
            "filters": self.filters.to_json(),
            "test_cases": self.test_cases,
            "unattributed": self.unattributed,
            "suites": [suite.to_json() for suite in self.suites],
            "flaky_rate": self.flaky.to_json(),
            "flaky_by_repo": [rate.to_json() for rate in self.flaky_by_repo],
            "quarantine": [test.to_json() for test in self.quarantine],
        }
        if self.test_cases == 0:
            shape["no_data"] = "no test cases of known runs in the window"
        return shape


# ----- the report ------------------------------------------------------------------------------------------


def tests_report(
    store: Store,
    window: Window,
    filters: Filters = NO_FILTERS,
    config: MetricsConfig = DEFAULT_CONFIG,
    *,
    codeowners: Mapping[str, str] | CodeownersRules | None = None,
) -> TestReport:
    """Suite durations, the flaky rate and the quarantine list over ``window`` (see the module docstring).

    ``codeowners`` maps CODEOWNERS patterns to owners (space-separated), in file order, or is a list of
    (pattern, owners) rules as ``parse_codeowners`` returns them; the last rule matching a test's file wins.
    """
    rules = _rules(codeowners)
    parts: dict[str, list[dict[str, Any]]] = {"suite": [], "flaky": [], "unattributed": []}
    for row in store.query(_report_rows(window, filters, config)):
        parts[row["part"]].append(row)

    suites = tuple(
        SuiteDuration(
            repo=row["repo"],
            suite=row["suite"],
            durations=Percentiles.of(row["p50"], row["p95"], row["samples"]),
            max_seconds=float(row["max_seconds"]),
            slow_executions=int(row["slow_executions"]),
        )
        for row in parts["suite"]
    )
    test_cases: Counter[str] = Counter()
    executed: Counter[str] = Counter()
    for row in parts["suite"]:
        test_cases[row["repo"]] += int(row["test_cases"])
        executed[row["repo"]] += int(row["executions"])

    quarantine_days = timedelta(days=config.flaky_quarantine_days)
    quarantine: list[FlakyTest] = []
    for row in parts["flaky"]:
        last_flake = _utc(row["last_flake"])
        expires_at = last_flake + quarantine_days
        owners = owner_for(row["file"], rules) if row["file"] else None
        quarantine.append(
            FlakyTest(
                repo=row["repo"],
                suite=row["suite"],
                classname=row["classname"],
                name=row["name"],
                file=row["file"],
                owners=tuple(owners) if owners is not None else None,
                flake_count=int(row["flake_count"]),
                flaky_executions=int(row["flaky_executions"]),
                first_flake=_utc(row["first_flake"]),
                last_flake=last_flake,
                expires_at=expires_at,
                active=expires_at > window.until,
            )
        )

    # Every failed execution passed later on its sha belongs to a test flaky on that sha: the quarantine list
    # holds the whole numerator.
    flaky_tests = Counter(test.repo for test in quarantine)
    flaky_executions: Counter[str] = Counter()
    for test in quarantine:
        flaky_executions[test.repo] += test.flaky_executions
    flaky_by_repo = tuple(
        FlakyRate(Ratio(flaky_executions[repo], executed[repo]), flaky_tests[repo], repo) for repo in sorted(test_cases)
    )
    flaky = FlakyRate(
        Ratio(
            sum(rate.ratio.numerator for rate in flaky_by_repo),
            sum(rate.ratio.denominator for rate in flaky_by_repo),
        ),
        len(quarantine),
    )

    return TestReport(
        window=window,
        filters=filters,
        test_cases=sum(test_cases.values()),
        unattributed=int(parts["unattributed"][0]["test_cases"]),
        suites=suites,
        flaky=flaky,
        flaky_by_repo=flaky_by_repo,
        quarantine=tuple(quarantine),
    )


tests_report.__test__ = False  # type: ignore[attr-defined]  # its name starts with "test": not a pytest test


# ----- queries ---------------------------------------------------------------------------------------------


_CASE_COLUMNS = ("job_id", "suite", "classname", "name", "file", "attempt", "duration_seconds", "outcome")


def _window_runs(window: Window, filters: Filters, config: MetricsConfig) -> sa.CTE:
    """One row per run (source, id) with an attempt created in the window: its first attempt, how many attempts it
    has, and its repository, commit and first creation over all attempts; the repo and team filters applied.

    A case's moment is the created_at of one of its run's attempts, so only runs with an attempt in the window can
    hold a case in the window: the grouping runs over those, not over every run in the store.
    """
    runs = schema.pipeline_runs
    in_range = schema.pipeline_runs.alias("in_range")
    known = (
        sa.select(
            runs.c.source,
            runs.c.id,
            sa.func.min(runs.c.attempt).label("first_attempt"),
            sa.func.count().label("attempts"),
            sa.func.min(runs.c.repo).label("repo"),
            sa.func.min(runs.c.sha).label("sha"),
            sa.func.min(runs.c.created_at).label("created_at"),
        )
        .where(
            sa.exists().where(
                in_range.c.source == runs.c.source,
                in_range.c.id == runs.c.id,
                in_window(in_range.c.created_at, window),
            )
        )
        .group_by(runs.c.source, runs.c.id)
        .subquery("grouped_runs")
    )
    conditions: list[sa.ColumnElement[bool]] = []
    if filters.repo is not None:
        conditions.append(known.c.repo == filters.repo)
    members = teams_members(config, filters.team)
    if members is not None:
        conditions.append(known.c.repo.in_(list(members)))
    return sa.select(known).where(*conditions).cte("known_runs")


def _executions(window: Window, filters: Filters, config: MetricsConfig) -> sa.CTE:
    """Every attributed test case in the window and filters, with its run's repo, sha and created_at.

    The run attempt is the job's when known, else the run's first; its created_at and sha are that attempt's.
    Three paths, each of plain equi-joins: a case naming a run with one attempt (the common case: that attempt is
    the run's, whatever the job says, so the jobs table is not read); a case naming a re-run run (with its job's
    attempt when the job belongs to that run); a case naming no run (through its job's run).
    """
    cases, job = schema.test_cases, schema.jobs.alias("job")
    known = _window_runs(window, filters, config)
    attempt = schema.pipeline_runs.alias("run_attempt")
    own = [cases.c[name] for name in _CASE_COLUMNS]

    def execution(
        sha: sa.ColumnElement[Any], created_at: sa.ColumnElement[Any], run_source: sa.ColumnElement[Any]
    ) -> list[sa.ColumnElement[Any]]:
        return [
            known.c.repo,
            sha.label("sha"),
            created_at.label("created_at"),
            run_source.label("run_source"),
            known.c.id.label("run_id"),
            *own,
        ]

    # A missing attempt row falls back to the run's first attempt (a run's attempts re-run one commit).
    sha = sa.func.coalesce(attempt.c.sha, known.c.sha)
    created_at = sa.func.coalesce(attempt.c.created_at, known.c.created_at)
    names_run = sa.and_(known.c.source == cases.c.source, known.c.id == cases.c.run_id)
    single = (
        sa.select(*execution(known.c.sha, known.c.created_at, cases.c.source))
        .select_from(cases.join(known, names_run))
        .where(known.c.attempts == 1, in_window(known.c.created_at, window))
    )
    rerun_cases = (
        sa.select(
            *own,
            cases.c.source.label("run_source"),
            known.c.id.label("run_id"),
            known.c.repo,
            known.c.first_attempt,
            known.c.sha.label("run_sha"),
            known.c.created_at.label("run_created_at"),
        )
        .select_from(cases.join(known, names_run))
        .where(known.c.attempts > 1)
        .subquery("rerun_cases")
    )
    rerun_of = rerun_cases.c
    # An inner join first, so that with no re-run in the window (the common case) no job is read.
    rerun_jobs = (
        sa.select(job.c.source, job.c.id, job.c.attempt)
        .select_from(
            job.join(
                rerun_cases,
                sa.and_(
                    job.c.source == rerun_of.run_source, job.c.id == rerun_of.job_id, job.c.run_id == rerun_of.run_id
                ),
            )
        )
        .distinct()
        .subquery("rerun_jobs")
    )
    rerun_created_at = sa.func.coalesce(attempt.c.created_at, rerun_of.run_created_at)
    rerun = (
        sa.select(
            rerun_of.repo,
            sa.func.coalesce(attempt.c.sha, rerun_of.run_sha).label("sha"),
            rerun_created_at.label("created_at"),
            rerun_of.run_source,
            rerun_of.run_id,
            *(rerun_of[name] for name in _CASE_COLUMNS),
        )
        .select_from(
            rerun_cases.outerjoin(
                rerun_jobs, sa.and_(rerun_jobs.c.source == rerun_of.run_source, rerun_jobs.c.id == rerun_of.job_id)
            ).outerjoin(
                attempt,
                sa.and_(
                    attempt.c.source == rerun_of.run_source,
                    attempt.c.id == rerun_of.run_id,
                    attempt.c.attempt == sa.func.coalesce(rerun_jobs.c.attempt, rerun_of.first_attempt),
                ),
            )
        )
        .where(in_window(rerun_created_at, window))
    )
    by_job = (
        sa.select(*execution(sha, created_at, job.c.source))
        .select_from(
            cases.join(job, sa.and_(job.c.source == cases.c.source, job.c.id == cases.c.job_id))
            .join(known, sa.and_(known.c.source == job.c.source, known.c.id == job.c.run_id))
            .outerjoin(
                attempt,
                sa.and_(
                    attempt.c.source == known.c.source,
                    attempt.c.id == known.c.id,
                    attempt.c.attempt == sa.func.coalesce(job.c.attempt, known.c.first_attempt),
                ),
            )
        )
        .where(cases.c.run_id.is_(None), in_window(created_at, window))
    )
    return sa.union_all(single, rerun, by_job).cte("test_executions")


def _unattributed() -> sa.Select[Any]:
    """Test cases whose run is not in the store: cases naming a run, or else a job, not followed to a stored run."""
    cases, jobs, runs = schema.test_cases, schema.jobs, schema.pipeline_runs
    everything = sa.select(sa.func.count()).select_from(cases).scalar_subquery()
    # Cases per named run first: the lookups in the runs table are then one per run, not one per case.
    named = (
        sa.select(cases.c.source, cases.c.run_id, sa.func.count().label("cases"))
        .where(cases.c.run_id.is_not(None))
        .group_by(cases.c.source, cases.c.run_id)
        .subquery("named_runs")
    )
    by_run_id = (
        sa.select(sa.func.coalesce(sa.func.sum(named.c.cases), 0))
        .where(sa.exists().where(runs.c.source == named.c.source, runs.c.id == named.c.run_id))
        .scalar_subquery()
    )
    by_job = (
        sa.select(sa.func.count())
        .select_from(cases.join(jobs, sa.and_(jobs.c.source == cases.c.source, jobs.c.id == cases.c.job_id)))
        .where(cases.c.run_id.is_(None), sa.exists().where(runs.c.source == jobs.c.source, runs.c.id == jobs.c.run_id))
        .scalar_subquery()
    )
    return sa.select((everything - by_run_id - by_job).label("test_cases"))


def _same(left: sa.ColumnElement[Any], right: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """``left`` and ``right`` are equal or both NULL, as two plain equalities a hash join can use on both backends
    (``IS NOT DISTINCT FROM`` cannot be hashed by PostgreSQL)."""
    return sa.and_(sa.func.coalesce(left, "") == sa.func.coalesce(right, ""), left.is_(None) == right.is_(None))


def _suite_durations(executions: sa.CTE, slow_seconds: float) -> sa.Subquery:
    """Per (repo, suite): the durations of its executions, and its test case rows and executions (rows not skipped),
    which also give the totals per repo."""
    ex = executions.c
    later = executions.alias("later_attempts")
    # A case's final attempt: no row of the same case in the same execution has a higher attempt. (An anti-join:
    # a window function partitioned by the case key costs several times more on DuckDB.)
    finals = (
        sa.select(ex.repo, ex.suite, ex.run_source, ex.run_id, ex.job_id, ex.duration_seconds)
        .where(
            ~sa.exists().where(
                later.c.run_source == ex.run_source,
                later.c.run_id == ex.run_id,
                _same(later.c.job_id, ex.job_id),
                later.c.suite == ex.suite,
                _same(later.c.classname, ex.classname),
                later.c.name == ex.name,
                later.c.attempt > ex.attempt,
            )
        )
        .subquery("final_attempts")
    )
    per_execution = (
        sa.select(finals.c.repo, finals.c.suite, sa.func.sum(finals.c.duration_seconds).label("seconds"))
        .group_by(finals.c.repo, finals.c.suite, finals.c.run_source, finals.c.run_id, finals.c.job_id)
        .subquery("suite_executions")
    )
    seconds = per_execution.c.seconds
    durations = (
        sa.select(
            per_execution.c.repo,
            per_execution.c.suite,
            *percentile_columns(seconds),
            sa.func.max(seconds).label("max_seconds"),
            sa.func.count().filter(seconds > slow_seconds).label("slow_executions"),
        )
        .group_by(per_execution.c.repo, per_execution.c.suite)
        .subquery("suite_durations")
    )
    counts = (
        sa.select(
            ex.repo,
            ex.suite,
            sa.func.count().label("test_cases"),
            sa.func.count().filter(ex.outcome != "skipped").label("executions"),
        )
        .group_by(ex.repo, ex.suite)
        .subquery("suite_counts")
    )
    # Both have a row for every (repo, suite) with an execution.
    return (
        sa.select(durations, counts.c.test_cases, counts.c.executions)
        .select_from(
            durations.join(counts, sa.and_(counts.c.repo == durations.c.repo, counts.c.suite == durations.c.suite))
        )
        .subquery("suites")
    )


def _flake_marks(executions: sa.CTE) -> sa.Subquery:
    """The executions of tests that failed on a sha, each with its position among the test's executions on that
    sha in (created_at, attempt) order, the position of the last pass, and whether any passed.

    Only tests that failed on a sha can be flaky on it, and failures are rare: the window functions run over that
    few, not over every execution.
    """
    ex = executions.c
    classname = sa.func.coalesce(ex.classname, "")  # a JUnit class attribute is never empty: "" stands for none
    failing = (
        sa.select(ex.repo, ex.sha, ex.suite, classname.label("classname"), ex.name)
        .where(ex.outcome.in_(_FAILED))
        .distinct()
        .subquery("failing_tests")
    )
    same_test = sa.and_(
        failing.c.repo == ex.repo,
        failing.c.sha == ex.sha,
        failing.c.suite == ex.suite,
        failing.c.classname == classname,
        failing.c.name == ex.name,
    )
    test_on_sha = [ex.repo, ex.sha, ex.suite, ex.classname, ex.name]
    passed = ex.outcome == "passed"
    positioned = (
        sa.select(
            ex.repo,
            ex.sha,
            ex.suite,
            ex.classname,
            ex.name,
            ex.file,
            ex.created_at,
            ex.outcome,
            sa.func.dense_rank().over(partition_by=test_on_sha, order_by=[ex.created_at, ex.attempt]).label("position"),
            sa.func.max(sa.case((passed, 1), else_=0)).over(partition_by=test_on_sha).label("any_passed"),
        )
        .select_from(executions.join(failing, same_test))
        .subquery("positioned")
    )
    pos = positioned.c
    return sa.select(
        *pos,
        sa.func.max(sa.case((pos.outcome == "passed", pos.position)))
        .over(partition_by=[pos.repo, pos.sha, pos.suite, pos.classname, pos.name])
        .label("last_pass"),
    ).subquery("flake_marks")


def _is_flaky_execution(marks: sa.Subquery) -> sa.ColumnElement[bool]:
    """A failed execution followed by a pass of the same test on the same sha."""
    return sa.and_(marks.c.outcome.in_(_FAILED), marks.c.last_pass > marks.c.position)


def _flake_on_sha(marks: sa.Subquery) -> sa.ColumnElement[bool]:
    """A failed execution of a test that also passed on the same sha."""
    return sa.and_(marks.c.outcome.in_(_FAILED), marks.c.any_passed == 1)


def _flaky_tests(marks: sa.Subquery) -> sa.Subquery:
    m = marks.c
    return (
        sa.select(
            m.repo,
            m.suite,
            m.classname,
            m.name,
            sa.func.max(m.file).label("file"),
            sa.func.count(sa.distinct(m.sha)).label("flake_count"),
            sa.func.count().filter(_is_flaky_execution(marks)).label("flaky_executions"),
            sa.func.min(m.created_at).label("first_flake"),
            sa.func.max(m.created_at).label("last_flake"),
        )
        .where(_flake_on_sha(marks))
        .group_by(m.repo, m.suite, m.classname, m.name)
        .subquery("flaky_tests")
    )


_ROW_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "repo": sa.String(),
    "suite": sa.String(),
    "classname": sa.String(),
    "name": sa.String(),
    "file": sa.String(),
    "p50": sa.Double(),
    "p95": sa.Double(),
    "samples": sa.BigInteger(),
    "max_seconds": sa.Double(),
    "slow_executions": sa.BigInteger(),
    "test_cases": sa.BigInteger(),
    "executions": sa.BigInteger(),
    "flake_count": sa.BigInteger(),
    "flaky_executions": sa.BigInteger(),
    "first_flake": sa.DateTime(timezone=True),
    "last_flake": sa.DateTime(timezone=True),
}
"""The columns of ``_report_rows``; each part fills its own and leaves the rest NULL."""


def _part(name: str, source: sa.FromClause, order_by: Sequence[sa.ColumnElement[Any]]) -> sa.Select[Any]:
    """The rows of ``source`` as one part of ``_report_rows``, numbered in ``order_by`` order."""
    return sa.select(
        sa.literal(name, sa.String).label("part"),
        sa.func.row_number().over(order_by=list(order_by)).label("position"),
        *(
            (source.c[column] if column in source.c else sa.cast(sa.null(), kind)).label(column)
            for column, kind in _ROW_TYPES.items()
        ),
    ).select_from(source)


def _report_rows(window: Window, filters: Filters, config: MetricsConfig) -> sa.Select[Any]:
    """Everything the report reads, in one statement, so that the test executions are worked out once: the suites
    (part ``suite``, slowest first), the flaky tests (part ``flaky``, latest flake first) and the count of
    unattributed cases (part ``unattributed``, one row)."""
    executions = _executions(window, filters, config)
    suites = _suite_durations(executions, config.slow_suite_seconds)
    flaky = _flaky_tests(_flake_marks(executions))
    unattributed = _unattributed().subquery("unattributed")
    rows = sa.union_all(
        _part("suite", suites, [suites.c.p95.desc(), suites.c.max_seconds.desc(), suites.c.repo, suites.c.suite]),
        _part(
            "flaky",
            flaky,
            [
                flaky.c.last_flake.desc(),
                flaky.c.flake_count.desc(),
                flaky.c.repo,
                flaky.c.suite,
                flaky.c.classname.nulls_last(),
                flaky.c.name,
            ],
        ),
        _part("unattributed", unattributed, []),
    ).subquery("report_rows")
    return sa.select(rows).order_by(rows.c.part, rows.c.position)


# ----- CODEOWNERS ------------------------------------------------------------------------------------------


def parse_codeowners(text: str) -> CodeownersRules:
    """The rules of a CODEOWNERS file, in order: (pattern, owners).

    Blank lines and ``#`` comments (whole-line or after the owners) are skipped, as are GitLab section headers
    (``[Section]``, ``^[Section]``). A backslash escapes a space in a pattern. A pattern with no owners is kept:
    it makes the paths it matches unowned.
    """
    rules: CodeownersRules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("[") or line.startswith("^["):
            continue
        tokens = [token.replace("\\ ", " ") for token in re.split(r"(?<!\\)\s+", line)]
        pattern, rest = tokens[0], tokens[1:]
        owners: list[str] = []
        for token in rest:
            if token.startswith("#"):
                break
            owners.append(token)
        rules.append((pattern, owners))
    return rules


def owner_for(path: str, rules: Sequence[tuple[str, Sequence[str]]]) -> list[str] | None:
    """The owners of the last rule whose pattern matches ``path`` (relative to the repository root); None when no
    rule matches.

    Patterns follow gitignore as GitHub's CODEOWNERS reads it: a leading or inner ``/`` anchors the pattern at the
    root, otherwise it matches at any depth; a trailing ``/`` matches directories only; a pattern matching a
    directory owns everything below it; ``*`` and ``?`` stay within one path segment; ``**`` spans segments
    (``**/x``, ``x/**``, ``a/**/b``). ``!`` negation and ``[ ]`` ranges are not CODEOWNERS syntax: taken literally.
    """
    normalized = path.replace("\\", "/").strip()
    while normalized.startswith("./"):
        normalized = normalized[2:]
    normalized = normalized.strip("/")
    if not normalized:
        return None
    parts = normalized.split("/")
    directories = ["/".join(parts[:index]) for index in range(1, len(parts))]
    for pattern, owners in reversed(rules):
        regex, directory_only = _compile(pattern)
        candidates = directories if directory_only else [*directories, normalized]
        if any(regex.match(candidate) for candidate in candidates):
            return list(owners)
    return None


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> tuple[re.Pattern[str], bool]:
    """A CODEOWNERS pattern as (regex over a path or directory, directory-only)."""
    directory_only = pattern.endswith("/")
    body = pattern.strip("/")
    anchored = pattern.startswith("/") or "/" in body
    if not body:
        return re.compile(r"^.*$"), directory_only
    segments = body.split("/")
    regex = ""
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            regex += ".*" if last else "(?:.*/)?"
            continue
        regex += "".join("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char) for char in segment)
        if not last:
            regex += "/"
    regex = regex.replace("[^/]*[^/]*", "[^/]*")
    prefix = "^" if anchored else "^(?:.*/)?"
    return re.compile(prefix + regex + "$"), directory_only


def _rules(codeowners: Mapping[str, str] | CodeownersRules | None) -> CodeownersRules:
    if codeowners is None:
        return []
    if isinstance(codeowners, Mapping):
        return [(pattern, owners.split()) for pattern, owners in codeowners.items()]
    return list(codeowners)


# ----- helpers ---------------------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).isoformat().replace("+00:00", "Z")

"""Alert thresholds on the pipeline SLIs (DESIGN.md §3, the "default alert" column) and their evaluation.

A ``Threshold`` names a metric, a comparison and a limit; ``evaluate`` computes the metrics through the metric
functions (``workflow_durations``, ``failure_rates``, ``queue_times``, ``cache_hit_rates``, ``tests_report``,
``security_report``; never SQL of its own) and returns one ``Violation`` per subject (a repository, or a runner
label for queue time) whose value crosses its limit. A metric with no data never violates.

Units: durations in seconds, rates as fractions (0.10 is 10%), ``critical_findings_up`` as a count of criticals
added since the previous scanned week (the default limit 0: any growth).

``shipscope.toml``::

    [thresholds.pr_build_p95]
    limit = 1200                      # seconds
    [thresholds.pr_build_p95.repos]
    "acme/legacy" = 2400              # this repository's own limit
    [thresholds.queue_median.runner_labels]
    "gpu" = 600
    [thresholds.flaky_rate]
    enabled = false
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from shipscope.errors import ConfigError
from shipscope.metrics.common import DEFAULT_CONFIG, NO_FILTERS, Filters, MetricsConfig, Window
from shipscope.metrics.pipelines import cache_hit_rates, failure_rates, queue_times, workflow_durations
from shipscope.metrics.security import security_report
from shipscope.metrics.tests import tests_report
from shipscope.store import Store

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Threshold",
    "Violation",
    "evaluate",
    "thresholds_from_table",
]

Comparison = Literal[">", "<", "up"]
Scope = Literal["repo", "runner_label"]
Unit = Literal["seconds", "fraction", "count"]


@dataclass(frozen=True)
class Threshold:
    name: str
    metric: str
    """The metric the threshold watches, as ``report.field`` (documentation; evaluation dispatches on ``name``)."""
    comparison: Comparison
    """``>``: violated above the limit; ``<``: below it; ``up``: the value grew by more than the limit."""
    limit: float
    """Seconds, a fraction (0.10 = 10%) or a count, as ``unit`` says."""
    scope: Scope
    """What a violation is about: a repository or a runner label."""
    description: str
    unit: Unit = "seconds"
    overrides: tuple[tuple[str, float], ...] = ()
    """Per-subject limits (repository or runner label) that replace ``limit`` for that subject."""

    def limit_for(self, subject: str) -> float:
        return dict(self.overrides).get(subject, self.limit)

    def crossed_by(self, value: float, subject: str) -> bool:
        """Whether ``value`` of ``subject`` violates this threshold (its own limit when it has one)."""
        limit = self.limit_for(subject)
        return value < limit if self.comparison == "<" else value > limit


DEFAULT_THRESHOLDS: tuple[Threshold, ...] = (
    Threshold(
        "pr_build_p95",
        "pipelines.workflows.duration.p95",
        ">",
        15 * 60.0,
        "repo",
        "p95 build duration of pull-request runs (the repository's worst workflow) above 15 min",
    ),
    Threshold(
        "suite_duration",
        "tests.suites.max_seconds",
        ">",
        5 * 60.0,
        "repo",
        "one test suite took more than 5 min in a single job",
    ),
    Threshold(
        "main_failure_rate",
        "pipelines.failure_rate",
        ">",
        0.10,
        "repo",
        "failure rate of default-branch runs (infra failures excluded) above 10%",
        unit="fraction",
    ),
    Threshold(
        "queue_median",
        "pipelines.queue_seconds.p50",
        ">",
        3 * 60.0,
        "runner_label",
        "median queue time of a runner label above 3 min",
    ),
    Threshold(
        "cache_hit_rate",
        "pipelines.cache_hit_rate",
        "<",
        0.60,
        "repo",
        "cache hit rate on warm branches below 60%",
        unit="fraction",
    ),
    Threshold(
        "flaky_rate",
        "tests.flaky_by_repo",
        ">",
        0.01,
        "repo",
        "flaky test executions above 1% of test executions",
        unit="fraction",
    ),
    Threshold(
        "critical_findings_up",
        "security.weeks.open.critical",
        "up",
        0.0,
        "repo",
        "open CRITICAL findings up week over week (latest scanned week against the previous scans)",
        unit="count",
    ),
)

_BY_NAME = {threshold.name: threshold for threshold in DEFAULT_THRESHOLDS}
_OVERRIDE_KEY: dict[Scope, str] = {"repo": "repos", "runner_label": "runner_labels"}


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)


def thresholds_from_table(table: Mapping[str, Any]) -> list[Threshold]:
    """The enabled thresholds after the ``[thresholds]`` table of shipscope.toml (defaults for those not named).

    ``[thresholds.<name>]`` takes ``limit``, ``enabled`` and a ``repos`` (or, for ``queue_median``,
    ``runner_labels``) table of per-subject limits. Unknown thresholds, keys and wrong types are ConfigErrors.
    """
    result: list[Threshold] = []
    for name in table:
        if name not in _BY_NAME:
            raise ConfigError(
                f"[thresholds] {name}: unknown threshold; known: {', '.join(sorted(_BY_NAME))}",
                hint="threshold names are listed in DESIGN.md §3 and shipscope.metrics.thresholds",
            )
    for threshold in DEFAULT_THRESHOLDS:
        settings = table.get(threshold.name, {})
        where = f"[thresholds.{threshold.name}]"
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{where}: expected a table")
        override_key = _OVERRIDE_KEY[threshold.scope]
        known = {"limit", "enabled", override_key}
        for key in settings:
            if key not in known:
                raise ConfigError(f"{where} {key}: unknown setting; known: {', '.join(sorted(known))}")
        enabled = settings.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where} enabled: expected true or false, got {enabled!r}")
        if not enabled:
            continue
        limit = _number(settings["limit"], f"{where} limit") if "limit" in settings else threshold.limit
        subjects = settings.get(override_key, {})
        if not isinstance(subjects, Mapping):
            raise ConfigError(f"{where} {override_key}: expected a table of {threshold.scope} = limit")
        overrides = tuple(
            (str(subject), _number(value, f"{where}.{override_key} {subject!r}")) for subject, value in subjects.items()
        )
        result.append(replace(threshold, limit=limit, overrides=overrides))
    return result


# ----- violations --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    threshold: str
    subject: str
    """The repository, or the runner label for ``queue_median``."""
    value: float
    limit: float
    numbers: dict[str, Any] = field(default_factory=dict)
    """What the value comes from: numerator and denominator, or p-values and sample counts."""
    message: str = ""

    @property
    def key(self) -> str:
        """The identity of the violation across evaluations: ``threshold:subject``."""
        return f"{self.threshold}:{self.subject}"

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "subject": self.subject,
            "value": self.value,
            "limit": self.limit,
            "numbers": dict(self.numbers),
            "message": self.message,
        }


def _human(value: float, unit: Unit) -> str:
    if unit == "fraction":
        return f"{value * 100:.3g}%"
    if unit == "count":
        return f"{value:g}"
    if abs(value) >= 60:
        return f"{value / 60:.3g} min"
    return f"{value:.3g} s"


def _limits(
    thresholds: Iterable[Threshold], overrides: Mapping[str, Mapping[str, float]] | None
) -> dict[str, Threshold]:
    active: dict[str, Threshold] = {}
    for threshold in thresholds:
        extra = (overrides or {}).get(threshold.name)
        if extra:
            merged = {**dict(threshold.overrides), **{subject: float(limit) for subject, limit in extra.items()}}
            threshold = replace(threshold, overrides=tuple(merged.items()))
        active[threshold.name] = threshold
    return active


THRESHOLD_NAMES: tuple[str, ...] = tuple(threshold.name for threshold in DEFAULT_THRESHOLDS)


@dataclass(frozen=True)
class Measurement:
    """One subject's value of a threshold's metric, with what it comes from."""

    threshold: str
    subject: str
    value: float
    numbers: dict[str, Any]
    what: str
    """The value in words, for messages: "the median queue time"."""


def measure(
    store: Store,
    window: Window,
    filters: Filters = NO_FILTERS,
    config: MetricsConfig = DEFAULT_CONFIG,
    names: Iterable[str] = THRESHOLD_NAMES,
) -> list[Measurement]:
    """The value of each named threshold's metric per subject (a repository, or a runner label for queue time),
    computed through the metric functions; a subject without data has no measurement."""
    wanted = set(names)
    found: list[Measurement] = []

    if "pr_build_p95" in wanted:
        worst: dict[str, Any] = {}
        for row in workflow_durations(store, window, filters, config):
            p95 = row.duration.p95
            if row.branch_kind != "pr" or p95 is None:
                continue
            if row.repo not in worst or p95 > worst[row.repo].duration.p95:
                worst[row.repo] = row
        for repo, row in sorted(worst.items()):
            numbers = {"workflow": row.workflow, **row.duration.to_json()}
            found.append(
                Measurement(
                    "pr_build_p95", repo, row.duration.p95, numbers, f"the p95 build time of PR runs of {row.workflow}"
                )
            )

    if "suite_duration" in wanted or "flaky_rate" in wanted:
        report = tests_report(store, window, filters, config)
        if "suite_duration" in wanted:
            slowest: dict[str, Any] = {}
            for suite in report.suites:
                if suite.durations.samples and (
                    suite.repo not in slowest or suite.max_seconds > slowest[suite.repo].max_seconds
                ):
                    slowest[suite.repo] = suite
            for repo, suite in sorted(slowest.items()):
                numbers = {"suite": suite.suite, "max_seconds": suite.max_seconds, **suite.durations.to_json()}
                found.append(
                    Measurement(
                        "suite_duration", repo, suite.max_seconds, numbers, f"the longest run of suite {suite.suite}"
                    )
                )
        if "flaky_rate" in wanted:
            for rate in sorted(report.flaky_by_repo, key=lambda rate: rate.repo or ""):
                value = rate.ratio.rate
                if rate.repo is None or value is None:
                    continue
                numbers = {**rate.ratio.to_json("flaky_executions", "executions"), "flaky_tests": rate.flaky_tests}
                what = f"the flaky rate ({rate.ratio.numerator} of {rate.ratio.denominator} test executions)"
                found.append(Measurement("flaky_rate", rate.repo, value, numbers, what))

    if "main_failure_rate" in wanted:
        totals: dict[str, list[int]] = {}
        for failure in failure_rates(store, window, filters, config):
            counts = totals.setdefault(failure.repo, [0, 0, 0])
            counts[0] += failure.succeeded
            counts[1] += failure.failed
            counts[2] += failure.infra
        for repo, (succeeded, failed, infra) in sorted(totals.items()):
            completed = succeeded + failed
            if not completed:
                continue
            numbers = {"failed": failed, "completed": completed, "succeeded": succeeded, "infra": infra}
            what = f"the default-branch failure rate ({failed} of {completed} runs)"
            found.append(Measurement("main_failure_rate", repo, failed / completed, numbers, what))

    if "queue_median" in wanted:
        for queue in queue_times(store, window, filters, config):
            if queue.queue.p50 is None:
                continue
            found.append(
                Measurement(
                    "queue_median", queue.runner_label, queue.queue.p50, queue.queue.to_json(), "the median queue time"
                )
            )

    if "cache_hit_rate" in wanted:
        for cache in cache_hit_rates(store, window, filters, config):
            value = cache.ratio.rate
            if value is None:
                continue
            numbers = {**cache.ratio.to_json("hits", "lookups"), "misses": cache.misses}
            what = f"the cache hit rate ({cache.hits} of {cache.hits + cache.misses} lookups)"
            found.append(Measurement("cache_hit_rate", cache.repo, value, numbers, what))

    if "critical_findings_up" in wanted:
        for repo_security in security_report(store, window, filters, config).repos:
            scanned = [week for week in repo_security.weeks if week.scanned and week.open is not None]
            if not scanned:
                continue
            latest = scanned[-1]
            if latest.open is None or latest.critical_previous is None:
                continue
            critical = latest.open["critical"]
            growth = critical - latest.critical_previous
            numbers = {
                "week": latest.week.isoformat(),
                "critical": critical,
                "critical_previous": latest.critical_previous,
            }
            what = (
                f"open CRITICAL findings went from {latest.critical_previous} to {critical} "
                f"in the week of {latest.week.isoformat()}"
            )
            found.append(Measurement("critical_findings_up", repo_security.repo, float(growth), numbers, what))

    return found


def evaluate(
    store: Store,
    window: Window,
    filters: Filters = NO_FILTERS,
    config: MetricsConfig = DEFAULT_CONFIG,
    thresholds: Iterable[Threshold] = DEFAULT_THRESHOLDS,
    overrides: Mapping[str, Mapping[str, float]] | None = None,
) -> list[Violation]:
    """The violations of ``thresholds`` over ``window``: one per threshold and subject, by threshold then subject.

    ``overrides`` maps a threshold name to per-subject limits, on top of each threshold's own ``overrides``.
    Only the metrics some threshold needs are computed.
    """
    active = _limits(thresholds, overrides)
    found: list[Violation] = []
    for measured in measure(store, window, filters, config, active):
        threshold = active[measured.threshold]
        if not threshold.crossed_by(measured.value, measured.subject):
            continue
        limit = threshold.limit_for(measured.subject)
        shown, allowed = _human(measured.value, threshold.unit), _human(limit, threshold.unit)
        if threshold.comparison == "up":
            message = f"{measured.subject}: {measured.what}, up by {shown} (allowed: {allowed})"
        else:
            word = "below" if threshold.comparison == "<" else "above"
            message = f"{measured.subject}: {measured.what} is {shown}, {word} the limit of {allowed}"
        found.append(Violation(threshold.name, measured.subject, measured.value, limit, measured.numbers, message))

    order = {name: index for index, name in enumerate(active)}
    found.sort(key=lambda violation: (order[violation.threshold], violation.subject))
    return found

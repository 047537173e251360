"""What each dashboard page shows, computed from the metric functions (the same numbers as the API and the CLI).

A page function takes the store and a ``View`` (window, filters, definitions, all from the URL) and returns the
template's context: plain values, tables and Plotly figures (``charts``). No SQL here and no HTML.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson

from shipscope.errors import InputError
from shipscope.metrics.common import Filters, MetricsConfig, Percentiles, Window
from shipscope.metrics.devex import devex_report
from shipscope.metrics.dora import DEFINITIONS, DoraMetrics, DoraReport, dora_report
from shipscope.metrics.listings import (
    DeploymentFilter,
    deployment_detail,
    deployment_list,
    filter_options,
    incident_list,
)
from shipscope.metrics.pipelines import (
    cache_hit_rates,
    failure_rates,
    pipeline_report,
    queue_times,
    workflow_durations,
)
from shipscope.metrics.security import security_report
from shipscope.metrics.tests import tests_report
from shipscope.metrics.thresholds import Threshold
from shipscope.metrics.workflows import stored_complexity
from shipscope.store import Store
from shipscope.web import charts
from shipscope.web.charts import Series
from shipscope.web.format import duration, percent

DEFAULT_RANGE = "30d"
RANGES = (("7d", "7 days"), ("30d", "30 days"), ("84d", "12 weeks"), ("182d", "26 weeks"))
TREND_WEEKS = 12
FILTER_PARAMS = ("since", "until", "repo", "service", "env", "team", "definitions")
DEPLOYMENT_PARAMS = ("version", "sha", "image_digest", "actor", "status", "kind", "failure_signal")

Context = dict[str, Any]


@dataclass(frozen=True)
class View:
    """The window, filters and DORA definitions a page shows, as given in its URL."""

    window: Window
    filters: Filters
    definitions: str
    params: Mapping[str, str]
    """The URL's filter parameters that were given (for links that keep the view)."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Page-specific parameters (the deployment list's narrowing)."""

    @classmethod
    def from_query(cls, query: Mapping[str, str], *, now: datetime | None = None) -> View:
        params = {name: query[name].strip() for name in FILTER_PARAMS if query.get(name, "").strip()}
        definitions = params.get("definitions", "shipscope")
        if definitions not in DEFINITIONS:
            raise InputError(f"definitions: expected one of {', '.join(DEFINITIONS)}, got {definitions!r}")
        window = Window.parse(params.get("since"), params.get("until"), now=now, default=DEFAULT_RANGE)
        filters = Filters(
            repo=params.get("repo"),
            service=params.get("service"),
            environment=params.get("env"),
            team=params.get("team"),
        )
        extra = {name: query[name].strip() for name in DEPLOYMENT_PARAMS if query.get(name, "").strip()}
        return cls(window, filters, definitions, params, extra)

    def query(self, **changes: str | None) -> str:
        """This view's query string with ``changes`` applied (None removes a parameter)."""
        merged: dict[str, str | None] = {**self.params, **changes}
        kept = {name: value for name, value in merged.items() if value}
        return "?" + urlencode(kept) if kept else ""

    @property
    def trend_window(self) -> Window:
        """The twelve ISO weeks ending with the window's last week (the last one up to ``until``)."""
        last = self.window.until - timedelta(microseconds=1)
        monday = datetime.combine(
            last.astimezone(UTC).date() - timedelta(days=last.weekday()), datetime.min.time(), UTC
        )
        return Window(monday - timedelta(weeks=TREND_WEEKS - 1), self.window.until)


def figure_json(figure: charts.Figure) -> str:
    return orjson.dumps(figure).decode()


def _chart(figure: charts.Figure, title: str, empty: str) -> Context:
    """A chart for the template: its figure, and the empty state when it has no data points."""
    return {"title": title, "figure": figure_json(figure), "points": charts.points(figure), "empty": empty}


def common(store: Store, view: View, config: MetricsConfig) -> Context:
    """What every page shows: the filter bar's options and the current view."""
    return {"view": view, "options": filter_options(store, config), "ranges": RANGES}


# ----- overview --------------------------------------------------------------------------------------------------


def _tile(name: str, metrics: DoraMetrics, trend: DoraMetrics) -> Context:
    weeks = [point.start for point in trend.trend]
    if name == "deployment_frequency":
        frequency = metrics.deployment_frequency
        value = f"{frequency.per_week:.1f} / week" if frequency.per_week is not None else "—"
        counts = f"{frequency.deployments} deployments on {frequency.deployment_days} days"
        spark = charts.sparkline(weeks, [point.deployments for point in trend.trend])
        return {
            "title": "Deployment frequency",
            "value": value,
            "tier": frequency.tier,
            "counts": counts,
            "no_data": frequency.no_data,
            "spark": figure_json(spark),
            "spark_label": "deployments per week",
        }
    if name == "lead_time":
        lead = metrics.lead_time
        spark = charts.sparkline(weeks, [_hours(point.lead_time_median_seconds) for point in trend.trend])
        return {
            "title": "Lead time for changes",
            "value": duration(lead.median_seconds),
            "tier": lead.tier,
            "counts": f"median of {lead.changes} changes; p95 {duration(lead.p95_seconds)}",
            "no_data": lead.no_data,
            "spark": figure_json(spark),
            "spark_label": "weekly median, hours",
        }
    if name == "change_failure_rate":
        rate = metrics.change_failure_rate
        spark = charts.sparkline(weeks, [point.change_failure_rate for point in trend.trend], percent=True)
        return {
            "title": "Change failure rate",
            "value": percent(rate.rate),
            "tier": rate.tier,
            "counts": f"{rate.failed} failed of {rate.deployments} deployments",
            "no_data": rate.no_data,
            "spark": figure_json(spark),
            "spark_label": "weekly rate",
        }
    recovery = metrics.recovery_time
    spark = charts.sparkline(weeks, [_hours(point.recovery_median_seconds) for point in trend.trend])
    return {
        "title": "Failed deployment recovery time",
        "value": duration(recovery.median_seconds),
        "tier": recovery.tier,
        "counts": f"median of {recovery.failures - recovery.unresolved} recoveries; {recovery.unresolved} unresolved",
        "no_data": recovery.no_data,
        "spark": figure_json(spark),
        "spark_label": "weekly median, hours",
    }


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


def _limit(thresholds: Mapping[str, Threshold], name: str, subject: str) -> float | None:
    threshold = thresholds.get(name)
    return threshold.limit_for(subject) if threshold is not None else None


@dataclass(frozen=True)
class _Subject:
    """One repository or runner label under a threshold: its value, and its limit (None: threshold disabled)."""

    name: str
    value: float
    limit: float | None
    below: bool = False
    """The threshold is a floor (cache hit rate), not a ceiling."""

    @property
    def violated(self) -> bool:
        if self.limit is None:
            return False
        return self.value < self.limit if self.below else self.value > self.limit


def _card(
    title: str,
    value: str,
    subject: str | None,
    limit: str | None,
    subjects: list[_Subject],
    noun: str,
    href: str,
    empty: str,
) -> Context:
    over = sum(item.violated for item in subjects)
    word = "under" if subjects and subjects[0].below else "over"
    return {
        "title": title,
        "value": value,
        "subject": subject,
        "limit": limit,
        "violated": bool(over),
        "detail": f"{over} of {len(subjects)} {noun} {word} their limit",
        "no_data": None if subjects else empty,
        "href": href,
    }


def _health(store: Store, view: View, config: MetricsConfig, thresholds: Mapping[str, Threshold]) -> list[Context]:
    """The four pipeline SLIs against their thresholds (per repository or runner label, as alerts are): the worst
    subject or the pooled value, and how many subjects cross their limit."""
    window, filters = view.window, view.filters

    worst_pr: dict[str, tuple[float, str]] = {}
    for row in workflow_durations(store, window, filters, config):
        if row.branch_kind == "pr" and row.duration.p95 is not None:
            worst_pr[row.repo] = max(worst_pr.get(row.repo, (0.0, "")), (row.duration.p95, row.workflow))
    pr = [_Subject(repo, p95, _limit(thresholds, "pr_build_p95", repo)) for repo, (p95, _) in worst_pr.items()]
    slowest = max(pr, key=lambda item: item.value, default=None)

    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for failure in failure_rates(store, window, filters, config):
        for index, count in enumerate((failure.succeeded, failure.failed, failure.infra)):
            totals[failure.repo][index] += count
    failing = [
        _Subject(repo, failed / (succeeded + failed), _limit(thresholds, "main_failure_rate", repo))
        for repo, (succeeded, failed, _) in totals.items()
        if succeeded + failed
    ]
    failed = sum(counts[1] for counts in totals.values())
    completed = failed + sum(counts[0] for counts in totals.values())
    infra = sum(counts[2] for counts in totals.values())

    queues = [
        _Subject(queue.runner_label, queue.queue.p50, _limit(thresholds, "queue_median", queue.runner_label))
        for queue in queue_times(store, window, filters, config)
        if queue.queue.p50 is not None
    ]
    longest = max(queues, key=lambda item: item.value, default=None)

    caches = list(cache_hit_rates(store, window, filters, config))
    hits = sum(cache.hits for cache in caches)
    lookups = sum(cache.hits + cache.misses for cache in caches)
    hit_rates = [
        _Subject(cache.repo, cache.ratio.rate, _limit(thresholds, "cache_hit_rate", cache.repo), below=True)
        for cache in caches
        if cache.ratio.rate is not None
    ]
    return [
        _card(
            "PR build p95 (worst workflow)",
            duration(slowest.value) if slowest else "—",
            f"{slowest.name} · {worst_pr[slowest.name][1]}" if slowest else None,
            duration(slowest.limit) if slowest and slowest.limit is not None else None,
            pr,
            "repositories",
            "/pipelines",
            "no completed pull-request runs in the window",
        ),
        _card(
            "Default-branch failure rate",
            percent(failed / completed) if completed else "—",
            f"{failed} failed of {completed} runs; {infra} infrastructure failures apart",
            percent(_limit(thresholds, "main_failure_rate", "")),
            failing,
            "repositories",
            "/pipelines#failure-rate",
            "no completed default-branch runs in the window",
        ),
        _card(
            "Queue time median (worst runner label)",
            duration(longest.value) if longest else "—",
            longest.name if longest else None,
            duration(longest.limit) if longest and longest.limit is not None else None,
            queues,
            "runner labels",
            "/pipelines#queue",
            "no started jobs in the window",
        ),
        _card(
            "Cache hit rate (warm branches)",
            percent(hits / lookups) if lookups else "—",
            f"{hits} hits of {lookups} lookups",
            percent(_limit(thresholds, "cache_hit_rate", "")),
            hit_rates,
            "repositories",
            "/pipelines#cache",
            "no cache lookups on warm branches in the window",
        ),
    ]


def overview(
    store: Store,
    view: View,
    config: MetricsConfig,
    thresholds: Mapping[str, Threshold],
    alert_state: Mapping[str, Any] | None,
) -> Context:
    dora = dora_report(store, view.window, view.filters, config, definitions=view.definitions)
    trend = dora_report(store, view.trend_window, view.filters, config, definitions=view.definitions, trend="week")
    tiles = [
        _tile(name, dora.overall, trend.overall)
        for name in ("deployment_frequency", "lead_time", "change_failure_rate", "recovery_time")
    ]
    recent = deployment_list(
        store, view.window, view.filters, config, definitions=view.definitions, dora=dora, limit=10
    )
    alerts = None
    if alert_state is not None:
        alerts = sorted(
            alert_state.get("active", {}).values(), key=lambda alert: (alert["threshold"], alert["subject"])
        )
    return {
        "tiles": tiles,
        "no_deployments": dora.overall.deployment_frequency.deployments == 0,
        "health": _health(store, view, config, thresholds),
        "alerts": alerts,
        "deployments": recent,
        "services": _service_rows(dora),
    }


def _service_rows(dora: DoraReport) -> list[Context]:
    return [
        {
            "service": name,
            "deployments": metrics.deployment_frequency.deployments,
            "frequency_tier": metrics.deployment_frequency.tier,
            "lead_time": metrics.lead_time.median_seconds,
            "lead_tier": metrics.lead_time.tier,
            "failure_rate": metrics.change_failure_rate.rate,
            "failure_tier": metrics.change_failure_rate.tier,
            "recovery": metrics.recovery_time.median_seconds,
            "recovery_tier": metrics.recovery_time.tier,
        }
        for name, metrics in dora.services.items()
    ]


# ----- pipelines -------------------------------------------------------------------------------------------------


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 2)


def pipelines(store: Store, view: View, config: MetricsConfig) -> Context:
    report = pipeline_report(store, view.window, view.filters, config)
    weeks = sorted({row.week.isoformat() for row in report.duration_weeks})
    by_kind: dict[tuple[str, str], Percentiles] = {
        (row.week.isoformat(), row.branch_kind): row.duration for row in report.duration_weeks
    }
    duration_series = [
        Series(
            f"{label} {statistic}",
            weeks,
            [
                _minutes(getattr(by_kind[(week, kind)], statistic)) if (week, kind) in by_kind else None
                for week in weeks
            ],
            dash="dot" if statistic == "p50" else None,
            color=color,
        )
        for kind, label, color in (("pr", "PR", charts.PALETTE[0]), ("default", "main", charts.PALETTE[3]))
        for statistic in ("p95", "p50")
    ]
    stage_weeks = sorted({row.week.isoformat() for row in report.stages})
    stage_names = sorted({row.stage for row in report.stages})
    stage_values = {(row.stage, row.week.isoformat()): row.duration.p50 for row in report.stages}
    stage_series = [
        Series(stage, stage_weeks, [_minutes(stage_values.get((stage, week))) for week in stage_weeks])
        for stage in stage_names
    ]
    failures = sorted(report.failure_rate, key=lambda row: (-(row.ratio.rate or 0), row.repo, row.workflow))
    failure_labels = [f"{row.repo} · {row.workflow}" for row in failures]
    failure_series = [
        Series("failure rate (infra excluded)", failure_labels, [row.ratio.rate for row in failures]),
        Series(
            "infra share of failed runs",
            failure_labels,
            [row.infra / (row.failed + row.infra) if row.failed + row.infra else None for row in failures],
        ),
    ]
    queue_labels = [row.runner_label for row in report.queue_seconds]
    queue_series = [
        Series("p50", queue_labels, [_minutes(row.queue.p50) for row in report.queue_seconds]),
        Series("p95", queue_labels, [_minutes(row.queue.p95) for row in report.queue_seconds]),
    ]
    cache_rows = sorted(report.cache_hit_rate, key=lambda row: row.repo)
    cache_series = [Series("hit rate", [row.repo for row in cache_rows], [row.ratio.rate for row in cache_rows])]
    slowest = sorted(
        (row for row in report.workflows if row.duration.p95 is not None),
        key=lambda row: -(row.duration.p95 or 0),
    )[:10]
    return {
        "report": report,
        "duration_chart": _chart(
            charts.line(duration_series, "minutes"),
            "Build duration by week",
            "No completed pull-request or default-branch runs in this window.",
        ),
        "stage_chart": _chart(
            charts.bars(stage_series, "minutes (p50)", stacked=True),
            "Stage p50 by week",
            "No completed steps in this window.",
        ),
        "failure_chart": _chart(
            charts.bars(
                failure_series, "share of runs", percent=True, horizontal=True, height=max(220, 40 + 28 * len(failures))
            ),
            "Default-branch failure rate",
            "No completed default-branch runs in this window.",
        ),
        "queue_chart": _chart(
            charts.bars(queue_series, "minutes"), "Queue time by runner label", "No started jobs in this window."
        ),
        "cache_chart": _chart(
            charts.bars(cache_series, "hit rate", percent=True),
            "Cache hit rate by repository",
            "No cache lookups on warm branches in this window.",
        ),
        "slowest": slowest,
        "failures": failures,
        "regression": report.regression,
    }


# ----- tests -----------------------------------------------------------------------------------------------------


def tests(store: Store, view: View, config: MetricsConfig) -> Context:
    report = tests_report(store, view.window, view.filters, config)
    slowest = sorted(report.suites, key=lambda suite: -(suite.durations.p95 or 0))[:15]
    labels = [f"{suite.repo} · {suite.suite}" for suite in slowest]
    suite_series = [
        Series("p95", labels, [_minutes(suite.durations.p95) for suite in slowest]),
        Series("p50", labels, [_minutes(suite.durations.p50) for suite in slowest]),
    ]
    flaky_rows = sorted(report.flaky_by_repo, key=lambda rate: rate.repo or "")
    flaky_series = [
        Series(
            "flaky rate", [rate.repo or "(unknown)" for rate in flaky_rows], [rate.ratio.rate for rate in flaky_rows]
        )
    ]
    return {
        "report": report,
        "slowest": slowest,
        "suite_chart": _chart(
            charts.bars(suite_series, "minutes", horizontal=True, height=max(220, 40 + 28 * len(slowest))),
            "Slowest suites",
            "No test results in this window.",
        ),
        "flaky_chart": _chart(
            charts.bars(flaky_series, "flaky executions", percent=True),
            "Flaky rate by repository",
            "No test executions in this window.",
        ),
        "slow_seconds": config.slow_suite_seconds,
    }


# ----- security --------------------------------------------------------------------------------------------------

SEVERITIES = ("critical", "high", "medium", "low", "info")
SEVERITY_COLORS = {"critical": "#7d0000", "high": "#D55E00", "medium": "#E69F00", "low": "#56B4E9", "info": "#999999"}


def security(store: Store, view: View, config: MetricsConfig) -> Context:
    report = security_report(store, view.window, view.filters, config)
    weeks = [week.isoformat() for week in report.weeks]
    open_by: dict[str, dict[str, int]] = {severity: defaultdict(int) for severity in SEVERITIES}
    new: dict[str, int] = defaultdict(int)
    fixed: dict[str, int] = defaultdict(int)
    scanned: dict[str, bool] = defaultdict(bool)
    rules: dict[tuple[str, str], Context] = {}
    for repo in report.repos:
        for week in repo.weeks:
            key = week.week.isoformat()
            if not week.scanned or week.open is None:
                continue
            scanned[key] = True
            for severity in SEVERITIES:
                open_by[severity][key] += week.open.get(severity) or 0
            new[key] += week.new or 0
            fixed[key] += week.fixed or 0
        for rule in repo.top_rules:
            entry = rules.setdefault(
                (rule.tool, rule.rule_id),
                {
                    "tool": rule.tool,
                    "rule_id": rule.rule_id,
                    "count": 0,
                    "repos": set(),
                    "max_severity": rule.max_severity,
                },
            )
            entry["count"] += rule.count
            entry["repos"].add(repo.repo)
            if SEVERITIES.index(rule.max_severity) < SEVERITIES.index(entry["max_severity"]):
                entry["max_severity"] = rule.max_severity
    open_series = [
        Series(
            severity,
            weeks,
            [open_by[severity][week] if scanned[week] else None for week in weeks],
            color=SEVERITY_COLORS[severity],
        )
        for severity in SEVERITIES
    ]
    flow_series = [
        Series("new", weeks, [new[week] if scanned[week] else None for week in weeks], color=charts.PALETTE[3]),
        Series("fixed", weeks, [fixed[week] if scanned[week] else None for week in weeks], color=charts.PALETTE[2]),
    ]
    top = sorted(rules.values(), key=lambda rule: (SEVERITIES.index(rule["max_severity"]), -rule["count"]))[:15]
    return {
        "report": report,
        "open_chart": _chart(
            charts.bars(open_series, "open findings", stacked=True),
            "Open findings by severity at each week's last scan",
            "No scans in this window.",
        ),
        "flow_chart": _chart(
            charts.bars(flow_series, "findings"), "New and fixed findings per week", "No scans in this window."
        ),
        "top_rules": top,
    }


# ----- deployments and incidents ---------------------------------------------------------------------------------


def deployments(store: Store, view: View, config: MetricsConfig) -> Context:
    narrow = DeploymentFilter(**view.extra)
    listing = deployment_list(store, view.window, view.filters, config, narrow, definitions=view.definitions)
    weeks = [week.week.isoformat() for week in listing.weeks]
    series = [
        Series(
            "without failure signal",
            weeks,
            [week.deployments - week.failed for week in listing.weeks],
            color=charts.PALETTE[2],
        ),
        Series("with a failure signal", weeks, [week.failed for week in listing.weeks], color=charts.PALETTE[3]),
    ]
    chart = _chart(
        charts.bars(series, "deployments", stacked=True), "Matching deployments per week", "No deployments match."
    )
    return {"listing": listing, "narrow": narrow, "weekly_chart": chart}


def deployment(store: Store, view: View, config: MetricsConfig, deployment_id: str, source: str | None) -> Context:
    detail = deployment_detail(store, deployment_id, source, config, definitions=view.definitions)
    return {"detail": detail, "deployment_id": deployment_id}


def incidents(store: Store, view: View, config: MetricsConfig) -> Context:
    rows = incident_list(store, view.window, view.filters, config, definitions=view.definitions)
    by_week: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        day = row.opened_at.astimezone(UTC).date()
        by_week[(day - timedelta(days=day.weekday())).isoformat()][row.severity or "unknown"] += 1
    weeks = sorted(by_week)
    severities = sorted({severity for counts in by_week.values() for severity in counts})
    series = [Series(severity, weeks, [by_week[week][severity] for week in weeks]) for severity in severities]
    chart = _chart(
        charts.bars(series, "incidents", stacked=True),
        "Incidents opened per week, by severity",
        "No incidents in this window.",
    )
    return {"incidents": rows, "weekly_chart": chart}


# ----- developer experience --------------------------------------------------------------------------------------


def devex(store: Store, view: View, config: MetricsConfig) -> Context:
    report = devex_report(store, view.window, view.filters, config).to_json()
    repos = report["repos"]
    names = [repo["repo"] for repo in repos]

    def hours_of(metric: str, statistic: str) -> list[float | None]:
        return [_hours(repo[metric].get(statistic)) for repo in repos]

    cycle_series = [Series("PR cycle time p50", names, hours_of("pr_cycle_time", "p50"))]
    feedback_series = [
        Series("build feedback p95", names, [_minutes(repo["build_feedback_time"].get("p95")) for repo in repos]),
        Series("time to green p95", names, [_minutes(repo["time_to_green"].get("p95")) for repo in repos]),
    ]
    return {
        "report": report,
        "cycle_chart": _chart(
            charts.bars(cycle_series, "hours"), "PR cycle time by repository", "No merged pull requests in this window."
        ),
        "feedback_chart": _chart(
            charts.bars(feedback_series, "minutes"),
            "Build feedback and time to green",
            "No pull-request builds in this window.",
        ),
        "workflows": stored_complexity(store, view.filters, config),
    }


PAGES: dict[str, Callable[..., Context]] = {
    "pipelines": pipelines,
    "tests": tests,
    "security": security,
    "deployments": deployments,
    "incidents": incidents,
    "devex": devex,
}

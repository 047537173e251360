"""What each dashboard page shows, computed from the metric functions (the same numbers as the API and the CLI).

A page function takes the store and a ``View`` (window, filters, definitions, all from the URL) and returns the
template's context: plain values, tables and Plotly figures (``charts``). No SQL here and no HTML.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson

from shipscope import postmortems
from shipscope.errors import InputError, NotFound
from shipscope.metrics.common import EARLIEST, Filters, MetricsConfig, Percentiles, Window, monday, teams_members
from shipscope.metrics.devex import devex_report
from shipscope.metrics.dora import DEFINITIONS, DoraMetrics, DoraReport, DoraView, dora_reports
from shipscope.metrics.incidents import incident_timeline
from shipscope.metrics.listings import (
    DeploymentFilter,
    FilterOptions,
    deployment_detail,
    deployment_list,
    incident_list,
)
from shipscope.metrics.pipelines import (
    pipeline_report,
)
from shipscope.metrics.security import security_report
from shipscope.metrics.tests import tests_report
from shipscope.metrics.thresholds import Measurement, Threshold, measure
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
        last_week = monday(self.window.until - timedelta(microseconds=1))
        since = datetime.combine(last_week - timedelta(weeks=TREND_WEEKS - 1), time(), UTC)
        return Window(max(since, EARLIEST), self.window.until)


def figure_json(figure: charts.Figure) -> str:
    return orjson.dumps(figure).decode()


def _chart(figure: charts.Figure, title: str, empty: str, x_title: str = "") -> Context:
    """A chart for the template: its figure, its numbers as a table, and the empty state when it has no points."""
    return {
        "title": title,
        "figure": figure_json(figure),
        "points": charts.points(figure),
        "empty": empty,
        "table": charts.table(figure, x_title),
    }


def common(view: View, options: FilterOptions) -> Context:
    """What every page shows: the filter bar's options and the current view."""
    return {"view": view, "options": options, "ranges": RANGES}


# ----- overview --------------------------------------------------------------------------------------------------


def _tile(name: str, metrics: DoraMetrics, trend: DoraMetrics, center: str) -> Context:
    """One DORA tile; lead time and recovery show the statistic the definitions tier on (median or mean)."""
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
            "value": duration(lead.mean_seconds if center == "mean" else lead.median_seconds),
            "tier": lead.tier,
            "counts": f"{center} of {lead.changes} changes; p95 {duration(lead.p95_seconds)}",
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
        "value": duration(recovery.mean_seconds if center == "mean" else recovery.median_seconds),
        "tier": recovery.tier,
        "counts": f"{center} of {recovery.failures - recovery.unresolved} recoveries; {recovery.unresolved} unresolved",
        "no_data": recovery.no_data,
        "spark": figure_json(spark),
        "spark_label": "weekly median, hours",
    }


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


@dataclass(frozen=True)
class _HealthCard:
    threshold: str
    title: str
    anchor: str
    noun: str
    empty: str


HEALTH_CARDS = (
    _HealthCard(
        "pr_build_p95",
        "PR build p95 (worst repository)",
        "duration-heading",
        "repositories",
        "no completed pull-request runs in the window",
    ),
    _HealthCard(
        "main_failure_rate",
        "Default-branch failure rate",
        "failure-rate",
        "repositories",
        "no completed default-branch runs in the window",
    ),
    _HealthCard(
        "queue_median",
        "Queue time median (worst runner label)",
        "queue",
        "runner labels",
        "no started jobs in the window",
    ),
    _HealthCard(
        "cache_hit_rate",
        "Cache hit rate (warm branches)",
        "cache",
        "repositories",
        "no cache lookups on warm branches in the window",
    ),
)


def _health(store: Store, view: View, config: MetricsConfig, thresholds: Mapping[str, Threshold]) -> list[Context]:
    """The four pipeline SLIs against their thresholds, measured per subject as the alerts are (``measure``): the
    worst subject's value, or the pooled rate, and how many subjects cross their limit."""
    measured: dict[str, list[Measurement]] = defaultdict(list)
    for measurement in measure(store, view.window, view.filters, config, [card.threshold for card in HEALTH_CARDS]):
        measured[measurement.threshold].append(measurement)
    cards = []
    for card in HEALTH_CARDS:
        subjects = measured[card.threshold]
        threshold = thresholds.get(card.threshold)
        context: Context = {
            "title": card.title,
            "href": f"/pipelines{view.query()}#{card.anchor}",
            "value": "—",
            "subject": None,
            "status": None,
            "violated": False,
            "limit": None,
            "no_data": None if subjects else card.empty,
        }
        if card.threshold in ("pr_build_p95", "queue_median") and subjects:
            worst = max(subjects, key=lambda item: item.value)
            context["value"] = duration(worst.value)
            workflow = worst.numbers.get("workflow")
            context["subject"] = f"{worst.subject} · {workflow}" if workflow else worst.subject
        elif card.threshold == "main_failure_rate" and subjects:
            failed = sum(item.numbers["failed"] for item in subjects)
            completed = sum(item.numbers["completed"] for item in subjects)
            infra = sum(item.numbers["infra"] for item in subjects)
            context["value"] = percent(failed / completed)
            context["subject"] = f"{failed} failed of {completed} runs; {infra} infrastructure failures apart"
        elif card.threshold == "cache_hit_rate" and subjects:
            hits = sum(item.numbers["hits"] for item in subjects)
            lookups = sum(item.numbers["lookups"] for item in subjects)
            context["value"] = percent(hits / lookups)
            context["subject"] = f"{hits} hits of {lookups} lookups"
        if threshold is None:
            context["status"] = "no threshold set"
        elif subjects:
            over = [item.subject for item in subjects if threshold.crossed_by(item.value, item.subject)]
            word = "under" if threshold.comparison == "<" else "over"
            shown = duration if threshold.unit == "seconds" else percent
            context["violated"] = bool(over)
            context["limit"] = shown(threshold.limit) + (" by default" if threshold.overrides else "")
            context["status"] = (
                f"✗ {len(over)} of {len(subjects)} {card.noun} {word} their limit"
                if over
                else f"✓ every one of {len(subjects)} {card.noun} within its limit"
            )
        cards.append(context)
    return cards


def overview(
    store: Store,
    view: View,
    config: MetricsConfig,
    thresholds: Mapping[str, Threshold],
    alert_state: Mapping[str, Any] | None,
    alert_window: str = "7d",
) -> Context:
    # The health cards and DORA are independent, and much of their time is spent in the database with Python's lock
    # released, so they run side by side. One DORA load serves both the window and the trend's twelve weeks.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="overview") as pool:
        health = pool.submit(_health, store, view, config, thresholds)
        dora, trend = dora_reports(
            store,
            [DoraView(view.window), DoraView(view.trend_window, "week", per_service=False)],
            view.filters,
            config,
            definitions=view.definitions,
        )
    tiles = [
        _tile(name, dora.overall, trend.overall, dora.definitions.center)
        for name in ("deployment_frequency", "lead_time", "change_failure_rate", "recovery_time")
    ]
    recent = deployment_list(
        store, view.window, view.filters, config, definitions=view.definitions, dora=dora, limit=10, weekly=False
    )
    alerts = None
    if alert_state is not None:
        alerts = sorted(
            (alert for alert in alert_state.get("active", {}).values() if _in_view(alert, view, config, thresholds)),
            key=lambda alert: (alert["threshold"], alert["subject"]),
        )
    return {
        "tiles": tiles,
        "no_deployments": dora.overall.deployment_frequency.deployments == 0,
        "health": health.result(),
        "alerts": alerts,
        "alert_window": alert_window,
        "deployments": recent,
        "services": _service_rows(dora),
        "center": dora.definitions.center,
    }


def _in_view(alert: Mapping[str, Any], view: View, config: MetricsConfig, thresholds: Mapping[str, Threshold]) -> bool:
    """Whether an announced alert concerns the repositories the view is filtered to (runner labels always do)."""
    threshold = thresholds.get(alert["threshold"])
    if threshold is not None and threshold.scope != "repo":
        return True
    members = teams_members(config, view.filters.team)
    if members is not None and alert["subject"] not in members:
        return False
    return view.filters.repo is None or alert["subject"] == view.filters.repo


def _service_rows(dora: DoraReport) -> list[Context]:
    mean = dora.definitions.center == "mean"
    return [
        {
            "service": name,
            "deployments": metrics.deployment_frequency.deployments,
            "frequency_tier": metrics.deployment_frequency.tier,
            "lead_time": metrics.lead_time.mean_seconds if mean else metrics.lead_time.median_seconds,
            "lead_tier": metrics.lead_time.tier,
            "failure_rate": metrics.change_failure_rate.rate,
            "failure_tier": metrics.change_failure_rate.tier,
            "recovery": metrics.recovery_time.mean_seconds if mean else metrics.recovery_time.median_seconds,
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
            x_title="week",
        ),
        "stage_chart": _chart(
            charts.bars(stage_series, "minutes (p50)", stacked=True),
            "Stage p50 by week",
            "No completed steps in this window.",
            x_title="week",
        ),
        "failure_chart": _chart(
            charts.bars(failure_series, "share of runs", percent=True, horizontal=True),
            "Default-branch failure rate",
            "No completed default-branch runs in this window.",
            x_title="workflow",
        ),
        "queue_chart": _chart(
            charts.bars(queue_series, "minutes"),
            "Queue time by runner label",
            "No started jobs in this window.",
            x_title="runner label",
        ),
        "cache_chart": _chart(
            charts.bars(cache_series, "hit rate", percent=True),
            "Cache hit rate by repository",
            "No cache lookups on warm branches in this window.",
            x_title="repository",
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
            charts.bars(suite_series, "minutes", horizontal=True),
            "Slowest suites",
            "No test results in this window.",
            x_title="suite",
        ),
        "flaky_chart": _chart(
            charts.bars(flaky_series, "flaky executions", percent=True),
            "Flaky rate by repository",
            "No test executions in this window.",
            x_title="repository",
        ),
        "slow_seconds": config.slow_suite_seconds,
    }


# ----- security --------------------------------------------------------------------------------------------------

SEVERITIES = ("critical", "high", "medium", "low", "info")
SEVERITY_COLORS = {"critical": "#7d0000", "high": "#C24A00", "medium": "#B86E00", "low": "#3A87B7", "info": "#6E7781"}


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
            x_title="week",
        ),
        "flow_chart": _chart(
            charts.bars(flow_series, "findings"),
            "New and fixed findings per week",
            "No scans in this window.",
            x_title="week",
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
        charts.bars(series, "deployments", stacked=True),
        "Matching deployments per week",
        "No deployments match.",
        x_title="week",
    )
    return {"listing": listing, "narrow": narrow, "weekly_chart": chart}


def deployment(store: Store, view: View, config: MetricsConfig, deployment_id: str, source: str | None) -> Context:
    detail = deployment_detail(store, deployment_id, source, config, definitions=view.definitions)
    return {"detail": detail, "deployment_id": deployment_id}


def incidents(store: Store, view: View, config: MetricsConfig) -> Context:
    listing = incident_list(store, view.window, view.filters, config, definitions=view.definitions)
    weeks = [week.isoformat() for week, _ in listing.weeks]
    severities = sorted({severity for _, counts in listing.weeks for severity in counts})
    series = [
        Series(severity, weeks, [counts.get(severity, 0) for _, counts in listing.weeks]) for severity in severities
    ]
    chart = _chart(
        charts.bars(series, "incidents", stacked=True),
        "Incidents opened per week, by severity",
        "No incidents in this window.",
        x_title="week",
    )
    return {"listing": listing, "weekly_chart": chart}


def incident(
    store: Store, view: View, config: MetricsConfig, incident_id: str, source: str | None, refused: str | None = None
) -> Context:
    """One incident: the deploys behind it, the runbook checklist, the postmortem and its items, the timeline."""
    timeline = incident_timeline(store, incident_id, source, config, definitions=view.definitions)
    if timeline is None:
        raise NotFound(f"no incident with id {incident_id!r}" + (f" from {source!r}" if source else ""))
    found = timeline.incident
    today = datetime.now(UTC).date()
    written = postmortems.postmortem(store, found.source, found.id)
    return {
        "timeline": timeline,
        "runbook": postmortems.runbook(store, found),
        "postmortem": written,
        "today": today,
        "overdue": [item for item in (written.items if written else ()) if item.overdue(today)],
        "item_kinds": postmortems.ITEM_KINDS,
        "refused": refused,
    }


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
            charts.bars(cycle_series, "hours"),
            "PR cycle time by repository",
            "No merged pull requests in this window.",
            x_title="repository",
        ),
        "feedback_chart": _chart(
            charts.bars(feedback_series, "minutes"),
            "Build feedback and time to green",
            "No pull-request builds in this window.",
            x_title="repository",
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

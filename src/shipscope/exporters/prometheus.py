"""Prometheus exposition of what the store knows, for ``GET /metrics``.

A custom collector reads the metric functions (it holds no SQL) when scraped:

- Histograms and counters over the whole store, so that Prometheus computes windows itself with ``rate()`` and
  ``increase()``: build duration and queue time (``repo``, ``workflow``, ``branch_kind``), queue time by runner
  label, stage duration (``repo``, ``stage``), completed runs by result and failure class, cache lookups, test
  executions and flaky ones, deployments. They only grow as events arrive; ``shipscope reprocess`` after a parser
  fix may lower them once, which ``rate()`` reads as a counter reset.
- Gauges over the exporter window (default 30 days): the four DORA keys and their tiers per service, open
  findings by severity at each repository's last scan, and each repository's longest test suite run.
- The server's own ingest counters, since the process started.

Cardinality budget: ``[exporter.labels]`` allowlists (label → glob patterns; other values become ``other``), then
``max_series``: while the store's series exceed it, the family with the most series folds its least active label
set into ``other`` (its repo, workflow, service and environment labels; counts are summed, and gauges that cannot
be summed, such as a median, are dropped). ``shipscope_exporter_folded_label_sets`` counts what was folded.

Reads are cached for ``cache_seconds``, so several scrapers (or an HA pair of Prometheus servers) cost one read.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from shipscope.errors import ConfigError
from shipscope.metrics.common import DEFAULT_CONFIG, EARLIEST, LATEST, NO_FILTERS, MetricsConfig, Window
from shipscope.metrics.dora import DEFINITIONS, dora_report
from shipscope.metrics.listings import deployment_totals
from shipscope.metrics.pipelines import (
    FAILURE_CLASSES,
    cache_hit_rates,
    duration_histograms,
    failure_rates,
    queue_histograms,
    runner_queue_histograms,
    stage_histograms,
)
from shipscope.metrics.security import security_report
from shipscope.metrics.tests import tests_report
from shipscope.store import Store

__all__ = ["ExporterConfig", "StoreCollector", "TIER_VALUES", "metrics_registry"]

DURATION_BOUNDS = (60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0)
"""Build duration buckets (seconds); 900 s is the default PR p95 alert."""
QUEUE_BOUNDS = (5.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 1800.0)
"""Queue time buckets (seconds); 180 s is the default median alert."""
STAGE_BOUNDS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)
TIER_VALUES: Mapping[str, int] = {"elite": 4, "high": 3, "medium": 2, "low": 1}
"""``shipscope_dora_tier``: higher is better, so an alert reads ``< 3`` for "below high"."""
OTHER = "other"
_FOLDABLE = frozenset({"repo", "workflow", "service", "environment"})
"""Labels whose values a budget may replace by ``other``; the others (branch kind, result, stage…) are few."""
_ALL_TIME = Window(EARLIEST, LATEST)

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class ExporterConfig:
    """``shipscope.toml`` ``[exporter]``."""

    max_series: int = 1800
    """Most series the store's families may expose together (the self-metrics and process metrics come on top)."""
    cache_seconds: float = 30.0
    """How long a read of the store serves scrapes."""
    window: str = "30d"
    """The window of the gauges (DORA, open findings), back from the scrape."""
    definitions: str = "shipscope"
    """The DORA definitions preset of the DORA gauges."""
    labels: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Allowlists: label name → glob patterns of the values kept; any other value becomes ``other``."""

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> ExporterConfig:
        known = set(cls.__dataclass_fields__)
        for name in table:
            if name not in known:
                raise ConfigError(f"[exporter] {name}: unknown setting; known: {', '.join(sorted(known))}")
        config = cls(**table)
        if not isinstance(config.max_series, int) or isinstance(config.max_series, bool) or config.max_series < 1:
            raise ConfigError("[exporter] max_series: expected a whole number of at least 1")
        if not isinstance(config.cache_seconds, int | float) or config.cache_seconds < 0:
            raise ConfigError("[exporter] cache_seconds: expected a number of seconds, 0 or more")
        if config.definitions not in DEFINITIONS:
            raise ConfigError(f"[exporter] definitions: expected one of {', '.join(DEFINITIONS)}")
        Window.parse(config.window, None)
        for label, patterns in config.labels.items():
            if not isinstance(patterns, list | tuple) or not all(isinstance(item, str) for item in patterns):
                raise ConfigError(f"[exporter.labels] {label}: expected a list of glob patterns")
        return config


# ----- families and the budget -------------------------------------------------------------------------------------


@dataclass
class _Series:
    values: list[float]
    """A counter's or gauge's value; a histogram's cumulative bucket counts, then its count and sum."""
    weight: float
    """How active the label set is: what the budget folds first is the least active."""


@dataclass
class _Family:
    name: str
    help: str
    kind: Kind
    labels: tuple[str, ...]
    additive: bool = True
    """Whether two label sets can be folded into one by summing (a median cannot)."""
    bounds: tuple[float, ...] = ()
    series: dict[tuple[str, ...], _Series] = field(default_factory=dict)

    @property
    def per_label_set(self) -> int:
        return len(self.bounds) + 3 if self.kind == "histogram" else 1  # buckets, +Inf, _sum, _count

    @property
    def size(self) -> int:
        return self.per_label_set * len(self.series)

    def add(self, key: tuple[str, ...], values: Sequence[float], weight: float) -> None:
        existing = self.series.get(key)
        if existing is None or not self.additive:
            self.series[key] = _Series(list(values), weight)
        else:
            existing.values = [a + b for a, b in zip(existing.values, values, strict=True)]
            existing.weight += weight

    def folded_key(self, key: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(OTHER if name in _FOLDABLE else value for name, value in zip(self.labels, key, strict=True))


class _Budget:
    def __init__(self, config: ExporterConfig) -> None:
        self.config = config
        self.folded: Counter[str] = Counter()

    def add(self, family: _Family, labels: Mapping[str, str], values: Sequence[float], weight: float) -> None:
        """Adds a label set, its values first passed through the allowlists."""
        key = tuple(labels[name] for name in family.labels)
        allowed = tuple(
            value if self._allowed(name, value) else OTHER for name, value in zip(family.labels, key, strict=True)
        )
        if allowed != key:
            self.folded[family.name] += 1
            if not family.additive:
                return
        family.add(allowed, values, weight)

    def _allowed(self, label: str, value: str) -> bool:
        patterns = self.config.labels.get(label)
        return patterns is None or any(fnmatchcase(value, pattern) for pattern in patterns)

    def enforce(self, families: Sequence[_Family]) -> None:
        """Folds the least active label sets of the largest family until the series fit ``max_series``."""
        queues = {
            family.name: sorted(
                (key for key in family.series if family.folded_key(key) != key),
                key=lambda key, family=family: (family.series[key].weight, key),  # type: ignore[misc]
                reverse=True,
            )
            for family in families
        }
        total = sum(family.size for family in families)
        while total > self.config.max_series:
            candidates = [family for family in families if queues[family.name]]
            if not candidates:
                return
            family = max(candidates, key=lambda candidate: (candidate.size, candidate.name))
            key = queues[family.name].pop()
            before = family.size
            series = family.series.pop(key)
            if family.additive:
                family.add(family.folded_key(key), series.values, series.weight)
            self.folded[family.name] += 1
            total += family.size - before


# ----- reading the store -------------------------------------------------------------------------------------------


_HISTOGRAMS = (
    (
        "shipscope_pipeline_duration_seconds",
        "Build duration (finished − started) of completed PR and default-branch runs.",
        ("repo", "workflow", "branch_kind"),
        duration_histograms,
        DURATION_BOUNDS,
    ),
    (
        "shipscope_job_queue_seconds",
        "Queue time (started − created) of the jobs of PR and default-branch runs.",
        ("repo", "workflow", "branch_kind"),
        queue_histograms,
        QUEUE_BOUNDS,
    ),
    (
        "shipscope_runner_queue_seconds",
        "Queue time of jobs by runner label (a job counts under each of its labels).",
        ("runner_label",),
        runner_queue_histograms,
        QUEUE_BOUNDS,
    ),
    (
        "shipscope_stage_duration_seconds",
        "Duration of completed steps by canonical stage.",
        ("repo", "stage"),
        stage_histograms,
        STAGE_BOUNDS,
    ),
)


def read_families(
    store: Store, metrics_config: MetricsConfig, config: ExporterConfig, budget: _Budget
) -> list[_Family]:
    """Every family the store feeds, before the series budget."""
    families: list[_Family] = []
    for name, help, labels, read, bounds in _HISTOGRAMS:
        family = _Family(name, help, "histogram", labels, bounds=bounds)
        for histogram in read(store, _ALL_TIME, bounds, NO_FILTERS, metrics_config):
            values = [*histogram.cumulative, histogram.count, histogram.total_seconds]
            budget.add(family, histogram.labels, values, histogram.count)
        families.append(family)
    families.append(_run_outcomes(store, metrics_config, budget))
    families.append(_cache_lookups(store, metrics_config, budget))
    families.extend(_test_executions(store, metrics_config, budget))
    families.extend(_deployments(store, budget))
    window = Window.parse(config.window, None)
    families.append(_open_findings(store, window, metrics_config, budget))
    families.append(_longest_suites(store, window, metrics_config, budget))
    families.extend(_dora(store, window, metrics_config, config.definitions, budget))
    return families


def _run_outcomes(store: Store, metrics_config: MetricsConfig, budget: _Budget) -> _Family:
    family = _Family(
        "shipscope_pipeline_runs",
        "Completed PR and default-branch runs by result; a failure by its class (infra is the runner's fault).",
        "counter",
        ("repo", "workflow", "branch_kind", "result", "failure_class"),
    )
    for branch_kind in ("default", "pr"):
        for rate in failure_rates(store, _ALL_TIME, NO_FILTERS, metrics_config, branch_kind=branch_kind):
            where = {"repo": rate.repo, "workflow": rate.workflow, "branch_kind": branch_kind}
            counts = [("success", "none", rate.succeeded), ("failure", "infra", rate.infra)]
            counts.extend(("failure", name, rate.by_class[name]) for name in FAILURE_CLASSES)
            for result, failure_class, count in counts:
                if count:
                    labels = {**where, "result": result, "failure_class": failure_class}
                    budget.add(family, labels, [count], count)
    return family


def _cache_lookups(store: Store, metrics_config: MetricsConfig, budget: _Budget) -> _Family:
    family = _Family(
        "shipscope_cache_lookups",
        "Cache lookups by result: hit or miss on a warm branch, or cold (the branch's first run).",
        "counter",
        ("repo", "result"),
    )
    for rate in cache_hit_rates(store, _ALL_TIME, NO_FILTERS, metrics_config):
        for result, count in (("hit", rate.hits), ("miss", rate.misses), ("cold", rate.cold)):
            budget.add(family, {"repo": rate.repo, "result": result}, [count], count)
    return family


def _test_executions(store: Store, metrics_config: MetricsConfig, budget: _Budget) -> list[_Family]:
    executions = _Family("shipscope_test_executions", "Test executions (skipped cases excluded).", "counter", ("repo",))
    flaky = _Family(
        "shipscope_flaky_test_executions",
        "Failed test executions that passed later on the same sha.",
        "counter",
        ("repo",),
    )
    for rate in tests_report(store, _ALL_TIME, NO_FILTERS, metrics_config).flaky_by_repo:
        if rate.repo is None:
            continue
        budget.add(executions, {"repo": rate.repo}, [rate.ratio.denominator], rate.ratio.denominator)
        budget.add(flaky, {"repo": rate.repo}, [rate.ratio.numerator], rate.ratio.denominator)
    return [executions, flaky]


def _deployments(store: Store, budget: _Budget) -> list[_Family]:
    counted = _Family(
        "shipscope_deployments",
        "Deployments by service, environment, status and kind (deploy, rollback, hotfix).",
        "counter",
        ("service", "environment", "status", "kind"),
    )
    last = _Family(
        "shipscope_deployment_last_finished_timestamp_seconds",
        "When the service's latest finished deployment to the environment finished (Unix time); it changes at "
        "each deployment, which dashboards annotate.",
        "gauge",
        ("service", "environment"),
        additive=False,
    )
    latest: dict[tuple[str, str], tuple[float, int]] = {}
    for total in deployment_totals(store):
        labels = {"service": total.service, "environment": total.environment}
        budget.add(counted, {**labels, "status": total.status, "kind": total.kind}, [total.count], total.count)
        if total.last_finished_at is not None:
            stamp, count = latest.get((total.service, total.environment), (0.0, 0))
            latest[(total.service, total.environment)] = (
                max(stamp, total.last_finished_at.timestamp()),
                count + total.count,
            )
    for (service, environment), (stamp, count) in latest.items():
        budget.add(last, {"service": service, "environment": environment}, [stamp], count)
    return [counted, last]


def _open_findings(store: Store, window: Window, metrics_config: MetricsConfig, budget: _Budget) -> _Family:
    family = _Family(
        "shipscope_open_findings",
        "Open security findings by severity at the repository's last scan in the exporter window.",
        "gauge",
        ("repo", "severity"),
    )
    for repo in security_report(store, window, NO_FILTERS, metrics_config).repos:
        scanned = [week.open for week in repo.weeks if week.open is not None]
        if scanned:
            for severity, count in scanned[-1].items():
                budget.add(family, {"repo": repo.repo, "severity": severity}, [count], sum(scanned[-1].values()))
    return family


def _longest_suites(store: Store, window: Window, metrics_config: MetricsConfig, budget: _Budget) -> _Family:
    family = _Family(
        "shipscope_test_suite_longest_seconds",
        "The longest single-job run of any of the repository's test suites in the exporter window.",
        "gauge",
        ("repo",),
        additive=False,
    )
    longest: dict[str, tuple[float, int]] = {}
    for suite in tests_report(store, window, NO_FILTERS, metrics_config).suites:
        if suite.durations.samples:
            seconds, samples = longest.get(suite.repo, (0.0, 0))
            longest[suite.repo] = (max(seconds, suite.max_seconds), samples + suite.durations.samples)
    for repo, (seconds, samples) in sorted(longest.items()):
        budget.add(family, {"repo": repo}, [seconds], samples)
    return family


def _dora(
    store: Store, window: Window, metrics_config: MetricsConfig, definitions: str, budget: _Budget
) -> list[_Family]:
    def gauge(name: str, help: str, labels: tuple[str, ...] = ("service",)) -> _Family:
        return _Family(name, help, "gauge", labels, additive=False)

    frequency = gauge("shipscope_dora_deployments_per_day", "DORA deployment frequency: production deploys a day.")
    lead = gauge("shipscope_dora_lead_time_seconds", "DORA lead time for changes, median.")
    failure = gauge("shipscope_dora_change_failure_rate", "DORA change failure rate (a fraction).")
    recovery = gauge("shipscope_dora_recovery_time_seconds", "DORA failed deployment recovery time, median.")
    tier = gauge("shipscope_dora_tier", "DORA 2023 tier per key: 4 elite, 3 high, 2 medium, 1 low.", ("service", "key"))
    report = dora_report(store, window, NO_FILTERS, metrics_config, definitions=definitions)
    for service, metrics in report.services.items():
        weight = metrics.deployment_frequency.deployments
        labels = {"service": service}
        deploys = metrics.deployment_frequency
        keys = (
            ("deployment_frequency", frequency, deploys.per_day, deploys.tier),
            ("lead_time", lead, metrics.lead_time.median_seconds, metrics.lead_time.tier),
            ("change_failure_rate", failure, metrics.change_failure_rate.rate, metrics.change_failure_rate.tier),
            ("recovery_time", recovery, metrics.recovery_time.median_seconds, metrics.recovery_time.tier),
        )
        for key, family, value, key_tier in keys:
            if value is not None:
                budget.add(family, labels, [value], weight)
            if key_tier is not None:
                budget.add(tier, {**labels, "key": key}, [TIER_VALUES[key_tier]], weight)
    return [frequency, lead, failure, recovery, tier]


# ----- exposition --------------------------------------------------------------------------------------------------


def _rendered(family: _Family) -> Metric:
    if family.kind == "histogram":
        histogram = HistogramMetricFamily(family.name, family.help, labels=family.labels)
        for key, series in family.series.items():
            *cumulative, count, total = series.values
            buckets = [(_bound(bound), value) for bound, value in zip(family.bounds, cumulative, strict=True)]
            histogram.add_metric(list(key), [*buckets, ("+Inf", count)], total)
        return histogram
    shape = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
    metric = shape(family.name, family.help, labels=family.labels)
    for key, series in family.series.items():
        metric.add_metric(list(key), series.values[0])
    return metric


def _bound(bound: float) -> str:
    return str(int(bound)) if bound.is_integer() else repr(bound)


IngestTally = Callable[[], tuple[Mapping[tuple[str, str], int], Mapping[tuple[str, str], int]]]
"""The writer's deliveries and events by (source, outcome)."""


class StoreCollector(Collector):
    """The store's families (cached for ``cache_seconds``), the exporter's self-metrics and the ingest counters."""

    def __init__(
        self,
        store: Store,
        config: ExporterConfig,
        metrics_config: MetricsConfig = DEFAULT_CONFIG,
        tally: IngestTally | None = None,
        trace_tally: Callable[[], Mapping[str, int]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._config = config
        self._metrics_config = metrics_config
        self._tally = tally
        self._trace_tally = trace_tally
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        yield from self._store_metrics()
        if self._tally is not None:
            yield from _ingest_metrics(*self._tally())
        if self._trace_tally is not None:
            yield _trace_export_metric(self._trace_tally())

    def _store_metrics(self) -> list[Metric]:
        with self._lock:  # concurrent scrapes wait for one read rather than each making their own
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self._config.cache_seconds:
                return self._cached[1]
            started = time.perf_counter()
            budget = _Budget(self._config)
            families = read_families(self._store, self._metrics_config, self._config, budget)
            budget.enforce(families)
            metrics = [_rendered(family) for family in families]
            metrics.extend(_self_metrics(families, budget.folded, time.perf_counter() - started))
            self._cached = (now, metrics)
            return metrics


def _self_metrics(families: Sequence[_Family], folded: Mapping[str, int], seconds: float) -> list[Metric]:
    series = GaugeMetricFamily(
        "shipscope_exporter_series", "Series the store's families expose, after the budget.", labels=("metric",)
    )
    folds = GaugeMetricFamily(
        "shipscope_exporter_folded_label_sets",
        "Label sets folded into 'other' (or left out, for gauges that cannot be summed) by the allowlists and "
        "the series budget at the last read.",
        labels=("metric",),
    )
    for family in families:
        series.add_metric([family.name], family.size)
        folds.add_metric([family.name], folded.get(family.name, 0))
    duration = GaugeMetricFamily(
        "shipscope_exporter_read_seconds", "How long the last read of the store for /metrics took."
    )
    duration.add_metric([], seconds)
    return [series, folds, duration]


def _ingest_metrics(
    deliveries: Mapping[tuple[str, str], int], events: Mapping[tuple[str, str], int]
) -> Iterator[Metric]:
    counted = CounterMetricFamily(
        "shipscope_ingest_deliveries",
        "Payloads this server wrote since it started, by source and outcome (new, duplicate, rejected).",
        labels=("source", "outcome"),
    )
    for (source, outcome), count in sorted(deliveries.items()):
        counted.add_metric([source, outcome], count)
    yield counted
    normalized = CounterMetricFamily(
        "shipscope_ingest_events",
        "Canonical events in the payloads this server wrote since it started, by source and outcome.",
        labels=("source", "outcome"),
    )
    for (source, outcome), count in sorted(events.items()):
        normalized.add_metric([source, outcome], count)
    yield normalized


def _trace_export_metric(counts: Mapping[str, int]) -> Metric:
    traces = CounterMetricFamily(
        "shipscope_otlp_export_traces",
        "Run and deployment traces the live OTLP export handled since the server started, by outcome (sent, "
        "failed, dropped when its queue was full).",
        labels=("outcome",),
    )
    for outcome in ("sent", "failed", "dropped"):
        traces.add_metric([outcome], counts.get(outcome, 0))
    return traces


def metrics_registry(collector: StoreCollector) -> CollectorRegistry:
    """A registry of its own (not the process-wide default): the collector, and the process's CPU and memory."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry

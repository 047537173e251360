"""Canary analysis from Argo Rollouts ``AnalysisTemplate`` / ``ClusterAnalysisTemplate`` YAML, run outside Kubernetes.

The template is read as Argo reads it (https://argo-rollouts.readthedocs.io/en/stable/features/analysis/):

- ``spec.args`` with defaults, overridden by ``--arg name=value``; ``{{args.name}}`` is substituted in every string
  of the metrics. An argument with neither a value nor an override is an error (``valueFrom`` reads a Kubernetes
  secret or field, which does not exist here: give it with ``--arg``).
- Each metric: the ``prometheus`` provider (``address``, ``query``, ``timeout``, ``headers``), ``initialDelay``,
  ``interval``, ``count``, ``successCondition``, ``failureCondition``, ``failureLimit`` (default 0; -1 never
  fails), ``inconclusiveLimit`` (default 0) and ``consecutiveErrorLimit`` (default 4); ``spec.dryRun`` metrics are
  measured and shown but do not decide.
- A measurement is Failed when the failure condition holds, or the success condition is given and does not; it is
  Successful when the success condition holds, or only a failure condition is given and it does not; Inconclusive
  when both are given and neither holds; Error when the query or the condition cannot be evaluated. With neither
  condition a measurement is Successful.
- A metric is Failed once its failed measurements exceed ``failureLimit``, Inconclusive once its inconclusive ones
  exceed ``inconclusiveLimit``, Error once its consecutive errors exceed ``consecutiveErrorLimit``, and Successful
  when ``count`` measurements are taken (one, when neither count nor interval is given). The run ends as soon as
  a metric fails, errs or is inconclusive; its phase is the worst of its metrics' (Failed, Error, Inconclusive,
  Successful).

Argo measures a metric with an interval and no count until the rollout ends; here ``--duration`` bounds it.
"""

from __future__ import annotations

import ast
import heapq
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from shipscope.deploy.expr import ExpressionError, compile_condition, evaluate
from shipscope.errors import InputError, ShipscopeError
from shipscope.integrations.prometheus import instant_query
from shipscope.yamlfiles import load_yaml_file_documents

Phase = Literal["Successful", "Failed", "Inconclusive", "Error"]
EXIT_CODES: Mapping[Phase, int] = {"Successful": 0, "Failed": 1, "Inconclusive": 2, "Error": 3}
_WORST: Sequence[Phase] = ("Failed", "Error", "Inconclusive", "Successful")
TEMPLATE_KINDS = ("AnalysisTemplate", "ClusterAnalysisTemplate")
_ARG = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object, where: str) -> float:
    """Seconds of a Go duration (``30s``, ``5m``, ``1h30m``) or a bare number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if text.isdigit():
        return float(text)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise InputError(f"{where}: {value!r} is not a duration (like 30s, 5m or 1h30m)")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


@dataclass(frozen=True)
class Metric:
    name: str
    address: str
    query: str
    headers: Mapping[str, str]
    timeout: float
    interval: float | None
    count: int | None
    initial_delay: float
    success: ast.Expression | None
    success_text: str | None
    failure: ast.Expression | None
    failure_text: str | None
    failure_limit: int
    inconclusive_limit: int
    consecutive_error_limit: int
    dry_run: bool

    def measurements_wanted(self, duration: float | None) -> int:
        if self.count is not None:
            return self.count
        if self.interval is None:
            return 1
        if duration is None:
            raise InputError(
                f"metric {self.name}: an interval without a count measures until the rollout ends; give --duration "
                "to bound it, or a count"
            )
        return max(1, int(duration // self.interval) + 1)


@dataclass(frozen=True)
class Template:
    name: str
    kind: str
    metrics: tuple[Metric, ...]


def _documents(path: Path) -> list[Any]:
    return load_yaml_file_documents(path)


def _substitute(value: Any, args: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):

        def argument(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in args:
                raise InputError(f"{where}: {{{{args.{name}}}}} names no argument of the template")
            return args[name]

        return _ARG.sub(argument, value)
    if isinstance(value, list):
        return [_substitute(item, args, where) for item in value]
    if isinstance(value, Mapping):
        return {key: _substitute(item, args, where) for key, item in value.items()}
    return value


def _limit(spec: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = spec.get(key, default)
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < -1:
        raise InputError(f"{where}.{key}: expected an integer, got {value!r}")
    return value


def _condition(spec: Mapping[str, Any], key: str, where: str) -> tuple[ast.Expression | None, str | None]:
    text = spec.get(key)
    if text is None or text == "":
        return None, None
    if not isinstance(text, str):
        raise InputError(f"{where}.{key}: expected an expression")
    return compile_condition(text), text


def load_template(
    path: Path, overrides: Mapping[str, str], *, name: str | None = None, prometheus_url: str | None = None
) -> Template:
    """The template of ``path`` (the one named ``name`` when the file holds several) with its arguments applied."""
    templates = [
        document
        for document in _documents(path)
        if isinstance(document, Mapping) and document.get("kind") in TEMPLATE_KINDS
    ]
    if name is not None:
        templates = [document for document in templates if (document.get("metadata") or {}).get("name") == name]
    if not templates:
        named = f" named {name!r}" if name else ""
        raise InputError(f"{path}: no AnalysisTemplate or ClusterAnalysisTemplate{named}")
    if len(templates) > 1:
        raise InputError(f"{path}: holds {len(templates)} templates; pick one with --name")
    document = templates[0]
    template_name = str((document.get("metadata") or {}).get("name") or path.stem)
    spec = document.get("spec")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("metrics"), list) or not spec["metrics"]:
        raise InputError(f"{path}: spec.metrics: expected a list of metrics")
    args: dict[str, str] = {}
    for number, arg in enumerate(spec.get("args") or []):
        if not isinstance(arg, Mapping) or not isinstance(arg.get("name"), str):
            raise InputError(f"{path}: spec.args[{number}]: expected {{name, value}}")
        if arg["name"] in overrides:
            args[arg["name"]] = overrides[arg["name"]]
        elif arg.get("value") is not None:
            args[arg["name"]] = str(arg["value"])
        else:
            source = " (its valueFrom reads Kubernetes, which is not here)" if "valueFrom" in arg else ""
            raise InputError(f"argument {arg['name']!r} has no value{source}: give --arg {arg['name']}=VALUE")
    unknown = sorted(set(overrides) - set(args))
    if unknown:
        raise InputError(f"--arg {', '.join(unknown)}: the template has no such argument (it has {', '.join(args)})")
    dry_run = {str(entry.get("metricName")) for entry in spec.get("dryRun") or [] if isinstance(entry, Mapping)}
    metrics = []
    for number, raw in enumerate(spec["metrics"]):
        where = f"{path}: spec.metrics[{number}]"
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            raise InputError(f"{where}: expected a metric with a name")
        metric = _substitute(raw, args, where)
        metrics.append(_metric(metric, where, prometheus_url, metric["name"] in dry_run or "*" in dry_run))
    return Template(template_name, str(document["kind"]), tuple(metrics))


def _metric(spec: Mapping[str, Any], where: str, prometheus_url: str | None, dry_run: bool) -> Metric:
    provider = spec.get("provider")
    if not isinstance(provider, Mapping) or len(provider) != 1:
        raise InputError(f"{where}.provider: expected one provider")
    ((kind, settings),) = provider.items()
    if kind != "prometheus":
        raise InputError(f"{where}.provider: {kind} is not supported here; only prometheus is")
    if not isinstance(settings, Mapping) or not isinstance(settings.get("query"), str):
        raise InputError(f"{where}.provider.prometheus.query: expected a PromQL query")
    address = prometheus_url or settings.get("address")
    if not isinstance(address, str) or not address:
        raise InputError(f"{where}.provider.prometheus.address: none given; give --prometheus-url")
    headers = {
        str(header.get("key")): str(header.get("value"))
        for header in settings.get("headers") or []
        if isinstance(header, Mapping)
    }
    count = spec.get("count")
    if count is not None:
        count = _limit(spec, "count", 1, where)
        if count < 1:
            raise InputError(f"{where}.count: expected at least 1")
    success, success_text = _condition(spec, "successCondition", where)
    failure, failure_text = _condition(spec, "failureCondition", where)
    return Metric(
        name=spec["name"],
        address=address,
        query=settings["query"],
        headers=headers,
        timeout=parse_duration(settings.get("timeout", 30), f"{where}.provider.prometheus.timeout"),
        interval=parse_duration(spec["interval"], f"{where}.interval") if spec.get("interval") else None,
        count=count,
        initial_delay=parse_duration(spec.get("initialDelay", 0), f"{where}.initialDelay"),
        success=success,
        success_text=success_text,
        failure=failure,
        failure_text=failure_text,
        failure_limit=_limit(spec, "failureLimit", 0, where),
        inconclusive_limit=_limit(spec, "inconclusiveLimit", 0, where),
        consecutive_error_limit=_limit(spec, "consecutiveErrorLimit", 4, where),
        dry_run=dry_run,
    )


@dataclass(frozen=True)
class Measurement:
    metric: str
    number: int
    at: datetime
    phase: Phase
    value: Any
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        value = self.value
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        elif isinstance(value, list):
            value = [item if math.isfinite(item) else str(item) for item in value]
        return {
            "metric": self.metric,
            "number": self.number,
            "at": self.at.isoformat(),
            "phase": self.phase,
            "value": value,
            "message": self.message,
        }


def measure_phase(metric: Metric, result: Any) -> Phase:
    """One measurement's phase from its result, by Argo's rules (module docstring)."""
    succeeded = evaluate(metric.success, result) if metric.success is not None else None
    failed = evaluate(metric.failure, result) if metric.failure is not None else None
    if succeeded is None and failed is None:
        return "Successful"
    if failed is None:
        failed = not succeeded
    if succeeded is None:
        succeeded = not failed
    if failed:
        return "Failed"
    return "Successful" if succeeded else "Inconclusive"


@dataclass
class MetricResult:
    metric: Metric
    wanted: int
    measurements: list[Measurement] = field(default_factory=list)
    failed: int = 0
    inconclusive: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    phase: Phase | None = None

    def add(self, measurement: Measurement) -> None:
        self.measurements.append(measurement)
        if measurement.phase == "Failed":
            self.failed += 1
        elif measurement.phase == "Inconclusive":
            self.inconclusive += 1
        if measurement.phase == "Error":
            self.errors += 1
            self.consecutive_errors += 1
        else:
            self.consecutive_errors = 0
        metric = self.metric
        if metric.failure_limit >= 0 and self.failed > metric.failure_limit:
            self.phase = "Failed"
        elif self.inconclusive > metric.inconclusive_limit:
            self.phase = "Inconclusive"
        elif self.consecutive_errors > metric.consecutive_error_limit:
            self.phase = "Error"
        elif len(self.measurements) >= self.wanted:
            self.phase = "Successful"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.metric.name,
            "phase": self.phase,
            "dry_run": self.metric.dry_run,
            "measurements": len(self.measurements),
            "successful": len(self.measurements) - self.failed - self.inconclusive - self.errors,
            "failed": self.failed,
            "inconclusive": self.inconclusive,
            "errors": self.errors,
        }


@dataclass
class AnalysisResult:
    template: Template
    phase: Phase
    metrics: list[MetricResult]
    message: str

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.phase]

    @property
    def measurements(self) -> list[Measurement]:
        return sorted((m for result in self.metrics for m in result.measurements), key=lambda m: (m.at, m.metric))

    def to_json(self) -> dict[str, Any]:
        return {
            "template": self.template.name,
            "kind": self.template.kind,
            "phase": self.phase,
            "exit_code": self.exit_code,
            "message": self.message,
            "metrics": [result.to_json() for result in self.metrics],
            "measurements": [measurement.to_json() for measurement in self.measurements],
        }


def prometheus_result(metric: Metric) -> float | list[float]:
    """The metric's query result as Argo's prometheus provider gives it: a list for a vector, a number for a scalar."""
    kind, samples = instant_query(metric.address, metric.query, timeout=metric.timeout, headers=metric.headers)
    return samples[0].value if kind == "scalar" else [sample.value for sample in samples]


def run_analysis(
    template: Template,
    *,
    duration: float | None = None,
    fetch: Callable[[Metric], Any] = prometheus_result,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    wall: Callable[[], datetime],
) -> AnalysisResult:
    """Takes every metric's measurements on its schedule and assesses them."""
    results = [MetricResult(metric, metric.measurements_wanted(duration)) for metric in template.metrics]
    start = clock()
    due = [(start + result.metric.initial_delay, index) for index, result in enumerate(results)]
    heapq.heapify(due)
    while due:
        moment, index = heapq.heappop(due)
        wait = moment - clock()
        if wait > 0:
            sleep(wait)
        result = results[index]
        metric = result.metric
        number = len(result.measurements) + 1
        try:
            value = fetch(metric)
            phase = measure_phase(metric, value)
            message = ""
        except (ExpressionError, ShipscopeError) as error:
            value, phase = None, "Error"
            message = error.message if isinstance(error, ShipscopeError) else str(error)
        result.add(Measurement(metric.name, number, wall(), phase, value, message))
        if result.phase is None:
            heapq.heappush(due, (moment + (metric.interval or 0.0), index))
        elif result.phase != "Successful" and not metric.dry_run:
            break  # Argo ends the run as soon as a metric has failed, erred or is inconclusive
    deciding = [result for result in results if not result.metric.dry_run]
    phases = [result.phase or "Successful" for result in deciding] or ["Successful"]
    phase = next(candidate for candidate in _WORST if candidate in phases)
    failing = [result.metric.name for result in deciding if result.phase == phase and phase != "Successful"]
    message = f"{phase}" + (f": {', '.join(failing)}" if failing else "")
    return AnalysisResult(template, phase, results, message)

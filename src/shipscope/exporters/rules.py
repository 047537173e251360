"""Prometheus rule files: the alert thresholds as alerting rules over ``/metrics``, and per SLO the recording rules
and multi-window multi-burn-rate alerts.

Thresholds (``shipscope.metrics.thresholds``) become one alert each, over the alert window (``alert_window``,
default 7d) of the exported counters and histograms; per-repository (or per runner label) limits become their own
branch of the expression, and the default limit applies to every other subject.

Per SLO (``shipscope.slo``), labelled ``slo`` and ``service``:

- ``slo:sli_error:ratio_rate<W>``: the error ratio over each burn window and the SLO window;
- ``error_budget_burn_rate{window="<W>"}``: that ratio ÷ (1 − objective), the series ``shipscope deploy gate`` reads;
- ``error_budget_remaining``: 1 − the SLO window's burn, the budget left (negative when overspent);
- alerts ``ErrorBudgetBurn`` with ``severity="page"`` (1h/5m at 14.4×, 6h/30m at 6×) and ``severity="ticket"``
  (1d/2h at 3×, 3d/6h at 1×), each pair firing only when both its windows burn faster than the factor.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from shipscope.metrics.thresholds import Threshold
from shipscope.slo import BURN_RATE_PAIRS, BURN_WINDOWS, Slo

_PR = 'branch_kind="pr"'
_DEFAULT_BRANCH = 'branch_kind="default"'
_FAILED = 'result="failure"'
_NOT_INFRA = 'failure_class!="infra"'
_HIT = 'result="hit"'
_LOOKUP = 'result=~"hit|miss"'
_CRITICAL = 'severity="critical"'


def _sel(metric: str, *matchers: str) -> str:
    """A selector of ``metric`` with the non-empty ``matchers``."""
    return metric + "{" + ",".join(matcher for matcher in matchers if matcher) + "}"


def _increase(metric: str, window: str, *matchers: str) -> str:
    return f"increase({_sel(metric, *matchers)}[{window}])"


def _ratio(numerator: str, denominator: str, by: str = "repo") -> str:
    return f"sum by ({by}) ({numerator}) / sum by ({by}) ({denominator})"


_VALUES: dict[str, Callable[[str, str], str]] = {
    "pr_build_p95": lambda m, w: (
        "max by (repo) (histogram_quantile(0.95, sum by (repo, workflow, le) "
        f"({_increase('shipscope_pipeline_duration_seconds_bucket', w, _PR, m)})))"
    ),
    "suite_duration": lambda m, w: f"max by (repo) ({_sel('shipscope_test_suite_longest_seconds', m)})",
    "main_failure_rate": lambda m, w: _ratio(
        _increase("shipscope_pipeline_runs_total", w, _DEFAULT_BRANCH, _FAILED, _NOT_INFRA, m),
        _increase("shipscope_pipeline_runs_total", w, _DEFAULT_BRANCH, _NOT_INFRA, m),
    ),
    "queue_median": lambda m, w: (
        "histogram_quantile(0.5, sum by (runner_label, le) "
        f"({_increase('shipscope_runner_queue_seconds_bucket', w, m)}))"
    ),
    "cache_hit_rate": lambda m, w: _ratio(
        _increase("shipscope_cache_lookups_total", w, _HIT, m),
        _increase("shipscope_cache_lookups_total", w, _LOOKUP, m),
    ),
    "flaky_rate": lambda m, w: _ratio(
        _increase("shipscope_flaky_test_executions_total", w, m), _increase("shipscope_test_executions_total", w, m)
    ),
    "critical_findings_up": lambda m, w: (
        f"max by (repo) ({_sel('shipscope_open_findings', _CRITICAL, m)})"
        f" - max by (repo) ({_sel('shipscope_open_findings', _CRITICAL, m)} offset 1w)"
    ),
}
"""PromQL of each threshold's value per subject, given one more label matcher (or none) and the window."""


def threshold_value(name: str, matcher: str, window: str) -> str:
    """PromQL of threshold ``name``'s value per subject (what its alert compares), narrowed by ``matcher``."""
    return _VALUES[name](matcher, window)


_SUBJECT_LABEL = {"repo": "repo", "runner_label": "runner_label"}
_UNIT_FORMAT = {"seconds": "humanizeDuration", "fraction": "humanizePercentage", "count": 'printf "%.0f"'}


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _regex_alternatives(values: Sequence[str]) -> str:
    return "|".join(_quoted(re.escape(value)) for value in values)


def threshold_expression(threshold: Threshold, window: str) -> str:
    """The alert's PromQL: the value per subject compared with its limit, overridden subjects apart."""
    label = _SUBJECT_LABEL[threshold.scope]
    operator = "<" if threshold.comparison == "<" else ">"
    overridden = [subject for subject, _ in threshold.overrides]
    rest = label + '!~"' + _regex_alternatives(overridden) + '"' if overridden else ""
    branches = [f"({threshold_value(threshold.name, rest, window)}) {operator} {threshold.limit:g}"]
    for subject, limit in threshold.overrides:
        matcher = label + '="' + _quoted(subject) + '"'
        branches.append(f"({threshold_value(threshold.name, matcher, window)}) {operator} {limit:g}")
    return branches[0] if len(branches) == 1 else " or ".join(f"({branch})" for branch in branches)


def _alert_name(name: str) -> str:
    return "Shipscope" + "".join(part.capitalize() for part in name.split("_"))


def threshold_group(thresholds: Sequence[Threshold], window: str) -> dict[str, Any]:
    rules = []
    for threshold in thresholds:
        subject = _SUBJECT_LABEL[threshold.scope]
        rules.append(
            {
                "alert": _alert_name(threshold.name),
                "expr": threshold_expression(threshold, window),
                "for": "15m",
                "labels": {"severity": "warning", "threshold": threshold.name},
                "annotations": {
                    "summary": f"{threshold.name} on {{{{ $labels.{subject} }}}}: {{{{ $value | "
                    f"{_UNIT_FORMAT[threshold.unit]} }}}}",
                    "description": f"{threshold.description}; `shipscope check` shows the numbers behind it.",
                },
            }
        )
    return {"name": "shipscope-thresholds", "rules": rules}


def slo_group(slo: Slo) -> dict[str, Any]:
    labels = {"slo": slo.name, "service": slo.service, **slo.labels}
    selector = f'slo="{_quoted(slo.name)}"'
    rules: list[dict[str, Any]] = []
    for window in dict.fromkeys((*BURN_WINDOWS, slo.window)):
        rules.append({"record": f"slo:sli_error:ratio_rate{window}", "expr": slo.error_ratio(window), "labels": labels})
    for window in dict.fromkeys((*BURN_WINDOWS, slo.window)):
        rules.append(
            {
                "record": "error_budget_burn_rate",
                "expr": f"slo:sli_error:ratio_rate{window}{{{selector}}} / {slo.budget:.10g}",
                "labels": {"window": window},
            }
        )
    rules.append(
        {
            "record": "error_budget_remaining",
            "expr": f"1 - slo:sli_error:ratio_rate{slo.window}{{{selector}}} / {slo.budget:.10g}",
        }
    )
    for severity in ("page", "ticket"):
        pairs = [pair for pair in BURN_RATE_PAIRS if pair.severity == severity]
        branches = [
            f'(error_budget_burn_rate{{{selector},window="{pair.long}"}} > {pair.factor:g}'
            f' and ignoring(window) error_budget_burn_rate{{{selector},window="{pair.short}"}} > {pair.factor:g})'
            for pair in pairs
        ]
        described = ", ".join(f"{pair.long}/{pair.short} at {pair.factor:g}×" for pair in pairs)
        rules.append(
            {
                "alert": "ErrorBudgetBurn",
                "expr": " or ignoring(window) ".join(branches),
                "for": "2m" if severity == "page" else "15m",
                "labels": {**labels, "severity": severity},
                "annotations": {
                    "summary": f'{slo.name}: error budget burning at {{{{ $value | printf "%.1f" }}}}×',
                    "description": f"{slo.service} is spending its {slo.objective:.10g} objective's error budget "
                    f"too fast ({described} over a {slo.window} window).",
                },
            }
        )
    return {"name": f"shipscope-slo-{slo.name}", "rules": rules}


def rules_document(thresholds: Sequence[Threshold], window: str, slos: Sequence[Slo]) -> str:
    """A Prometheus rule file (``rule_files:``) as YAML."""
    groups = [threshold_group(thresholds, window)] if thresholds else []
    groups += [slo_group(slo) for slo in slos]
    header = "# Generated by `shipscope prometheus rules`; regenerate rather than edit.\n"
    return header + yaml.safe_dump({"groups": groups}, sort_keys=False, allow_unicode=True, width=1000)

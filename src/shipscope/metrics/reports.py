"""The reports the API, the CLI and the dashboard show: one entry point, so every surface shows the same numbers."""

from __future__ import annotations

from typing import Any

from shipscope.errors import InputError
from shipscope.metrics.common import Filters, MetricsConfig, Window
from shipscope.store import Store

REPORTS = ("pipelines", "tests", "security", "dora", "devex")
DECIMALS = 6
"""Numbers in reports are rounded to this many decimals: sums aggregated in parallel differ in their last bits
from run to run, and a report should read the same twice."""


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, DECIMALS)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def run_report(
    kind: str,
    store: Store,
    window: Window,
    filters: Filters,
    config: MetricsConfig,
    *,
    definitions: str = "shipscope",
    explain: bool = False,
) -> dict[str, Any]:
    """The JSON of one report (DESIGN.md §3); ``definitions`` and ``explain`` apply to DORA."""
    report: dict[str, Any] = _rounded(
        _report(kind, store, window, filters, config, definitions=definitions, explain=explain)
    )
    return report


def _report(
    kind: str,
    store: Store,
    window: Window,
    filters: Filters,
    config: MetricsConfig,
    *,
    definitions: str = "shipscope",
    explain: bool = False,
) -> dict[str, Any]:
    if kind == "pipelines":
        from shipscope.metrics.pipelines import pipeline_report

        return pipeline_report(store, window, filters, config).to_json()
    if kind == "tests":
        from shipscope.metrics.tests import tests_report

        return tests_report(store, window, filters, config).to_json()
    if kind == "security":
        from shipscope.metrics.security import security_report

        return security_report(store, window, filters, config).to_json()
    if kind == "dora":
        from shipscope.metrics.dora import dora_report

        return dora_report(store, window, filters, config, definitions=definitions).to_json(explain=explain)
    if kind == "devex":
        from shipscope.metrics.devex import devex_report

        return devex_report(store, window, filters, config).to_json()
    raise InputError(f"unknown report {kind!r}; expected one of {', '.join(REPORTS)}")

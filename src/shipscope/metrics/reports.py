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


def _round_in_place(shape: dict[str, Any]) -> dict[str, Any]:
    """Rounds every float in ``shape`` (nested dicts and lists), in place: a report's JSON is built afresh by its
    ``to_json``, and with ``explain`` it holds hundreds of thousands of values, too many to copy."""
    pending: list[dict[str, Any] | list[Any]] = [shape]
    while pending:
        node = pending.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in items:
            if isinstance(item, float):
                node[key] = round(item, DECIMALS)  # type: ignore[index]
            elif isinstance(item, dict | list):
                pending.append(item)
    return shape


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
    return _round_in_place(_report(kind, store, window, filters, config, definitions=definitions, explain=explain))


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

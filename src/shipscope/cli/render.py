"""Rich tables for people from a report's JSON: one renderer for every report, so the CLI shows what the API says."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

_PERCENTILE_KEYS = {"p50", "p95", "samples"}


def _seconds(value: float) -> str:
    seconds = abs(value)
    if seconds < 90:
        text = f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    elif seconds < 5400:
        text = f"{seconds / 60:.1f}m"
    elif seconds < 172800:
        text = f"{seconds / 3600:.1f}h"
    else:
        text = f"{seconds / 86400:.1f}d"
    return f"-{text}" if value < 0 else text


def format_value(key: str, value: Any) -> str:
    """A cell: durations in s/m/h/d, rates as percentages, percentile triples as `p50 / p95 (n)`, nulls as —."""
    if value is None:
        return "—"
    if isinstance(value, Mapping):
        if _PERCENTILE_KEYS <= set(value):
            if not value["samples"]:
                return "— (0)"
            unit = _seconds if "second" in key else (lambda number: f"{number:g}")
            return f"{unit(value['p50'])} / {unit(value['p95'])} ({value['samples']})"
        return ", ".join(f"{name}={format_value(name, item)}" for name, item in value.items() if name != "no_data")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float | int) and ("second" in key) and not isinstance(value, bool):
        return _seconds(float(value))
    if isinstance(value, float) and (key == "rate" or key.endswith("_rate")):
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return ", ".join(format_value(key, item) for item in value) or "—"
    return str(value)


def _table(title: str, rows: Sequence[Mapping[str, Any]]) -> Table:
    columns: list[str] = []
    for row in rows:
        columns.extend(name for name in row if name not in columns and name not in ("no_data", "explain"))
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        table.add_column(column.replace("_", " "), overflow="fold")
    for row in rows:
        table.add_row(*(format_value(column, row.get(column)) for column in columns))
    return table


_DORA_KEYS = (
    ("deployment_frequency", "per_week", "deploys/week"),
    ("lead_time", "median_seconds", "lead time (median)"),
    ("change_failure_rate", "rate", "change failure rate"),
    ("recovery_time", "median_seconds", "recovery (median)"),
)


def _dora_cell(metric: Mapping[str, Any], key: str) -> str:
    value = metric.get(key)
    if value is None:
        return "—"  # the JSON (--json) says why
    tier = metric.get("tier")
    text = f"{value:.1f}" if key == "per_week" else format_value(key, value)
    return f"{text} ({tier})" if tier else text


def render_dora(console: Console, report: Mapping[str, Any]) -> None:
    """The four keys per service, value and tier in each cell; the overall row first."""
    window = report["window"]
    console.print(
        f"[bold]DORA[/bold] ({report.get('definitions')})  {window['since']} → {window['until']}", highlight=False
    )
    table = Table(title_justify="left")
    table.add_column("service")
    for _, _, title in _DORA_KEYS:
        table.add_column(title)
    rows = [("overall", report["overall"]), *sorted(report.get("services", {}).items())]
    for service, metrics in rows:
        table.add_row(service, *(_dora_cell(metrics[name], key) for name, key, _ in _DORA_KEYS))
    console.print(table)


def render(console: Console, name: str, report: Mapping[str, Any]) -> None:
    """Each list of records in the report becomes a table; scalar and mapping entries a summary table."""
    if name == "dora":
        render_dora(console, report)
        return
    window = report.get("window")
    if isinstance(window, Mapping):
        console.print(f"[bold]{name}[/bold]  {window.get('since')} → {window.get('until')}", highlight=False)
    summary: list[dict[str, Any]] = []
    for key, value in report.items():
        if key == "window":
            continue
        if isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
            console.print(_table(key.replace("_", " "), value))
        elif isinstance(value, list):
            console.print(f"{key.replace('_', ' ')}: none", highlight=False)
        elif isinstance(value, Mapping) and value and all(isinstance(item, Mapping) for item in value.values()):
            rows = [{"": entry, **item} for entry, item in value.items()]
            console.print(_table(key.replace("_", " "), rows))
        else:
            summary.append({"": key, "value": value})
    if summary:
        console.print(_table("summary", summary))

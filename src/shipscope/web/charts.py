"""Plotly figure specifications (plain ``{"data", "layout"}`` dicts) for the dashboard's charts.

The pages embed these as JSON and Plotly (served by shipscope from the installed ``plotly`` package) draws them.
Building the dicts directly keeps a page's server time in milliseconds; the shapes are Plotly's documented figure
schema (https://plotly.com/javascript/reference/).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PALETTE = ("#0072B2", "#B86E00", "#007A5A", "#C24A00", "#A6508A", "#3A87B7", "#7F7400", "#000000")
"""Okabe and Ito's colour-blind safe hues, darkened where needed to reach 3:1 against white."""

Figure = dict[str, Any]


@dataclass(frozen=True)
class Series:
    name: str
    x: Sequence[Any]
    y: Sequence[float | None]
    dash: str | None = None
    color: str | None = None


def _layout(y_title: str, *, height: int = 280, percent: bool = False, stacked: bool = False) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "height": height,
        "margin": {"l": 56, "r": 12, "t": 12, "b": 40},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"family": "system-ui, sans-serif", "size": 12, "color": "#1f2328"},
        "legend": {"orientation": "h", "y": -0.2},
        "yaxis": {"title": {"text": y_title}, "rangemode": "tozero", "gridcolor": "#d0d7de", "automargin": True},
        "xaxis": {"automargin": True, "gridcolor": "#eaeef2"},
        "hovermode": "x unified",
    }
    if percent:
        layout["yaxis"]["tickformat"] = ".0%"
    if stacked:
        layout["barmode"] = "stack"
    return layout


def _color(index: int, chosen: str | None) -> str:
    return chosen or PALETTE[index % len(PALETTE)]


def line(series: Sequence[Series], y_title: str, *, percent: bool = False, height: int = 280) -> Figure:
    """Lines with markers over a shared x axis; a None value leaves a gap."""
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": item.name,
                "x": list(item.x),
                "y": list(item.y),
                "line": {"color": _color(index, item.color), **({"dash": item.dash} if item.dash else {})},
                "connectgaps": False,
            }
            for index, item in enumerate(series)
        ],
        "layout": _layout(y_title, percent=percent, height=height),
    }


def bars(
    series: Sequence[Series],
    y_title: str,
    *,
    stacked: bool = False,
    horizontal: bool = False,
    percent: bool = False,
) -> Figure:
    """Bars per category, grouped or stacked; horizontal bars put the categories on the y axis, and the chart grows
    with them so every label stays readable."""
    data = []
    for index, item in enumerate(series):
        trace: dict[str, Any] = {"type": "bar", "name": item.name, "marker": {"color": _color(index, item.color)}}
        if horizontal:
            trace.update(orientation="h", x=list(item.y), y=list(item.x))
        else:
            trace.update(x=list(item.x), y=list(item.y))
        data.append(trace)
    categories = len({category for item in series for category in item.x})
    height = max(220, 40 + 28 * categories) if horizontal else 280
    layout = _layout(y_title, percent=percent, height=height, stacked=stacked)
    if horizontal:
        layout["xaxis"], layout["yaxis"] = (
            {**layout["yaxis"], "title": {"text": y_title}},
            {"automargin": True, "autorange": "reversed"},
        )
        layout["hovermode"] = "y unified"
    return {"data": data, "layout": layout}


def sparkline(x: Sequence[Any], y: Sequence[float | None], *, percent: bool = False) -> Figure:
    """A small trend line without axes' titles, for a tile."""
    layout = _layout("", percent=percent, height=90)
    layout.update(margin={"l": 36, "r": 4, "t": 4, "b": 20}, showlegend=False)
    layout["yaxis"].update(title=None, nticks=3, tickfont={"size": 10})
    layout["xaxis"].update(showticklabels=True, nticks=4, tickfont={"size": 10})
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "",
                "x": list(x),
                "y": list(y),
                "line": {"color": PALETTE[0]},
                "marker": {"size": 4},
                "connectgaps": False,
            }
        ],
        "layout": layout,
    }


def table(figure: Figure, x_title: str) -> dict[str, Any]:
    """The figure's numbers as a table, one row per category or period, one column per series (for screen
    readers and for copying)."""
    traces = figure["data"]
    keys: dict[Any, None] = {}
    values: list[dict[Any, Any]] = []
    for trace in traces:
        horizontal = trace.get("orientation") == "h"
        categories, numbers = (trace["y"], trace["x"]) if horizontal else (trace["x"], trace["y"])
        keys.update(dict.fromkeys(categories))
        values.append(dict(zip(categories, numbers, strict=True)))
    rows = [[key, *("—" if (value := column.get(key)) is None else f"{value:g}" for column in values)] for key in keys]
    return {"columns": [x_title, *(trace["name"] for trace in traces)], "rows": rows}


def points(figure: Figure) -> int:
    """How many data points a figure holds (non-null y values): a chart with none is shown as an empty state."""
    total = 0
    for trace in figure["data"]:
        values = trace["x"] if trace.get("orientation") == "h" else trace["y"]
        total += sum(value is not None for value in values)
    return total

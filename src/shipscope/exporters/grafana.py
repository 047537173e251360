"""Grafana dashboards over shipscope's ``/metrics`` series, with a Prometheus data source chosen at import.

Two dashboards: pipeline health (the pipeline SLIs of DESIGN.md §3 as Prometheus computes them from the exported
histograms and counters over ``$window``) and DORA (the four keys and tiers per service, deployments over time).
Both annotate every deployment, from the change of ``shipscope_deployment_last_finished_timestamp_seconds``.
The JSON is Grafana's dashboard model (``schemaVersion`` 39, Grafana 10 and later), ready for the import dialog or
for file provisioning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shipscope.exporters.prometheus import TIER_VALUES
from shipscope.exporters.rules import threshold_value

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
DASHBOARDS = ("pipeline-health", "dora")
WINDOW = "$window"
"""The dashboards' window variable (1d, 7d or 30d), where Prometheus ranges go."""


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"refId": ref, "datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "range": True}


def _panel(
    kind: str,
    title: str,
    unit: str,
    targets: Sequence[tuple[str, str]],
    description: str = "",
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    panel: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [_target(expr, legend, chr(ord("A") + index)) for index, (expr, legend) in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": options or {},
    }
    return panel


def _laid_out(panels: Sequence[dict[str, Any]], width: int = 12, height: int = 8) -> list[dict[str, Any]]:
    """Ids and grid positions, two panels a row (stat panels four a row)."""
    laid: list[dict[str, Any]] = []
    x = y = 0
    for number, panel in enumerate(panels, start=1):
        w = 6 if panel["type"] == "stat" else width
        h = 5 if panel["type"] == "stat" else height
        if x + w > 24:
            x, y = 0, y + h
        laid.append({**panel, "id": number, "gridPos": {"x": x, "y": y, "w": w, "h": h}})
        x += w
    return laid


def _variable(name: str, label: str, query: str, *, multi: bool = True) -> dict[str, Any]:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "multi": multi,
        "includeAll": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "sort": 1,
    }


_DATASOURCE_VARIABLE = {
    "type": "datasource",
    "name": "datasource",
    "label": "Prometheus",
    "query": "prometheus",
    "current": {},
}
_WINDOW_VARIABLE = {
    "type": "custom",
    "name": "window",
    "label": "Window",
    "query": "1d,7d,30d",
    "current": {"text": "7d", "value": "7d"},
    "options": [{"text": value, "value": value, "selected": value == "7d"} for value in ("1d", "7d", "30d")],
}
_DEPLOYMENT_ANNOTATION = {
    "name": "Deployments",
    "datasource": DATASOURCE,
    "enable": True,
    "iconColor": "#8AB8FF",
    "expr": 'changes(shipscope_deployment_last_finished_timestamp_seconds{environment=~"$environment"}[1m]) > 0',
    "step": "1m",
    "titleFormat": "Deployed {{service}}",
    "textFormat": "{{service}} to {{environment}}",
    "tagKeys": "service,environment",
}
_BUILT_IN = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}


def _dashboard(uid: str, title: str, panels: list[dict[str, Any]], variables: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["shipscope"],
        "timezone": "utc",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "5m",
        "time": {"from": "now-7d", "to": "now"},
        "templating": {"list": [_DATASOURCE_VARIABLE, *variables]},
        "annotations": {"list": [_BUILT_IN, _DEPLOYMENT_ANNOTATION]},
        "panels": _laid_out(panels),
    }


def _p(quantile: float, metric: str, by: str, matchers: str) -> str:
    return f"histogram_quantile({quantile}, sum by ({by}, le) (increase({metric}_bucket{{{matchers}}}[$window])))"


def pipeline_health() -> dict[str, Any]:
    repo = 'repo=~"$repo"'
    runs = "shipscope_pipeline_runs_total"
    panels = [
        _panel(
            "timeseries",
            "Build duration p95, pull requests",
            "s",
            [
                (
                    _p(0.95, "shipscope_pipeline_duration_seconds", "repo, workflow", f'branch_kind="pr",{repo}'),
                    "{{repo}} {{workflow}}",
                )
            ],
            "finished − started of completed PR runs over the window; the default alert is 15 min.",
        ),
        _panel(
            "timeseries",
            "Build duration p95, default branch",
            "s",
            [
                (
                    _p(0.95, "shipscope_pipeline_duration_seconds", "repo, workflow", f'branch_kind="default",{repo}'),
                    "{{repo}} {{workflow}}",
                )
            ],
        ),
        _panel(
            "timeseries",
            "Build duration p50, PR and default branch",
            "s",
            [(_p(0.5, "shipscope_pipeline_duration_seconds", "branch_kind", repo), "{{branch_kind}}")],
        ),
        _panel(
            "timeseries",
            "Failure rate on the default branch (infra failures apart)",
            "percentunit",
            [
                (threshold_value("main_failure_rate", repo, WINDOW), "{{repo}}"),
                (
                    f'sum(increase({runs}{{branch_kind="default",failure_class="infra",{repo}}}[$window]))'
                    f' / sum(increase({runs}{{branch_kind="default",{repo}}}[$window]))',
                    "infra share",
                ),
            ],
            "failed ÷ (succeeded + failed); runs that failed for the runner's fault are left out and shown apart.",
        ),
        _panel(
            "barchart",
            "Failures by class",
            "short",
            [(f'sum by (failure_class) (increase({runs}{{result="failure",{repo}}}[$window]))', "{{failure_class}}")],
        ),
        _panel(
            "timeseries",
            "Queue time median by runner label",
            "s",
            [(threshold_value("queue_median", "", WINDOW), "{{runner_label}}")],
            "started − created of jobs; the default alert is a median above 3 min.",
        ),
        _panel(
            "timeseries",
            "Queue time p95 by repository",
            "s",
            [(_p(0.95, "shipscope_job_queue_seconds", "repo", repo), "{{repo}}")],
        ),
        _panel(
            "timeseries",
            "Stage duration p95",
            "s",
            [(_p(0.95, "shipscope_stage_duration_seconds", "stage", repo), "{{stage}}")],
        ),
        _panel(
            "timeseries",
            "Cache hit rate on warm branches",
            "percentunit",
            [(threshold_value("cache_hit_rate", repo, WINDOW), "{{repo}}")],
        ),
        _panel(
            "timeseries", "Flaky test rate", "percentunit", [(threshold_value("flaky_rate", repo, WINDOW), "{{repo}}")]
        ),
        _panel(
            "timeseries",
            "Open findings by severity",
            "short",
            [(f"sum by (severity) (shipscope_open_findings{{{repo}}})", "{{severity}}")],
        ),
        _panel(
            "timeseries",
            "Completed runs per hour",
            "short",
            [(f"sum by (repo) (rate({runs}{{{repo}}}[1h])) * 3600", "{{repo}}")],
        ),
    ]
    variables = [
        _variable("repo", "Repository", "label_values(shipscope_pipeline_duration_seconds_count, repo)"),
        _WINDOW_VARIABLE,
        _variable(
            "environment", "Environment (deploy annotations)", "label_values(shipscope_deployments_total, environment)"
        ),
    ]
    return _dashboard("shipscope-pipeline-health", "shipscope — pipeline health", panels, variables)


_TIER_MAPPINGS = [
    {
        "type": "value",
        "options": {
            str(value): {"text": tier, "color": color, "index": index}
            for index, ((tier, value), color) in enumerate(
                zip(TIER_VALUES.items(), ("green", "blue", "orange", "red"), strict=True)
            )
        },
    }
]


def dora() -> dict[str, Any]:
    service = 'service=~"$service"'
    stat: dict[str, Any] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "textMode": "value_and_name",
    }
    tier_panel = _panel(
        "table",
        "DORA tier per service and key (DORA 2023)",
        "none",
        [(f"shipscope_dora_tier{{{service}}}", "{{service}} {{key}}")],
        "4 elite, 3 high, 2 medium, 1 low, by shipscope's definitions over the exporter window.",
        options={"showHeader": True},
    )
    tier_panel["fieldConfig"]["defaults"]["mappings"] = _TIER_MAPPINGS
    tier_panel["targets"][0]["format"] = "table"
    tier_panel["targets"][0]["instant"] = True
    tier_panel["targets"][0]["range"] = False
    tier_panel["transformations"] = [
        {"id": "groupingToMatrix", "options": {"columnField": "key", "rowField": "service", "valueField": "Value"}}
    ]
    keys = (
        ("Deployments per day", "shipscope_dora_deployments_per_day", "short"),
        ("Lead time for changes (median)", "shipscope_dora_lead_time_seconds", "s"),
        ("Change failure rate", "shipscope_dora_change_failure_rate", "percentunit"),
        ("Recovery time (median)", "shipscope_dora_recovery_time_seconds", "s"),
    )
    panels = [
        *(
            _panel("stat", title, unit, [(f"{metric}{{{service}}}", "{{service}}")], options=stat)
            for title, metric, unit in keys
        ),
        tier_panel,
        _panel(
            "timeseries",
            "Successful production deployments per day",
            "short",
            [
                (
                    "sum by (service) (increase(shipscope_deployments_total"
                    f'{{status="success",environment=~"$environment",{service}}}[1d]))',
                    "{{service}}",
                )
            ],
        ),
        _panel(
            "timeseries",
            "Rollbacks and hotfixes per day",
            "short",
            [
                (
                    "sum by (service, kind) (increase(shipscope_deployments_total"
                    f'{{kind=~"rollback|hotfix",environment=~"$environment",{service}}}[1d]))',
                    "{{service}} {{kind}}",
                )
            ],
        ),
        _panel(
            "timeseries",
            "Change failure rate",
            "percentunit",
            [(f"shipscope_dora_change_failure_rate{{{service}}}", "{{service}}")],
        ),
    ]
    variables = [
        _variable("service", "Service", "label_values(shipscope_dora_tier, service)"),
        _variable("environment", "Environment", "label_values(shipscope_deployments_total, environment)"),
    ]
    return _dashboard("shipscope-dora", "shipscope — DORA", panels, variables)


def dashboard(name: str) -> dict[str, Any]:
    """The dashboard called ``name`` (one of ``DASHBOARDS``)."""
    return pipeline_health() if name == "pipeline-health" else dora()

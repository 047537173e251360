"""Commands that feed the monitoring stack: `shipscope push`, `shipscope grafana dashboards`, `shipscope prometheus
rules` and `shipscope otel export`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from shipscope.cli.common import DbOption, name_value_pairs, open_store, reports_errors, settings_for, stderr
from shipscope.errors import InputError

grafana_app = typer.Typer(help="Generate Grafana dashboards.", no_args_is_help=True)
prometheus_app = typer.Typer(help="Generate Prometheus rules.", no_args_is_help=True)
otel_app = typer.Typer(help="OpenTelemetry traces of pipeline runs.", no_args_is_help=True)

OutputOption = Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file instead of stdout.")]


def register(app: typer.Typer) -> None:
    app.command("push")(push_command)
    app.add_typer(grafana_app, name="grafana")
    app.add_typer(prometheus_app, name="prometheus")
    app.add_typer(otel_app, name="otel")


def write_output(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    except OSError as error:
        raise InputError(f"{output}: {error.strerror or error}") from None
    stderr.print(f"wrote {output}", highlight=False)


def push_command(
    gateway: Annotated[str, typer.Option(envvar="SHIPSCOPE_PUSHGATEWAY_URL", help="The Pushgateway's base URL.")] = "",
    job: Annotated[str, typer.Option(help="The grouping key's job label.")] = "ci",
    grouping: Annotated[
        list[str] | None, typer.Option(help="Another grouping label, NAME=VALUE (repeatable), e.g. environment=prod.")
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="The run's final status (GitHub `${{ job.status }}`, GitLab job status).")
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per request.")] = 10.0,
    retries: Annotated[int, typer.Option(min=0, max=10, help="Attempts after the first on errors.")] = 2,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be pushed, and where.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The outcome as JSON on stdout.")] = False,
) -> None:
    """Push this CI run's duration, status and stage timings to a Prometheus Pushgateway, grouped by repository,
    workflow and branch kind (never by run). Never fails the pipeline: problems are printed as warnings and the
    exit status is 0. Tokens: SHIPSCOPE_VENDOR_TOKEN (or GITHUB_TOKEN) to read the run's jobs and steps;
    SHIPSCOPE_PUSHGATEWAY_AUTH=user:password for a gateway behind basic auth."""
    from shipscope.exporters.pushgateway import PushOptions, push

    try:
        extra = name_value_pairs(grouping, "--grouping")
        stage_patterns = settings_for(None).stage_patterns
    except Exception as error:  # a bad flag or config is reported, and the pipeline goes on
        stderr.print(f"[yellow]warning:[/yellow] {error}", highlight=False)
        raise typer.Exit(0) from None
    options = PushOptions(
        gateway_url=gateway,
        job=job,
        grouping=extra,
        status=status,
        vendor_token=os.environ.get("SHIPSCOPE_VENDOR_TOKEN") or os.environ.get("GITHUB_TOKEN", ""),
        basic_auth=os.environ.get("SHIPSCOPE_PUSHGATEWAY_AUTH", ""),
        timeout=timeout,
        retries=retries,
        dry_run=dry_run,
    )
    outcome = push(options, os.environ, stage_patterns=stage_patterns)
    for warning in outcome.warnings:
        stderr.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if as_json:
        sys.stdout.write(orjson.dumps(outcome.to_json()).decode() + "\n")
    elif dry_run:
        sys.stdout.write(f"PUT {outcome.url}\n{outcome.exposition}")
    if outcome.pushed:
        stderr.print(f"pushed to {outcome.url}", highlight=False)


@grafana_app.command("dashboards")
@reports_errors
def grafana_dashboards(
    name: Annotated[
        str | None, typer.Argument(help="pipeline-health or dora; both when left out (then -o names a directory).")
    ] = None,
    output: OutputOption = None,
) -> None:
    """Grafana dashboard JSON over shipscope's /metrics (a Prometheus data source is picked at import), with every
    deployment as an annotation. One dashboard goes to stdout or -o FILE; both go to -o DIR as
    shipscope-<name>.json, or to stdout as a JSON list."""
    from shipscope.exporters.grafana import DASHBOARDS, dashboard

    if name is not None and name not in DASHBOARDS:
        raise InputError(f"unknown dashboard {name!r}; expected one of {', '.join(DASHBOARDS)}")
    if name is not None:
        write_output(_json(dashboard(name)), output)
        return
    if output is None:
        sys.stdout.write(_json([dashboard(each) for each in DASHBOARDS]))
        return
    output.mkdir(parents=True, exist_ok=True)
    for each in DASHBOARDS:
        write_output(_json(dashboard(each)), output / f"shipscope-{each}.json")


def _json(document: object) -> str:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


@prometheus_app.command("rules")
@reports_errors
def prometheus_rules(
    slo: Annotated[
        list[Path] | None, typer.Option(help="An SLO spec (YAML): its recording rules and burn-rate alerts.")
    ] = None,
    thresholds: Annotated[
        bool, typer.Option(help="Include the alert thresholds of shipscope.toml as alerting rules.")
    ] = True,
    window: Annotated[
        str | None, typer.Option(help="The thresholds' window (a Prometheus duration); default alert_window.")
    ] = None,
    output: OutputOption = None,
) -> None:
    """A Prometheus rule file: the alert thresholds as alerting rules over shipscope's /metrics, and for each SLO
    the error ratio and `error_budget_burn_rate` recording rules and the multi-window multi-burn-rate alerts
    (1h/5m at 14.4x and 6h/30m at 6x page; 1d/2h at 3x and 3d/6h at 1x open a ticket). Check it with
    `promtool check rules`."""
    from shipscope.exporters.rules import rules_document
    from shipscope.metrics.thresholds import thresholds_from_table
    from shipscope.slo import load_slos

    settings = settings_for(None)
    chosen = thresholds_from_table(settings.thresholds) if thresholds else []
    slos = [loaded for path in slo or [] for loaded in load_slos(path)]
    if not chosen and not slos:
        raise InputError("nothing to write: give --slo, or leave the thresholds in")
    write_output(rules_document(chosen, window or settings.alert_window, slos), output)


@otel_app.command("export")
@reports_errors
def otel_export(
    endpoint: Annotated[
        str,
        typer.Option(
            envvar="OTEL_EXPORTER_OTLP_ENDPOINT",
            help="The OTLP/HTTP endpoint: its base (http://collector:4318) or the full /v1/traces URL.",
        ),
    ] = "",
    since: Annotated[str, typer.Option(help="Runs finished since: 7d, a date or an RFC 3339 time.")] = "7d",
    until: Annotated[str | None, typer.Option(help="…and before: a date or an RFC 3339 time; default now.")] = None,
    deployments: Annotated[bool, typer.Option(help="Send deployments too, as spans of the deployed service.")] = True,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per request.")] = 10.0,
    db: DbOption = None,
) -> None:
    """Send the pipeline runs that finished in the window as traces (run → job → step spans with the OpenTelemetry
    CI/CD attributes cicd.pipeline.*), and deployments with service.version, to an OTLP/HTTP endpoint. Ids derive
    from the stored ids, so sending a window again sends the same spans. OTEL_EXPORTER_OTLP_HEADERS and the other
    OTEL_EXPORTER_OTLP_* variables apply."""
    from itertools import chain

    from shipscope.exporters.otel import deployment_span, export_spans, run_spans
    from shipscope.metrics.common import Window
    from shipscope.metrics.listings import deployment_list, finished_runs

    if not endpoint:
        raise InputError("no endpoint: give --endpoint or set OTEL_EXPORTER_OTLP_ENDPOINT")
    window = Window.parse(since, until)
    store = open_store(settings_for(db))
    try:
        runs = finished_runs(store, window)
        shipped = (
            [row for row in deployment_list(store, window, limit=2**31, weekly=False).rows if row.finished_at]
            if deployments
            else []
        )
    finally:
        store.close()
    spans = chain((span for run in runs for span in run_spans(run)), (deployment_span(row) for row in shipped))
    outcome = export_spans(spans, endpoint, timeout)
    stderr.print(
        f"sent {outcome.spans} spans ({len(runs)} runs, {len(shipped)} deployments) in {outcome.requests} requests",
        highlight=False,
    )

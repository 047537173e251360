"""Commands that feed the monitoring stack: `shipscope push`, `shipscope grafana dashboards`, `shipscope prometheus
rules` and `shipscope otel export`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from shipscope.cli.common import settings_for, stderr
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


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values or []:
        name, equals, text = value.partition("=")
        if not equals or not name:
            raise InputError(f"{option} {value!r}: expected NAME=VALUE")
        pairs[name] = text
    return pairs


def write_output(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text)
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
        extra = _pairs(grouping, "--grouping")
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

"""`shipscope incident …`: an incident in context, in the terminal or as Markdown for the postmortem."""

from __future__ import annotations

import sys
from typing import Annotated, Any
from urllib.parse import quote

import orjson
import typer
from rich.console import Console
from rich.table import Table

from shipscope.cli.common import DbOption, open_store, reports_errors, settings_for, stderr
from shipscope.errors import NotFound
from shipscope.metrics.common import MetricsConfig
from shipscope.server_state import running_server
from shipscope.store import duckdb_path

incident_app = typer.Typer(help="Incidents: the deploys behind them and their timeline.", no_args_is_help=True)


@incident_app.command("timeline")
@reports_errors
def timeline_command(
    incident_id: Annotated[str, typer.Argument(help="The incident's id (PagerDuty's, Opsgenie's, …).")],
    source: Annotated[str | None, typer.Option(help="Its source, when two sources use the same id.")] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown, for the postmortem.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The timeline as JSON on stdout.")] = False,
    definitions: Annotated[str, typer.Option(help="DORA definitions preset.")] = "shipscope",
    db: DbOption = None,
) -> None:
    """The deploys the incident may follow from (signal and confidence) and everything around it, in order."""
    settings = settings_for(db)
    params = {key: value for key, value in {"source": source, "definitions": definitions}.items() if value}
    path = duckdb_path(settings.db)
    url = running_server(path) if path else None
    if url is not None:
        from shipscope.client import ServerClient

        stderr.print(f"{path} is held by the shipscope server at {url}; asking its API", highlight=False)
        client = ServerClient(url, token=settings.api_token)
        where = f"/api/v1/incidents/{quote(incident_id, safe='')}/timeline"
        try:
            if markdown:
                sys.stdout.write(client.get_text(where, {**params, "format": "markdown"}))
                return
            document: dict[str, Any] = client.get_json(where, params)
        finally:
            client.close()
    else:
        from shipscope.metrics.incidents import incident_timeline

        store = open_store(settings)
        try:
            found = incident_timeline(
                store, incident_id, source, MetricsConfig.from_table(settings.metrics), definitions=definitions
            )
        finally:
            store.close()
        if found is None:
            raise NotFound(f"no incident with id {incident_id!r}" + (f" from {source!r}" if source else ""))
        if markdown:
            sys.stdout.write(found.to_markdown())
            return
        document = found.to_json()
    if as_json:
        sys.stdout.write(orjson.dumps(document).decode() + "\n")
        return
    _render(Console(), document)


def _render(console: Console, document: dict[str, Any]) -> None:
    incident = document["incident"]
    console.print(
        f"[bold]{incident['title']}[/bold]  {incident['id']} ({incident['source']}), {incident['service']}, "
        f"severity {incident['severity'] or 'unknown'}; opened {incident['opened_at']}, "
        f"resolved {incident['resolved_at'] or 'not yet'}",
        highlight=False,
    )
    links = Table("deploy", "env", "version", "by", "min before", "signal", "confidence", title="deploys before")
    for link in document["links"]:
        deployment = link["deployment"]
        minutes = link["minutes_before"]
        links.add_row(
            deployment["id"],
            deployment["environment"],
            deployment["version"] or deployment["sha"][:12],
            deployment["actor"] or "",
            "" if minutes is None else f"{minutes:.0f}",
            link["signal"],
            link["confidence"],
        )
    console.print(links)
    items = Table("time (UTC)", "kind", "what", "version", title="timeline")
    for item in document["items"]:
        items.add_row(
            item["at"].replace("T", " ").removesuffix("Z"), item["kind"], item["title"], item["version"] or ""
        )
    console.print(items)

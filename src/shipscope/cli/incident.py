"""`shipscope incident …`: an incident in context, in the terminal or as Markdown for the postmortem."""

from __future__ import annotations

import sys
from typing import Annotated, Any
from urllib.parse import quote

import orjson
import typer
from rich.console import Console
from rich.table import Table

from shipscope.cli.common import DbOption, open_store, reports_errors, server_holding, settings_for, stderr
from shipscope.config import Settings
from shipscope.errors import NotFound, Refused, RemoteError
from shipscope.metrics.common import MetricsConfig

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
    client = server_holding(settings, "asking its API")
    if client is not None:
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


@incident_app.command("postmortem")
@reports_errors
def postmortem_command(
    incident_id: Annotated[str, typer.Argument(help="The incident's id.")],
    source: Annotated[str | None, typer.Option(help="Its source, when two sources use the same id.")] = None,
    close: Annotated[bool, typer.Option("--close", help="Close it (refused without a prevent-recurrence item).")] = (
        False
    ),
    summary: Annotated[str | None, typer.Option(help="A summary, when the postmortem is opened.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The postmortem as JSON on stdout.")] = False,
    db: DbOption = None,
) -> None:
    """Open the incident's postmortem from its timeline (or show it), or close it: exit 1 when closing is refused."""
    settings = settings_for(db)
    where = f"/api/v1/incidents/{quote(incident_id, safe='')}/postmortem"
    params = {"source": source} if source else {}
    try:
        client = server_holding(settings, "asking its API")
        if client is not None:
            try:
                document: dict[str, Any] = client.post_json(
                    where + ("/close" if close else ""), {"summary": summary}, params
                )
            finally:
                client.close()
        else:
            document = _postmortem_locally(settings, incident_id, source, close, summary)
    except (Refused, RemoteError) as error:
        if isinstance(error, RemoteError) and error.status != 422:
            raise
        stderr.print(f"refused: {error.message}", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(orjson.dumps(document).decode() + "\n")
        return
    items = Table("kind", "item", "owner", "due", "status", "link", title=document["title"])
    for item in document["items"]:
        due = f"{item['due']} (overdue)" if item["overdue"] else item["due"]
        items.add_row(item["kind"], item["title"], item["owner"], due, item["status"], item["link"] or "")
    Console().print(items)
    if document["status"] == "closed":
        stderr.print(f"closed {document['closed_at']}", highlight=False)
    else:
        stderr.print(f"draft: {document['why_not_closable'] or 'ready to close'}", highlight=False)


def _postmortem_locally(
    settings: Settings, incident_id: str, source: str | None, close: bool, summary: str | None
) -> dict[str, Any]:
    from datetime import UTC, datetime

    from shipscope import postmortems
    from shipscope.metrics.incidents import incident_timeline

    store = open_store(settings)
    try:
        timeline = incident_timeline(store, incident_id, source, MetricsConfig.from_table(settings.metrics))
        if timeline is None:
            raise NotFound(f"no incident with id {incident_id!r}" + (f" from {source!r}" if source else ""))
        incident, now = timeline.incident, datetime.now(UTC)
        if close:
            return postmortems.close_postmortem(store, incident.source, incident.id, now).to_json()
        return postmortems.open_postmortem(store, timeline, summary, now).to_json()
    finally:
        store.close()

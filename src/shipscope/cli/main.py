"""`shipscope …`: each command parses flags, calls the core, and renders; errors become a message and an exit code.

Exit codes: 0 success; 1 some input was rejected; 2 an error stopped the command.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from shipscope.cli import exporters
from shipscope.cli.common import DbOption, held_by_server, server_holding, stderr
from shipscope.cli.common import open_store as _open_store
from shipscope.cli.common import reports_errors as _reports_errors
from shipscope.cli.common import settings_for as _settings
from shipscope.cli.deploy import deploy_app
from shipscope.cli.gameday import gameday_command
from shipscope.cli.incident import incident_app
from shipscope.config import Settings, load_settings
from shipscope.errors import InputError, RemoteError, ShipscopeError, StoreError
from shipscope.importer import RecordSink, ServerSink, StoreSink, import_records
from shipscope.ingest import IngestReport, Rejection
from shipscope.ingest.generic import stream_records
from shipscope.ingest.registry import decode
from shipscope.runtime import freeze_startup, tune_collector
from shipscope.store import Store, duckdb_path
from shipscope.store.retention import Retention

app = typer.Typer(
    name="shipscope",
    help="Delivery-pipeline observability: CI/CD events in, pipeline SLIs and DORA metrics out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
git_app = typer.Typer(help="Read history from a local clone.", no_args_is_help=True)
app.add_typer(git_app, name="git")
lint_app = typer.Typer(help="Check CI configuration.", no_args_is_help=True)
app.add_typer(lint_app, name="lint")
backfill_app = typer.Typer(help="Fetch history from a CI/CD vendor's API (resumable).", no_args_is_help=True)
app.add_typer(backfill_app, name="backfill")
exporters.register(app)
app.add_typer(deploy_app, name="deploy")
app.add_typer(incident_app, name="incident")
app.command("gameday")(gameday_command)


@app.callback()
def _process() -> None:
    tune_collector()


class ImportFormat(StrEnum):
    events = "events"
    junit = "junit"
    sarif = "sarif"
    cache_log = "cache-log"


@contextmanager
def _sink(settings: Settings) -> Iterator[RecordSink]:
    """The store itself, or the API of the running server that owns its DuckDB file (said on stderr)."""
    client = server_holding(settings, "sending through its API")
    if client is not None:
        try:
            yield ServerSink(client)
        finally:
            client.close()
        return
    store = _open_store(settings)
    try:
        with store.bulk_load():
            yield StoreSink(store)
        store.analyze()
    finally:
        store.close()


def _refuse_if_served(settings: Settings, action: str) -> None:
    held = held_by_server(settings)
    if held is not None:
        raise StoreError(f"{held[0]} is held by the shipscope server at {held[1]}", hint=f"stop it, then {action}")


def _print_report(report: IngestReport, label: str, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(report.to_json()).decode() + "\n")
        return
    for rejection in report.rejected[:50]:
        where = f"{label}:{rejection.position}" if rejection.position is not None else label
        stderr.print(f"{where}: {rejection.reason}", highlight=False, soft_wrap=True)
    if report.rejected_count > 50:
        stderr.print(f"… and {report.rejected_count - 50} more rejected", highlight=False)
    for warning in report.warnings[:50]:
        stderr.print(f"{label}: warning: {warning}", highlight=False, soft_wrap=True)
    if len(report.warnings) > 50:
        stderr.print(f"… and {len(report.warnings) - 50} more warnings", highlight=False)
    stderr.print(
        f"stored {report.stored}, duplicates {report.duplicates}, rejected {report.rejected_count}",
        highlight=False,
    )


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[events]} events"),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    )


@app.command("import")
@_reports_errors
def import_command(
    files: Annotated[list[str], typer.Argument(help="NDJSON or JSON-array files of canonical events; - for stdin.")],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    format: Annotated[
        ImportFormat, typer.Option("--format", "-f", help="events: canonical NDJSON/JSON; or a report format.")
    ] = ImportFormat.events,
    run_id: Annotated[str | None, typer.Option(help="Run the tests, findings or caches belong to.")] = None,
    job_id: Annotated[str | None, typer.Option(help="Job the tests or caches belong to.")] = None,
    source: Annotated[
        str | None, typer.Option(help="The run's source (github, gitlab, …; default generic), to join the run.")
    ] = None,
    repo: Annotated[str | None, typer.Option(help="OWNER/NAME a SARIF scan belongs to (required for sarif).")] = None,
    scanned_at: Annotated[str | None, typer.Option(help="When a SARIF scan ran (RFC 3339); default now.")] = None,
) -> None:
    """Import canonical events (streaming, with a per-line report of what was rejected), or report files:
    JUnit XML, SARIF, CI logs with cache lines."""
    settings = _settings(db)
    for name in files:
        if name != "-" and not os.access(name, os.R_OK):
            reason = "no such file" if not os.path.exists(name) else "permission denied"
            raise InputError(f"cannot read {name}: {reason}")
    if format is not ImportFormat.events:
        params = {
            "run_id": run_id or "",
            "job_id": job_id or "",
            "source": source or "",
            "repo": repo or "",
            "scanned_at": scanned_at or "",
        }
        _import_reports(settings, files, format.value, params, as_json)
        return
    total = IngestReport()
    with _sink(settings) as sink, _progress() as progress:
        for name in files:
            stream: IO[bytes] = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
            size = None if name == "-" else Path(name).stat().st_size
            task = progress.add_task(name, total=size, events=0)

            def advance(count: int, stream: IO[bytes] = stream, task: Any = task) -> None:
                completed = None if stream is sys.stdin.buffer else stream.tell()
                events = progress.tasks[task].fields["events"] + count
                progress.update(task, completed=completed, events=events)

            with stream:
                _, records = stream_records(stream)
                report = import_records(records, sink, progress=advance)
            progress.remove_task(task)
            _print_report(report, name, as_json)
            total.add(report)
    if total.rejected_count:
        raise typer.Exit(1)


def _import_reports(settings: Settings, files: list[str], fmt: str, params: dict[str, str], as_json: bool) -> None:
    total = IngestReport()
    with _sink(settings) as sink:
        for name in files:
            body = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
            report = IngestReport()
            try:
                sink.send_report(fmt, body, {key: value for key, value in params.items() if value}, report)
            except (InputError, RemoteError) as error:
                if error.status != 400:
                    raise
                report.reject(Rejection(fmt, error.message))
            _print_report(report, name, as_json)
            total.add(report)
    if total.rejected_count:
        raise typer.Exit(1)


@app.command()
@_reports_errors
def demo(
    days: Annotated[int, typer.Option(min=1, max=3650, help="Days of history to generate.")] = 90,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 7,
    until: Annotated[str | None, typer.Option(help="Last day (YYYY-MM-DD, exclusive); default today.")] = None,
    if_empty: Annotated[bool, typer.Option("--if-empty", help="Do nothing when the database has data.")] = False,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write NDJSON to this file (- for stdout) instead.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Load a deterministic, realistic demo dataset through the ordinary ingest path."""
    from shipscope import demo as demo_data

    try:
        end = date.fromisoformat(until) if until else None
    except ValueError as error:
        raise typer.BadParameter(f"--until: {error}") from error
    events = demo_data.generate(days=days, seed=seed, until=end)
    if output is not None:
        out = sys.stdout.buffer if output == "-" else open(output, "wb")  # noqa: SIM115
        with out:
            for event in events:
                out.write(orjson.dumps(event) + b"\n")
        return
    settings = _settings(db)
    if if_empty:
        if held_by_server(settings):
            stderr.print("the database is served by a running server; not loading the demo", highlight=False)
            return
        store = _open_store(settings)
        try:
            if store.has_data():
                stderr.print("the database already has data; demo not loaded", highlight=False)
                return
        finally:
            store.close()
    records = ((position, orjson.dumps(event)) for position, event in enumerate(events, start=1))
    with _sink(settings) as sink, _progress() as progress:
        task = progress.add_task("demo", total=None, events=0)

        def advance(count: int) -> None:
            progress.update(task, events=progress.tasks[task].fields["events"] + count)

        report = import_records(records, sink, progress=advance)
    _print_report(report, "demo", as_json=False)
    if report.rejected_count:
        raise typer.Exit(1)


@app.command()
@_reports_errors
def serve(
    db: DbOption = None,
    host: Annotated[str | None, typer.Option(help="Address to bind [env: SHIPSCOPE_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env: SHIPSCOPE_PORT].")] = None,
) -> None:
    """Serve the API and dashboard. Beyond loopback it needs SHIPSCOPE_API_TOKENS."""
    import uvicorn

    from shipscope.server_state import clear_state, write_state
    from shipscope.web.app import create_app

    settings = load_settings().with_overrides(db=db, host=host, port=port)
    if not _is_loopback(settings.host) and not settings.api_tokens.strip():
        raise StoreError(
            f"refusing to listen on {settings.host} without API tokens",
            hint="set SHIPSCOPE_API_TOKENS (TOKEN:ingest,read …) or bind 127.0.0.1",
        )
    _refuse_if_served(settings, "serve again")
    path = duckdb_path(settings.db)
    application = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(application, host=settings.host, port=settings.port, log_level="info", access_log=False)
    )
    url_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    if path:
        write_state(path, f"http://{url_host}:{settings.port}")
    freeze_startup()
    try:
        server.run()
    finally:
        if path:
            clear_state(path)
    if not server.started:
        raise typer.Exit(2)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


EXIT_STOPPED = 3
"""A backfill stopped early (rate limit, request budget): run it again later and it resumes."""


def _backfill(settings: Settings, label: str, run: Callable[[Any], Iterator[list[Any]]], client: Any) -> None:
    """Journals each page of deliveries as it comes, so the saved cursor never runs ahead of what is stored."""
    from shipscope.ingest.api_client import BudgetExhausted, RateLimited

    target: Any = server_holding(settings, "sending through its API")
    if target is not None:
        ingest, cursors = target.post_journal, target.cursors
    else:
        target = _open_store(settings)
        ingest, cursors = target.ingest, target.cursors
    report = IngestReport()
    stopped: ShipscopeError | None = None
    try:
        with _progress() as progress:
            task = progress.add_task(label, total=None, events=0)
            try:
                for deliveries in run(cursors):
                    report.count(deliveries, ingest(deliveries))
                    progress.update(task, events=report.stored + report.duplicates)
            except (RateLimited, BudgetExhausted) as error:
                stopped = error
    finally:
        client.close()
        target.close()
    stderr.print(
        f"{label}: stored {report.stored} events, {report.duplicates} already known; {client.requests_made} requests",
        highlight=False,
    )
    if stopped is not None:
        stderr.print(f"[yellow]stopped:[/yellow] {stopped.message}", highlight=False)
        raise typer.Exit(EXIT_STOPPED)


def _since_moment(since: str) -> datetime:
    from shipscope.metrics.common import Window

    return Window.parse(since, None).since


@backfill_app.command("github")
@_reports_errors
def backfill_github(
    repo: Annotated[str, typer.Option(help="OWNER/NAME.")],
    since: Annotated[str, typer.Option(help="How far back: 90d, a date or an RFC 3339 time.")] = "90d",
    base_url: Annotated[
        str, typer.Option(help="API base URL; GitHub Enterprise: https://HOST/api/v3.")
    ] = "https://api.github.com",
    budget: Annotated[int, typer.Option(min=1, help="Most API requests this run may make.")] = 5000,
    db: DbOption = None,
) -> None:
    """Workflow runs and their jobs, deployments with statuses, pull requests and commits. Token from
    GITHUB_TOKEN (or SHIPSCOPE_GITHUB_TOKEN); exit status 3 when a rate limit or the budget stopped it early."""
    from shipscope.ingest import github_api
    from shipscope.ingest.api_client import ApiClient

    token = os.environ.get("SHIPSCOPE_GITHUB_TOKEN") or os.environ.get("GITHUB_TOKEN")
    client = ApiClient(base_url, token=token, vendor="github", budget=budget)
    start = _since_moment(since)
    _backfill(
        _settings(db), f"github {repo}", lambda cursors: github_api.backfill(client, repo, start, cursors), client
    )


@backfill_app.command("gitlab")
@_reports_errors
def backfill_gitlab(
    project: Annotated[str, typer.Option(help="Project id or path (group/name).")],
    since: Annotated[str, typer.Option(help="How far back: 90d, a date or an RFC 3339 time.")] = "90d",
    base_url: Annotated[
        str, typer.Option(help="API base URL; self-managed: https://HOST/api/v4.")
    ] = "https://gitlab.com/api/v4",
    budget: Annotated[int, typer.Option(min=1, help="Most API requests this run may make.")] = 5000,
    db: DbOption = None,
) -> None:
    """Pipelines and their jobs, deployments and merge requests. Token from GITLAB_TOKEN (or
    SHIPSCOPE_GITLAB_TOKEN); exit status 3 when a rate limit or the budget stopped it early."""
    from shipscope.ingest import gitlab_api
    from shipscope.ingest.api_client import ApiClient

    token = os.environ.get("SHIPSCOPE_GITLAB_TOKEN") or os.environ.get("GITLAB_TOKEN")
    client = ApiClient(base_url, token=token, vendor="gitlab", budget=budget)
    start = _since_moment(since)
    _backfill(
        _settings(db), f"gitlab {project}", lambda cursors: gitlab_api.backfill(client, project, start, cursors), client
    )


@git_app.command("import")
@_reports_errors
def git_import(
    path: Annotated[Path, typer.Argument(help="A local clone.")],
    repo: Annotated[str, typer.Option(help="OWNER/NAME the commits belong to.")],
    since: Annotated[str | None, typer.Option(help="Only commits since: 90d, a date or an RFC 3339 time.")] = None,
    db: DbOption = None,
) -> None:
    """Commits reachable from HEAD as `change` events (author, authored and committed times, PR number from merge
    and squash messages), for lead time when no webhook or API sent them."""
    from shipscope.ingest.git_history import change_events

    start = _since_moment(since) if since else None
    records = (
        (position, orjson.dumps(event))
        for position, event in enumerate(change_events(path, repo, since=start), start=1)
    )
    with _sink(_settings(db)) as sink:
        report = import_records(records, sink)
    _print_report(report, str(path), as_json=False)
    if report.rejected_count:
        raise typer.Exit(1)


@lint_app.command("workflows")
@_reports_errors
def lint_workflows(
    paths: Annotated[list[Path], typer.Argument(help=".github/workflows/*.yml, .gitlab-ci.yml, or folders of them.")],
    repo: Annotated[
        str | None, typer.Option(help="Also store the measurement for this repository (OWNER/NAME), for the dashboard.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The results as JSON on stdout.")] = False,
    db: DbOption = None,
) -> None:
    """Workflow complexity: YAML lines, jobs, steps, inline script lines, uses/include/extends, expressions and
    reusable-template use, with a verdict per file (thin, moderate, heavy)."""
    from shipscope.metrics.workflows import lint_paths, workflow_events

    results = lint_paths(paths)
    rows = [result.to_json() for result in results]
    if as_json:
        sys.stdout.write(orjson.dumps(rows).decode() + "\n")
    else:
        from shipscope.cli.render import render

        shown = ("path", "kind", "yaml_lines", "jobs", "steps", "inline_script_lines", "uses", "includes", "verdict")
        render(Console(), "workflows", {"workflows": [{key: row[key] for key in shown} for row in rows]})
    if repo:
        events = workflow_events(results, repo, measured_at=datetime.now(UTC))
        records = [(position, orjson.dumps(event)) for position, event in enumerate(events, start=1)]
        with _sink(_settings(db)) as sink:
            report = import_records(records, sink)
        _print_report(report, "workflows", as_json=False)


@app.command("check")
@_reports_errors
def check_command(
    since: Annotated[str, typer.Option(help="30d, 7d, a date or an RFC 3339 time.")] = "7d",
    until: Annotated[str | None, typer.Option(help="A date or an RFC 3339 time (exclusive); default now.")] = None,
    repo: Annotated[str | None, typer.Option(help="Only this repository.")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team's repositories.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The violations as JSON on stdout.")] = False,
    db: DbOption = None,
) -> None:
    """Checks the alert thresholds (shipscope.toml [thresholds]); exits 1 when any is violated, so it can gate CI."""
    from shipscope.alerts import violations
    from shipscope.metrics.common import Filters, Window

    settings = _settings(db)
    _refuse_if_served(settings, "check (or point --db at PostgreSQL)")
    store = _open_store(settings)
    try:
        found = violations(store, settings, Window.parse(since, until), Filters(repo=repo, team=team))
    finally:
        store.close()
    if as_json:
        sys.stdout.write(orjson.dumps([violation.to_json() for violation in found]).decode() + "\n")
    else:
        for violation in found:
            stderr.print(f"[red]✗[/red] {violation.threshold}: {violation.message}", highlight=False)
        stderr.print(f"{len(found)} threshold(s) violated" if found else "all thresholds hold", highlight=False)
    if found:
        raise typer.Exit(1)


class ReportKind(StrEnum):
    pipelines = "pipelines"
    tests = "tests"
    security = "security"
    dora = "dora"
    devex = "devex"


@app.command("report")
@_reports_errors
def report_command(
    kind: Annotated[ReportKind, typer.Argument(help="Which report.")],
    repo: Annotated[str | None, typer.Option(help="Only this repository (OWNER/NAME).")] = None,
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    env: Annotated[str | None, typer.Option(help="Only this environment.")] = None,
    team: Annotated[str | None, typer.Option(help="Only this team's repositories and services.")] = None,
    since: Annotated[str, typer.Option(help="30d, 12h, 8w, a date or an RFC 3339 time.")] = "30d",
    until: Annotated[str | None, typer.Option(help="A date or an RFC 3339 time (exclusive); default now.")] = None,
    definitions: Annotated[str, typer.Option(help="DORA definitions preset.")] = "shipscope",
    explain: Annotated[bool, typer.Option("--explain", help="DORA: list what is behind each number.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON on stdout.")] = False,
    db: DbOption = None,
) -> None:
    """Pipeline SLIs, tests and flakiness, security trends, DORA or developer experience over [since, until)."""
    settings = _settings(db)
    params = {
        "since": since,
        "until": until,
        "repo": repo,
        "service": service,
        "env": env,
        "team": team,
        "definitions": definitions,
        "explain": "true" if explain else None,
    }
    client = server_holding(settings, "asking its API")
    if client is not None:
        try:
            report = client.get_json(f"/api/v1/metrics/{kind.value}", {k: v for k, v in params.items() if v})
        finally:
            client.close()
    else:
        from shipscope.metrics.common import Filters, MetricsConfig, Window
        from shipscope.metrics.reports import run_report

        window = Window.parse(since, until)
        filters = Filters(repo=repo, service=service, environment=env, team=team)
        store = _open_store(settings)
        try:
            report = {
                "filters": filters.to_json(),
                **run_report(
                    kind.value,
                    store,
                    window,
                    filters,
                    MetricsConfig.from_table(settings.metrics),
                    definitions=definitions,
                    explain=explain,
                ),
            }
        finally:
            store.close()
    if as_json:
        sys.stdout.write(orjson.dumps(report).decode() + "\n")
    else:
        from shipscope.cli.render import render

        render(Console(), kind.value, report)


@app.command("record")
def record_command(
    server: Annotated[str, typer.Option(envvar="SHIPSCOPE_URL", help="The shipscope server's base URL.")] = "",
    status: Annotated[
        str | None, typer.Option(help="The run's final status (GitHub `${{ job.status }}`, GitLab job status).")
    ] = None,
    junit: Annotated[list[Path] | None, typer.Option(help="JUnit XML report(s); globs allowed.")] = None,
    sarif: Annotated[list[Path] | None, typer.Option(help="SARIF log(s); globs allowed.")] = None,
    spool: Annotated[Path, typer.Option(help="Where events go when the server cannot be reached.")] = Path(
        "shipscope-spool.ndjson"
    ),
    retries: Annotated[int, typer.Option(min=0, max=10, help="Attempts after the first on errors.")] = 3,
) -> None:
    """Record this CI run (GitHub Actions or GitLab CI) as the last step of a pipeline. Never fails the pipeline:
    problems are printed as warnings, and events that cannot be sent are written to the spool file for a later
    `shipscope import`. Tokens: SHIPSCOPE_TOKEN for the server; SHIPSCOPE_VENDOR_TOKEN (or GITHUB_TOKEN) to read
    this run's jobs and steps from the CI's API."""
    from shipscope.record import RecordOptions, record

    options = RecordOptions(
        server_url=server,
        token=os.environ.get("SHIPSCOPE_TOKEN", ""),
        status=status,
        junit=tuple(junit or ()),
        sarif=tuple(sarif or ()),
        spool=spool,
        retries=retries,
        vendor_token=os.environ.get("SHIPSCOPE_VENDOR_TOKEN") or os.environ.get("GITHUB_TOKEN", ""),
    )
    outcome = record(options, os.environ)
    for warning in outcome.warnings:
        stderr.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if outcome.sent:
        stderr.print(f"recorded {outcome.events} events at {server}", highlight=False)
    elif outcome.spooled_to is not None:
        stderr.print(f"{outcome.events} events written to {outcome.spooled_to}", highlight=False)


@app.command()
@_reports_errors
def reprocess(db: DbOption = None) -> None:
    """Rebuild every normalized table from the raw journal (after a parser fix, say)."""
    settings = _settings(db)
    _refuse_if_served(settings, "run reprocess")
    store = _open_store(settings)
    try:
        with stderr.status("reprocessing the journal"):
            report = store.reprocess(decode)
            # The journal outlives the other tables: what it rebuilt past their retention goes again.
            store.prune(Retention.from_config(settings.retention), datetime.now(UTC))
            store.analyze()
    finally:
        store.close()
    for seq, reason in report.failed[:50]:
        stderr.print(f"journal entry {seq}: {reason}", highlight=False)
    stderr.print(
        f"reprocessed {report.deliveries} payloads into {report.events} events; {len(report.failed)} failed",
        highlight=False,
    )
    if report.failed:
        raise typer.Exit(1)


@db_app.command("upgrade")
@_reports_errors
def db_upgrade(db: DbOption = None) -> None:
    """Create or upgrade the schema to this version's revision."""
    settings = _settings(db)
    _refuse_if_served(settings, "upgrade")
    store = Store(settings.db)
    try:
        before, after = store.upgrade()
    finally:
        store.close()
    stderr.print(
        f"schema at revision {after}" + (f" (was {before})" if before != after else " (already current)"),
        highlight=False,
    )


@db_app.command("current")
@_reports_errors
def db_current(db: DbOption = None) -> None:
    """Print the schema revision of the database."""
    settings = _settings(db)
    _refuse_if_served(settings, "ask again")
    store = Store(settings.db)
    try:
        typer.echo(store.revision() or "none")
    finally:
        store.close()


@db_app.command("prune")
@_reports_errors
def db_prune(
    dry_run: Annotated[bool, typer.Option(help="Count what would go; delete nothing.")] = False,
    db: DbOption = None,
) -> None:
    """Delete what the [retention] settings keep no longer, table by table (a running server does this daily)."""
    settings = _settings(db)
    retention = Retention.from_config(settings.retention)
    if not retention.keep:
        raise InputError('no table has a retention: set them in shipscope.toml [retention], e.g. jobs = "180d"')
    _refuse_if_served(settings, "prune, or let the server prune daily")
    store = _open_store(settings)
    try:
        pruned = store.prune(retention, datetime.now(UTC), dry_run=dry_run)
    finally:
        store.close()
    verb = "would delete" if dry_run else "deleted"
    for table, count in pruned.items():
        stderr.print(f"{table}: {verb} {count} rows older than {retention.keep[table].days} days", highlight=False)


@db_app.command("backup")
@_reports_errors
def db_backup(
    target: Annotated[Path, typer.Argument(help="The new DuckDB file to write the copy to.")],
    db: DbOption = None,
) -> None:
    """A consistent copy of the DuckDB database, taken while it is in use: through the server's API when a server
    holds the file (the path is then on the server's machine), else directly."""
    settings = _settings(db)
    client = server_holding(settings, "asking it to back up")
    if client is not None:
        try:
            client.post_json("/api/v1/admin/backup", {"path": str(target.resolve())})
        finally:
            client.close()
    else:
        store = Store(settings.db)
        try:
            store.backup(target)
        finally:
            store.close()
    stderr.print(f"backed up {settings.db} to {target}", highlight=False)


@db_app.command("restore")
@_reports_errors
def db_restore(
    backup: Annotated[Path, typer.Argument(help="A file written by `shipscope db backup`.")],
    force: Annotated[bool, typer.Option(help="Replace the database file if it exists.")] = False,
    db: DbOption = None,
) -> None:
    """Put a backup in place of the DuckDB database (the server must be stopped), upgraded to this version."""
    import shutil

    settings = _settings(db)
    _refuse_if_served(settings, "restore")
    path = duckdb_path(settings.db)
    if path is None:
        raise InputError("restore puts a DuckDB backup in place; restore PostgreSQL with pg_restore")
    if not backup.is_file():
        raise InputError(f"{backup}: no such backup file")
    checked = Store(f"duckdb:///{backup}")
    try:
        revision = checked.revision()
    finally:
        checked.close()
    if revision is None:
        raise InputError(f"{backup} is not a shipscope database (it has no schema revision)")
    destination = Path(path)
    if destination.exists() and not force:
        raise InputError(f"{destination} exists: give --force to replace it")
    # The replaced file's write-ahead log must not be replayed into the copy.
    Path(f"{destination}.wal").unlink(missing_ok=True)
    shutil.copyfile(backup, destination)
    store = Store(settings.db)
    try:
        before, after = store.upgrade()
    finally:
        store.close()
    stderr.print(f"restored {backup} to {destination} at revision {after} (was {before})", highlight=False)

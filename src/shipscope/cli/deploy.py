"""`shipscope deploy …`: the commands a deploy pipeline runs (docs/deploy.md).

Exit codes, the same for every command: 0 done or passed; 1 the check said no (blocked, failed, a smoke check
failed, a rollback step failed); 2 inconclusive (analyze); 3 could not decide or act (Prometheus unreachable and
failing closed, a vendor failing under --strict, an analysis Error, the database or shipscope server unreachable);
4 bad input (flags, files, configuration).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from shipscope.cli.common import name_value_pairs, reports_errors_with, settings_for, stderr
from shipscope.deploy.context import DeployInfo, deploy_info, deployment_status, now
from shipscope.deploy.ledger import Ledger, ServerLedger, StoreLedger
from shipscope.errors import InputError, ShipscopeError

EXIT_BAD_INPUT = 4
deploy_app = typer.Typer(help="Commands for deploy pipelines: record, mark, notify, gate, analyze, smoke, rollback.")
deploy_errors = reports_errors_with(EXIT_BAD_INPUT, unavailable=3)

ServiceOption = Annotated[str | None, typer.Option("--service", help="The deployed service [env: SHIPSCOPE_SERVICE].")]
EnvOption = Annotated[
    str | None, typer.Option("--env", help="Its environment [env: SHIPSCOPE_ENVIRONMENT, CI_ENVIRONMENT_NAME].")
]
VersionOption = Annotated[str | None, typer.Option(help="The version deployed [env: SHIPSCOPE_VERSION, the tag].")]
ShaOption = Annotated[
    str | None, typer.Option(help="The commit deployed [env: SHIPSCOPE_SHA, GITHUB_SHA, CI_COMMIT_SHA].")
]
DigestOption = Annotated[
    str | None, typer.Option("--image-digest", help="The image digest [env: SHIPSCOPE_IMAGE_DIGEST].")
]
ActorOption = Annotated[
    str | None, typer.Option(help="Who deploys [env: SHIPSCOPE_ACTOR, GITHUB_ACTOR, GITLAB_USER_LOGIN].")
]
IdOption = Annotated[
    str | None, typer.Option("--id", help="The deployment id [env: SHIPSCOPE_DEPLOYMENT_ID; derived in CI].")
]
ServerOption = Annotated[
    str | None, typer.Option("--server", envvar="SHIPSCOPE_URL", help="The shipscope server that records it.")
]
DbOption = Annotated[str | None, typer.Option("--db", help="Record into this database instead of a server.")]
JsonOption = Annotated[bool, typer.Option("--json", help="What happened, as JSON on stdout.")]
PrometheusOption = Annotated[
    str | None, typer.Option("--prometheus-url", envvar="SHIPSCOPE_PROMETHEUS_URL", help="Prometheus' base URL.")
]

out = Console(soft_wrap=True)


def _info(
    service: str | None,
    env: str | None,
    version: str | None = None,
    sha: str | None = None,
    image_digest: str | None = None,
    actor: str | None = None,
    deployment_id: str | None = None,
) -> DeployInfo:
    return deploy_info(
        os.environ,
        service=service,
        environment=env,
        version=version,
        sha=sha,
        image_digest=image_digest,
        actor=actor,
        deployment_id=deployment_id,
    )


@contextmanager
def _ledger(server: str | None, db: str | None) -> Iterator[Ledger]:
    """The server's API when one is named (the usual case in a pipeline), else the database."""
    if server:
        from shipscope.client import ServerClient

        client = ServerClient(server.rstrip("/"), token=os.environ.get("SHIPSCOPE_TOKEN", ""), timeout=30.0)
        try:
            yield ServerLedger(client)
        finally:
            client.close()
        return
    from shipscope.cli.common import open_store

    store = open_store(settings_for(db))
    try:
        yield StoreLedger(store)
    finally:
        store.close()


def _emit(as_json: bool, document: dict[str, Any]) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(document).decode() + "\n")


def _say(text: str) -> None:
    stderr.print(text, highlight=False)


def _person(named: str | None) -> str:
    """Who runs the command, for the audit trail."""
    for candidate in (
        named,
        *(os.environ.get(name) for name in ("SHIPSCOPE_ACTOR", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "USER")),
    ):
        if candidate:
            return candidate
    return "unknown"


def _actor(info: DeployInfo) -> str:
    return _person(info.actor)


def _stored_deployment(ledger: Ledger, info: DeployInfo) -> dict[str, Any] | None:
    found = [
        event
        for event in ledger.read("deployment", service=info.service, environment=info.environment)
        if event["id"] == info.id
    ]
    return found[0] if found else None


# ----- start / finish -----------------------------------------------------------------------------------------------


@deploy_app.command("start")
@deploy_errors
def start_command(
    service: ServiceOption = None,
    env: EnvOption = None,
    version: VersionOption = None,
    sha: ShaOption = None,
    image_digest: DigestOption = None,
    actor: ActorOption = None,
    deployment_id: IdOption = None,
    kind: Annotated[str, typer.Option(help="deploy, rollback or hotfix.")] = "deploy",
    server: ServerOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record a deployment as in progress, before anything is changed: a step that is killed later leaves it in
    progress, never missing. Prints the deployment id."""
    if kind not in ("deploy", "rollback", "hotfix"):
        raise InputError(f"--kind {kind!r}: expected deploy, rollback or hotfix")
    info = _info(service, env, version, sha, image_digest, actor, deployment_id)
    info = info.with_kind(kind, id=info.id, rollback_of=None)  # type: ignore[arg-type]
    moment = now()
    with _ledger(server, db) as ledger:
        ledger.write([info.deployment("in_progress", started_at=moment)])
    _say(f"deployment {info.id} of {info.label} started at {moment.isoformat()}")
    _emit(as_json, {"deployment": info.to_json(), "status": "in_progress", "started_at": moment.isoformat()})
    if not as_json:
        out.print(info.id, highlight=False)


@deploy_app.command("finish")
@deploy_errors
def finish_command(
    status: Annotated[str, typer.Option(help="success, failure or cancelled (GitHub job.status, GitLab words too).")],
    service: ServiceOption = None,
    env: EnvOption = None,
    version: VersionOption = None,
    sha: ShaOption = None,
    image_digest: DigestOption = None,
    actor: ActorOption = None,
    deployment_id: IdOption = None,
    server: ServerOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record how the deployment ended, and print its duration (from its `deploy start`)."""
    final = deployment_status(status)
    if final == "in_progress":
        raise InputError("--status in_progress: finish records how a deployment ended")
    info = _info(service, env, version, sha, image_digest, actor, deployment_id)
    moment = now()
    with _ledger(server, db) as ledger:
        stored = _stored_deployment(ledger, info)
        started = datetime.fromisoformat(stored["started_at"]) if stored and stored.get("started_at") else None
        if stored is None:
            _say(f"warning: no `deploy start` of {info.id} was recorded; recording the deployment without a start")
        ledger.write([info.deployment(final, started_at=started, finished_at=moment)])
    duration = (moment - started).total_seconds() if started else None
    took = f" in {duration:.0f} s" if duration is not None else ""
    _say(f"deployment {info.id} of {info.label}: {final}{took}")
    _emit(as_json, {"deployment": info.to_json(), "status": final, "duration_seconds": duration})


# ----- gate / freeze / unfreeze -------------------------------------------------------------------------------------


def _duration(text: str, option: str) -> timedelta:
    from shipscope.deploy.analysis import parse_duration

    return timedelta(seconds=parse_duration(text, option))


@deploy_app.command("gate")
@deploy_errors
def gate_command(
    service: ServiceOption = None,
    env: EnvOption = None,
    version: VersionOption = None,
    sha: ShaOption = None,
    actor: ActorOption = None,
    deployment_id: IdOption = None,
    prometheus_url: PrometheusOption = None,
    query: Annotated[
        str | None,
        typer.Option(
            help="PromQL for the burn rate; {service} and {env} are filled in. Default: "
            'error_budget_burn_rate{service="{service}",window="1h"}.'
        ),
    ] = None,
    max_burn: Annotated[float, typer.Option(min=0.0, help="Block above this burn rate.")] = 2.0,
    slo: Annotated[
        Path | None, typer.Option(help="An SLO spec: also block when a multi-window burn-rate pair fires.")
    ] = None,
    datadog_slo: Annotated[str | None, typer.Option(help="Read the burn of this Datadog SLO id (last hour).")] = None,
    fail_open: Annotated[
        bool,
        typer.Option(envvar="SHIPSCOPE_GATE_FAIL_OPEN", help="Pass when the burn cannot be read (default: block)."),
    ] = False,
    override: Annotated[str | None, typer.Option(help="Let this deploy through a block or freeze; recorded.")] = None,
    freeze_for: Annotated[str, typer.Option(help="How long a block freezes the service (0: no freeze).")] = "1h",
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per query.")] = 10.0,
    server: ServerOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """The SLO gate before promotion: exit 0 to promote, 1 blocked (burn above --max-burn, a burn-rate pair firing,
    or a freeze), 3 when the burn cannot be read and the gate fails closed."""
    from shipscope.deploy.gate import DEFAULT_QUERY, GateOptions, run_gate
    from shipscope.slo import load_slos

    info = _info(service, env, version, sha, None, actor, deployment_id)
    options = GateOptions(
        prometheus_url=prometheus_url,
        query=query or DEFAULT_QUERY,
        max_burn=max_burn,
        slos=load_slos(slo) if slo else (),
        datadog_slo_id=datadog_slo,
        fail_open=fail_open,
        override=override,
        freeze_for=_duration(freeze_for, "--freeze-for"),
        timeout=timeout,
        environ=os.environ,
    )
    with _ledger(server, db) as ledger:
        result = run_gate(info, options, ledger, now(), _actor(info))
    table = Table("check", "value", "limit", "verdict", title=f"gate for {info.label}")
    for measurement in result.measurements:
        value = "no data" if measurement.value is None else f"{measurement.value:.3f}"
        table.add_row(measurement.what, value, f"{measurement.limit:g}", "BREACH" if measurement.breached else "ok")
    stderr.print(table)
    for reason in result.reasons:
        _say(f"- {reason}")
    _say(f"gate: {result.outcome.upper()}")
    _emit(as_json, {"deployment": info.to_json(), **result.to_json()})
    raise typer.Exit(result.exit_code)


@deploy_app.command("freeze")
@deploy_errors
def freeze_command(
    reason: Annotated[str, typer.Option(help="Why deploys stop.")],
    service: ServiceOption = None,
    env: EnvOption = None,
    until: Annotated[
        str | None, typer.Option(help="For how long (2h) or until when (RFC 3339); default: until lifted.")
    ] = None,
    actor: ActorOption = None,
    server: ServerOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Freeze deploys of a service in an environment: later gates block until it ends or is lifted."""
    from shipscope.deploy.gate import Freeze, freeze_event

    named_service, named_env = _service_env(service, env)
    moment = now()
    ends = _until(until, moment)
    who = _person(actor)
    event = freeze_event(named_service, named_env, reason=reason, actor=who, at=moment, until=ends)
    with _ledger(server, db) as ledger:
        ledger.write([event])
    freeze = Freeze(event.id, named_service, named_env, reason, who, moment, ends)
    _say(f"{named_service} in {named_env}: {freeze.describe()}")
    _emit(as_json, {"freeze": freeze.to_json()})


@deploy_app.command("unfreeze")
@deploy_errors
def unfreeze_command(
    reason: Annotated[str, typer.Option(help="Why deploys may go on.")],
    service: ServiceOption = None,
    env: EnvOption = None,
    actor: ActorOption = None,
    server: ServerOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Lift the freeze in force on a service in an environment."""
    from shipscope.deploy.gate import active_freeze, unfreeze_event

    named_service, named_env = _service_env(service, env)
    moment = now()
    who = _person(actor)
    with _ledger(server, db) as ledger:
        freeze = active_freeze(ledger, named_service, named_env, moment)
        if freeze is None:
            _say(f"{named_service} in {named_env} is not frozen")
            _emit(as_json, {"lifted": None})
            return
        ledger.write([unfreeze_event(freeze, actor=who, reason=reason, at=moment)])
    _say(f"lifted: {freeze.describe()}")
    _emit(as_json, {"lifted": freeze.to_json(), "by": who, "reason": reason})


def _service_env(service: str | None, env: str | None) -> tuple[str, str]:
    named_service = service or os.environ.get("SHIPSCOPE_SERVICE")
    named_env = env or os.environ.get("SHIPSCOPE_ENVIRONMENT") or os.environ.get("CI_ENVIRONMENT_NAME")
    if not named_service or not named_env:
        raise InputError("give --service and --env (or SHIPSCOPE_SERVICE and SHIPSCOPE_ENVIRONMENT)")
    return named_service, named_env


def _until(text: str | None, moment: datetime) -> datetime | None:
    if text is None:
        return None
    try:
        return moment + _duration(text, "--until")
    except InputError:
        pass
    try:
        ends = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--until {text!r}: expected a duration (2h) or an RFC 3339 time") from None
    if ends.tzinfo is None:
        raise InputError(f"--until {text!r}: give the time with its UTC offset")
    return ends


# ----- analyze ------------------------------------------------------------------------------------------------------


@deploy_app.command("analyze")
@deploy_errors
def analyze_command(
    template: Annotated[Path, typer.Option(help="An Argo Rollouts AnalysisTemplate or ClusterAnalysisTemplate.")],
    arg: Annotated[list[str] | None, typer.Option(help="A template argument, NAME=VALUE (repeatable).")] = None,
    name: Annotated[str | None, typer.Option(help="The template to run, when the file holds several.")] = None,
    prometheus_url: PrometheusOption = None,
    duration: Annotated[
        str | None, typer.Option(help="Bound metrics that have an interval and no count (Argo runs them on).")
    ] = None,
    service: ServiceOption = None,
    env: EnvOption = None,
    version: VersionOption = None,
    sha: ShaOption = None,
    deployment_id: IdOption = None,
    server: ServerOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Canary analysis against Prometheus: exit 0 Successful, 1 Failed, 2 Inconclusive, 3 Error. With --service
    (or SHIPSCOPE_SERVICE) the verdict is recorded on the deployment's timeline."""
    from shipscope.deploy.analysis import load_template, parse_duration, run_analysis

    overrides = name_value_pairs(arg, "--arg")
    loaded = load_template(template, overrides, name=name, prometheus_url=prometheus_url)
    # The verdict is recorded when the deployment is named; a bare analysis is only printed.
    named = service or os.environ.get("SHIPSCOPE_SERVICE")
    info = _info(service, env, version, sha, None, None, deployment_id) if named else None
    bound = parse_duration(duration, "--duration") if duration else None
    _say(f"analysis {loaded.name}: {len(loaded.metrics)} metrics")
    result = run_analysis(loaded, duration=bound, wall=now)
    table = Table("metric", "#", "at", "value", "phase", "message", title=f"{loaded.kind} {loaded.name}")
    for measurement in result.measurements:
        table.add_row(
            measurement.metric,
            str(measurement.number),
            measurement.at.strftime("%H:%M:%S"),
            _shown(measurement.value),
            measurement.phase,
            measurement.message,
        )
    stderr.print(table)
    _say(f"analysis: {result.message}")
    document = result.to_json()
    if info is not None:
        verdict = info.timeline(
            "analysis",
            f"Analysis {loaded.name} {result.phase} for {info.label}",
            now(),
            template=loaded.name,
            phase=result.phase,
            metrics=document["metrics"],
        )
        _record_quietly(server, db, [verdict])
    _emit(as_json, document)
    raise typer.Exit(result.exit_code)


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return "[" + ", ".join(f"{item:.4g}" for item in value) + "]"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ----- smoke --------------------------------------------------------------------------------------------------------


@deploy_app.command("smoke")
@deploy_errors
def smoke_command(
    checks: Annotated[Path, typer.Option(help="The smoke checks, YAML (docs/deploy.md).")],
    timeout: Annotated[
        str | None, typer.Option(help="The time box of the whole run, like 90s or 5m [default: the file's, or 5m].")
    ] = None,
    on_fail: Annotated[
        str, typer.Option(help="What a failure does: nothing, or rollback (the file's rollback: section).")
    ] = "nothing",
    service: ServiceOption = None,
    env: EnvOption = None,
    version: VersionOption = None,
    sha: ShaOption = None,
    deployment_id: IdOption = None,
    server: ServerOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """HTTP checks after a deploy, time-boxed: exit 0 all passed, 1 a check failed (after the rollback with
    --on-fail rollback). With --service (or SHIPSCOPE_SERVICE) the verdict is recorded on the timeline."""
    from shipscope.deploy.analysis import parse_duration
    from shipscope.deploy.smoke import load_plan, run_smoke

    if on_fail not in ("nothing", "rollback"):
        raise InputError(f"--on-fail {on_fail!r}: expected nothing or rollback")
    plan = load_plan(checks, time_box=parse_duration(timeout, "--timeout") if timeout else None)
    if on_fail == "rollback" and plan.rollback is None:
        raise InputError(f"--on-fail rollback needs a rollback: section in {checks}")
    named = service or os.environ.get("SHIPSCOPE_SERVICE")
    info = _info(service, env, version, sha, None, None, deployment_id) if named else None
    if on_fail == "rollback" and info is None:
        raise InputError("--on-fail rollback needs the service: give --service or set SHIPSCOPE_SERVICE")
    _say(f"smoke: {len(plan.checks)} checks within {plan.time_box:g} s")
    result = run_smoke(plan, os.environ)
    table = Table("check", "request", "tries", "status", "ms", "result", title="smoke checks")
    for check in result.checks:
        table.add_row(
            check.name,
            f"{check.method} {check.url}",
            str(check.attempts),
            "—" if check.status is None else str(check.status),
            "—" if check.latency_ms is None else f"{check.latency_ms:.0f}",
            "ok" if check.ok else check.problem,
        )
    stderr.print(table)
    _say(f"smoke: {result.summary}")
    document: dict[str, Any] = result.to_json()
    if info is not None:
        verdict = info.timeline(
            "smoke",
            f"Smoke checks {'passed' if result.ok else 'FAILED'}: {info.label}",
            now(),
            ok=result.ok,
            summary=result.summary,
            checks=document["checks"],
        )
        _record_quietly(server, db, [verdict])
    if not result.ok and on_fail == "rollback" and info is not None and plan.rollback is not None:
        _say(f"smoke: rolling {info.service} back with the {plan.rollback.strategy} strategy")
        with _ledger(server, db) as ledger:
            # The deploy under test when it was recorded (deploy start), else the latest one, as `rollback` does.
            of = info.id if _stored_deployment(ledger, info) else None
        outcome = perform_rollback(info, plan.rollback, of=of, incident=None, notify=True, server=server, db=db)
        document["rollback"] = outcome.to_json()
    _emit(as_json, document)
    raise typer.Exit(0 if result.ok else 1)


# ----- mark / notify ------------------------------------------------------------------------------------------------

TimeoutOption = Annotated[float, typer.Option(min=0.1, help="Seconds per request, per vendor.")]
RetriesOption = Annotated[int, typer.Option(min=0, max=10, help="Retries on 429, 5xx and timeouts, with backoff.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print each exact request, secrets masked; send none.")]


def _print_plan(plan: dict[str, list[Any]]) -> None:
    for vendor, requests in plan.items():
        for request in requests:
            out.print(f"# {vendor}: {request.what}", highlight=False)
            out.print(request.render(), highlight=False, markup=False)
            out.print()


def _record_quietly(server: str | None, db: str | None, events: list[Any]) -> str | None:
    """Records events a command reports on; what cannot be recorded is a warning, not a failed deploy."""
    try:
        with _ledger(server, db) as ledger:
            ledger.write(events)
    except ShipscopeError as error:
        warning = f"warning: not recorded in shipscope: {error.message}"
        _say(warning)
        return warning
    return None


@deploy_app.command("mark")
@deploy_errors
def mark_command(
    status: Annotated[str, typer.Option(help="How the deploy went: success, failure, in_progress.")] = "success",
    service: ServiceOption = None,
    env: EnvOption = None,
    version: VersionOption = None,
    sha: ShaOption = None,
    image_digest: DigestOption = None,
    actor: ActorOption = None,
    deployment_id: IdOption = None,
    strict: Annotated[bool, typer.Option(help="Exit 3 when any vendor fails (default: warn).")] = False,
    timeout: TimeoutOption = 10.0,
    retries: RetriesOption = 3,
    dry_run: DryRunOption = False,
    server: ServerOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """A deployment marker to every configured vendor at once: Datadog (DD_API_KEY, DD_SITE), Grafana (GRAFANA_URL,
    GRAFANA_TOKEN), Sentry (SENTRY_AUTH_TOKEN, SENTRY_ORG, SENTRY_PROJECT, SENTRY_URL), New Relic
    (NEW_RELIC_API_KEY, NEW_RELIC_ENTITY_GUID) and a webhook (SHIPSCOPE_MARKER_WEBHOOK_URL)."""
    from shipscope.deploy.markers import mark, planned

    info = _info(service, env, version, sha, image_digest, actor, deployment_id)
    state = deployment_status(status)
    moment = now()
    plan = planned(info, state, os.environ, moment)
    if not plan:
        _say("no marker vendor is configured (see `shipscope deploy mark --help` for the variables)")
    if dry_run:
        _print_plan(plan)
        _emit(as_json, {"dry_run": True, "vendors": list(plan)})
        return
    results = mark(plan, timeout=timeout, retries=retries)
    for result in results:
        for outcome in result.outcomes:
            verdict = "ok" if outcome.ok else f"FAILED: {outcome.detail}"
            _say(f"{result.vendor}: {outcome.what}: {verdict} ({outcome.attempts} attempt(s))")
    failed = [result.vendor for result in results if not result.ok]
    document = {"deployment": info.to_json(), "vendors": [result.to_json() for result in results], "failed": failed}
    if plan:
        title = f"Marked {info.label} in {', '.join(plan)}" + (f" ({', '.join(failed)} failed)" if failed else "")
        event = info.timeline("marker", title, moment, vendors=document["vendors"], status=state)
        _record_quietly(server, db, [event])
    _emit(as_json, document)
    if failed:
        _say(f"{len(failed)} of {len(results)} vendors failed: {', '.join(failed)}")
        if strict:
            raise typer.Exit(3)


@deploy_app.command("notify")
@deploy_errors
def notify_command(
    status: Annotated[str, typer.Option(help="success or failure (GitHub job.status, GitLab words too).")] = "success",
    webhook_url: Annotated[
        list[str] | None,
        typer.Option(envvar="SLACK_WEBHOOK_URL", help="Slack incoming webhook (else SHIPSCOPE_SLACK_WEBHOOK_URLS)."),
    ] = None,
    dashboard_url: Annotated[str | None, typer.Option(envvar="SHIPSCOPE_DASHBOARD_URL", help="Linked.")] = None,
    runbook_url: Annotated[
        str | None, typer.Option(envvar="SHIPSCOPE_RUNBOOK_URL", help="The rollback runbook, linked.")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why it failed, shown in the message.")] = None,
    service: ServiceOption = None,
    env: EnvOption = None,
    version: VersionOption = None,
    sha: ShaOption = None,
    image_digest: DigestOption = None,
    actor: ActorOption = None,
    deployment_id: IdOption = None,
    strict: Annotated[bool, typer.Option(help="Exit 3 when the notice cannot be delivered.")] = False,
    timeout: TimeoutOption = 10.0,
    retries: RetriesOption = 3,
    dry_run: DryRunOption = False,
    server: ServerOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """A Slack message with the service, version, commit, image digest, deployer and links to the dashboard, the
    pipeline and the rollback runbook; success and failure variants."""
    from shipscope.deploy.markers import mark
    from shipscope.integrations.slack import deploy_message, notice_requests

    info = _info(service, env, version, sha, image_digest, actor, deployment_id)
    state = deployment_status(status)
    urls = [url for url in webhook_url or [] if url] or [
        url.strip() for url in os.environ.get("SHIPSCOPE_SLACK_WEBHOOK_URLS", "").split(",") if url.strip()
    ]
    if not urls:
        raise InputError("no Slack webhook: give --webhook-url or set SLACK_WEBHOOK_URL")
    message = deploy_message(info, state, dashboard_url=dashboard_url, runbook_url=runbook_url, reason=reason)
    plan = {"slack": notice_requests(urls, message)}
    if dry_run:
        _print_plan(plan)
        _emit(as_json, {"dry_run": True, "message": message})
        return
    (result,) = mark(plan, timeout=timeout, retries=retries)
    for outcome in result.outcomes:
        _say(f"slack: {outcome.what}: {'ok' if outcome.ok else 'FAILED: ' + outcome.detail}")
    event = info.timeline("notice", f"Slack notice: {message['text']}", now(), delivered=result.ok, status=state)
    _record_quietly(server, db, [event])
    _emit(as_json, {"deployment": info.to_json(), "delivered": result.ok, "steps": result.to_json()["steps"]})
    if not result.ok and strict:
        raise typer.Exit(3)


# ----- rollback -----------------------------------------------------------------------------------------------------


@contextmanager
def _terminable() -> Iterator[None]:
    """A pipeline's timeout sends SIGTERM: turn it into an exit that runs the recording in ``finally`` blocks."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _rollback_options(
    strategy: str,
    command: list[str] | None,
    app_name: str | None,
    history_id: str | None,
    release: str | None,
    revision: str | None,
    namespace: str | None,
    resource: str | None,
    repo: str | None,
    branch: str,
    commit: str | None,
    path: str | None,
    timeout: float,
) -> Any:
    from shipscope.deploy.rollback import RollbackOptions

    options = RollbackOptions(
        strategy=strategy,
        app=app_name,
        history_id=history_id,
        release=release,
        revision=revision,
        namespace=namespace,
        resource=resource,
        repo=repo,
        branch=branch,
        commit=commit,
        path=path,
        command=tuple(command or ()),
        timeout=timeout,
    )
    options.validate()
    return options


def perform_rollback(
    info: DeployInfo,
    options: Any,
    *,
    of: str | None,
    incident: str | None,
    notify: bool,
    server: str | None,
    db: str | None,
) -> Any:
    """Runs a rollback and tells Slack and the PagerDuty incident; shared by `rollback` and `smoke --on-fail`."""
    from shipscope.deploy.markers import mark
    from shipscope.deploy.rollback import roll_back
    from shipscope.integrations.pagerduty import note_request
    from shipscope.integrations.slack import deploy_message, notice_requests

    with _terminable(), _ledger(server, db) as ledger:
        outcome = roll_back(info, options, ledger, of=of, at=now(), clock=now)
    rollback = outcome.rollback
    for step in outcome.run.steps:
        _say(f"{step.name}: {'ok' if step.ok else 'FAILED: ' + step.problem}")
    status = "success" if outcome.run.ok else "failure"
    plan: dict[str, list[Any]] = {}
    slack_urls = [url for url in (os.environ.get("SLACK_WEBHOOK_URL", ""),) if url.strip()]
    if notify and slack_urls:
        message = deploy_message(
            rollback,
            status,
            dashboard_url=os.environ.get("SHIPSCOPE_DASHBOARD_URL"),
            runbook_url=os.environ.get("SHIPSCOPE_RUNBOOK_URL"),
            reason=outcome.run.failure,
        )
        plan["slack"] = notice_requests(slack_urls, message)
    if incident:
        target = rollback.version or rollback.sha[:12]
        verdict = "rolled back" if outcome.run.ok else f"rollback FAILED ({outcome.run.failure})"
        content = (
            f"shipscope: {rollback.service} in {rollback.environment} {verdict} to {target} "
            f"with the {options.strategy} strategy; rolled back: {rollback.rollback_of or 'unknown'}"
        )
        try:
            plan["pagerduty"] = [note_request(incident, content, os.environ)]
        except InputError as error:
            outcome.warnings.append(error.message)
    for result in mark(plan):
        for sent in result.outcomes:
            if not sent.ok:
                outcome.warnings.append(f"{result.vendor}: {sent.what}: {sent.detail}")
            _say(f"{result.vendor}: {sent.what}: {'ok' if sent.ok else 'FAILED: ' + sent.detail}")
    for warning in outcome.warnings:
        _say(f"warning: {warning}")
    return outcome


@deploy_app.command("rollback", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@deploy_errors
def rollback_command(
    context: typer.Context,
    strategy: Annotated[str, typer.Option(help="gitops, argocd, helm, kubectl or command (the command after --).")],
    service: ServiceOption = None,
    env: EnvOption = None,
    sha: ShaOption = None,
    actor: ActorOption = None,
    of: Annotated[str | None, typer.Option(help="The deployment rolled back (default: the latest).")] = None,
    incident: Annotated[str | None, typer.Option(help="A PagerDuty incident id to add a note to.")] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="argocd: the application.")] = None,
    history_id: Annotated[str | None, typer.Option(help="argocd: the history id to go back to.")] = None,
    release: Annotated[str | None, typer.Option(help="helm: the release.")] = None,
    revision: Annotated[str | None, typer.Option(help="helm, kubectl: the revision to go back to.")] = None,
    namespace: Annotated[str | None, typer.Option(help="helm, kubectl: the namespace.")] = None,
    resource: Annotated[str | None, typer.Option(help="kubectl: what to undo, e.g. deployment/checkout.")] = None,
    repo: Annotated[str | None, typer.Option(help="gitops: the repository to clone (URL or path).")] = None,
    branch: Annotated[str, typer.Option(help="gitops: the branch the controller syncs.")] = "main",
    commit: Annotated[str | None, typer.Option(help="gitops: the commit to revert.")] = None,
    path: Annotated[str | None, typer.Option(help="gitops: revert the last commit touching this path.")] = None,
    step_timeout: Annotated[float, typer.Option(min=1.0, help="Seconds each step may take.")] = 600.0,
    notify: Annotated[bool, typer.Option(help="Post the outcome to SLACK_WEBHOOK_URL when set.")] = True,
    dry_run: DryRunOption = False,
    server: ServerOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Roll the service back and record a deployment of kind rollback (with rollback_of and the version it
    returns to); exit 0 rolled back, 1 a step failed (named)."""
    from shipscope.deploy.rollback import planned_steps

    options = _rollback_options(
        strategy,
        list(context.args),
        app_name,
        history_id,
        release,
        revision,
        namespace,
        resource,
        repo,
        branch,
        commit,
        path,
        step_timeout,
    )
    info = deploy_info(
        os.environ,
        service=service,
        environment=env,
        sha=sha or os.environ.get("SHIPSCOPE_SHA") or "unknown",
        actor=actor,
        deployment_id="rollback",
    )
    if dry_run:
        for name, argv in planned_steps(options):
            out.print(f"# {name}\n{' '.join(argv)}", highlight=False, markup=False)
        _emit(as_json, {"dry_run": True, "steps": [argv for _, argv in planned_steps(options)]})
        return
    outcome = perform_rollback(info, options, of=of, incident=incident, notify=notify, server=server, db=db)
    target = outcome.rollback.version or outcome.rollback.sha[:12]
    if outcome.run.ok:
        _say(f"rolled back {info.service} in {info.environment} to {target} ({outcome.rollback.id})")
    else:
        _say(f"rollback of {info.service} in {info.environment} FAILED: {outcome.run.failure}")
    _emit(as_json, outcome.to_json())
    raise typer.Exit(0 if outcome.run.ok else 1)

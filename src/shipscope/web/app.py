"""The HTTP surface: health, ingest, the event listing and metrics API, and the dashboard (``web.dashboard``).

Handlers parse, call the ingest and store layers, and render; they hold no SQL and no metric logic.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.concurrency import run_in_threadpool
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as ASGIScope

from shipscope import __version__
from shipscope.alerts import alert_round, notifier_for
from shipscope.config import Settings
from shipscope.errors import AuthError, InputError, NotFound, ShipscopeError, UnsupportedMediaType
from shipscope.exporters.otel import LiveTraceExporter
from shipscope.exporters.prometheus import ExporterConfig, StoreCollector, metrics_registry
from shipscope.ingest import Delivery, IngestReport, Rejection
from shipscope.ingest.flags import verify_signature as verify_flag_signature
from shipscope.ingest.generic import body_records, read_records
from shipscope.ingest.otlp import KIND as OTLP_TRACES
from shipscope.ingest.otlp import otlp_response, parse_otlp_traces
from shipscope.ingest.pagerduty import verify_signature as verify_pagerduty_signature
from shipscope.ingest.registry import decode
from shipscope.ingest.reports import report_delivery
from shipscope.ingest.webhooks import (
    SERVICE_HEADER,
    WebhookDelivery,
    alertmanager_delivery,
    flag_delivery,
    github_delivery,
    gitlab_delivery,
    json_object,
    kubernetes_delivery,
    opsgenie_delivery,
    pagerduty_delivery,
    verify_github_signature,
    verify_gitlab_token,
)
from shipscope.integrations.http import send
from shipscope.metrics.common import Filters, MetricsConfig, Window
from shipscope.metrics.incidents import IncidentTimeline, incident_timeline
from shipscope.metrics.listings import (
    LIST_LIMIT,
    DeploymentFilter,
    deployment_detail,
    deployment_list,
    incident_list,
)
from shipscope.metrics.reports import run_report
from shipscope.metrics.thresholds import thresholds_from_table
from shipscope.paging import forward_requests
from shipscope.store import Store
from shipscope.store.retention import Retention
from shipscope.store.writer import GroupCommitWriter
from shipscope.web import openapi
from shipscope.web.auth import authorize, parse_tokens
from shipscope.web.bodies import read_body
from shipscope.web.dashboard import asset_routes, dashboard_router
from shipscope.web.postmortems import postmortem_router
from shipscope.web.responses import ORJSONResponse
from shipscope.web.rollbacks import rollback_router

log = logging.getLogger(__name__)

RETENTION_INTERVAL_SECONDS = 24 * 3600
_INLINE_PARSE_BYTES = 64 * 1024
"""Bodies up to this size are parsed on the event loop; larger ones in a worker thread."""


def _error(status: int, message: str, hint: str | None = None) -> ORJSONResponse:
    content: dict[str, Any] = {"ok": False, "status": status, "error": message}
    if hint:
        content["hint"] = hint
    return ORJSONResponse(content, status_code=status)


class RefuseNul:
    """Answers 400 to a path or query parameter holding NUL: PostgreSQL text cannot hold it, so refusing it at the
    door keeps both backends alike (the events' own text is checked where they are parsed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"%00" in scope["query_string"] or b"\x00" in scope["query_string"]
        ):
            await _error(400, "a path or query parameter may not contain NUL characters (%00)")(scope, receive, send)
            return
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class Scope:
    """The window and filters of a metrics or listing request."""

    window: Window
    filters: Filters


def scope_of(
    since: Annotated[str | None, Query(description="30d, 12h, 8w, a date or an RFC 3339 time.")] = None,
    until: Annotated[str | None, Query(description="A date or an RFC 3339 time; default now.")] = None,
    repo: str | None = None,
    service: str | None = None,
    env: Annotated[str | None, Query(description="Environment glob (DORA, deployments).")] = None,
    team: str | None = None,
) -> Scope:
    return Scope(Window.parse(since, until), Filters(repo=repo, service=service, environment=env, team=team))


def create_app(settings: Settings, store: Store | None = None) -> FastAPI:
    """The ASGI app. It owns ``store`` (opened from settings when not given) and its writer thread."""
    tokens = parse_tokens(settings.api_tokens)
    metrics_config = MetricsConfig.from_table(settings.metrics)
    retention = Retention.from_config(settings.retention)
    exporter_config = ExporterConfig.from_table(settings.exporter)
    owned_store = store or Store(
        settings.db, stage_patterns=settings.stage_patterns, duckdb_memory_limit=settings.duckdb_memory_limit or None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned_store.ensure_schema()
        app.state.trace_exporter = (
            LiveTraceExporter(owned_store, settings.otlp_endpoint, settle_seconds=settings.otlp_settle_seconds)
            if settings.otlp_endpoint
            else None
        )
        app.state.rollbacks = []
        app.state.writer = GroupCommitWriter(
            owned_store,
            max_requests=settings.commit_batch_max,
            gather_seconds=settings.commit_gather_ms / 1000,
            on_commit=app.state.trace_exporter.offer if app.state.trace_exporter else None,
        )
        background = [
            *([asyncio.create_task(_alert_loop(owned_store, settings))] if settings.alert_interval_seconds > 0 else []),
            *([asyncio.create_task(_retention_loop(owned_store, retention))] if retention.keep else []),
        ]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for running in list(app.state.rollbacks):
                # A rollback under way records how it ended before the writer stops.
                await run_in_threadpool(running.join, 600)
            app.state.writer.close()
            if app.state.trace_exporter is not None:
                app.state.trace_exporter.close()
            if store is None:
                owned_store.close()

    app = FastAPI(
        title="shipscope",
        version=__version__,
        summary="CI/CD and deployment events in; pipeline SLIs and DORA metrics out.",
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
        # The interactive docs pages load scripts from a CDN; the schema itself is served at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    openapi.install(app)
    app.state.store = owned_store
    registry = metrics_registry(
        StoreCollector(
            owned_store,
            exporter_config,
            metrics_config,
            tally=lambda: app.state.writer.tally(),
            trace_tally=(lambda: app.state.trace_exporter.tally()) if settings.otlp_endpoint else None,
        )
    )
    # Plotly's bundle is 4.8 MB, 1.4 MB compressed; pages and reports compress well too.
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(RefuseNul)

    def check_read(authorization: str | None) -> None:
        if tokens:
            authorize(tokens, authorization, "read")

    def check_ingest(authorization: str | None) -> None:
        if tokens:
            authorize(tokens, authorization, "ingest")

    def require(scope: str) -> Callable[[Request], None]:
        def check(request: Request) -> None:
            if tokens:
                authorize(tokens, request.headers.get("authorization"), scope)

        return check

    @app.exception_handler(ShipscopeError)
    async def shipscope_error(request: Request, error: ShipscopeError) -> Response:
        return _error(error.status, error.message, error.hint)

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, error: RequestValidationError) -> Response:
        problems = [f"{'.'.join(str(part) for part in detail['loc'])}: {detail['msg']}" for detail in error.errors()]
        return _error(400, "; ".join(problems))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal error; the server log has the details")

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, Any]:
        """OK when the database answers."""
        owned_store.health()
        return {"ok": True, "database": owned_store.dialect, "version": __version__}

    @app.post(
        "/api/v1/events",
        tags=["ingest"],
        dependencies=[Depends(require("ingest"))],
        openapi_extra=openapi.EVENTS,
        responses={
            200: {"description": "Every event was stored or was a duplicate."},
            207: {"description": "Some lines were rejected; the others were stored. `rejected` lists them."},
            400: {"description": "Nothing in the body was valid; `rejected` says why, line by line."},
            413: {"description": "The body (after gunzip) exceeds the configured limit."},
        },
    )
    async def post_events(request: Request) -> Response:
        """Canonical events as NDJSON (one per line) or a JSON array; gzip bodies accepted.

        The answer counts the events stored and the duplicates, and names each rejected line (or array item)
        with its reason. Accepted events are durable when the answer arrives.
        """
        body = await read_body(request, settings.max_body_bytes)
        parse = _parse_body
        position_name, deliveries, rejections = (
            parse(body) if len(body) <= _INLINE_PARSE_BYTES else await run_in_threadpool(parse, body)
        )
        if not deliveries and not rejections:
            raise InputError("empty body: send canonical events as NDJSON or a JSON array")
        writer: GroupCommitWriter = request.app.state.writer
        is_new = await asyncio.wrap_future(writer.submit(deliveries, rejections))
        report = IngestReport()
        report.count(deliveries, is_new)
        for rejection in rejections:
            report.reject(rejection)
        status = 200 if not rejections else (207 if deliveries else 400)
        content = {"ok": status == 200, **report.to_json(position_name)}
        return ORJSONResponse(content, status_code=status)

    @app.get("/api/v1/events", tags=["events"], dependencies=[Depends(require("read"))])
    def list_events(
        type: Annotated[str, Query(description="Event type, e.g. pipeline_run or deployment.")],
        repo: str | None = None,
        service: str | None = None,
        environment: str | None = None,
        since: Annotated[datetime | None, Query(description="Inclusive start, RFC 3339.")] = None,
        until: Annotated[datetime | None, Query(description="Exclusive end, RFC 3339.")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(description="next_cursor from the previous page.")] = None,
    ) -> dict[str, Any]:
        """Stored events of one type in the canonical JSON shape, in key order, a page at a time."""
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.tzinfo is None:
                raise InputError(f"{name}: expected an RFC 3339 timestamp with a UTC offset")
        page = owned_store.list_events(
            type,
            repo=repo,
            service=service,
            environment=environment,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )
        return {"events": page.events, "next_cursor": page.next_cursor}

    github_secrets = _listed(settings.github_webhook_secrets)
    gitlab_tokens = _listed(settings.gitlab_webhook_tokens)
    pagerduty_secrets = _listed(settings.pagerduty_webhook_secrets)
    flag_secrets = _listed(settings.flag_webhook_secrets)

    async def _journal_rejection(request: Request, source: str, error: ShipscopeError, body: bytes) -> None:
        """What was refused leaves a trace, and nothing else, in the database."""
        rejection = Rejection(source, error.message, None, body[:200].decode(errors="replace"))
        await asyncio.wrap_future(request.app.state.writer.submit([], [rejection]))

    async def _accept_webhook(
        request: Request,
        source: str,
        verify: Callable[[bytes], None],
        read: Callable[[bytes, dict[str, str]], Any],
        forward: Callable[[WebhookDelivery], dict[str, Any]] | None = None,
    ) -> Response:
        body = b""
        try:
            body = await read_body(request, settings.max_body_bytes)
            verify(body)
            received: WebhookDelivery = read(body, {k.lower(): v for k, v in request.headers.items()})
        except ShipscopeError as error:
            await _journal_rejection(request, source, error, body)
            raise
        [is_new] = await asyncio.wrap_future(request.app.state.writer.submit([received.delivery]))
        content: dict[str, Any] = {
            "ok": True,
            "event": received.event,
            "delivery": received.delivery.delivery_id,
            "stored": len(received.delivery.events) if is_new else 0,
            "duplicates": 0 if is_new else len(received.delivery.events),
        }
        if not received.handled:
            content["message"] = f"ignored: {received.event}"
            return ORJSONResponse(content, status_code=202)
        if forward is not None:
            forwarded = await run_in_threadpool(forward, received)
            content.update(forwarded)
            if forwarded.get("error"):
                # Stored already (a retry counts as duplicates); the sender's retry re-sends what did not get out.
                return ORJSONResponse({**content, "ok": False}, status_code=502)
        return ORJSONResponse(content)

    webhook_responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "Journaled and normalized; `stored`/`duplicates` count its events."},
        202: {"description": "Journaled, but an event shipscope does not use: `ignored: <event>`."},
        400: {"description": "Unreadable payload (the position of a JSON error) or a payload missing a field."},
        401: {"description": "Missing or wrong signature / token."},
        413: {"description": "Body over the configured limit."},
    }

    @app.post("/webhooks/github", tags=["webhooks"], responses=webhook_responses, openapi_extra=openapi.GITHUB)
    async def github_webhook(request: Request) -> Response:
        """GitHub webhook deliveries (workflow_run, workflow_job, deployment, deployment_status, pull_request, push,
        check_run, check_suite, ping). Signed with X-Hub-Signature-256 when a secret is configured; X-GitHub-Delivery
        is the idempotency key."""

        def verify(body: bytes) -> None:
            if github_secrets:
                verify_github_signature(body, request.headers.get("x-hub-signature-256"), github_secrets)
            elif tokens:
                raise AuthError("GitHub webhooks need SHIPSCOPE_GITHUB_WEBHOOK_SECRETS on a server with API tokens")

        return await _accept_webhook(request, "github", verify, github_delivery)

    @app.post("/webhooks/gitlab", tags=["webhooks"], responses=webhook_responses, openapi_extra=openapi.GITLAB)
    async def gitlab_webhook(request: Request) -> Response:
        """GitLab webhook deliveries (Pipeline, Job, Deployment, Merge Request, Push and Tag Push hooks), checked
        against X-Gitlab-Token when tokens are configured; X-Gitlab-Event-UUID is the idempotency key."""

        def verify(body: bytes) -> None:
            if gitlab_tokens:
                verify_gitlab_token(request.headers.get("x-gitlab-token"), gitlab_tokens)
            elif tokens:
                raise AuthError("GitLab webhooks need SHIPSCOPE_GITLAB_WEBHOOK_TOKENS on a server with API tokens")

        return await _accept_webhook(request, "gitlab", verify, gitlab_delivery)

    def ingest_token(request: Request) -> Callable[[bytes], None]:
        """Receivers that send a bearer token of their own choosing (Alertmanager's http_config, Opsgenie's custom
        headers) present an API token with the ingest scope; checked before the body is read as anything."""

        def verify(body: bytes) -> None:
            if tokens:
                authorize(tokens, request.headers.get("authorization"), "ingest")

        return verify

    @app.post(
        "/webhooks/alertmanager", tags=["webhooks"], responses=webhook_responses, openapi_extra=openapi.ALERTMANAGER
    )
    async def alertmanager_webhook(request: Request) -> Response:
        """Prometheus Alertmanager webhook_config notifications (firing and resolved, grouped alerts): each alert is
        an incident keyed by fingerprint and start. With API tokens configured, send one with the ingest scope as
        `Authorization: Bearer` (http_config.authorization)."""
        return await _accept_webhook(
            request, "alertmanager", ingest_token(request), alertmanager_delivery, forward_to_pagerduty
        )

    def forward_to_pagerduty(received: WebhookDelivery) -> dict[str, Any]:
        """With SHIPSCOPE_PAGERDUTY_ROUTING_KEY, each alert goes on to PagerDuty with its deploy context; a failure
        answers 502 so that Alertmanager retries the notification (the dedup key makes the retry harmless)."""
        requests = forward_requests(owned_store, received.delivery.events, settings, metrics_config)
        if not requests:
            return {}
        with httpx.Client() as client:
            outcomes = [send(client, outbound, retries=2, timeout=5.0) for outbound in requests]
        failed = [outcome for outcome in outcomes if not outcome.ok]
        answer: dict[str, Any] = {"forwarded": len(outcomes) - len(failed)}
        if failed:
            answer["error"] = "stored, but not forwarded to PagerDuty: " + "; ".join(
                f"{outcome.what}: {outcome.detail}" for outcome in failed
            )
        return answer

    @app.post("/webhooks/pagerduty", tags=["webhooks"], responses=webhook_responses, openapi_extra=openapi.PAGERDUTY)
    async def pagerduty_webhook(request: Request) -> Response:
        """PagerDuty v3 webhook subscriptions (incident.triggered, acknowledged, resolved, reopened, escalated, …),
        checked against X-PagerDuty-Signature when secrets are configured; the event id is the idempotency key."""

        def verify(body: bytes) -> None:
            if pagerduty_secrets:
                verify_pagerduty_signature(body, request.headers.get("x-pagerduty-signature"), pagerduty_secrets)
            elif tokens:
                raise AuthError("PagerDuty webhooks need SHIPSCOPE_PAGERDUTY_WEBHOOK_SECRETS with API tokens set")

        return await _accept_webhook(request, "pagerduty", verify, pagerduty_delivery)

    def with_service(read: Callable[[bytes, Mapping[str, str]], WebhookDelivery], request: Request) -> Any:
        """The ``?service=`` of a webhook URL, for payloads that name no service (flags, cluster events)."""
        service = request.query_params.get("service", "").strip()
        return lambda body, headers: read(body, {**headers, SERVICE_HEADER.lower(): service} if service else headers)

    @app.post("/webhooks/flags", tags=["webhooks"], responses=webhook_responses, openapi_extra=openapi.FLAGS)
    async def flag_webhook(request: Request) -> Response:
        """LaunchDarkly-style flag audit webhooks: each flag change is a flag_toggle on the timeline of `?service=`
        (or the flag's service:NAME tag). Checked against X-LD-Signature when SHIPSCOPE_FLAG_WEBHOOK_SECRETS is set;
        otherwise, with API tokens configured, an ingest token is needed."""

        def verify(body: bytes) -> None:
            if flag_secrets:
                verify_flag_signature(body, request.headers.get("x-ld-signature"), flag_secrets)
            elif tokens:
                authorize(tokens, request.headers.get("authorization"), "ingest")

        return await _accept_webhook(request, "flags", verify, with_service(flag_delivery, request))

    @app.post("/webhooks/kubernetes", tags=["webhooks"], responses=webhook_responses, openapi_extra=openapi.KUBERNETES)
    async def kubernetes_webhook(request: Request) -> Response:
        """Kubernetes Event objects (an event exporter's webhook sink): infra entries on the timeline of `?service=`
        or of the object's app label. With API tokens configured, send an ingest token."""
        return await _accept_webhook(
            request, "kubernetes", ingest_token(request), with_service(kubernetes_delivery, request)
        )

    @app.post("/webhooks/opsgenie", tags=["webhooks"], responses=webhook_responses, openapi_extra=openapi.OPSGENIE)
    async def opsgenie_webhook(request: Request) -> Response:
        """Opsgenie webhook integration posts (Create, Acknowledge, Close, …): the alert is an incident. With API
        tokens configured, add an `Authorization: Bearer` header with an ingest-scoped token to the integration."""
        return await _accept_webhook(request, "opsgenie", ingest_token(request), opsgenie_delivery)

    async def _store_report(request: Request, fmt: str, params: dict[str, str]) -> tuple[Delivery, bool, bytes]:
        """Reads, parses and stores one report; answers only once it is durable."""
        body = b""
        try:
            body = await read_body(request, settings.max_body_bytes)
            delivery = await run_in_threadpool(report_delivery, fmt, body, params)
        except ShipscopeError as error:
            await _journal_rejection(request, fmt, error, body)
            raise
        [is_new] = await asyncio.wrap_future(request.app.state.writer.submit([delivery]))
        return delivery, is_new, body

    async def _accept_report(request: Request, fmt: str, params: dict[str, str]) -> Response:
        delivery, is_new, _ = await _store_report(request, fmt, params)
        report = IngestReport()
        report.count([delivery], [is_new])
        return ORJSONResponse({"ok": True, **report.to_json()})

    @app.post(
        "/api/v1/reports/junit", tags=["ingest"], dependencies=[Depends(require("ingest"))], openapi_extra=openapi.JUNIT
    )
    async def junit_report(
        request: Request, run_id: str | None = None, job_id: str | None = None, source: str | None = None
    ) -> Response:
        """A JUnit XML report (pytest, Surefire, jest-junit, go-junit-report, Gradle, mocha, xunit, nested suites).
        `source` is the run's source (github, gitlab, …; default generic), so the test cases join their run.
        Retries (`<flakyFailure>`, `<rerunFailure>`, repeated test cases) become attempts. DTDs and entities are
        refused."""
        return await _accept_report(
            request, "junit", {"run_id": run_id or "", "job_id": job_id or "", "source": source or ""}
        )

    @app.post(
        "/api/v1/reports/sarif", tags=["ingest"], dependencies=[Depends(require("ingest"))], openapi_extra=openapi.SARIF
    )
    async def sarif_report(
        request: Request,
        repo: Annotated[str, Query(description="OWNER/NAME of the scanned repository.")],
        scanned_at: Annotated[str | None, Query(description="RFC 3339; default: when the report arrives.")] = None,
        scan_id: str | None = None,
        run_id: str | None = None,
    ) -> Response:
        """A SARIF 2.1.0 or 2.0.0 log; severities normalized as docs/sources.md describes."""
        params = {"repo": repo, "scanned_at": scanned_at or "", "scan_id": scan_id or "", "run_id": run_id or ""}
        return await _accept_report(request, "sarif", params)

    @app.post(
        "/api/v1/reports/cache-log",
        tags=["ingest"],
        dependencies=[Depends(require("ingest"))],
        openapi_extra=openapi.CACHE_LOG,
    )
    async def cache_log_report(
        request: Request, run_id: str | None = None, job_id: str | None = None, source: str | None = None
    ) -> Response:
        """A CI log holding actions/cache lines or BuildKit plain progress output. `source` is the run's source
        (github, gitlab, …; default generic), so the caches join their run."""
        params = {"run_id": run_id or "", "job_id": job_id or "", "source": source or ""}
        return await _accept_report(request, "cache-log", params)

    @app.post(
        "/api/v1/pipeline-export",
        tags=["ingest"],
        dependencies=[Depends(require("ingest"))],
        openapi_extra=openapi.PIPELINE_EXPORT,
    )
    async def pipeline_export(request: Request) -> Response:
        """The GitLab JSON export `{pipeline_id, duration_seconds, status, project, deployment_frequency}`."""
        return await _accept_report(request, "pipeline-export", {})

    @app.post(
        "/v1/traces", tags=["ingest"], dependencies=[Depends(require("ingest"))], openapi_extra=openapi.OTLP_TRACES
    )
    async def otlp_traces(request: Request) -> Response:
        """OTLP/HTTP traces of CI pipelines (`application/x-protobuf` or `application/json`): run, job and step
        spans by the OpenTelemetry CI/CD conventions become runs, jobs and steps. Answers an
        ExportTraceServiceResponse in the request's encoding; spans that are not CI spans are counted in
        `partialSuccess.rejectedSpans`."""
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        encoding = {"application/x-protobuf": "protobuf", "application/json": "json"}.get(media_type)
        if encoding is None:
            raise UnsupportedMediaType(
                f"OTLP traces are application/x-protobuf or application/json, not {media_type or 'unlabelled'}"
            )
        delivery, _, body = await _store_report(request, OTLP_TRACES, {"encoding": encoding})
        rejected = (await run_in_threadpool(parse_otlp_traces, body, delivery.headers)).rejected_spans
        content, media_type = otlp_response(encoding, rejected)
        return Response(content, media_type=media_type)

    pushgateway_path = "/metrics/{job_label}/{grouping:path}"
    ingest_scope = [Depends(require("ingest"))]

    @app.post(
        pushgateway_path,
        operation_id="pushgateway_post",
        tags=["ingest"],
        dependencies=ingest_scope,
        openapi_extra=openapi.PUSHGATEWAY,
    )
    @app.put(
        pushgateway_path,
        operation_id="pushgateway_put",
        tags=["ingest"],
        dependencies=ingest_scope,
        openapi_extra=openapi.PUSHGATEWAY,
    )
    async def pushgateway(request: Request, job_label: str, grouping: str) -> Response:
        """Prometheus text exposition as pushed to a Pushgateway at `/metrics/job/<job>{/<label>/<value>}`
        (`ci_build_duration_seconds`, `ci_build_success`); the grouping labels of the path name the run."""
        if job_label not in ("job", "job@base64"):
            raise InputError("a Pushgateway push goes to /metrics/job/<job>{/<label>/<value>}")
        return await _accept_report(request, "pushgateway", {"path": f"{job_label}/{grouping}"})

    @app.post(
        "/api/v1/journal", tags=["admin"], dependencies=[Depends(require("admin"))], openapi_extra=openapi.JOURNAL
    )
    async def journal(request: Request) -> Response:
        """Raw payloads for the journal, one JSON object a line: `{"source", "delivery_id", "kind", "headers",
        "body"}` with the body in base64. Each is decoded by the parser its kind names, as reprocess would; the
        answer says per line whether it was new. Used by `shipscope backfill` while this server owns the database."""
        body = await read_body(request, settings.max_body_bytes)
        deliveries = await run_in_threadpool(_journal_entries, body)
        is_new = await asyncio.wrap_future(request.app.state.writer.submit(deliveries))
        report = IngestReport()
        report.count(deliveries, is_new)
        return ORJSONResponse({"ok": True, "new": is_new, **report.to_json()})

    @app.post(
        "/api/v1/admin/backup", tags=["admin"], dependencies=[Depends(require("admin"))], openapi_extra=openapi.BACKUP
    )
    async def backup(request: Request) -> dict[str, Any]:
        """A consistent copy of the DuckDB database into a new file on this machine: `{"path": "/abs/file.duckdb"}`."""
        target = json_object(await read_body(request, settings.max_body_bytes), "backup").get("path")
        if not isinstance(target, str) or not target.startswith("/"):
            raise InputError('backup: expected {"path": "<absolute path of a new file>"}')
        await run_in_threadpool(owned_store.backup, Path(target))
        return {"ok": True, "path": target}

    @app.get("/api/v1/cursors/{key:path}", tags=["admin"], dependencies=[Depends(require("admin"))])
    def get_cursor(key: str) -> dict[str, Any]:
        """Where a backfill stopped (null when it never ran)."""
        return {"key": key, "value": owned_store.cursor(key)}

    @app.put(
        "/api/v1/cursors/{key:path}",
        tags=["admin"],
        dependencies=[Depends(require("admin"))],
        openapi_extra=openapi.CURSOR,
    )
    async def put_cursor(key: str, request: Request) -> dict[str, Any]:
        value = json_object(await read_body(request, settings.max_body_bytes), "cursor").get("value")
        if not isinstance(value, str):
            raise InputError('cursor: expected {"value": "<text>"}')
        await run_in_threadpool(owned_store.set_cursor, key, value)
        return {"key": key, "value": value}

    @app.get("/api/v1/metrics/{kind}", tags=["metrics"], dependencies=[Depends(require("read"))])
    def metrics(
        kind: Literal["pipelines", "tests", "security", "dora", "devex"],
        scope: Annotated[Scope, Depends(scope_of)],
        definitions: Annotated[str, Query(description="DORA definitions preset.")] = "shipscope",
        explain: Annotated[bool, Query(description="DORA: list what is behind each number.")] = False,
    ) -> dict[str, Any]:
        """A metrics report over the window `[since, until)`, the same JSON as `shipscope report KIND --json`."""
        report = run_report(
            kind, owned_store, scope.window, scope.filters, metrics_config, definitions=definitions, explain=explain
        )
        return {"filters": scope.filters.to_json(), **report}

    @app.get("/api/v1/deployments", tags=["metrics"], dependencies=[Depends(require("read"))])
    def deployments(
        scope: Annotated[Scope, Depends(scope_of)],
        definitions: Annotated[str, Query(description="DORA definitions preset (failure signals).")] = "shipscope",
        version: Annotated[str | None, Query(description="Substring of the version, any case.")] = None,
        sha: Annotated[str | None, Query(description="Substring of the commit sha.")] = None,
        image_digest: Annotated[str | None, Query(description="Substring of the image digest.")] = None,
        actor: Annotated[str | None, Query(description="Substring of the actor.")] = None,
        status: str | None = None,
        kind: Annotated[str | None, Query(description="deploy, rollback or hotfix.")] = None,
        failure_signal: Annotated[str | None, Query(description="A DORA failure signal, or any.")] = None,
        limit: Annotated[int, Query(ge=1, le=LIST_LIMIT)] = LIST_LIMIT,
    ) -> dict[str, Any]:
        """Deployments finished in the window, newest first, with their DORA failure signals: the dashboard's list."""
        window, filters = scope.window, scope.filters
        narrow = DeploymentFilter(version, sha, image_digest, actor, status, kind, failure_signal)
        listing = deployment_list(
            owned_store, window, filters, metrics_config, narrow, definitions=definitions, limit=limit
        )
        return {
            "window": window.to_json(),
            "filters": {**filters.to_json(), **narrow.to_json()},
            "total": listing.total,
            "deployments": [row.to_json() for row in listing.rows],
        }

    @app.get("/api/v1/deployments/{deployment_id:path}", tags=["metrics"], dependencies=[Depends(require("read"))])
    def deployment(deployment_id: str, source: str | None = None, definitions: str = "shipscope") -> dict[str, Any]:
        """One deployment with the changes it shipped and their lead times, its previous deployment and the incidents
        linked to it."""
        detail = deployment_detail(owned_store, deployment_id, source, metrics_config, definitions=definitions)
        if detail is None:
            raise NotFound(f"no deployment with id {deployment_id!r}" + (f" from {source!r}" if source else ""))
        return detail.to_json()

    @app.get("/api/v1/incidents", tags=["metrics"], dependencies=[Depends(require("read"))])
    def incidents(
        scope: Annotated[Scope, Depends(scope_of)],
        definitions: Annotated[str, Query(description="DORA definitions preset (links by time).")] = "shipscope",
        limit: Annotated[int, Query(ge=1, le=LIST_LIMIT)] = LIST_LIMIT,
    ) -> dict[str, Any]:
        """Incidents opened in the window, newest first, each with its linked deployment: the dashboard's list."""
        window, filters = scope.window, scope.filters
        listing = incident_list(owned_store, window, filters, metrics_config, definitions=definitions, limit=limit)
        return {
            "window": window.to_json(),
            "filters": filters.to_json(),
            "total": listing.total,
            "incidents": [row.to_json() for row in listing.rows],
        }

    def _incident(incident_id: str, source: str | None, definitions: str) -> IncidentTimeline:
        found = incident_timeline(owned_store, incident_id, source, metrics_config, definitions=definitions)
        if found is None:
            raise NotFound(f"no incident with id {incident_id!r}" + (f" from {source!r}" if source else ""))
        return found

    @app.get("/api/v1/incidents/{incident_id}", tags=["incidents"], dependencies=[Depends(require("read"))])
    def incident(incident_id: str, source: str | None = None, definitions: str = "shipscope") -> dict[str, Any]:
        """One incident with the deploys it may follow from: each with its changes, the signal that links it
        (explicit, version label, same service within 60 min, within 24 h) and a confidence."""
        found = _incident(incident_id, source, definitions)
        return {"incident": found.incident.to_json(), "links": [link.to_json() for link in found.links]}

    @app.get(
        "/api/v1/incidents/{incident_id}/timeline",
        tags=["incidents"],
        dependencies=[Depends(require("read"))],
        responses={200: {"content": {"text/markdown": {}}, "description": "JSON, or Markdown with format=markdown."}},
    )
    def incident_timeline_view(
        incident_id: str,
        source: str | None = None,
        definitions: str = "shipscope",
        format: Annotated[str, Query(pattern="^(json|markdown)$")] = "json",  # noqa: A002 - the query's name
    ) -> Response:
        """Deploys, pipeline runs, gate, canary and smoke verdicts, alerts, pages, flag toggles, infra events and
        rollbacks around the incident, in order, each with the version running then."""
        found = _incident(incident_id, source, definitions)
        if format == "markdown":
            return Response(found.to_markdown(), media_type="text/markdown; charset=utf-8")
        return ORJSONResponse(found.to_json())

    @app.get(
        "/metrics",
        tags=["operations"],
        dependencies=[Depends(require("read"))],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_PLAIN_0_0_4: {}}, "description": "Prometheus text exposition."}},
    )
    def prometheus_metrics() -> Response:
        """Pipeline, DORA, test, security and ingest metrics for Prometheus to scrape (see docs/exporters.md)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    app.include_router(rollback_router(owned_store, settings, require))
    app.include_router(postmortem_router(owned_store, settings, metrics_config, require))
    app.include_router(asset_routes())
    app.include_router(
        dashboard_router(
            owned_store,
            metrics_config,
            {threshold.name: threshold for threshold in thresholds_from_table(settings.thresholds)},
            check_read,
            settings.alert_window,
            check_ingest,
        )
    )

    return app


async def _every(seconds: float, work: Callable[[], object], what: str) -> None:
    """Runs ``work`` in a thread now and then every ``seconds``. A failed round is logged and the next one tries
    again; a shutdown waits for the round in progress, so the store it uses is not closed under it."""
    while True:
        round_in_progress = asyncio.ensure_future(run_in_threadpool(work))
        try:
            await asyncio.shield(round_in_progress)
        except asyncio.CancelledError:
            await asyncio.wait([round_in_progress])
            raise
        except Exception:  # a background round must never take the server down
            log.exception("%s failed", what)
        await asyncio.sleep(seconds)


def _alert_loop(store: Store, settings: Settings) -> Coroutine[Any, Any, None]:
    """Evaluates the thresholds at start (so the dashboard shows current alerts) and then every
    ``alert_interval_seconds``, and sends what started or cleared."""
    notifier = notifier_for(settings)
    return _every(
        settings.alert_interval_seconds, lambda: alert_round(store, settings, notifier), "threshold evaluation"
    )


def _retention_loop(store: Store, retention: Retention) -> Coroutine[Any, Any, None]:
    """Prunes what the retention settings keep no longer: at start, then daily."""

    def prune() -> None:
        pruned = store.prune(retention, datetime.now(UTC))
        if any(pruned.values()):
            log.info("retention pruned %s", ", ".join(f"{count} {table}" for table, count in pruned.items() if count))

    return _every(RETENTION_INTERVAL_SECONDS, prune, "retention pruning")


def _journal_entries(body: bytes) -> list[Delivery]:
    deliveries = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        entry = json_object(line, f"journal line {number}")
        try:
            payload = base64.b64decode(entry["body"], validate=True)
            headers = {str(name): str(value) for name, value in (entry.get("headers") or {}).items()}
            source, delivery_id, kind = str(entry["source"]), str(entry["delivery_id"]), str(entry["kind"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InputError(
                f"journal line {number}: expected source, delivery_id, kind, headers, body: {error}"
            ) from None
        try:
            events = decode(kind, payload, headers)
        except ValueError as error:
            raise InputError(f"journal line {number}: {error}") from None
        deliveries.append(Delivery(source, delivery_id, kind, payload, tuple(events), headers))
    return deliveries


def _listed(setting: str) -> list[str]:
    """Comma-separated values: webhook secrets may hold spaces (GitHub's own example does)."""
    return [value.strip() for value in setting.split(",") if value.strip()]


def _parse_body(body: bytes) -> tuple[str, list[Delivery], list[Rejection]]:
    position_name, records = body_records(body)
    deliveries: list[Delivery] = []
    rejections: list[Rejection] = []
    for entry in read_records(records):
        (deliveries if isinstance(entry, Delivery) else rejections).append(entry)  # type: ignore[arg-type]
    return position_name, deliveries, rejections

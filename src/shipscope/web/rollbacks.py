"""Automatic rollback over HTTP: a breach from an Alertmanager route or a repository_dispatch-style POST, the
attempts of a service, and the approval of one awaiting it (shipscope.deploy.auto holds the rules)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from shipscope.config import Settings
from shipscope.deploy import auto
from shipscope.deploy.ledger import WriterLedger
from shipscope.errors import InputError, NotFound
from shipscope.ingest.webhooks import json_object
from shipscope.integrations.http import send
from shipscope.store import Store
from shipscope.web import openapi
from shipscope.web.bodies import read_body
from shipscope.web.responses import ORJSONResponse

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def rollback_router(store: Store, settings: Settings, require: Callable[[str], Callable[[Request], None]]) -> APIRouter:
    policy = auto.AutoRollbackPolicy.from_table(settings.auto_rollback)
    slack_urls = [url.strip() for url in settings.slack_webhook_urls.split(",") if url.strip()]
    router = APIRouter(tags=["rollbacks"])
    admin = [Depends(require("admin"))]

    def run_in_background(request: Request, ledger: WriterLedger, attempt: auto.Attempt) -> None:
        """A rollback can take minutes (helm --wait, a GitOps sync): the request is answered once it has started."""

        running: list[threading.Thread] = request.app.state.rollbacks

        def run() -> None:
            try:
                final, outcome = auto.execute(ledger, policy, attempt, clock=_now)
                if slack_urls:
                    with httpx.Client() as client:
                        for notice in auto.notice_requests(slack_urls, final, outcome, settings.runbook_url):
                            send(client, notice, retries=2, timeout=5.0)
            except Exception:
                log.exception("the automatic rollback %s failed", attempt.id)
            finally:
                running.remove(thread)

        thread = threading.Thread(target=run, name=f"shipscope-{attempt.id}")
        running.append(thread)
        thread.start()

    def breach(request: Request, services: list[str], reason: str, trigger: str) -> list[dict[str, Any]]:
        ledger = WriterLedger(store, request.app.state.writer)
        answers = []
        for service in services:
            attempt = auto.decide(ledger, policy, service, reason=reason, trigger=trigger, at=_now())
            if attempt.outcome == "started":
                run_in_background(request, ledger, attempt)
            answers.append(attempt.to_json())
        return answers

    def _answer(attempts: list[dict[str, Any]]) -> Response:
        started = any(attempt["outcome"] == "started" for attempt in attempts)
        return ORJSONResponse({"attempts": attempts}, status_code=202 if started else 200)

    @router.post("/api/v1/rollbacks", dependencies=admin, openapi_extra=openapi.ROLLBACK_REQUEST)
    async def request_rollback(request: Request) -> Response:
        """Roll a service back on an SLO breach: `{"service": S, "reason": R}`, or GitHub's repository_dispatch
        shape `{"event_type": E, "client_payload": {"service": S, "reason": R}}`. 202 when a rollback started; 200
        with the attempt (refused and why, dry run, awaiting approval) otherwise."""
        payload = json_object(await read_body(request, settings.max_body_bytes), "rollback request")
        fields: Mapping[str, Any] = payload
        if "client_payload" in payload:
            if not isinstance(payload["client_payload"], Mapping):
                raise InputError("client_payload: expected an object")
            fields = payload["client_payload"]
        service = fields.get("service")
        if not isinstance(service, str) or not service.strip():
            raise InputError("service: required, the service to roll back")
        reason = str(fields.get("reason") or payload.get("event_type") or "an SLO breach")
        attempts = await run_in_threadpool(breach, request, [service.strip()], reason, "api")
        return _answer(attempts)

    @router.post("/webhooks/alertmanager/rollback", dependencies=admin, openapi_extra=openapi.ALERTMANAGER_ROLLBACK)
    async def alertmanager_rollback(request: Request) -> Response:
        """An Alertmanager route for SLO-breach alerts: each service with a firing alert is rolled back (resolved
        alerts do nothing). Send an admin API token as `Authorization: Bearer` when tokens are configured."""
        payload = json_object(await read_body(request, settings.max_body_bytes), "Alertmanager notification")
        services = auto.breached_services(payload)
        common = payload.get("commonAnnotations")
        summary = common.get("summary") if isinstance(common, Mapping) else None
        reason = f"alert {summary}" if isinstance(summary, str) and summary else "an Alertmanager SLO alert"
        attempts = await run_in_threadpool(breach, request, services, reason, "alertmanager")
        return _answer(attempts)

    @router.get("/api/v1/rollbacks", dependencies=[Depends(require("read"))])
    def list_attempts(request: Request, service: str) -> dict[str, Any]:
        """The automatic rollback attempts of a service, oldest first."""
        ledger = WriterLedger(store, request.app.state.writer)
        return {"attempts": [attempt.to_json() for attempt in auto.attempts(ledger, service)]}

    @router.post("/api/v1/rollbacks/{attempt_id:path}/approve", dependencies=admin)
    async def approve(request: Request, attempt_id: str) -> Response:
        """Run an attempt that awaits approval, with the guard rails checked again now."""

        def approved() -> dict[str, Any]:
            ledger = WriterLedger(store, request.app.state.writer)
            parts = attempt_id.split(":")
            found = auto.find_attempt(ledger, parts[1], attempt_id) if len(parts) >= 3 else None
            if found is None:
                raise NotFound(f"no automatic rollback attempt {attempt_id!r}")
            if found.outcome != "awaiting_approval":
                raise InputError(f"attempt {attempt_id} is {found.outcome}, not awaiting approval")
            attempt = auto.decide(
                ledger, policy, found.service, reason=found.reason, trigger=found.trigger, at=_now(), approved=found
            )
            if attempt.outcome == "started":
                run_in_background(request, ledger, attempt)
            return attempt.to_json()

        attempt = await run_in_threadpool(approved)
        return ORJSONResponse({"attempts": [attempt]}, status_code=202 if attempt["outcome"] == "started" else 200)

    return router

"""Automatic rollback on an SLO breach, with guard rails.

A breach (an Alertmanager route, or a repository_dispatch-style POST) names a service; shipscope runs the rollback
strategy configured for it (``shipscope.toml``)::

    [auto_rollback]
    window = "1h"        # at most one automatic rollback per service in this window
    dry_run = false      # record what would run, change nothing
    approval = false     # record the attempt as awaiting approval; POST /api/v1/rollbacks/{id}/approve runs it

    [auto_rollback.services.checkout]
    environment = "production"
    strategy = "helm"    # and the strategy's settings, as in a smoke file's rollback: section
    release = "checkout"
    namespace = "shop"

Guard rails: a second attempt within the window is refused; a rollback never goes past the last known-good version
(the deploy rolled back must have a successful deploy before it, and must not itself be a rollback); dry run and
approval change nothing. Every attempt, refused ones included, is an ``auto_rollback`` timeline event of the service
whose details say what happened and why; the rollback itself is recorded as ``deploy rollback`` records one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson

from shipscope.deploy.analysis import parse_duration
from shipscope.deploy.context import DeployInfo
from shipscope.deploy.ledger import Ledger
from shipscope.deploy.rollback import (
    RollbackOptions,
    RollbackOutcome,
    deployed_at,
    history,
    planned_steps,
    roll_back,
)
from shipscope.errors import ConfigError, InputError
from shipscope.events import Incident, TimelineEvent, timeline_details
from shipscope.ingest import alertmanager
from shipscope.integrations import slack
from shipscope.integrations.http import OutboundRequest

KIND = "auto_rollback"
SOURCE = "shipscope"
Outcome = Literal["started", "rolled_back", "failed", "refused", "dry_run", "awaiting_approval"]
_RAN: frozenset[str] = frozenset({"started", "rolled_back", "failed"})
"""Outcomes that count against the guard window: a rollback ran (or is running)."""


@dataclass(frozen=True)
class ServicePolicy:
    environment: str
    options: RollbackOptions


@dataclass(frozen=True)
class AutoRollbackPolicy:
    window: timedelta = timedelta(hours=1)
    dry_run: bool = False
    approval: bool = False
    services: Mapping[str, ServicePolicy] = field(default_factory=dict)

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> AutoRollbackPolicy:
        """From ``shipscope.toml [auto_rollback]``; a wrong setting is a ConfigError naming it."""
        unknown = sorted(set(table) - {"window", "dry_run", "approval", "services"})
        if unknown:
            raise ConfigError(f"[auto_rollback]: unknown settings {', '.join(unknown)}")
        try:
            window = timedelta(seconds=parse_duration(table.get("window", "1h"), "[auto_rollback] window"))
            services: dict[str, ServicePolicy] = {}
            raw_services = table.get("services", {})
            if not isinstance(raw_services, Mapping):
                raise InputError("[auto_rollback.services]: expected a table per service")
            for name, raw in raw_services.items():
                where = f"[auto_rollback.services.{name}]"
                if not isinstance(raw, Mapping):
                    raise InputError(f"{where}: expected a table")
                values = dict(raw)
                environment = str(values.pop("environment", "production"))
                services[str(name)] = ServicePolicy(environment, RollbackOptions.from_mapping(values, where))
        except InputError as error:
            raise ConfigError(error.message) from None
        for flag in ("dry_run", "approval"):
            if not isinstance(table.get(flag, False), bool):
                raise ConfigError(f"[auto_rollback] {flag}: expected true or false")
        return cls(window, bool(table.get("dry_run", False)), bool(table.get("approval", False)), services)


@dataclass(frozen=True)
class Attempt:
    id: str
    service: str
    environment: str | None
    at: datetime
    outcome: Outcome
    reason: str
    """Why it was asked for (the alert), and, when refused or failed, why not."""
    trigger: str
    rolled_back: str | None = None
    target_version: str | None = None
    steps: tuple[tuple[str, ...], ...] = ()
    rollback_id: str | None = None
    problem: str | None = None

    def event(self) -> TimelineEvent:
        """One timeline event per attempt: its id stays, so the final outcome replaces ``started``."""
        what = {
            "started": "started",
            "rolled_back": "rolled back",
            "failed": "FAILED",
            "refused": "refused",
            "dry_run": "dry run",
            "awaiting_approval": "awaiting approval",
        }[self.outcome]
        target = f" to {self.target_version}" if self.target_version else ""
        return TimelineEvent(
            source=SOURCE,
            id=self.id,
            kind=KIND,
            service=self.service,
            at=self.at,
            title=f"Automatic rollback of {self.service}{target}: {what}"
            + (f" ({self.problem})" if self.problem else ""),
            details=timeline_details(self.to_json()),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service": self.service,
            "environment": self.environment,
            "at": self.at.isoformat(),
            "outcome": self.outcome,
            "reason": self.reason,
            "trigger": self.trigger,
            "rolled_back": self.rolled_back,
            "target_version": self.target_version,
            "steps": [list(step) for step in self.steps],
            "rollback_id": self.rollback_id,
            "problem": self.problem,
        }

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Attempt:
        details = orjson.loads(event["details"]) if event.get("details") else {}
        return cls(
            id=event["id"],
            service=details["service"],
            environment=details.get("environment"),
            at=datetime.fromisoformat(details["at"]),
            outcome=details["outcome"],
            reason=details.get("reason", ""),
            trigger=details.get("trigger", ""),
            rolled_back=details.get("rolled_back"),
            target_version=details.get("target_version"),
            steps=tuple(tuple(step) for step in details.get("steps", ())),
            rollback_id=details.get("rollback_id"),
            problem=details.get("problem"),
        )


def attempts(ledger: Ledger, service: str) -> list[Attempt]:
    found = [Attempt.from_event(event) for event in ledger.read("timeline_event", service=service)]
    return sorted((attempt for attempt in found if attempt.id.startswith(f"{KIND}:")), key=lambda one: one.at)


def find_attempt(ledger: Ledger, service: str, attempt_id: str) -> Attempt | None:
    return next((attempt for attempt in attempts(ledger, service) if attempt.id == attempt_id), None)


def decide(
    ledger: Ledger,
    policy: AutoRollbackPolicy,
    service: str,
    *,
    reason: str,
    trigger: str,
    at: datetime,
    approved: Attempt | None = None,
) -> Attempt:
    """What an automatic rollback of ``service`` does now, recorded: refused (and why), a dry run, awaiting
    approval, or ``started`` (the caller then runs ``execute``)."""
    attempt_id = approved.id if approved is not None else f"{KIND}:{service}:{at.isoformat()}"
    attempt = Attempt(attempt_id, service, None, at, "refused", reason, trigger)
    chosen = policy.services.get(service)
    if chosen is None:
        return _record(ledger, replace(attempt, problem=f"no automatic rollback is configured for {service}"))
    attempt = replace(attempt, environment=chosen.environment)
    ran = [
        earlier
        for earlier in attempts(ledger, service)
        if earlier.outcome in _RAN and earlier.id != attempt_id and earlier.at > at - policy.window
    ]
    if ran:
        problem = f"one ran at {ran[-1].at.isoformat()}: at most one per {policy.window} per service"
        return _record(ledger, replace(attempt, problem=problem))
    rolled_back, target = history(ledger, service, chosen.environment, None)
    if rolled_back is None:
        return _record(ledger, replace(attempt, problem=f"no deployment of {service} in {chosen.environment}"))
    attempt = replace(attempt, rolled_back=rolled_back["id"])
    if target is None:
        problem = f"no successful deployment before {rolled_back['id']}: nothing known-good to go back to"
        return _record(ledger, replace(attempt, problem=problem))
    attempt = replace(attempt, target_version=target.get("version") or str(target["sha"])[:12])
    latest = sorted(ledger.read("deployment", service=service, environment=chosen.environment), key=deployed_at)
    if latest and latest[-1].get("kind") == "rollback":
        problem = f"the latest deploy ({latest[-1]['id']}) is already a rollback: going further would pass the last "
        problem += "known-good version"
        return _record(ledger, replace(attempt, problem=problem))
    attempt = replace(attempt, steps=tuple(tuple(argv) for _, argv in planned_steps(chosen.options)))
    if policy.dry_run:
        return _record(ledger, replace(attempt, outcome="dry_run"))
    if policy.approval and approved is None:
        return _record(ledger, replace(attempt, outcome="awaiting_approval"))
    return _record(ledger, replace(attempt, outcome="started"))


def execute(
    ledger: Ledger,
    policy: AutoRollbackPolicy,
    attempt: Attempt,
    *,
    clock: Callable[[], datetime],
    run: Callable[..., RollbackOutcome] = roll_back,
) -> tuple[Attempt, RollbackOutcome]:
    """Runs a started attempt's rollback and records how it ended."""
    chosen = policy.services[attempt.service]
    deployments = {event["id"]: event for event in ledger.read("deployment", service=attempt.service)}
    rolled_back = deployments[attempt.rolled_back or ""]
    info = DeployInfo(
        service=attempt.service,
        environment=chosen.environment,
        id=f"auto-{rolled_back['id']}",
        sha=str(rolled_back["sha"]),
        actor="shipscope (automatic rollback)",
    )
    try:
        outcome = run(info, chosen.options, ledger, of=attempt.rolled_back, at=clock(), clock=clock)
    except Exception as error:  # the attempt must not stay "started": that would hold the guard window shut
        _record(ledger, replace(attempt, outcome="failed", problem=f"{type(error).__name__}: {error}"))
        raise
    final = replace(
        attempt,
        outcome="rolled_back" if outcome.run.ok else "failed",
        rollback_id=outcome.rollback.id,
        problem=None if outcome.run.ok else outcome.run.failure,
    )
    return _record(ledger, final), outcome


def _record(ledger: Ledger, attempt: Attempt) -> Attempt:
    ledger.write([attempt.event()])
    return attempt


def notice_requests(
    urls: list[str], attempt: Attempt, outcome: RollbackOutcome, runbook_url: str | None
) -> list[OutboundRequest]:
    """The Slack notice of an automatic rollback that ran."""
    message = slack.deploy_message(
        outcome.rollback,
        "success" if outcome.run.ok else "failure",
        runbook_url=runbook_url or None,
        reason=f"automatic, on {attempt.reason}" + (f": {outcome.run.failure}" if outcome.run.failure else ""),
    )
    return slack.notice_requests(urls, message)


def breached_services(payload: Mapping[str, Any]) -> list[str]:
    """The services of an Alertmanager notification's firing alerts, in order, each once."""
    services: list[str] = []
    for event in alertmanager.parse_delivery(payload):
        if isinstance(event, Incident) and event.resolved_at is None and event.service not in services:
            services.append(event.service)
    return services

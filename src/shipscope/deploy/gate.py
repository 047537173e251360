"""The SLO gate before promotion, and deploy freezes.

The gate reads the error-budget burn rate of the service and blocks when it is above ``max_burn``: from Prometheus
(by default ``error_budget_burn_rate{service="S",window="1h"}``, the series ``shipscope prometheus rules`` records),
or from a Datadog SLO's history over the last hour. Given an SLO spec, it also blocks when any of the SRE workbook's
multi-window multi-burn-rate pairs fires (both windows above the pair's factor), computed from the spec's own
good/total queries so no recording rule needs to be loaded.

A block records a freeze of the service in that environment (who, when, why, until), and a later gate sees it
and blocks too until it ends or ``deploy unfreeze`` lifts it. ``--override REASON`` lets one deploy through a
block or a freeze; the override, with who gave it and why, is recorded like every verdict.

When the burn cannot be read (Prometheus unreachable, no series) the gate fails closed, unless told to fail open.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson

from shipscope.deploy.context import SOURCE, DeployInfo
from shipscope.deploy.ledger import Ledger
from shipscope.errors import InputError, ShipscopeError
from shipscope.events import TimelineEvent
from shipscope.integrations import datadog
from shipscope.integrations.prometheus import PrometheusUnavailable, query
from shipscope.slo import BURN_RATE_PAIRS, Slo

DEFAULT_QUERY = 'error_budget_burn_rate{service="{service}",window="1h"}'
DEFAULT_MAX_BURN = 2.0

Outcome = Literal["pass", "blocked", "overridden", "unknown"]
EXIT_CODES: dict[Outcome, int] = {"pass": 0, "overridden": 0, "blocked": 1, "unknown": 3}


@dataclass(frozen=True)
class Freeze:
    id: str
    service: str
    environment: str
    reason: str
    actor: str
    since: datetime
    until: datetime | None

    def describe(self) -> str:
        until = f" until {self.until.isoformat()}" if self.until else " until lifted"
        return f"frozen since {self.since.isoformat()} by {self.actor}{until}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service": self.service,
            "environment": self.environment,
            "reason": self.reason,
            "actor": self.actor,
            "since": self.since.isoformat(),
            "until": self.until.isoformat() if self.until else None,
        }


def _details(event: dict[str, Any]) -> dict[str, Any]:
    try:
        details = orjson.loads(event.get("details") or "{}")
    except orjson.JSONDecodeError:
        return {}
    return details if isinstance(details, dict) else {}


def active_freeze(ledger: Ledger, service: str, environment: str, at: datetime) -> Freeze | None:
    """The latest freeze of ``service`` in ``environment`` in force at ``at``."""
    events = [event for event in ledger.read("timeline_event", service=service) if event["kind"] in _FREEZE_KINDS]
    lifted = {_details(event).get("freeze_id") for event in events if event["kind"] == "unfreeze"}
    active: Freeze | None = None
    for event in events:
        details = _details(event)
        if event["kind"] != "freeze" or details.get("environment") != environment or event["id"] in lifted:
            continue
        since = datetime.fromisoformat(event["at"])
        until = datetime.fromisoformat(details["until"]) if details.get("until") else None
        if since <= at and (until is None or at < until) and (active is None or since >= active.since):
            active = Freeze(
                event["id"], service, environment, str(details.get("reason")), str(details.get("actor")), since, until
            )
    return active


_FREEZE_KINDS = ("freeze", "unfreeze")


def freeze_event(
    service: str, environment: str, *, reason: str, actor: str, at: datetime, until: datetime | None
) -> TimelineEvent:
    details = {"environment": environment, "reason": reason, "actor": actor, "until": until and until.isoformat()}
    return TimelineEvent(
        source=SOURCE,
        id=f"freeze:{service}:{environment}:{at.isoformat()}",
        kind="freeze",
        service=service,
        at=at,
        title=f"Deploys of {service} to {environment} frozen: {reason}",
        details=orjson.dumps({key: value for key, value in details.items() if value is not None}).decode(),
    )


def unfreeze_event(freeze: Freeze, *, actor: str, reason: str, at: datetime) -> TimelineEvent:
    details = {"environment": freeze.environment, "freeze_id": freeze.id, "actor": actor, "reason": reason}
    return TimelineEvent(
        source=SOURCE,
        id=f"unfreeze:{freeze.id}:{at.isoformat()}",
        kind="unfreeze",
        service=freeze.service,
        at=at,
        title=f"Deploys of {freeze.service} to {freeze.environment} unfrozen by {actor}: {reason}",
        details=orjson.dumps(details).decode(),
    )


@dataclass(frozen=True)
class GateOptions:
    prometheus_url: str | None = None
    query: str = DEFAULT_QUERY
    max_burn: float = DEFAULT_MAX_BURN
    slos: Sequence[Slo] = ()
    datadog_slo_id: str | None = None
    fail_open: bool = False
    override: str | None = None
    freeze_for: timedelta = timedelta(hours=1)
    """How long a block freezes the service; zero records no freeze."""
    timeout: float = 10.0
    environ: Mapping[str, str] = field(default_factory=dict)
    """Where vendor credentials (DD_API_KEY, DD_APP_KEY, DD_SITE) are read."""


@dataclass
class Measurement:
    what: str
    value: float | None
    limit: float
    breached: bool
    query: str = ""

    def to_json(self) -> dict[str, Any]:
        value = None if self.value is None or math.isnan(self.value) else round(self.value, 6)
        return {"what": self.what, "value": value, "limit": self.limit, "breached": self.breached, "query": self.query}


@dataclass
class GateResult:
    outcome: Outcome
    reasons: list[str]
    measurements: list[Measurement] = field(default_factory=list)
    freeze: Freeze | None = None
    """The freeze in force (found, or recorded by this block)."""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "reasons": self.reasons,
            "measurements": [measurement.to_json() for measurement in self.measurements],
            "freeze": self.freeze.to_json() if self.freeze else None,
        }


def _substitute(template: str, info: DeployInfo) -> str:
    return template.replace("{service}", info.service).replace("{env}", info.environment)


Reader = Callable[[str], float | None]
"""Reads one PromQL expression as a number: the largest of its series, None when it gives no series."""


def prometheus_reader(base_url: str, timeout: float) -> Reader:
    def read(promql: str) -> float | None:
        values = [sample.value for sample in query(base_url, promql, timeout=timeout) if not math.isnan(sample.value)]
        return max(values) if values else None

    return read


def _measure(info: DeployInfo, options: GateOptions, read: Reader | None, now: datetime) -> list[Measurement]:
    measurements: list[Measurement] = []
    if read is not None:
        promql = _substitute(options.query, info)
        burn = read(promql)
        if burn is None:
            raise PrometheusUnavailable(f"the burn-rate query returned no series: {promql}")
        measurements.append(Measurement("error budget burn", burn, options.max_burn, burn > options.max_burn, promql))
        slos = [slo for slo in options.slos if slo.service == info.service]
        if options.slos and not slos:
            named = ", ".join(sorted({slo.service for slo in options.slos}))
            raise InputError(f"the SLO spec has no SLO of service {info.service!r} (it has {named})")
        for slo in slos:
            for pair in BURN_RATE_PAIRS:
                burns = []
                for window in (pair.long, pair.short):
                    ratio = read(slo.error_ratio(window))
                    burns.append(0.0 if ratio is None else ratio / slo.budget)
                breached = all(burn > pair.factor for burn in burns)
                measurements.append(
                    Measurement(
                        f"{slo.name} burn {pair.long}/{pair.short} ({pair.severity})",
                        min(burns),
                        pair.factor,
                        breached,
                        slo.error_ratio(pair.long),
                    )
                )
    if options.datadog_slo_id is not None:
        burn = datadog.slo_burn_rate(
            options.datadog_slo_id, now - timedelta(hours=1), now, environ=options.environ, timeout=options.timeout
        )
        measurements.append(
            Measurement(
                f"Datadog SLO {options.datadog_slo_id} burn (1h)",
                burn,
                options.max_burn,
                burn > options.max_burn,
            )
        )
    return measurements


def run_gate(info: DeployInfo, options: GateOptions, ledger: Ledger, now: datetime, actor: str) -> GateResult:
    """Decides, records the verdict (and a freeze when it blocks), and returns it."""
    if options.prometheus_url is None and options.datadog_slo_id is None:
        raise InputError(
            "nothing to read the burn from: give --prometheus-url (SHIPSCOPE_PROMETHEUS_URL) or --datadog-slo"
        )
    reasons: list[str] = []
    freeze = active_freeze(ledger, info.service, info.environment, now)
    if freeze is not None:
        reasons.append(f"{info.service} in {info.environment} is {freeze.describe()}")
    read = prometheus_reader(options.prometheus_url, options.timeout) if options.prometheus_url else None
    measurements: list[Measurement] = []
    unknown = False
    try:
        measurements = _measure(info, options, read, now)
    except (PrometheusUnavailable, datadog.DatadogUnavailable) as error:
        unknown = True
        closed = "failing open, as configured" if options.fail_open else "failing closed"
        reasons.append(f"{error.message}; the burn is unknown, {closed}")
    breaches = [measurement for measurement in measurements if measurement.breached]
    for breach in breaches:
        value = "no data" if breach.value is None else f"{breach.value:.2f}×"
        reasons.append(f"{breach.what} is {value}, above {breach.limit:g}×")
    blocked = bool(breaches) or freeze is not None or (unknown and not options.fail_open)
    outcome: Outcome
    if blocked and options.override:
        outcome = "overridden"
        reasons.append(f"overridden by {actor}: {options.override}")
    elif blocked:
        outcome = "unknown" if unknown and not breaches and freeze is None else "blocked"
    else:
        outcome = "pass"
    events: list[Any] = []
    if breaches and freeze is None and options.freeze_for > timedelta(0):
        summary = "; ".join(reason for reason in reasons if "above" in reason)
        event = freeze_event(
            info.service, info.environment, reason=summary, actor=actor, at=now, until=now + options.freeze_for
        )
        events.append(event)
        freeze = Freeze(event.id, info.service, info.environment, summary, actor, now, now + options.freeze_for)
    result = GateResult(outcome, reasons, measurements, freeze)
    verdict = info.timeline(
        "gate",
        f"Gate {outcome} for {info.label}",
        now,
        outcome=outcome,
        reasons=reasons,
        measurements=[measurement.to_json() for measurement in measurements],
        override=options.override if outcome == "overridden" else None,
        actor=actor,
    )
    try:
        ledger.write([verdict, *events])
    except ShipscopeError as error:
        result.reasons.append(f"the verdict could not be recorded: {error.message}")
        if result.outcome == "overridden":
            # An override is granted only when it is audited.
            result.outcome = "blocked"
            result.reasons.append("the override is refused because it could not be recorded")
    return result

"""One deployment marker, fanned out concurrently to every vendor whose credentials are in the environment.

A vendor's requests run in order (Sentry's release before its deploy) and stop at the first failure; vendors run
side by side, each with its own timeout and retries, so a slow one delays only itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx

from shipscope.deploy.context import DeployInfo
from shipscope.integrations import datadog, grafana, newrelic, pagerduty, sentry, webhook
from shipscope.integrations.http import OutboundRequest, Outcome, send


class MarkerVendor(Protocol):
    """A vendor module: its name, whether the environment configures it, and the requests of one marker."""

    NAME: str

    def configured(self, environ: Mapping[str, str]) -> bool: ...

    def marker_requests(
        self, info: DeployInfo, status: str, environ: Mapping[str, str], at: datetime
    ) -> list[OutboundRequest]: ...


VENDORS: Sequence[MarkerVendor] = (datadog, grafana, sentry, newrelic, pagerduty, webhook)


@dataclass(frozen=True)
class VendorResult:
    vendor: str
    outcomes: tuple[Outcome, ...]

    @property
    def ok(self) -> bool:
        return all(outcome.ok for outcome in self.outcomes)

    def to_json(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "ok": self.ok, "steps": [outcome.to_json() for outcome in self.outcomes]}


def planned(
    info: DeployInfo, status: str, environ: Mapping[str, str], at: datetime
) -> dict[str, list[OutboundRequest]]:
    """The requests of each configured vendor, in vendor order; a vendor with nothing to send for this deploy
    (PagerDuty outside production) is left out."""
    requests = {
        vendor.NAME: vendor.marker_requests(info, status, environ, at)
        for vendor in VENDORS
        if vendor.configured(environ)
    }
    return {name: sent for name, sent in requests.items() if sent}


def mark(
    plan: Mapping[str, list[OutboundRequest]],
    *,
    timeout: float = 10.0,
    retries: int = 3,
    sleep: Callable[[float], None] = time.sleep,
) -> list[VendorResult]:
    def one(vendor: str, requests: list[OutboundRequest]) -> VendorResult:
        outcomes: list[Outcome] = []
        with httpx.Client() as client:
            for request in requests:
                outcome = send(client, request, retries=retries, timeout=timeout, sleep=sleep)
                outcomes.append(outcome)
                if not outcome.ok:
                    break
        return VendorResult(vendor, tuple(outcomes))

    if not plan:
        return []
    with ThreadPoolExecutor(max_workers=len(plan), thread_name_prefix="shipscope-marker") as pool:
        futures = [pool.submit(one, vendor, requests) for vendor, requests in plan.items()]
        return [future.result() for future in futures]

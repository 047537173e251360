"""Datadog: a deployment marker through the Events API, and an SLO's burn rate from its history.

- Events: ``POST https://api.<DD_SITE>/api/v1/events`` with ``DD-API-KEY``;
  https://docs.datadoghq.com/api/latest/events/#post-an-event
- SLO history: ``GET https://api.<DD_SITE>/api/v1/slo/{slo_id}/history?from_ts&to_ts`` with ``DD-API-KEY`` and
  ``DD-APPLICATION-KEY``; https://docs.datadoghq.com/api/latest/service-level-objectives/#get-an-slos-history

Enabled by ``DD_API_KEY``; ``DD_SITE`` (default datadoghq.com) picks the region. ``SHIPSCOPE_DATADOG_URL``
replaces the whole base URL (a proxy, or a test server).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import httpx

from shipscope.deploy.context import DeployInfo
from shipscope.errors import InputError, ShipscopeError
from shipscope.integrations.http import OutboundRequest

NAME = "datadog"


class DatadogUnavailable(ShipscopeError):
    status = 503


def base_url(environ: Mapping[str, str]) -> str:
    override = environ.get("SHIPSCOPE_DATADOG_URL", "").strip()
    if override:
        return override.rstrip("/")
    site = environ.get("DD_SITE", "").strip() or "datadoghq.com"
    return f"https://api.{site.removeprefix('app.')}"


def configured(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("DD_API_KEY", "").strip())


def marker_requests(info: DeployInfo, status: str, environ: Mapping[str, str], at: datetime) -> list[OutboundRequest]:
    key = environ["DD_API_KEY"].strip()
    tags = [f"service:{info.service}", f"env:{info.environment}", f"version:{info.version or info.sha[:12]}"]
    tags += ["source:shipscope", f"deployment_status:{status}", f"git.commit.sha:{info.sha}"]
    lines = [f"Deployed {info.label}" + (f" by {info.actor}" if info.actor else "")]
    if info.url:
        lines.append(f"Pipeline: {info.url}")
    if info.image_digest:
        lines.append(f"Image: {info.image_digest}")
    body = {
        "title": f"Deployment of {info.service} {info.version or info.sha[:12]} to {info.environment}",
        "text": "\n".join(lines),
        "tags": tags,
        "alert_type": "success" if status == "success" else "error" if status == "failure" else "info",
        "date_happened": int(at.timestamp()),
        "aggregation_key": info.id,
        "source_type_name": "shipscope",
    }
    return [
        OutboundRequest(
            NAME,
            "POST",
            f"{base_url(environ)}/api/v1/events",
            {"DD-API-KEY": key, "Content-Type": "application/json"},
            body,
            secrets=(key,),
            what="post the deployment event",
        )
    ]


def slo_burn_rate(
    slo_id: str,
    start: datetime,
    end: datetime,
    *,
    environ: Mapping[str, str],
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> float:
    """The SLO's burn rate over ``[start, end]``: its error rate ÷ the error rate its target allows."""
    api_key = environ.get("DD_API_KEY", "").strip()
    app_key = (environ.get("DD_APP_KEY") or environ.get("DD_APPLICATION_KEY") or "").strip()
    if not api_key or not app_key:
        raise InputError("reading a Datadog SLO needs DD_API_KEY and DD_APP_KEY (or DD_APPLICATION_KEY)")
    url = f"{base_url(environ)}/api/v1/slo/{slo_id}/history"
    params = {"from_ts": str(int(start.timestamp())), "to_ts": str(int(end.timestamp()))}
    headers = {"DD-API-KEY": api_key, "DD-APPLICATION-KEY": app_key, "Accept": "application/json"}
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            response = client.get(url, params=params, headers=headers)
    except httpx.HTTPError as error:
        raise DatadogUnavailable(f"Datadog at {base_url(environ)} cannot be reached: {type(error).__name__}") from None
    if response.status_code in (401, 403, 404):
        raise InputError(f"Datadog answered {response.status_code} for SLO {slo_id}: {response.text[:200]}")
    if response.status_code != 200:
        raise DatadogUnavailable(f"Datadog answered {response.status_code} for SLO {slo_id}")
    try:
        data = response.json()["data"]
        sli = float(data["overall"]["sli_value"])
        target = float(next(iter(data["thresholds"].values()))["target"])
    except (ValueError, KeyError, TypeError, StopIteration):
        raise DatadogUnavailable(f"Datadog's history of SLO {slo_id} has no overall sli_value and target") from None
    if target >= 100:
        raise InputError(f"SLO {slo_id} targets {target}%: it has no error budget to burn")
    return (100.0 - sli) / (100.0 - target)

"""Grafana: a deployment annotation, ``POST {GRAFANA_URL}/api/annotations`` with a service-account token.

https://grafana.com/docs/grafana/latest/developers/http_api/annotations/#create-annotation

Enabled by ``GRAFANA_URL`` and ``GRAFANA_TOKEN``; ``GRAFANA_DASHBOARD_UID`` pins the annotation to one dashboard
(without it, it is an organization annotation that every dashboard's annotation query by tags can show).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from shipscope.deploy.context import DeployInfo
from shipscope.integrations.http import OutboundRequest

NAME = "grafana"


def configured(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("GRAFANA_URL", "").strip() and environ.get("GRAFANA_TOKEN", "").strip())


def marker_requests(info: DeployInfo, status: str, environ: Mapping[str, str], at: datetime) -> list[OutboundRequest]:
    token = environ["GRAFANA_TOKEN"].strip()
    version = info.version or info.sha[:12]
    body: dict[str, object] = {
        "time": int(at.timestamp() * 1000),
        "tags": ["deploy", f"service:{info.service}", f"env:{info.environment}", f"version:{version}", status],
        "text": f"Deployed {info.label}"
        + (f" by {info.actor}" if info.actor else "")
        + f" ({status})"
        + (f'\n<a href="{info.url}">pipeline</a>' if info.url else ""),
    }
    dashboard = environ.get("GRAFANA_DASHBOARD_UID", "").strip()
    if dashboard:
        body["dashboardUID"] = dashboard
    return [
        OutboundRequest(
            NAME,
            "POST",
            environ["GRAFANA_URL"].strip().rstrip("/") + "/api/annotations",
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"},
            body,
            secrets=(token,),
            what="create the annotation",
        )
    ]

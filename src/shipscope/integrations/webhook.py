"""A generic deployment webhook: ``POST SHIPSCOPE_MARKER_WEBHOOK_URL`` with the deployment as JSON.

Body: ``{"event": "deployment", "status": …, "at": RFC 3339, "deployment": {service, environment, id, sha,
version, image_digest, actor, url, repo, kind, rollback_of}}``. The URL is treated as a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from shipscope.deploy.context import DeployInfo
from shipscope.integrations.http import OutboundRequest

NAME = "webhook"


def configured(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("SHIPSCOPE_MARKER_WEBHOOK_URL", "").strip())


def marker_requests(info: DeployInfo, status: str, environ: Mapping[str, str], at: datetime) -> list[OutboundRequest]:
    url = environ["SHIPSCOPE_MARKER_WEBHOOK_URL"].strip()
    body = {"event": "deployment", "status": status, "at": at.isoformat(), "deployment": info.to_json()}
    return [
        OutboundRequest(
            NAME, "POST", url, {"Content-Type": "application/json"}, body, secrets=(url,), what="post the marker"
        )
    ]

"""New Relic: a change-tracking deployment of an entity through NerdGraph (GraphQL).

``POST https://api.newrelic.com/graphql`` (``api.eu.newrelic.com`` with ``NEW_RELIC_REGION=EU``) with the
``API-Key`` header and the ``changeTrackingCreateDeployment`` mutation;
https://docs.newrelic.com/docs/change-tracking/change-tracking-graphql/

Enabled by ``NEW_RELIC_API_KEY`` (a user key) and ``NEW_RELIC_ENTITY_GUID``; ``NEW_RELIC_API_URL`` replaces the
endpoint. NerdGraph answers 200 with ``errors`` when it refuses; that is a failure here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shipscope.deploy.context import DeployInfo
from shipscope.integrations.http import OutboundRequest

NAME = "newrelic"
MUTATION = """mutation ($deployment: ChangeTrackingDeploymentInput!) {
  changeTrackingCreateDeployment(deployment: $deployment) { deploymentId entityGuid }
}"""


def configured(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("NEW_RELIC_API_KEY", "").strip() and environ.get("NEW_RELIC_ENTITY_GUID", "").strip())


def _endpoint(environ: Mapping[str, str]) -> str:
    override = environ.get("NEW_RELIC_API_URL", "").strip()
    if override:
        return override
    eu = environ.get("NEW_RELIC_REGION", "").strip().upper() == "EU"
    return "https://api.eu.newrelic.com/graphql" if eu else "https://api.newrelic.com/graphql"


def _refusal(answer: Any) -> str | None:
    if not isinstance(answer, Mapping):
        return "NerdGraph answered without JSON"
    errors = answer.get("errors")
    if errors:
        return "NerdGraph refused: " + "; ".join(str(error.get("message", error)) for error in errors)
    return None


def marker_requests(info: DeployInfo, status: str, environ: Mapping[str, str], at: datetime) -> list[OutboundRequest]:
    key = environ["NEW_RELIC_API_KEY"].strip()
    deployment: dict[str, object] = {
        "entityGuid": environ["NEW_RELIC_ENTITY_GUID"].strip(),
        "version": info.version or info.sha[:12],
        "commit": info.sha,
        "deploymentType": "BASIC",
        "timestamp": int(at.timestamp() * 1000),
        "description": f"Deployed {info.label} ({status})",
    }
    if info.actor:
        deployment["user"] = info.actor
    if info.url:
        deployment["deepLink"] = info.url
    return [
        OutboundRequest(
            NAME,
            "POST",
            _endpoint(environ),
            {"API-Key": key, "Content-Type": "application/json"},
            {"query": MUTATION, "variables": {"deployment": deployment}},
            secrets=(key,),
            what="create the change-tracking deployment",
            refusal=_refusal,
        )
    ]

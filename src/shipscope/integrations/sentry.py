"""Sentry: the release, its commits, and a deploy of it to the environment, in that order.

- ``POST /api/0/organizations/{org}/releases/`` (create; an existing release answers 208):
  https://docs.sentry.io/api/releases/create-a-new-release-for-an-organization/
- ``PUT /api/0/organizations/{org}/releases/{version}/`` with ``refs`` (set its commits from the repository
  integration): https://docs.sentry.io/api/releases/update-an-organizations-release/
- ``POST /api/0/organizations/{org}/releases/{version}/deploys/``:
  https://docs.sentry.io/api/releases/create-a-new-deploy-for-an-organization/

Enabled by ``SENTRY_AUTH_TOKEN``, ``SENTRY_ORG`` and ``SENTRY_PROJECT``; ``SENTRY_URL`` for self-hosted Sentry.
The commits are set only when the repository is known (``SENTRY_REPOSITORY``, else the CI's ``owner/name``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from urllib.parse import quote

from shipscope.deploy.context import DeployInfo
from shipscope.integrations.http import OutboundRequest

NAME = "sentry"


def configured(environ: Mapping[str, str]) -> bool:
    return all(environ.get(name, "").strip() for name in ("SENTRY_AUTH_TOKEN", "SENTRY_ORG", "SENTRY_PROJECT"))


def marker_requests(info: DeployInfo, status: str, environ: Mapping[str, str], at: datetime) -> list[OutboundRequest]:
    token = environ["SENTRY_AUTH_TOKEN"].strip()
    base = (environ.get("SENTRY_URL", "").strip() or "https://sentry.io").rstrip("/")
    org = quote(environ["SENTRY_ORG"].strip(), safe="")
    version = info.version or info.sha
    releases = f"{base}/api/0/organizations/{org}/releases/"
    release = f"{releases}{quote(version, safe='')}/"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    created: dict[str, object] = {"version": version, "projects": [environ["SENTRY_PROJECT"].strip()]}
    if info.url:
        created["url"] = info.url
    requests = [OutboundRequest(NAME, "POST", releases, headers, created, (token,), "create the release")]
    repository = environ.get("SENTRY_REPOSITORY", "").strip() or info.repo
    if repository:
        refs = {"refs": [{"repository": repository, "commit": info.sha}]}
        requests.append(OutboundRequest(NAME, "PUT", release, headers, refs, (token,), "set the release's commits"))
    deploy: dict[str, object] = {"environment": info.environment, "name": info.id, "dateFinished": at.isoformat()}
    if info.url:
        deploy["url"] = info.url
    requests.append(OutboundRequest(NAME, "POST", f"{release}deploys/", headers, deploy, (token,), "record the deploy"))
    return requests

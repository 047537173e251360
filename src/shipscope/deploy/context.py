"""The deployment a command acts on, from its flags and the CI environment, and the events that record it.

Flags win; then ``SHIPSCOPE_*`` variables; then what GitHub Actions or GitLab CI set. The deployment id defaults to
one the whole pipeline run agrees on (``gh-<run id>-<attempt>-<service>-<env>``, ``gl-<pipeline id>-…``), so
``deploy start`` and a later ``deploy finish`` or ``deploy rollback`` in another job name the same deployment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from shipscope.errors import InputError
from shipscope.events import Deployment, DeploymentKind, DeploymentStatus, TimelineEvent, timeline_details

SOURCE = "shipscope"
"""The source of what deploy commands record."""

_STATUS_WORDS: dict[str, DeploymentStatus] = {
    "success": "success",
    "succeeded": "success",
    "passed": "success",
    "failure": "failure",
    "failed": "failure",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "in_progress": "in_progress",
    "running": "in_progress",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def deployment_status(value: str) -> DeploymentStatus:
    """A deployment status from our words or a CI's (GitHub ``job.status``, GitLab ``CI_JOB_STATUS``)."""
    status = _STATUS_WORDS.get(value.strip().lower())
    if status is None:
        raise InputError(f"--status {value!r}: expected success, failure, cancelled or in_progress")
    return status


@dataclass(frozen=True)
class DeployInfo:
    service: str
    environment: str
    id: str
    sha: str
    version: str | None = None
    image_digest: str | None = None
    actor: str | None = None
    url: str | None = None
    """The pipeline run that deploys."""
    repo: str | None = None
    kind: DeploymentKind = "deploy"
    rollback_of: str | None = None

    @property
    def label(self) -> str:
        return f"{self.service} {self.version or self.sha[:12]} to {self.environment}"

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if getattr(self, name) is not None}

    def deployment(
        self,
        status: DeploymentStatus,
        *,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> Deployment:
        return Deployment(
            source=SOURCE,
            id=self.id,
            service=self.service,
            environment=self.environment,
            sha=self.sha,
            version=self.version,
            image_digest=self.image_digest,
            actor=self.actor,
            url=self.url,
            started_at=started_at,
            finished_at=finished_at,
            status=status,
            kind=self.kind,
            rollback_of=self.rollback_of,
        )

    def timeline(self, kind: str, title: str, at: datetime, **details: Any) -> TimelineEvent:
        """A timeline event of this deployment's service: a verdict, a marker, a notice, a freeze."""
        shown = {"deployment_id": self.id, "environment": self.environment, "version": self.version, **details}
        return TimelineEvent(
            source=SOURCE,
            id=f"{kind}:{self.id}:{at.isoformat()}",
            kind=kind,
            service=self.service,
            at=at,
            title=title,
            details=timeline_details(shown),
        )

    def with_kind(self, kind: DeploymentKind, *, id: str, rollback_of: str | None) -> DeployInfo:  # noqa: A002
        return replace(self, kind=kind, id=id, rollback_of=rollback_of)


def _first(*values: str | None) -> str | None:
    for value in values:
        if value is not None and value.strip():
            return value.strip()
    return None


def deploy_info(
    environ: Mapping[str, str],
    *,
    service: str | None = None,
    environment: str | None = None,
    version: str | None = None,
    sha: str | None = None,
    image_digest: str | None = None,
    actor: str | None = None,
    url: str | None = None,
    deployment_id: str | None = None,
    kind: DeploymentKind = "deploy",
) -> DeployInfo:
    """The deployment from flags, then SHIPSCOPE_* variables, then the CI's; an InputError names what is missing."""
    env = environ.get
    github = env("GITHUB_ACTIONS", "").lower() == "true"
    gitlab = env("GITLAB_CI", "").lower() == "true"
    named_service = _first(service, env("SHIPSCOPE_SERVICE"))
    named_environment = _first(environment, env("SHIPSCOPE_ENVIRONMENT"), env("CI_ENVIRONMENT_NAME"))
    if named_service is None:
        raise InputError("no service: give --service or set SHIPSCOPE_SERVICE")
    if named_environment is None:
        raise InputError("no environment: give --env or set SHIPSCOPE_ENVIRONMENT")
    commit = _first(sha, env("SHIPSCOPE_SHA"), env("GITHUB_SHA"), env("CI_COMMIT_SHA"))
    if commit is None:
        raise InputError("no commit: give --sha or set SHIPSCOPE_SHA (GITHUB_SHA and CI_COMMIT_SHA are read in CI)")
    run_url: str | None = None
    pipeline_id: str | None = None
    if github and env("GITHUB_RUN_ID"):
        server = env("GITHUB_SERVER_URL", "https://github.com")
        run_url = f"{server}/{env('GITHUB_REPOSITORY', '')}/actions/runs/{env('GITHUB_RUN_ID')}"
        pipeline_id = f"gh-{env('GITHUB_RUN_ID')}-{env('GITHUB_RUN_ATTEMPT', '1')}"
    elif gitlab and env("CI_PIPELINE_ID"):
        run_url = env("CI_PIPELINE_URL")
        pipeline_id = f"gl-{env('CI_PIPELINE_ID')}"
    identity = _first(deployment_id, env("SHIPSCOPE_DEPLOYMENT_ID"))
    if identity is None:
        if pipeline_id is None:
            raise InputError(
                "no deployment id: give --id or set SHIPSCOPE_DEPLOYMENT_ID (in GitHub Actions and GitLab CI it "
                "is derived from the pipeline run)"
            )
        identity = _UNSAFE.sub("-", f"{pipeline_id}-{named_service}-{named_environment}")
    return DeployInfo(
        service=named_service,
        environment=named_environment,
        id=identity,
        sha=commit,
        version=_first(version, env("SHIPSCOPE_VERSION"), env("CI_COMMIT_TAG"), _tag(env("GITHUB_REF"))),
        image_digest=_first(image_digest, env("SHIPSCOPE_IMAGE_DIGEST")),
        actor=_first(actor, env("SHIPSCOPE_ACTOR"), env("GITHUB_ACTOR"), env("GITLAB_USER_LOGIN")),
        url=_first(url, env("SHIPSCOPE_PIPELINE_URL"), run_url),
        repo=_first(env("GITHUB_REPOSITORY"), env("CI_PROJECT_PATH")),
        kind=kind,
    )


def _tag(ref: str | None) -> str | None:
    return ref.removeprefix("refs/tags/") if ref and ref.startswith("refs/tags/") else None


def now() -> datetime:
    return datetime.now(UTC)

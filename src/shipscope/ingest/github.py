"""GitHub webhook deliveries → canonical events (DESIGN.md §2).

Pure: no SQL, no HTTP. The object-level converters also serve the REST API backfill, whose objects have the same
shape as the webhook's. Every value is read through ``payload.Node``, which knows where it sits in the payload, so a
payload that lacks what an event needs is refused with an InputError naming that path, never a KeyError.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from shipscope.errors import InputError
from shipscope.events import (
    Change,
    Deployment,
    DeploymentStatus,
    Event,
    Job,
    PipelineRun,
    PullRequest,
    RunStatus,
    Step,
)
from shipscope.ingest.payload import Node

SOURCE = "github"


_NOT_STARTED = frozenset({"requested", "queued", "waiting", "pending"})
_OUTCOMES: Mapping[str, RunStatus] = {
    "success": "success",
    "neutral": "success",
    "failure": "failure",
    "timed_out": "failure",
    "startup_failure": "failure",
    "action_required": "failure",
    "cancelled": "cancelled",
    "stale": "cancelled",
    "skipped": "skipped",
}
_NOT_FAILED = frozenset({"success", "skipped", "neutral"})

_DEPLOYMENT_STATES: Mapping[str, DeploymentStatus] = {
    "success": "success",
    "failure": "failure",
    "error": "failure",
    "in_progress": "in_progress",
    "queued": "in_progress",
    "pending": "in_progress",
}
_TAG_REF = "refs/tags/"
_VERSION_LIKE = re.compile(r"v?\d+\.\d+\S*")

_GITHUB_ACTIONS_APP = "github-actions"


@contextmanager
def _refused_as_input_error(origin: Node) -> Iterator[None]:
    """Values are checked as they are read; this catches what the canonical model checks on top of that."""
    try:
        yield
    except ValidationError as error:
        problems = (
            f"{origin.where('.'.join(str(part) for part in detail['loc']))}: {detail['msg']}"
            for detail in error.errors(include_url=False)
        )
        raise InputError("; ".join(problems)) from None


# --- statuses -------------------------------------------------------------------------------------------------


def _outcome(obj: Node, key: str = "conclusion") -> RunStatus:
    conclusion = obj.text(key)
    outcome = _OUTCOMES.get(conclusion)
    if outcome is None:
        raise InputError(f"{obj.where(key)}: expected one of {', '.join(_OUTCOMES)}, got {conclusion!r}")
    return outcome


def _progress(obj: Node) -> RunStatus:
    """A run's, job's or check's status: where it is until it completes, then how it ended."""
    status = obj.text("status")
    if status in _NOT_STARTED:
        return "queued"
    if status == "in_progress":
        return "in_progress"
    if status == "completed":
        return _outcome(obj)
    expected = ", ".join([*sorted(_NOT_STARTED), "in_progress", "completed"])
    raise InputError(f"{obj.where('status')}: expected one of {expected}, got {status!r}")


def _is_done(status: RunStatus) -> bool:
    return status not in ("queued", "in_progress")


def _started_at(obj: Node, key: str, status: RunStatus) -> datetime | None:
    # GitHub fills the start time of a queued run or job with its creation time; kept, it would read as a start
    # (and a queue time of zero) until the real start arrives, so it is only believed once the work has begun.
    return None if status == "queued" else obj.opt_time(key)


def _failure_reason(obj: Node, status: RunStatus) -> str | None:
    if not _is_done(status):
        return None
    conclusion = obj.text("conclusion")
    return None if conclusion in _NOT_FAILED else conclusion


def _first_pr_number(obj: Node) -> int | None:
    pull_requests = obj.nodes("pull_requests")
    return pull_requests[0].int32("number") if pull_requests else None


def _login(obj: Node, key: str) -> str | None:
    user = obj.opt_node(key)
    return user.opt_text("login") if user is not None else None


# --- workflow runs and jobs -----------------------------------------------------------------------------------


def _workflow_run_status(run: Node) -> RunStatus:
    # A run awaiting a maintainer's approval (a first-time contributor's pull request) is reported as completed
    # with conclusion action_required, yet it has not run; once approved the same run moves on to queued and
    # in_progress. Counting it a failure would inflate the failure rate and outrank the real outcome, so it waits.
    if run.data.get("conclusion") == "action_required":
        return "queued"
    return _progress(run)


def _run(run: Node, repository: Node) -> PipelineRun:
    status = _workflow_run_status(run)
    with _refused_as_input_error(run):
        return PipelineRun(
            source=SOURCE,
            id=run.ident("id"),
            attempt=run.opt_int32("run_attempt", minimum=1) or 1,
            repo=repository.text("full_name"),
            workflow=run.opt_text("name") or run.text("path"),
            trigger=run.text("event"),
            branch=run.text("head_branch"),
            default_branch=repository.opt_text("default_branch"),
            pr_number=_first_pr_number(run),
            sha=run.text("head_sha"),
            actor=_login(run, "triggering_actor") or _login(run, "actor"),
            status=status,
            created_at=run.time("created_at"),
            started_at=_started_at(run, "run_started_at", status),
            finished_at=run.time("updated_at") if _is_done(status) else None,
            url=run.opt_text("html_url"),
        )


def run_from_workflow_run(run: Mapping[str, Any], repository: Mapping[str, Any]) -> PipelineRun:
    """A workflow run (webhook ``workflow_run`` or REST ``GET …/actions/runs`` item) as a pipeline run."""
    return _run(Node(run, "workflow_run"), Node(repository, "repository"))


def _job_created_at(job: Node) -> datetime:
    created_at = job.opt_time("created_at") or job.opt_time("started_at")
    if created_at is None:
        raise InputError(f"{job.where('created_at')}: required field is missing (and so is started_at)")
    return created_at


def _runner(job: Node) -> list[str] | str | None:
    labels = job.data.get("labels")
    if isinstance(labels, list) and labels and all(isinstance(label, str) for label in labels):
        return list(labels)
    if labels not in (None, []):
        raise InputError(f"{job.where('labels')}: expected an array of strings")
    return job.opt_text("runner_group_name")


def _job(job: Node) -> Job:
    status = _progress(job)
    with _refused_as_input_error(job):
        return Job(
            source=SOURCE,
            id=job.ident("id"),
            run_id=job.ident("run_id"),
            name=job.text("name"),
            runner=_runner(job),
            status=status,
            attempt=job.opt_int32("run_attempt", minimum=1),
            created_at=_job_created_at(job),
            started_at=_started_at(job, "started_at", status),
            finished_at=job.time("completed_at") if _is_done(status) else None,
            failure_reason=_failure_reason(job, status),
        )


def _step(step: Node, job_id: str) -> Step | None:
    """A step once it has both ends; a step still queued or running is left to a later delivery."""
    started_at, finished_at = step.opt_time("started_at"), step.opt_time("completed_at")
    if started_at is None or finished_at is None:
        return None
    with _refused_as_input_error(step):
        return Step(
            source=SOURCE,
            job_id=job_id,
            name=step.text("name"),
            number=step.int32("number"),
            status=_outcome(step),
            started_at=started_at,
            finished_at=finished_at,
        )


def _job_events(job: Node) -> list[Job | Step]:
    converted = _job(job)
    steps = (_step(step, converted.id) for step in job.nodes("steps"))
    return [converted, *(step for step in steps if step is not None)]


def job_events(job: Mapping[str, Any]) -> list[Job | Step]:
    """A workflow job (webhook ``workflow_job`` or REST jobs item) and its completed steps."""
    return _job_events(Node(job, "workflow_job"))


# --- deployments ----------------------------------------------------------------------------------------------


def _service(deployment: Node, repository: Node) -> str:
    # The deployment's free-form payload is where tools that deploy several services from one repo name them.
    payload = deployment.data.get("payload")
    if isinstance(payload, Mapping):
        service = payload.get("service")
        if isinstance(service, str) and service:
            return service
    return repository.text("name")


def _version(ref: str | None, sha: str) -> str | None:
    """The ref when it names a release (a tag or a version-looking name); a branch or the sha itself is not one."""
    if ref is None or ref == sha:
        return None
    if ref.startswith(_TAG_REF):
        return ref.removeprefix(_TAG_REF) or None
    return ref if _VERSION_LIKE.fullmatch(ref) else None


def _is_inactive(status: Node) -> bool:
    return status.text("state") == "inactive"


def _deployment_progress(status: Node) -> tuple[DeploymentStatus, datetime | None]:
    state = status.text("state")
    progress = _DEPLOYMENT_STATES.get(state)
    if progress is None:
        # inactive says a later deployment superseded this one, not how this one went: callers skip it.
        raise InputError(f"{status.where('state')}: expected one of {', '.join(_DEPLOYMENT_STATES)}, got {state!r}")
    if progress == "in_progress":
        return progress, None
    return progress, status.opt_time("created_at") or status.time("updated_at")


def _deployment(deployment: Node, repository: Node, status: Node | None) -> Deployment:
    progress, finished_at = _deployment_progress(status) if status is not None else ("in_progress", None)
    sha = deployment.text("sha")
    with _refused_as_input_error(deployment):
        return Deployment(
            source=SOURCE,
            id=deployment.ident("id"),
            service=_service(deployment, repository),
            environment=deployment.text("environment"),
            sha=sha,
            version=_version(deployment.opt_text("ref"), sha),
            actor=_login(deployment, "creator"),
            url=deployment.opt_text("url"),
            started_at=deployment.time("created_at"),
            finished_at=finished_at,
            status=progress,
        )


def deployment_event(
    deployment: Mapping[str, Any], repository: Mapping[str, Any], status: Mapping[str, Any] | None = None
) -> Deployment:
    """A deployment, in progress unless ``status`` (a deployment status object) says how it went.

    An ``inactive`` status is refused: it marks a deployment superseded, so pass the latest other status instead.
    """
    status_obj = Node(status, "deployment_status") if status is not None else None
    return _deployment(Node(deployment, "deployment"), Node(repository, "repository"), status_obj)


# --- pull requests and commits --------------------------------------------------------------------------------


def _labels(pull_request: Node) -> list[str] | None:
    if "labels" not in pull_request.data:
        return None
    return [label.text("name") for label in pull_request.nodes("labels")]


def _pull_request(pull_request: Node, repository: Node) -> PullRequest:
    with _refused_as_input_error(pull_request):
        return PullRequest(
            source=SOURCE,
            repo=repository.text("full_name"),
            number=pull_request.int32("number"),
            author=pull_request.node("user").text("login"),
            opened_at=pull_request.time("created_at"),
            merged_at=pull_request.opt_time("merged_at"),
            closed_at=pull_request.opt_time("closed_at"),
            base_branch=pull_request.node("base").text("ref"),
            head_sha=pull_request.node("head").opt_text("sha"),
            labels=_labels(pull_request),
        )


def pull_request_event(pull_request: Mapping[str, Any], repository: Mapping[str, Any]) -> PullRequest:
    """A pull request (webhook ``pull_request`` or REST pulls item)."""
    return _pull_request(Node(pull_request, "pull_request"), Node(repository, "repository"))


def _pushed_change(commit: Node, repo: str) -> Change:
    author = commit.opt_node("author")
    with _refused_as_input_error(commit):
        return Change(
            source=SOURCE,
            sha=commit.text("id"),
            repo=repo,
            authored_at=commit.time("timestamp"),
            author=(author.opt_text("username") or author.opt_text("name")) if author else None,
            message=commit.opt_text("message"),
        )


def _api_commit_author(commit: Node, details: Node) -> str | None:
    # The GitHub account when the commit's email maps to one, else the name recorded in the commit.
    git_author = details.opt_node("author")
    return _login(commit, "author") or (git_author.opt_text("name") if git_author else None)


def change_from_api_commit(commit: Mapping[str, Any], repo: str) -> Change:
    """A commit as listed by ``GET /repos/{owner}/{repo}/commits``."""
    item = Node(commit, "commit")
    details = item.node("commit")
    committer = details.opt_node("committer")
    with _refused_as_input_error(item):
        return Change(
            source=SOURCE,
            sha=item.text("sha"),
            repo=repo,
            authored_at=details.node("author").time("date"),
            committed_at=committer.opt_time("date") if committer else None,
            author=_api_commit_author(item, details),
            message=details.opt_text("message"),
        )


# --- deliveries -----------------------------------------------------------------------------------------------


def _on_workflow_run(payload: Node) -> list[Event]:
    return [_run(payload.node("workflow_run"), payload.node("repository"))]


def _on_workflow_job(payload: Node) -> list[Event]:
    return list(_job_events(payload.node("workflow_job")))


def _on_deployment(payload: Node) -> list[Event]:
    return [_deployment(payload.node("deployment"), payload.node("repository"), None)]


def _on_deployment_status(payload: Node) -> list[Event]:
    status = payload.node("deployment_status")
    if _is_inactive(status):
        # GitHub marks earlier deployments inactive when a newer one to the same environment succeeds: that says
        # nothing about how they went, and turning it into a status would overwrite their real outcome.
        return []
    return [_deployment(payload.node("deployment"), payload.node("repository"), status)]


def _on_pull_request(payload: Node) -> list[Event]:
    return [_pull_request(payload.node("pull_request"), payload.node("repository"))]


def _on_push(payload: Node) -> list[Event]:
    # A deleted branch or tag carries no commits to record; a tag push lists none either (its commit came before).
    if payload.data.get("deleted") is True:
        return []
    repo = payload.node("repository").text("full_name")
    return [_pushed_change(commit, repo) for commit in payload.nodes("commits")]


def _from_github_actions(check: Node) -> bool:
    # GitHub Actions reports every workflow run as a check suite and every job as a check run; workflow_run and
    # workflow_job deliveries already describe them in more detail, so these would only be duplicates.
    app = check.opt_node("app")
    return app is not None and app.data.get("slug") == _GITHUB_ACTIONS_APP


def _on_check_suite(payload: Node) -> list[Event]:
    suite = payload.node("check_suite")
    if _from_github_actions(suite):
        return []
    repository = payload.node("repository")
    status = _progress(suite)
    with _refused_as_input_error(suite):
        run = PipelineRun(
            source=SOURCE,
            id=f"check_suite:{suite.ident('id')}",
            repo=repository.text("full_name"),
            workflow=suite.node("app").text("name"),
            trigger="check_suite",
            branch=suite.text("head_branch"),
            default_branch=repository.opt_text("default_branch"),
            pr_number=_first_pr_number(suite),
            sha=suite.text("head_sha"),
            status=status,
            created_at=suite.time("created_at"),
            finished_at=suite.time("updated_at") if _is_done(status) else None,
        )
    return [run]


def _on_check_run(payload: Node) -> list[Event]:
    check = payload.node("check_run")
    if _from_github_actions(check):
        return []
    status = _progress(check)
    with _refused_as_input_error(check):
        job = Job(
            source=SOURCE,
            id=f"check_run:{check.ident('id')}",
            run_id=f"check_suite:{check.node('check_suite').ident('id')}",
            name=check.text("name"),
            status=status,
            created_at=check.time("started_at"),
            started_at=_started_at(check, "started_at", status),
            finished_at=check.time("completed_at") if _is_done(status) else None,
            failure_reason=_failure_reason(check, status),
        )
    return [job]


def _on_ping(payload: Node) -> list[Event]:
    return []  # sent once when a webhook is set up: nothing happened yet


_HANDLERS: Mapping[str, Callable[[Node], list[Event]]] = {
    "workflow_run": _on_workflow_run,
    "workflow_job": _on_workflow_job,
    "deployment": _on_deployment,
    "deployment_status": _on_deployment_status,
    "pull_request": _on_pull_request,
    "push": _on_push,
    "check_run": _on_check_run,
    "check_suite": _on_check_suite,
    "ping": _on_ping,
}

HANDLED_EVENTS: frozenset[str] = frozenset(_HANDLERS)


def parse_delivery(event: str, payload: Mapping[str, Any]) -> list[Event]:
    """Canonical events of one delivery; ``event`` is its X-GitHub-Event header.

    Raises InputError, naming the field path, for a payload of a handled event that lacks what it needs. Returns
    [] for ``ping`` and for events not in HANDLED_EVENTS.
    """
    handler = _HANDLERS.get(event)
    if handler is None:
        return []
    return handler(Node(payload, ""))

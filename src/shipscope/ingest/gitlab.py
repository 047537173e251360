"""GitLab webhook deliveries and REST API objects → canonical events (DESIGN.md §2).

Pure translation: no SQL, no HTTP. Every error names the path of the payload field that is wrong
(``object_attributes.id``, ``builds[2].created_at``), so a rejected delivery says what to fix.

Mapping choices worth knowing:
- A job's ``runner`` is its labels (the job's ``tag_list`` or the runner's ``tags``) when there are any, else the
  runner's description: queue time is reported by runner label, and tags are GitLab's labels.
- ``failure_reason`` is kept only on failed jobs; GitLab fills it on other statuses too (``unknown_failure`` on a
  success), which would read as a failure cause that never happened.
- A merge request hook names the *actor* (``user``), not the author. The actor is taken as the author when the
  action is ``open`` or when the actor's id equals ``author_id``; otherwise the author is ``user-id:<author_id>``,
  an opaque but correct identity, rather than crediting whoever merged or labelled the merge request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Final

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
)
from shipscope.ingest.payload import Node, iso_timestamp

SOURCE: Final = "gitlab"
HANDLED_KINDS: Final = frozenset({"pipeline", "build", "deployment", "merge_request", "push", "tag_push"})

_HEADER_KINDS: Final[Mapping[str, str]] = {
    "Pipeline Hook": "pipeline",
    "Job Hook": "build",
    "Build Hook": "build",  # the name of the job hook before GitLab 9.3
    "Deployment Hook": "deployment",
    "Merge Request Hook": "merge_request",
    "Push Hook": "push",
    "Tag Push Hook": "tag_push",
}

_RUN_STATUSES: Final[Mapping[str, RunStatus]] = {
    "created": "queued",
    "waiting_for_resource": "queued",
    "preparing": "queued",
    "pending": "queued",
    "scheduled": "queued",
    "manual": "queued",
    "running": "in_progress",
    "waiting_for_callback": "in_progress",
    "success": "success",
    "failed": "failure",
    "canceled": "cancelled",
    "canceling": "cancelled",
    "skipped": "skipped",
}
_FINISHED_RUN: Final = frozenset({"success", "failure", "cancelled", "skipped"})

_DEPLOYMENT_STATUSES: Final[Mapping[str, DeploymentStatus]] = {
    "created": "in_progress",
    "running": "in_progress",
    "blocked": "in_progress",  # waiting for an approval: not over yet
    "success": "success",
    "failed": "failure",
    "canceled": "cancelled",
    "skipped": "cancelled",  # superseded by a newer deployment before it ran
}
_FINISHED_DEPLOYMENT: Final = frozenset({"success", "failure", "cancelled"})

_TRIGGERS: Final[Mapping[str, str]] = {
    "merge_request_event": "pull_request",
    "external_pull_request_event": "pull_request",
    "web": "manual",
}
_UNKNOWN_TRIGGER: Final = "unknown"
_DEFAULT_WORKFLOW: Final = "pipeline"

_GITLAB_TIMESTAMP: Final = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2}) (?P<time>\d{2}:\d{2}:\d{2}(?:\.\d+)?) (?:UTC|(?P<offset>[+-]\d{2}:?\d{2}))"
)
_MERGE_REQUEST_REF: Final = re.compile(r"refs/merge-requests/(\d+)/\w+")
_SHA: Final = re.compile(r"[0-9a-f]{7,64}")


# ── timestamps ───────────────────────────────────────────────────────────────────────────────────────────────────


def parse_timestamp(value: str, field: str) -> datetime:
    """A GitLab timestamp in any of its three styles, as an aware datetime with the offset it was given.

    '2016-08-12 15:23:28 UTC', '2016-08-12 15:23:28 +0200' (webhooks) and ISO 8601 such as
    '2016-08-12T15:23:28.000Z' or '…+02:00' (newer webhooks, the REST API). Anything else, including a time with no
    offset, raises InputError naming ``field``.
    """
    match = _GITLAB_TIMESTAMP.fullmatch(value)
    if match is None:
        return iso_timestamp(value, field)
    try:
        return datetime.fromisoformat(f"{match['date']}T{match['time']}{match['offset'] or '+00:00'}")
    except ValueError:  # a day or an hour out of range
        raise InputError(f"{field}: expected a timestamp with a UTC offset, got {value!r}") from None


# ── reading payloads ─────────────────────────────────────────────────────────────────────────────────────────────


class _Node(Node):
    """A GitLab payload object: its timestamps come in GitLab's three styles."""

    __slots__ = ()
    parse_time = staticmethod(parse_timestamp)


def _username(node: _Node, key: str = "user") -> str | None:
    user = node.opt_node(key)
    return user.opt_text("username") if user else None


def _run_status(node: _Node, key: str) -> RunStatus:
    value = node.text(key)
    try:
        return _RUN_STATUSES[value]
    except KeyError:
        raise InputError(f"{node.where(key)}: unknown status {value!r}") from None


def _deployment_status(node: _Node, key: str) -> DeploymentStatus:
    value = node.text(key)
    try:
        return _DEPLOYMENT_STATUSES[value]
    except KeyError:
        raise InputError(f"{node.where(key)}: unknown deployment status {value!r}") from None


@contextmanager
def _validated(what: str) -> Iterator[None]:
    """Turns a value the canonical model refuses (an out-of-range number, say) into an InputError."""
    try:
        yield
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in detail['loc'])}: {detail['msg']}"
            for detail in error.errors(include_url=False)
        )
        raise InputError(f"GitLab {what}: {problems}") from None


# ── shared object converters (webhook objects and REST API objects use the same field names) ───────────────────


def _finished_at(node: _Node, status: RunStatus) -> datetime | None:
    # A finished_at only counts once the status is final, so a running (or retried, running again) run never looks done.
    return node.opt_time("finished_at") if status in _FINISHED_RUN else None


def _started_at(node: _Node, finished_at: datetime | None) -> datetime | None:
    """The start GitLab gives, else the one its duration implies (webhooks send duration, not start)."""
    started_at = node.opt_time("started_at")
    duration = node.opt_seconds("duration")
    if started_at is None and finished_at is not None and duration is not None:
        started_at = finished_at - timedelta(seconds=duration)
    return started_at


def _merge_request_iid_from_ref(ref: str) -> int | None:
    """Merge request pipelines run on refs/merge-requests/<iid>/head (or /merge, /train)."""
    match = _MERGE_REQUEST_REF.fullmatch(ref)
    return int(match[1]) if match else None


def _pipeline_run(
    attrs: _Node,
    *,
    repo: str,
    default_branch: str | None,
    pr_number: int | None,
    actor: str | None,
    url: str | None,
) -> PipelineRun:
    status = _run_status(attrs, "status")
    finished_at = _finished_at(attrs, status)
    branch = attrs.text("ref")
    source = attrs.opt_text("source")
    return PipelineRun(
        source=SOURCE,
        id=attrs.ident("id"),
        repo=repo,
        workflow=attrs.opt_text("name") or _DEFAULT_WORKFLOW,
        trigger=_TRIGGERS.get(source, source) if source else _UNKNOWN_TRIGGER,
        branch=branch,
        default_branch=default_branch,
        pr_number=pr_number if pr_number is not None else _merge_request_iid_from_ref(branch),
        sha=attrs.text("sha"),
        actor=actor,
        status=status,
        created_at=attrs.time("created_at"),
        started_at=_started_at(attrs, finished_at),
        finished_at=finished_at,
        url=url,
    )


def _runner(job: _Node) -> str | list[str] | None:
    """Labels when there are any (the job's tag_list, else the runner's tags), else the runner's description."""
    labels = job.opt_texts("tag_list")
    runner = job.opt_node("runner")
    if not labels and runner is not None:
        labels = runner.opt_texts("tags")
    if labels:
        return labels
    return runner.opt_text("description") if runner else None


def _failure_reason(status: RunStatus, reason: str | None) -> str | None:
    return reason if status == "failure" else None


def _job(job: _Node, run_id: str) -> Job:
    """A job as the pipeline hook's ``builds`` entries and the REST API give it."""
    status = _run_status(job, "status")
    return Job(
        source=SOURCE,
        id=job.ident("id"),
        run_id=run_id,
        name=job.text("name"),
        stage=job.opt_text("stage"),
        runner=_runner(job),
        status=status,
        created_at=job.time("created_at"),
        started_at=job.opt_time("started_at"),
        finished_at=_finished_at(job, status),
        failure_reason=_failure_reason(status, job.opt_text("failure_reason")),
    )


def _label_titles(node: _Node, key: str) -> list[str] | None:
    """Label names from a list of label objects (webhooks) or of plain names (the REST API's default)."""
    value = node.data.get(key)
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    return [label.text("title") for label in node.nodes(key)]


def _pull_request(
    attrs: _Node, *, repo: str, author: str, head_sha: str | None, labels: list[str] | None
) -> PullRequest:
    state = attrs.opt_text("state")
    updated_at = attrs.opt_time("updated_at")
    # Older payloads carry no merged_at/closed_at; the last update of a merged or closed one is when it happened.
    merged_at = attrs.opt_time("merged_at") or (updated_at if state == "merged" else None)
    closed_at = attrs.opt_time("closed_at") or (updated_at if state == "closed" else None)
    return PullRequest(
        source=SOURCE,
        repo=repo,
        number=attrs.integer("iid"),
        author=author,
        opened_at=attrs.time("created_at"),
        merged_at=merged_at,
        closed_at=closed_at,
        base_branch=attrs.text("target_branch"),
        head_sha=head_sha,
        labels=labels,
    )


# ── webhook deliveries ───────────────────────────────────────────────────────────────────────────────────────────


def _pipeline_hook(payload: _Node) -> list[Event]:
    attrs = payload.node("object_attributes")
    project = payload.node("project")
    run_id = attrs.ident("id")
    merge_request = payload.opt_node("merge_request")
    web_url = project.opt_text("web_url")
    run = _pipeline_run(
        attrs,
        repo=project.text("path_with_namespace"),
        default_branch=project.opt_text("default_branch"),
        pr_number=merge_request.opt_integer("iid") if merge_request else None,
        actor=_username(payload),
        url=f"{web_url}/-/pipelines/{run_id}" if web_url else attrs.opt_text("url"),
    )
    jobs: list[Event] = [_job(build, run_id) for build in payload.nodes("builds")]
    return [run, *jobs]


def _job_hook(payload: _Node) -> list[Event]:
    status = _run_status(payload, "build_status")
    retries = payload.opt_integer("retries_count")
    job = Job(
        source=SOURCE,
        id=payload.ident("build_id"),
        run_id=payload.ident("pipeline_id"),
        name=payload.text("build_name"),
        stage=payload.opt_text("build_stage"),
        runner=_runner(payload),
        status=status,
        attempt=retries + 1 if retries is not None else None,
        created_at=payload.time("build_created_at"),
        started_at=payload.opt_time("build_started_at"),
        finished_at=payload.opt_time("build_finished_at") if status in _FINISHED_RUN else None,
        failure_reason=_failure_reason(status, payload.opt_text("build_failure_reason")),
    )
    return [job]


def _deployment_sha(payload: _Node) -> str:
    """The full sha from ``commit_url`` when it extends ``short_sha``; the hook itself only carries the short one."""
    short_sha = payload.opt_text("short_sha")
    commit_url = payload.opt_text("commit_url")
    tail = commit_url.rstrip("/").rsplit("/", 1)[-1] if commit_url else ""
    if _SHA.fullmatch(tail) and (short_sha is None or tail.startswith(short_sha)):
        return tail
    if short_sha is None:
        raise InputError(f"{payload.where('short_sha')}: required field is missing")
    return short_sha


def _deployment_hook(payload: _Node) -> list[Event]:
    raw_status = payload.text("status")
    status = _deployment_status(payload, "status")
    changed_at = payload.opt_time("status_changed_at")
    finished = status in _FINISHED_DEPLOYMENT
    if finished and changed_at is None:
        raise InputError(f"status_changed_at: required when status is {raw_status!r}")
    sha = _deployment_sha(payload)
    ref = payload.opt_text("ref")
    deployment = Deployment(
        source=SOURCE,
        id=payload.ident("deployment_id"),
        service=payload.node("project").text("name"),
        environment=payload.text("environment"),
        sha=sha,
        version=ref if ref and ref != sha else None,
        actor=_username(payload),
        url=payload.opt_text("deployable_url"),
        started_at=changed_at if raw_status in ("created", "running") else None,
        finished_at=changed_at if finished else None,
        status=status,
    )
    return [deployment]


def _merge_request_author(payload: _Node, attrs: _Node) -> str:
    """The author's username when the actor is the author, else an id-based identity (see the module docstring)."""
    user = payload.opt_node("user")
    username = user.opt_text("username") if user else None
    author_id = attrs.opt_integer("author_id")
    actor_id = user.opt_integer("id") if user else None
    actor_is_author = attrs.opt_text("action") == "open" or (actor_id is not None and actor_id == author_id)
    if username and (actor_is_author or author_id is None):
        return username
    if author_id is not None:
        return f"user-id:{author_id}"
    raise InputError(f"{payload.where('user')}.username: required field is missing")


def _merge_request_hook(payload: _Node) -> list[Event]:
    attrs = payload.node("object_attributes")
    last_commit = attrs.opt_node("last_commit")
    labels_holder = attrs if "labels" in attrs.data else payload
    pull_request = _pull_request(
        attrs,
        repo=payload.node("project").text("path_with_namespace"),
        author=_merge_request_author(payload, attrs),
        head_sha=last_commit.opt_text("id") if last_commit else None,
        labels=_label_titles(labels_holder, "labels"),
    )
    return [pull_request]


def _push_hook(payload: _Node) -> list[Event]:
    """One change per commit. GitLab lists at most 20 commits of a push; the rest come with later events."""
    repo = payload.node("project").text("path_with_namespace")
    changes: list[Event] = []
    for commit in payload.nodes("commits"):
        author = commit.opt_node("author")
        change = Change(
            source=SOURCE,
            sha=commit.text("id"),
            repo=repo,
            authored_at=commit.time("timestamp"),
            author=author.opt_text("name") if author else None,
            message=commit.opt_text("message"),
        )
        changes.append(change)
    return changes


_PARSERS: Final[Mapping[str, Callable[[_Node], list[Event]]]] = {
    "pipeline": _pipeline_hook,
    "build": _job_hook,
    "deployment": _deployment_hook,
    "merge_request": _merge_request_hook,
    "push": _push_hook,
    "tag_push": _push_hook,
}


def kind_of(event_header: str | None, payload: Mapping[str, Any]) -> str | None:
    """The payload's ``object_kind``, else the kind the ``X-Gitlab-Event`` header names; None when neither says."""
    object_kind = payload.get("object_kind") if isinstance(payload, Mapping) else None
    if isinstance(object_kind, str) and object_kind:
        return object_kind
    return _HEADER_KINDS.get(event_header.strip()) if event_header else None


def parse_delivery(event_header: str | None, payload: Mapping[str, Any]) -> list[Event]:
    """The canonical events of one webhook delivery; [] for kinds this module does not handle.

    Raises InputError naming the field path when a handled payload lacks what it needs or has a bad value.
    """
    kind = kind_of(event_header, payload)
    parser = _PARSERS.get(kind) if kind else None
    if parser is None:
        return []
    if not isinstance(payload, Mapping):
        raise InputError(f"GitLab {kind} payload: expected a JSON object")
    with _validated(f"{kind} payload"):
        return parser(_Node(payload))


# ── REST API objects (used by the backfill) ──────────────────────────────────────────────────────────────────────


def run_from_api_pipeline(pipeline: Mapping[str, Any], project_path: str, default_branch: str | None) -> PipelineRun:
    """A pipeline from ``GET /projects/:id/pipelines/:pipeline_id``."""
    node = _Node(pipeline)
    with _validated("pipeline"):
        return _pipeline_run(
            node,
            repo=project_path,
            default_branch=default_branch,
            pr_number=None,
            actor=_username(node),
            url=node.opt_text("web_url"),
        )


def job_from_api_job(job: Mapping[str, Any]) -> Job:
    """A job from ``GET /projects/:id/pipelines/:pipeline_id/jobs``; its pipeline is ``job.pipeline.id``."""
    node = _Node(job)
    with _validated("job"):
        return _job(node, node.node("pipeline").ident("id"))


def deployment_from_api(deployment: Mapping[str, Any], service: str) -> Deployment:
    """A deployment from ``GET /projects/:id/deployments``; ``service`` names what it deploys."""
    node = _Node(deployment)
    status = _deployment_status(node, "status")
    deployable = node.opt_node("deployable")
    finished_at = None
    if status in _FINISHED_DEPLOYMENT:
        # Newer GitLab has finished_at; older only the deploy job's end, or the deployment's last update.
        finished_at = node.opt_time("finished_at") or (deployable.opt_time("finished_at") if deployable else None)
        finished_at = finished_at or node.opt_time("updated_at")
        if finished_at is None:
            raise InputError(f"finished_at: required when status is {node.text('status')!r}")
    sha = node.text("sha")
    ref = node.opt_text("ref")
    with _validated("deployment"):
        return Deployment(
            source=SOURCE,
            id=node.ident("id"),
            service=service,
            environment=node.node("environment").text("name"),
            sha=sha,
            version=ref if ref and ref != sha else None,
            actor=_username(node),
            url=deployable.opt_text("web_url") if deployable else None,
            started_at=deployable.opt_time("started_at") if deployable else None,
            finished_at=finished_at,
            status=status,
        )


def pull_request_from_api_merge_request(mr: Mapping[str, Any], project_path: str) -> PullRequest:
    """A merge request from ``GET /projects/:id/merge_requests``, which names its author outright."""
    node = _Node(mr)
    with _validated("merge request"):
        return _pull_request(
            node,
            repo=project_path,
            author=node.node("author").text("username"),
            head_sha=node.opt_text("sha"),
            labels=_label_titles(node, "labels"),
        )

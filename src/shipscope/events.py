"""Canonical events: the one contract between sources, the store and everything that reads it.

Every source adapter turns its bytes into these models and nothing else (DESIGN.md §2). Timestamps must carry a
UTC offset; ids are strings, unique within their ``source``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

DEFAULT_SOURCE = "generic"

RunStatus = Literal["queued", "in_progress", "success", "failure", "cancelled", "skipped"]
DeploymentStatus = Literal["success", "failure", "in_progress", "cancelled"]
TestOutcome = Literal["passed", "failed", "error", "skipped"]
Severity = Literal["critical", "high", "medium", "low", "info"]
DeploymentKind = Literal["deploy", "rollback", "hotfix"]

NonEmpty = Annotated[str, Field(min_length=1)]
Int32 = Annotated[int, Field(ge=0, le=2**31 - 1)]
"""Counts and numbers that the store keeps in 32-bit columns."""
Attempt = Annotated[int, Field(ge=1, le=2**31 - 1)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: NonEmpty = DEFAULT_SOURCE
    """Where the event came from (github, gitlab, junit, …); ids are unique within it."""


class PipelineRun(_Event):
    type: Literal["pipeline_run"] = "pipeline_run"
    id: NonEmpty
    repo: NonEmpty
    workflow: NonEmpty
    trigger: NonEmpty
    """push, pull_request, schedule, manual, …"""
    branch: NonEmpty
    default_branch: str | None = None
    pr_number: Int32 | None = None
    sha: NonEmpty
    actor: str | None = None
    status: RunStatus
    attempt: Attempt = 1
    """Re-runs of one run id are separate executions, each its own row."""
    created_at: AwareDatetime
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    url: str | None = None


class Job(_Event):
    type: Literal["job"] = "job"
    id: NonEmpty
    run_id: NonEmpty
    name: NonEmpty
    stage: str | None = None
    runner: str | list[str] | None = None
    """Runner labels, or the runner group's name."""
    status: RunStatus
    attempt: Attempt | None = None
    created_at: AwareDatetime
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    failure_reason: str | None = None


class Step(_Event):
    type: Literal["step"] = "step"
    job_id: NonEmpty
    name: NonEmpty
    number: Int32
    status: RunStatus
    started_at: AwareDatetime
    finished_at: AwareDatetime


class Cache(_Event):
    type: Literal["cache"] = "cache"
    run_id: str | None = None
    job_id: str | None = None
    kind: NonEmpty
    """dependency, docker-layer, …"""
    key: str | None = None
    hit: bool
    bytes: int | None = Field(default=None, ge=0, le=2**63 - 1)
    seconds: float | None = Field(default=None, ge=0)


class TestCase(_Event):
    __test__ = False  # not a pytest class

    type: Literal["test_case"] = "test_case"
    run_id: str | None = None
    job_id: str | None = None
    suite: NonEmpty
    classname: str | None = None
    name: NonEmpty
    file: str | None = None
    duration_seconds: float = Field(ge=0)
    outcome: TestOutcome
    attempt: Attempt = 1


class Finding(_Event):
    type: Literal["finding"] = "finding"
    scan_id: NonEmpty
    run_id: str | None = None
    repo: NonEmpty
    tool: NonEmpty
    target: str | None = None
    rule_id: NonEmpty
    severity: Severity
    fingerprint: NonEmpty
    location: str | None = None
    scanned_at: AwareDatetime


class Deployment(_Event):
    type: Literal["deployment"] = "deployment"
    id: NonEmpty
    service: NonEmpty
    environment: NonEmpty
    sha: NonEmpty
    version: str | None = None
    image_digest: str | None = None
    actor: str | None = None
    url: str | None = None
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    status: DeploymentStatus
    kind: DeploymentKind | None = None
    """Unset means an ordinary deploy."""
    rollback_of: str | None = None

    @model_validator(mode="after")
    def _finished_when_done(self) -> Deployment:
        if self.status in ("success", "failure", "cancelled") and self.finished_at is None:
            raise ValueError(f"finished_at is required when status is {self.status}")
        return self


class Change(_Event):
    type: Literal["change"] = "change"
    sha: NonEmpty
    repo: NonEmpty
    authored_at: AwareDatetime
    committed_at: AwareDatetime | None = None
    author: str | None = None
    pr_number: Int32 | None = None
    message: str | None = None
    deployment_id: str | None = None
    parents: list[NonEmpty] | None = None
    """The parent commits' shas, when the history is known (``shipscope git import``): lead time then counts every
    commit a deploy adds to the previous one, as ``git rev-list PREV..THIS`` lists them."""


class PullRequest(_Event):
    type: Literal["pull_request"] = "pull_request"
    repo: NonEmpty
    number: Int32
    author: NonEmpty
    opened_at: AwareDatetime
    first_review_at: AwareDatetime | None = None
    merged_at: AwareDatetime | None = None
    closed_at: AwareDatetime | None = None
    base_branch: NonEmpty
    head_sha: str | None = None
    labels: list[str] | None = None


class Incident(_Event):
    type: Literal["incident"] = "incident"
    id: NonEmpty
    service: NonEmpty
    severity: str | None = None
    title: NonEmpty
    opened_at: AwareDatetime
    acknowledged_at: AwareDatetime | None = None
    resolved_at: AwareDatetime | None = None
    labels: list[str] | None = None
    caused_by_deployment_id: str | None = None
    resolved_by_deployment_id: str | None = None


class TimelineEvent(_Event):
    type: Literal["timeline_event"] = "timeline_event"
    id: NonEmpty
    kind: NonEmpty
    """flag_toggle, infra, alert, annotation, …"""
    service: str | None = None
    at: AwareDatetime
    title: NonEmpty
    details: str | None = None


def timeline_details(values: Mapping[str, Any]) -> str:
    """A timeline event's details as its JSON text, without the values that are unknown or empty."""
    return orjson.dumps({key: value for key, value in values.items() if value not in (None, "", [], {})}).decode()


Event = Annotated[
    PipelineRun
    | Job
    | Step
    | Cache
    | TestCase
    | Finding
    | Deployment
    | Change
    | PullRequest
    | Incident
    | TimelineEvent,
    Field(discriminator="type"),
]

EVENT_TYPES: dict[str, type[_Event]] = {
    model.model_fields["type"].default: model
    for model in (
        PipelineRun,
        Job,
        Step,
        Cache,
        TestCase,
        Finding,
        Deployment,
        Change,
        PullRequest,
        Incident,
        TimelineEvent,
    )
}

_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)
# The adapter's own validate_python adds a few microseconds of bookkeeping per call; imports call it a million times.
_validate = _event_adapter.validator.validate_python


def event_json_schema(ref_template: str) -> dict[str, Any]:
    """JSON Schemas of the canonical events by name, ``CanonicalEvent`` being the union of them all; references
    follow ``ref_template`` (``{model}`` stands for a name), so they can live among an OpenAPI document's components."""
    union = _event_adapter.json_schema(ref_template=ref_template)
    definitions: dict[str, Any] = union.pop("$defs")
    return {**definitions, "CanonicalEvent": union}


class EventError(ValueError):
    """An event that does not match the canonical model; the message names the field and what was expected."""


def _describe(error: ValidationError) -> str:
    problems = []
    for detail in error.errors(include_url=False):
        location = ".".join(str(part) for part in detail["loc"] if part not in EVENT_TYPES)
        kind = detail["type"]
        if kind == "timezone_aware":
            message = f"expected an RFC 3339 timestamp with a UTC offset, got {detail['input']!r}"
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "extra_forbidden":
            message = "unknown field"
        elif kind == "union_tag_invalid":
            location = "type"
            tag = detail.get("ctx", {}).get("tag")
            message = f"unknown event type {tag!r}; expected one of {', '.join(EVENT_TYPES)}"
        elif kind == "union_tag_not_found":
            location = "type"
            message = "required field is missing"
        else:
            message = detail["msg"].removeprefix("Value error, ")
            if "input" in detail and kind not in ("model_type", "value_error"):
                message += f", got {detail['input']!r}"
        problems.append(f"{location}: {message}" if location else message)
    return "; ".join(problems)


def parse_event(data: object) -> Event:
    """Validate one decoded JSON value as a canonical event, or raise EventError naming what is wrong."""
    try:
        return _validate(data)  # type: ignore[no-any-return]
    except ValidationError as error:
        raise EventError(_describe(error)) from None


def event_to_json(event: _Event) -> dict[str, Any]:
    """The canonical JSON shape of an event: RFC 3339 timestamps, optional fields left out when unset."""
    return event.model_dump(mode="json", exclude_none=True)

"""`shipscope record`: the last step of a pipeline reports that pipeline to a shipscope server.

It reads the GitHub Actions or GitLab CI environment, builds canonical events for the current run (its status
and times; with a vendor API token also its jobs and steps, which give per-stage timings), adds the test cases of
the JUnit reports and the findings of the SARIF logs it is given, and posts them as NDJSON to
``{server}/api/v1/events``. When the server cannot take them the events are appended to a spool file, to be
loaded later with ``shipscope import``.

This is telemetry about the pipeline it runs in, so it must never break that pipeline: ``record`` returns
normally whatever happens and reports every problem as a warning.

Identity: runs, jobs and steps carry the same ``source`` and ids as the webhook converters of
``shipscope.ingest.github`` and ``shipscope.ingest.gitlab`` (GitHub: the run id and attempt, job ids; GitLab: the
pipeline id, job ids), so a record and the webhooks of the same run update the same rows. The jobs themselves are
converted by those modules.

Status: a step inside a run cannot see the run's outcome yet, so it comes from ``--status`` (GitHub
``${{ job.status }}``, or a GitLab ``when: on_success`` / ``when: on_failure`` job), combined with the jobs the
vendor API lists as already finished: one failed job (on GitLab, one not allowed to fail) makes the run a failure,
one cancelled job a cancellation. With neither, the run is recorded as ``in_progress``, without a finish time.
"""

from __future__ import annotations

import glob
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
from pydantic import ValidationError

from shipscope.errors import InputError
from shipscope.events import Event, Job, PipelineRun, RunStatus, Step, event_to_json
from shipscope.ingest.github import job_events
from shipscope.ingest.gitlab import job_from_api_job, parse_timestamp
from shipscope.ingest.junit import parse_junit
from shipscope.ingest.sarif import parse_sarif

CiKind = Literal["github", "gitlab"]
Sleep = Callable[[float], None]

EVENTS_PATH = "/api/v1/events"
NDJSON = "application/x-ndjson"

MAX_BATCH_EVENTS = 5000
MAX_BATCH_BYTES = 4 * 1024 * 1024
"""Bodies stay well under the server's default 10 MB limit; a 413 still halves a batch until it fits."""

BACKOFF_SECONDS = 1.0
"""The first retry waits this long, each later one twice the one before (1, 2, 4, … seconds)."""
MAX_BACKOFF_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 60.0
"""A server's Retry-After is honoured up to this: the pipeline should not wait on telemetry for longer."""

MAX_LISTED_REJECTIONS = 10

_GITHUB_API = "https://api.github.com"
_GITHUB_SERVER = "https://github.com"
_GITHUB_PAGE = 100
_GITLAB_PAGE = 100
_MAX_PAGES = 20

_STATUSES: Mapping[str, RunStatus] = {
    # canonical
    "success": "success",
    "failure": "failure",
    "cancelled": "cancelled",
    "skipped": "skipped",
    "in_progress": "in_progress",
    "queued": "queued",
    # GitHub job.status and conclusions
    "timed_out": "failure",
    "neutral": "success",
    # GitLab CI_JOB_STATUS and job statuses
    "failed": "failure",
    "canceled": "cancelled",
    "canceling": "cancelled",
    "running": "in_progress",
    "pending": "queued",
    "created": "queued",
    # people
    "succeeded": "success",
    "passed": "success",
}
_FINAL: frozenset[RunStatus] = frozenset({"success", "failure", "cancelled", "skipped"})
_GITHUB_PR_REF = re.compile(r"refs/pull/(\d+)/(?:merge|head)")
_GITLAB_MR_REF = re.compile(r"refs/merge-requests/(\d+)/\w+")
_GITLAB_TRIGGERS: Mapping[str, str] = {
    # as shipscope.ingest.gitlab maps a pipeline's source, so records and webhooks agree
    "merge_request_event": "pull_request",
    "external_pull_request_event": "pull_request",
    "web": "manual",
}
_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class RecordOptions:
    server_url: str
    """The shipscope server, e.g. https://shipscope.example.com (SHIPSCOPE_URL)."""
    token: str = ""
    """Sent as ``Authorization: Bearer`` to the shipscope server (SHIPSCOPE_TOKEN)."""
    status: str | None = None
    """The final status, e.g. GitHub ``${{ job.status }}`` or GitLab ``$CI_JOB_STATUS`` in an after_script; GitHub,
    GitLab and canonical words are understood (success, failure/failed, cancelled/canceled, skipped, …)."""
    junit: tuple[Path, ...] = ()
    """JUnit XML reports; a path with ``*``, ``?`` or ``[`` that names no file is expanded as a glob (``**`` too)."""
    sarif: tuple[Path, ...] = ()
    """SARIF logs, expanded like ``junit``."""
    spool: Path = Path("shipscope-spool.ndjson")
    """Where events that could not be sent are appended as NDJSON."""
    retries: int = 3
    """Retries after the first try, on connection errors, timeouts, 429 and 5xx."""
    timeout: float = 10.0
    """Seconds per HTTP request."""
    vendor_token: str = ""
    """GITHUB_TOKEN (actions: read), or a GitLab token with read_api, to read this run's jobs and steps."""


@dataclass
class RecordOutcome:
    events: int
    """Events collected for this run."""
    sent: bool
    """Every event reached the server (some may still have been rejected there: see the warnings)."""
    spooled_to: Path | None
    """The spool file the unsent events were appended to, if any."""
    warnings: list[str]


# ── the environment ─────────────────────────────────────────────────────────────────────────────────────────────


def detect_ci(environ: Mapping[str, str]) -> CiKind | None:
    """Which CI this process runs in: GitHub Actions (GITHUB_ACTIONS=true) or GitLab CI (GITLAB_CI=true)."""
    if environ.get("GITHUB_ACTIONS", "").strip().lower() == "true":
        return "github"
    if environ.get("GITLAB_CI", "").strip().lower() == "true":
        return "gitlab"
    return None


class _Env:
    """Environment variables, empty values read as unset."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def positive(self, name: str, warnings: list[str]) -> int | None:
        text = self.get(name)
        if text is None:
            return None
        if text.isdigit() and 1 <= int(text) <= 2**31 - 1:
            return int(text)
        warnings.append(f"{name}={text!r} is not a positive integer; ignored")
        return None


@dataclass
class _Scope:
    """What reports attach to: the run and, when known, the job that produced them."""

    source: CiKind
    run_id: str | None
    job_id: str | None
    repo: str | None


def map_status(value: str | None) -> RunStatus | None:
    """A canonical run status for a GitHub, GitLab or canonical status word; None when unknown or unset."""
    if value is None:
        return None
    return _STATUSES.get(value.strip().lower().replace("-", "_").replace(" ", "_"))


def _explicit_status(value: str | None, warnings: list[str]) -> RunStatus | None:
    if value is None or not value.strip():
        return None
    status = map_status(value)
    if status is None:
        known = ", ".join(sorted(_STATUSES))
        warnings.append(f"--status {value!r} is not a status shipscope knows ({known}); ignored")
        return None
    if status not in _FINAL:
        # In a GitLab .post job, $CI_JOB_STATUS is the recording job's own status: always "running".
        warnings.append(
            f"--status {value!r} is not a final status (did it come from a job that is still running?); ignored"
        )
        return None
    return status


def _combine(own: RunStatus | None, others: Iterable[RunStatus]) -> RunStatus | None:
    """A run's status from its own (explicit) status and its finished jobs': any failure fails it, else any
    cancellation cancels it; else the explicit status, else success when any job succeeded."""
    statuses = [*([own] if own is not None else []), *others]
    if "failure" in statuses:
        return "failure"
    if "cancelled" in statuses:
        return "cancelled"
    if own is not None:
        return own
    return "success" if "success" in statuses else None


def _aware(moment: datetime) -> datetime:
    # A naive datetime is local time (datetime.now()); astimezone reads it so.
    return moment if moment.utcoffset() is not None else moment.astimezone(UTC)


def _iso_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.utcoffset() is not None else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _describe(error: BaseException) -> str:
    if isinstance(error, InputError):
        return error.message
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(part) for part in detail['loc'])}: {detail['msg']}"
            for detail in error.errors(include_url=False)
        )
    return f"{type(error).__name__}: {error}"


# ── HTTP ─────────────────────────────────────────────────────────────────────────────────────────────────────────


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date, or nothing: the backoff decides
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _backoff(retry: int) -> float:
    return float(min(BACKOFF_SECONDS * 2**retry, MAX_BACKOFF_SECONDS))


def _request(http: httpx.Client, method: str, url: str, *, retries: int, sleep: Sleep, **kwargs: Any) -> httpx.Response:
    """The response, after retrying connection errors, timeouts, 429 and 5xx with exponential backoff; the last
    such answer is returned, the last transport error raised."""
    retry = 0
    while True:
        try:
            response = http.request(method, url, **kwargs)
        except httpx.TransportError:
            if retry >= retries:
                raise
            delay = _backoff(retry)
        else:
            if not _retryable(response.status_code) or retry >= retries:
                return response
            asked = _retry_after(response) if response.status_code in (429, 503) else None
            delay = _backoff(retry) if asked is None else asked
        sleep(delay)
        retry += 1


def _status_text(response: httpx.Response) -> str:
    return f"{response.status_code} {response.reason_phrase}".strip()


def _get_json(
    http: httpx.Client,
    url: str,
    *,
    headers: Mapping[str, str],
    params: Mapping[str, str | int] | None = None,
    what: str,
    retries: int,
    sleep: Sleep,
    warnings: list[str],
) -> tuple[Any, httpx.Headers] | None:
    try:
        response = _request(http, "GET", url, headers=dict(headers), params=params, retries=retries, sleep=sleep)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        warnings.append(f"cannot read {what} from {url}: {type(error).__name__}: {error}")
        return None
    if response.status_code != 200:
        hint = " (does the token have access to it?)" if response.status_code in (401, 403, 404) else ""
        warnings.append(f"cannot read {what}: {url} answered {_status_text(response)}{hint}")
        return None
    try:
        return orjson.loads(response.content), response.headers
    except orjson.JSONDecodeError:
        warnings.append(f"cannot read {what}: {url} answered with something that is not JSON")
        return None


@dataclass
class _Vendor:
    http: httpx.Client
    token: str
    retries: int
    sleep: Sleep
    warnings: list[str]


# ── GitHub Actions ──────────────────────────────────────────────────────────────────────────────────────────────


def _github_headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }


def _github_event_payload(env: _Env, warnings: list[str]) -> Mapping[str, Any]:
    """The webhook payload that triggered the run (GITHUB_EVENT_PATH), or {}."""
    path = env.get("GITHUB_EVENT_PATH")
    if path is None:
        return {}
    try:
        payload = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, orjson.JSONDecodeError) as error:
        warnings.append(f"cannot read the event payload {path}: {_describe(error)}")
        return {}
    return _mapping(payload)


def _github_event_time(event: str | None, payload: Mapping[str, Any]) -> datetime | None:
    """When the event that triggered the run happened, which is when GitHub created the run: a push's
    ``repository.pushed_at``, a pull request's ``updated_at``. None for other events."""
    if event == "push":
        pushed_at = _mapping(payload.get("repository")).get("pushed_at")
        if isinstance(pushed_at, int) and not isinstance(pushed_at, bool) and pushed_at > 0:
            return datetime.fromtimestamp(pushed_at, UTC)
        return _iso_time(pushed_at)
    if event in ("pull_request", "pull_request_target"):
        return _iso_time(_mapping(payload.get("pull_request")).get("updated_at"))
    return None


def _github_pr_number(env: _Env, payload: Mapping[str, Any]) -> int | None:
    match = _GITHUB_PR_REF.fullmatch(env.get("GITHUB_REF") or "")
    if match:
        return int(match[1])
    number = _mapping(payload.get("pull_request")).get("number")
    return number if isinstance(number, int) and not isinstance(number, bool) and number >= 0 else None


def _github_jobs(vendor: _Vendor, api: str, repo: str, run_id: str, attempt: int) -> list[Mapping[str, Any]] | None:
    url = f"{api}/repos/{repo}/actions/runs/{run_id}/attempts/{attempt}/jobs"
    jobs: list[Mapping[str, Any]] = []
    for page in range(1, _MAX_PAGES + 1):
        answer = _get_json(
            vendor.http,
            url,
            headers=_github_headers(vendor.token),
            params={"per_page": _GITHUB_PAGE, "page": page},
            what="the run's jobs",
            retries=vendor.retries,
            sleep=vendor.sleep,
            warnings=vendor.warnings,
        )
        if answer is None:
            return jobs or None
        batch = _mapping(answer[0]).get("jobs")
        if not isinstance(batch, list):
            vendor.warnings.append(f"cannot read the run's jobs: {url} answered without a jobs list")
            return jobs or None
        jobs.extend(item for item in batch if isinstance(item, Mapping))
        total = _mapping(answer[0]).get("total_count")
        if len(batch) < _GITHUB_PAGE or (isinstance(total, int) and len(jobs) >= total):
            break
    return jobs


def _current_github_job(jobs: Sequence[Mapping[str, Any]], runner_name: str | None) -> Mapping[str, Any] | None:
    """The job this step runs in: the running job on this runner (RUNNER_NAME), else the only running job."""
    running = [job for job in jobs if job.get("status") == "in_progress"]
    if runner_name is not None:
        mine = [job for job in running if job.get("runner_name") == runner_name]
        if mine:
            return mine[0]
    return running[0] if len(running) == 1 else None


def _github_job_events(
    raw_jobs: Sequence[Mapping[str, Any]],
    current: Mapping[str, Any] | None,
    explicit: RunStatus | None,
    now: datetime,
    warnings: list[str],
) -> tuple[list[Event], str | None, RunStatus | None, list[RunStatus]]:
    """Events of the finished jobs and of the current one; its id and status; the other finished jobs' statuses."""
    events: list[Event] = []
    current_id: str | None = None
    current_status: RunStatus | None = explicit
    others: list[RunStatus] = []
    for raw in raw_jobs:
        try:
            converted = job_events(raw)
        except InputError as error:
            warnings.append(f"skipped a job the GitHub API listed: {error.message}")
            continue
        job, steps = converted[0], [event for event in converted[1:] if isinstance(event, Step)]
        if not isinstance(job, Job):
            continue
        if raw is current:
            current_id = job.id
            if current_status is None:
                # Without --status, the steps finished so far tell how the job is going.
                current_status = _combine(None, [step.status for step in steps]) if steps else None
            if current_status is not None:
                failure_reason = current_status if current_status in ("failure", "cancelled") else None
                update = {"status": current_status, "finished_at": now, "failure_reason": failure_reason}
                job = job.model_copy(update=update)
            events.extend([job, *steps])
        elif job.status in _FINAL:
            others.append(job.status)
            events.extend(converted)
        # Jobs still queued or running elsewhere are left to a later record or webhook.
    return events, current_id, current_status, others


def _github(options: RecordOptions, env: _Env, now: datetime, vendor: _Vendor) -> tuple[list[Event], _Scope]:
    warnings = vendor.warnings
    run_id, repo = env.get("GITHUB_RUN_ID"), env.get("GITHUB_REPOSITORY")
    attempt = env.positive("GITHUB_RUN_ATTEMPT", warnings) or 1
    payload = _github_event_payload(env, warnings)
    explicit = _explicit_status(options.status, warnings)
    scope = _Scope(source="github", run_id=run_id, job_id=None, repo=repo)

    api_run: Mapping[str, Any] = {}
    job_events_: list[Event] = []
    status = explicit
    if not options.vendor_token:
        warnings.append(
            "no GITHUB_TOKEN: job and step (stage) timings and the run's start are not recorded; "
            "give the step GITHUB_TOKEN (with permission actions: read)"
        )
    elif run_id is not None and repo is not None:
        api = (env.get("GITHUB_API_URL") or _GITHUB_API).rstrip("/")
        answer = _get_json(
            vendor.http,
            f"{api}/repos/{repo}/actions/runs/{run_id}",
            headers=_github_headers(vendor.token),
            what="the workflow run",
            retries=vendor.retries,
            sleep=vendor.sleep,
            warnings=warnings,
        )
        api_run = _mapping(answer[0]) if answer is not None else {}
        raw_jobs = _github_jobs(vendor, api, repo, run_id, attempt)
        if raw_jobs is not None:
            current = _current_github_job(raw_jobs, env.get("RUNNER_NAME"))
            job_events_, scope.job_id, own, others = _github_job_events(raw_jobs, current, explicit, now, warnings)
            status = _combine(own, others)

    run = _github_run(env, payload, api_run, status, attempt, now, warnings)
    return ([run] if run is not None else []) + job_events_, scope


def _github_run(
    env: _Env,
    payload: Mapping[str, Any],
    api_run: Mapping[str, Any],
    status: RunStatus | None,
    attempt: int,
    now: datetime,
    warnings: list[str],
) -> PipelineRun | None:
    run_id, repo = env.get("GITHUB_RUN_ID"), env.get("GITHUB_REPOSITORY")
    pull_request = _mapping(payload.get("pull_request"))
    # A pull request run's GITHUB_SHA is the merge commit GitHub made; the webhooks' head_sha is the head commit.
    head_sha = _mapping(pull_request.get("head")).get("sha")
    sha = head_sha if isinstance(head_sha, str) and head_sha else env.get("GITHUB_SHA")
    sha = sha or _str(api_run.get("head_sha"))
    event = env.get("GITHUB_EVENT_NAME") or _str(api_run.get("event"))
    branch = env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME") or _str(api_run.get("head_branch"))
    missing = [
        name
        for name, value in (
            ("GITHUB_RUN_ID", run_id),
            ("GITHUB_REPOSITORY", repo),
            ("GITHUB_SHA", sha),
            ("GITHUB_EVENT_NAME", event),
            ("GITHUB_REF_NAME", branch),
        )
        if value is None
    ]
    if missing:
        warnings.append(f"the run is not recorded: {', '.join(missing)} not set")
        return None

    created_at = _iso_time(api_run.get("created_at"))
    if created_at is None and attempt == 1:
        # A re-run is created long after its trigger, so only a first attempt can take the trigger's time.
        event_time = _github_event_time(event, payload)
        created_at = event_time if event_time is not None and event_time <= now else None
    if created_at is None:
        created_at = now
        warnings.append(
            "the run's creation time is unknown (it comes from the API with GITHUB_TOKEN, or from a push or "
            "pull request event of a first attempt); recorded as now"
        )
    if status is None:
        warnings.append(
            "the run's final status is unknown (pass --status, e.g. ${{ job.status }}); recorded as in_progress"
        )
    final = status is not None and status in _FINAL
    default_branch = _mapping(payload.get("repository")).get("default_branch") or _mapping(
        api_run.get("repository")
    ).get("default_branch")
    server = (env.get("GITHUB_SERVER_URL") or _GITHUB_SERVER).rstrip("/")
    try:
        return PipelineRun(
            source="github",
            id=run_id,
            attempt=attempt,
            repo=repo,
            workflow=env.get("GITHUB_WORKFLOW") or _str(api_run.get("name")) or _str(api_run.get("path")) or "workflow",
            trigger=event,
            branch=branch,
            default_branch=_str(default_branch),
            pr_number=_github_pr_number(env, payload),
            sha=sha,
            actor=env.get("GITHUB_TRIGGERING_ACTOR") or env.get("GITHUB_ACTOR"),
            status=status if status is not None else "in_progress",
            created_at=created_at,
            started_at=_iso_time(api_run.get("run_started_at")),
            finished_at=now if final else None,
            url=_str(api_run.get("html_url")) or f"{server}/{repo}/actions/runs/{run_id}",
        )
    except ValidationError as error:
        warnings.append(f"the run is not recorded: {_describe(error)}")
        return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# ── GitLab CI ───────────────────────────────────────────────────────────────────────────────────────────────────


def _gitlab_headers(token: str, env: _Env) -> dict[str, str]:
    # CI_JOB_TOKEN authenticates as JOB-TOKEN; it reaches a pipeline's jobs only where fine-grained job token
    # permissions allow it. Project and personal access tokens (read_api) go in PRIVATE-TOKEN.
    if token == env.get("CI_JOB_TOKEN"):
        return {"JOB-TOKEN": token}
    return {"PRIVATE-TOKEN": token}


def _gitlab_jobs(vendor: _Vendor, url: str, headers: Mapping[str, str]) -> list[Mapping[str, Any]] | None:
    jobs: list[Mapping[str, Any]] = []
    page = "1"
    for _ in range(_MAX_PAGES):
        answer = _get_json(
            vendor.http,
            url,
            headers=headers,
            params={"per_page": _GITLAB_PAGE, "page": page},
            what="the pipeline's jobs",
            retries=vendor.retries,
            sleep=vendor.sleep,
            warnings=vendor.warnings,
        )
        if answer is None:
            return jobs or None
        batch, response_headers = answer
        if not isinstance(batch, list):
            vendor.warnings.append(f"cannot read the pipeline's jobs: {url} answered without a list")
            return jobs or None
        jobs.extend(item for item in batch if isinstance(item, Mapping))
        page = response_headers.get("X-Next-Page", "").strip()
        if not page:
            break
    return jobs


def _gitlab_time(value: str | None, name: str, warnings: list[str]) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value, name)
    except InputError as error:
        warnings.append(f"{error.message}; ignored")
        return None


def _gitlab(options: RecordOptions, env: _Env, now: datetime, vendor: _Vendor) -> tuple[list[Event], _Scope]:
    warnings = vendor.warnings
    pipeline_id, project_path = env.get("CI_PIPELINE_ID"), env.get("CI_PROJECT_PATH")
    current_id = env.get("CI_JOB_ID")
    explicit = _explicit_status(options.status, warnings)
    # In an after_script CI_JOB_STATUS is how this job ended; in a script (a .post job) it is "running".
    own = map_status(env.get("CI_JOB_STATUS"))
    own = own if own in _FINAL else None
    # Reports belong to this job when it records itself (after_script); a recording job of its own (.post) gets
    # them as artifacts of other jobs, which it cannot tell apart, so they are tied to the pipeline only.
    scope = _Scope(
        source="gitlab", run_id=pipeline_id, job_id=current_id if own is not None else None, repo=project_path
    )

    api_pipeline: Mapping[str, Any] = {}
    jobs: list[Job] = []
    counted: list[RunStatus] = [own] if own is not None else []
    api, project_id = env.get("CI_API_V4_URL"), env.get("CI_PROJECT_ID")
    if not options.vendor_token:
        warnings.append(
            "no GitLab API token: job (stage) timings and the pipeline's start are not recorded; "
            "set SHIPSCOPE_VENDOR_TOKEN to a token with read_api"
        )
    elif api is not None and project_id is not None and pipeline_id is not None:
        base = f"{api.rstrip('/')}/projects/{project_id}/pipelines/{pipeline_id}"
        headers = _gitlab_headers(options.vendor_token, env)
        answer = _get_json(
            vendor.http,
            base,
            headers=headers,
            what="the pipeline",
            retries=vendor.retries,
            sleep=vendor.sleep,
            warnings=warnings,
        )
        api_pipeline = _mapping(answer[0]) if answer is not None else {}
        for raw in _gitlab_jobs(vendor, f"{base}/jobs", headers) or []:
            try:
                job = job_from_api_job(raw)
            except InputError as error:
                warnings.append(f"skipped a job the GitLab API listed: {error.message}")
                continue
            if job.id == current_id:
                if own is None:
                    continue  # the recording job itself, still running
                # CI_JOB_STATUS says how the job ended, not why: the job hook brings the reason.
                job = job.model_copy(update={"status": own, "finished_at": now})
            elif job.status not in _FINAL:
                continue  # not run (manual, created) or still running: left to a later record or webhook
            else:
                # A job allowed to fail does not fail the pipeline.
                allowed = raw.get("allow_failure") is True and job.status == "failure"
                if not allowed:
                    counted.append(job.status)
            jobs.append(job)
    else:
        warnings.append("CI_API_V4_URL, CI_PROJECT_ID or CI_PIPELINE_ID is not set; jobs are not recorded")

    status = _combine(explicit, counted)
    run = _gitlab_run(env, api_pipeline, jobs, status, now, warnings)
    events: list[Event] = [run] if run is not None else []
    events.extend(jobs)
    return events, scope


def _gitlab_run(
    env: _Env,
    api_pipeline: Mapping[str, Any],
    jobs: Sequence[Job],
    status: RunStatus | None,
    now: datetime,
    warnings: list[str],
) -> PipelineRun | None:
    pipeline_id, project_path = env.get("CI_PIPELINE_ID"), env.get("CI_PROJECT_PATH")
    branch = env.get("CI_COMMIT_REF_NAME") or _str(api_pipeline.get("ref"))
    sha = env.get("CI_COMMIT_SHA") or _str(api_pipeline.get("sha"))
    missing = [
        name
        for name, value in (
            ("CI_PIPELINE_ID", pipeline_id),
            ("CI_PROJECT_PATH", project_path),
            ("CI_COMMIT_REF_NAME", branch),
            ("CI_COMMIT_SHA", sha),
        )
        if value is None
    ]
    if missing:
        warnings.append(f"the pipeline is not recorded: {', '.join(missing)} not set")
        return None

    created_at = _gitlab_time(env.get("CI_PIPELINE_CREATED_AT"), "CI_PIPELINE_CREATED_AT", warnings)
    created_at = created_at or _gitlab_time(_str(api_pipeline.get("created_at")), "pipeline.created_at", warnings)
    if created_at is None:
        created_at = now
        warnings.append("the pipeline's creation time is unknown (CI_PIPELINE_CREATED_AT is not set); recorded as now")
    started_at = _gitlab_time(_str(api_pipeline.get("started_at")), "pipeline.started_at", warnings)
    if started_at is None:
        # The pipeline started when its first job did.
        starts = [job.started_at for job in jobs if job.started_at is not None]
        started_at = min(starts) if starts else None
    if status is None:
        warnings.append(
            "the pipeline's final status is unknown (pass --status, or give an API token to derive it from the "
            "jobs); recorded as in_progress"
        )
    final = status is not None and status in _FINAL
    source = env.get("CI_PIPELINE_SOURCE") or _str(api_pipeline.get("source"))
    mr_iid = env.get("CI_MERGE_REQUEST_IID")
    mr_match = _GITLAB_MR_REF.fullmatch(branch or "")
    pr_number = int(mr_iid) if mr_iid is not None and mr_iid.isdigit() else (int(mr_match[1]) if mr_match else None)
    project_url = env.get("CI_PROJECT_URL")
    url = env.get("CI_PIPELINE_URL") or (f"{project_url}/-/pipelines/{pipeline_id}" if project_url else None)
    try:
        return PipelineRun(
            source="gitlab",
            id=pipeline_id,
            repo=project_path,
            workflow=env.get("CI_PIPELINE_NAME") or _str(api_pipeline.get("name")) or "pipeline",
            trigger=_GITLAB_TRIGGERS.get(source, source) if source else "unknown",
            branch=branch,
            default_branch=env.get("CI_DEFAULT_BRANCH"),
            pr_number=pr_number,
            sha=sha,
            actor=env.get("GITLAB_USER_LOGIN"),
            status=status if status is not None else "in_progress",
            created_at=created_at,
            started_at=started_at,
            finished_at=now if final else None,
            url=url or _str(api_pipeline.get("web_url")),
        )
    except ValidationError as error:
        warnings.append(f"the pipeline is not recorded: {_describe(error)}")
        return None


# ── reports ─────────────────────────────────────────────────────────────────────────────────────────────────────


def _expand(paths: Sequence[Path], kind: str, warnings: list[str]) -> list[Path]:
    """Paths as given; one with glob characters that names no file is expanded (``**`` recursive)."""
    found: dict[Path, None] = {}
    for path in paths:
        text = str(path)
        if _GLOB_CHARACTERS.isdisjoint(text) or path.exists():
            found.setdefault(path)
            continue
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            warnings.append(f"no {kind} report matches {text}")
        for match in matches:
            found.setdefault(Path(match))
    return list(found)


def _report_events(options: RecordOptions, scope: _Scope, now: datetime, warnings: list[str]) -> list[Event]:
    events: list[Event] = []
    for path in _expand(options.junit, "JUnit", warnings):
        try:
            with path.open("rb") as stream:
                events.extend(parse_junit(stream, run_id=scope.run_id, job_id=scope.job_id, source=scope.source))
        except Exception as error:  # one bad report must not cost the others
            warnings.append(f"JUnit report {path} skipped: {_describe(error)}")
    sarif_paths = _expand(options.sarif, "SARIF", warnings)
    if sarif_paths and scope.repo is None:
        warnings.append("SARIF logs skipped: the repository is unknown (GITHUB_REPOSITORY / CI_PROJECT_PATH)")
        return events
    for path in sarif_paths:
        assert scope.repo is not None
        try:
            problems: list[str] = []
            events.extend(
                parse_sarif(path.read_bytes(), repo=scope.repo, scanned_at=now, run_id=scope.run_id, warnings=problems)
            )
            warnings.extend(f"SARIF log {path}: {problem}" for problem in problems)
        except Exception as error:
            warnings.append(f"SARIF log {path} skipped: {_describe(error)}")
    return events


def _fallback_scope(ci: CiKind, env: _Env) -> _Scope:
    if ci == "github":
        return _Scope(source=ci, run_id=env.get("GITHUB_RUN_ID"), job_id=None, repo=env.get("GITHUB_REPOSITORY"))
    job_id = env.get("CI_JOB_ID") if map_status(env.get("CI_JOB_STATUS")) in _FINAL else None
    return _Scope(source=ci, run_id=env.get("CI_PIPELINE_ID"), job_id=job_id, repo=env.get("CI_PROJECT_PATH"))


# ── collecting ──────────────────────────────────────────────────────────────────────────────────────────────────


def collect_events(
    options: RecordOptions,
    environ: Mapping[str, str],
    *,
    now: datetime,
    http: httpx.Client | None = None,
    sleep: Sleep = time.sleep,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Canonical event dicts (JSON-ready, as accepted by POST /api/v1/events) and warnings.

    ``http`` reads the vendor API (a client is made, and closed, when it is None); ``sleep`` waits between its
    retries. Problems with the environment, the vendor API or a report are warnings, never exceptions.
    """
    warnings: list[str] = []
    now = _aware(now)
    ci = detect_ci(environ)
    if ci is None:
        warnings.append("no CI detected (neither GITHUB_ACTIONS nor GITLAB_CI is 'true'); nothing recorded")
        return [], warnings
    env = _Env(environ)
    client = http if http is not None else httpx.Client(timeout=options.timeout)
    try:
        vendor = _Vendor(client, options.vendor_token, max(options.retries, 0), sleep, warnings)
        events, scope = _github(options, env, now, vendor) if ci == "github" else _gitlab(options, env, now, vendor)
    except Exception as error:  # the reports can still be sent
        warnings.append(f"the run could not be read: {type(error).__name__}: {error}")
        events, scope = [], _fallback_scope(ci, env)
    finally:
        if http is None:
            client.close()
    events.extend(_report_events(options, scope, now, warnings))
    return [event_to_json(event) for event in events], warnings


# ── sending and spooling ────────────────────────────────────────────────────────────────────────────────────────


@dataclass
class _Batch:
    start: int
    """0-based index of its first event among all of this record's events."""
    lines: list[bytes]


@dataclass
class _Delivery:
    """What is still to be delivered; read by the last-resort handler, so nothing collected is ever lost."""

    events: int = 0
    queue: deque[_Batch] = field(default_factory=deque)

    def unsent(self) -> list[bytes]:
        return [line for batch in self.queue for line in batch.lines]


def _batches(lines: Sequence[bytes]) -> list[_Batch]:
    batches: list[_Batch] = []
    current: list[bytes] = []
    size = 0
    start = 0
    for index, line in enumerate(lines):
        if current and (len(current) >= MAX_BATCH_EVENTS or size + len(line) + 1 > MAX_BATCH_BYTES):
            batches.append(_Batch(start, current))
            current, size, start = [], 0, index
        current.append(line)
        size += len(line) + 1
    if current:
        batches.append(_Batch(start, current))
    return batches


def _rejections(answer: object, batch: _Batch, events: Sequence[dict[str, Any]], warnings: list[str]) -> None:
    body = _mapping(answer)
    rejected = body.get("rejected")
    count = body.get("rejected_count")
    items = [item for item in rejected if isinstance(item, Mapping)] if isinstance(rejected, list) else []
    total = count if isinstance(count, int) else len(items)
    for item in items[:MAX_LISTED_REJECTIONS]:
        line = item.get("line")
        if isinstance(line, int) and 1 <= line <= len(batch.lines):
            index = batch.start + line - 1
            what = f"event {index + 1} ({events[index].get('type', '?')})"
        else:
            what = f"an event (line {line})"
        warnings.append(f"the shipscope server rejected {what}: {item.get('error')}")
    if total > MAX_LISTED_REJECTIONS:
        warnings.append(f"… and {total - MAX_LISTED_REJECTIONS} more events rejected by the shipscope server")


def _post(
    http: httpx.Client,
    url: str,
    batch: _Batch,
    options: RecordOptions,
    sleep: Sleep,
) -> tuple[httpx.Response | None, str | None]:
    """The server's answer, or why there is none."""
    headers = {"Content-Type": NDJSON, "Accept": "application/json"}
    if options.token:
        headers["Authorization"] = f"Bearer {options.token}"
    body = b"".join(line + b"\n" for line in batch.lines)
    try:
        response = _request(http, "POST", url, content=body, headers=headers, retries=options.retries, sleep=sleep)
    except httpx.TransportError as error:
        return None, f"server unreachable ({type(error).__name__}: {error})"
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        return None, f"cannot send to the shipscope server ({type(error).__name__}: {error})"
    return response, None


def _server_error(response: httpx.Response) -> str:
    detail = ""
    try:
        answer = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        answer = None
    if isinstance(answer, Mapping):
        error = answer.get("error") or answer.get("detail")
        rejected = answer.get("rejected")
        if not error and isinstance(rejected, list) and rejected:
            error = _mapping(rejected[0]).get("error")
        detail = f": {error}" if error else ""
    elif response.text:
        detail = f": {response.text[:200]}"
    hint = {401: " (is SHIPSCOPE_TOKEN set?)", 403: " (the token needs the ingest scope)"}.get(response.status_code, "")
    return f"the shipscope server answered {_status_text(response)}{detail}{hint}"


def _deliver(
    http: httpx.Client,
    events: Sequence[dict[str, Any]],
    options: RecordOptions,
    sleep: Sleep,
    state: _Delivery,
    warnings: list[str],
) -> str | None:
    """Posts the queued batches in order; returns why the rest could not be sent, or None when all were."""
    server = options.server_url.strip().rstrip("/")
    if not server:
        return "no shipscope server given (--server or SHIPSCOPE_URL)"
    if not server.startswith(("http://", "https://")):
        return f"the shipscope server URL {server!r} must start with http:// or https://"
    url = f"{server}{EVENTS_PATH}"
    while state.queue:
        batch = state.queue[0]
        response, problem = _post(http, url, batch, options, sleep)
        if response is None:
            return problem
        if response.status_code in (200, 207):
            if response.status_code == 207:
                try:
                    answer: object = orjson.loads(response.content)
                except orjson.JSONDecodeError:
                    answer = {}
                _rejections(answer, batch, events, warnings)
            state.queue.popleft()
            continue
        if response.status_code == 413 and len(batch.lines) > 1:
            half = len(batch.lines) // 2
            state.queue.popleft()
            state.queue.extendleft(
                [_Batch(batch.start + half, batch.lines[half:]), _Batch(batch.start, batch.lines[:half])]
            )
            continue
        if _retryable(response.status_code):
            retries = max(options.retries, 0)
            return f"server unreachable (it still answered {_status_text(response)} after {retries} retries)"
        return _server_error(response)
    return None


def _append_spool(path: Path, lines: Sequence[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as stream:
        stream.seek(0, os.SEEK_END)
        if stream.tell() > 0:
            stream.seek(-1, os.SEEK_END)
            if stream.read(1) != b"\n":
                stream.write(b"\n")  # an earlier writer stopped mid-line: keep our lines whole
        stream.write(b"".join(line + b"\n" for line in lines))


def _spool(path: Path, lines: Sequence[bytes], reason: str, warnings: list[str]) -> Path | None:
    try:
        _append_spool(path, lines)
    except OSError as error:
        warnings.append(
            f"{reason}; and the spool file {path} cannot be written ({_describe(error)}): {len(lines)} events lost"
        )
        return None
    warnings.append(f"{reason}; {len(lines)} events written to {path} — load them later with `shipscope import {path}`")
    return path


def record(
    options: RecordOptions,
    environ: Mapping[str, str],
    *,
    now: datetime | None = None,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RecordOutcome:
    """Collects this run's events and sends them to the shipscope server, spooling what cannot be sent.

    Never raises (short of KeyboardInterrupt/SystemExit): every problem, an unexpected one included, becomes a
    warning in the outcome, so the pipeline this runs in is never failed by its telemetry.
    """
    warnings: list[str] = []
    state = _Delivery()
    try:
        moment = _aware(now) if now is not None else datetime.now(UTC)
        with httpx.Client(timeout=options.timeout, transport=transport) as http:
            events, found = collect_events(options, environ, now=moment, http=http, sleep=sleep)
            warnings.extend(found)
            state.events = len(events)
            if not events:
                return RecordOutcome(events=0, sent=False, spooled_to=None, warnings=warnings)
            state.queue.extend(_batches([orjson.dumps(event) for event in events]))
            problem = _deliver(http, events, options, sleep, state, warnings)
        if problem is None:
            return RecordOutcome(events=state.events, sent=True, spooled_to=None, warnings=warnings)
        spooled = _spool(options.spool, state.unsent(), problem, warnings)
        state.queue.clear()
        return RecordOutcome(events=state.events, sent=False, spooled_to=spooled, warnings=warnings)
    except Exception as error:  # telemetry must not break the pipeline it watches
        warnings.append(f"shipscope record failed unexpectedly: {type(error).__name__}: {error}")
        spooled = None
        unsent = state.unsent()
        if unsent:
            try:
                spooled = _spool(options.spool, unsent, "the events were not all sent", warnings)
            except Exception as spool_error:
                warnings.append(
                    f"the spool file could not be written either: {type(spool_error).__name__}: {spool_error}"
                )
        return RecordOutcome(events=state.events, sent=False, spooled_to=spooled, warnings=warnings)

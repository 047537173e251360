"""`shipscope push`: the current CI run's duration, status and stage timings to a Prometheus Pushgateway.

The run is read exactly as ``shipscope record`` reads it (``record.collect_events``: the CI environment, and with a
vendor token its jobs and steps). Metrics:

- ``ci_build_duration_seconds`` (started → finished, or → now while the run is still going), ``ci_build_success``
  (1 or 0, once the status is final), ``ci_build_queue_seconds`` (created → started),
  ``ci_build_finished_timestamp_seconds``;
- ``ci_build_stage_duration_seconds{stage}``: the run's completed steps summed per canonical stage;
- ``ci_build_job_duration_seconds{job_name}``: each finished job.

Grouping key: ``job`` (default ``ci``), ``repo``, ``workflow`` and ``branch_kind`` (``pr``, ``default`` or
``branch``). The Pushgateway keeps the last push of each group, so the key names the pipeline, never the run: a key
per run id or sha would keep every run forever and grow without bound. The names and labels are the ones
shipscope's own Pushgateway endpoint reads, so shipscope can be the target too.

Telemetry must not break the pipeline it watches: ``push`` never raises; problems become warnings.
"""

from __future__ import annotations

import base64
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import default_handler, push_to_gateway

from shipscope.config import DEFAULT_STAGE_PATTERNS
from shipscope.record import RecordOptions, collect_events
from shipscope.store.rows import StageMatcher

Sleep = Callable[[float], None]
BACKOFF_SECONDS = 1.0


@dataclass(frozen=True)
class PushOptions:
    gateway_url: str
    """The Pushgateway's base URL (SHIPSCOPE_PUSHGATEWAY_URL)."""
    job: str = "ci"
    """The ``job`` label of the grouping key."""
    grouping: Mapping[str, str] = field(default_factory=dict)
    """More grouping labels (e.g. ``environment``); they may not replace ``job``."""
    status: str | None = None
    """The run's final status, as ``shipscope record --status`` takes it."""
    vendor_token: str = ""
    """GITHUB_TOKEN or a GitLab read_api token: with it the jobs and steps (so stage timings) are read."""
    basic_auth: str = ""
    """``user:password`` for a Pushgateway behind basic auth (SHIPSCOPE_PUSHGATEWAY_AUTH)."""
    timeout: float = 10.0
    retries: int = 2
    """Retries after the first push, with backoff (1 s, 2 s, …)."""
    dry_run: bool = False
    """Print what would be pushed, and where, without pushing."""


@dataclass
class PushOutcome:
    pushed: bool
    url: str | None
    """Where the metrics went (or would go), the grouping key in the path."""
    grouping_key: dict[str, str]
    exposition: str
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "pushed": self.pushed,
            "url": self.url,
            "grouping_key": self.grouping_key,
            "metrics": self.exposition.splitlines(),
            "warnings": self.warnings,
        }


def _moment(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _seconds(start: Any, end: Any) -> float | None:
    started, finished = _moment(start), _moment(end)
    return None if started is None or finished is None else max(0.0, (finished - started).total_seconds())


def branch_kind(run: Mapping[str, Any]) -> str:
    """``pr``, ``default`` or ``branch``, as the pipeline SLIs split runs."""
    if run.get("trigger") == "pull_request" or run.get("pr_number") is not None:
        return "pr"
    default = run.get("default_branch") or None
    if run.get("branch") == default or (default is None and run.get("branch") in ("main", "master")):
        return "default"
    return "branch"


def run_registry(
    events: Sequence[Mapping[str, Any]], now: datetime, stage_for: Callable[[str], str]
) -> tuple[CollectorRegistry, dict[str, str]] | None:
    """The run's metrics and its grouping labels (repo, workflow, branch_kind); None without a run."""
    runs = [event for event in events if event.get("type") == "pipeline_run"]
    if not runs:
        return None
    run = runs[0]
    registry = CollectorRegistry(auto_describe=False)
    started = run.get("started_at")
    end = run.get("finished_at") or now.isoformat()
    duration = _seconds(started, end)
    if duration is not None:
        Gauge("ci_build_duration_seconds", "Run duration, started to finished.", registry=registry).set(duration)
    queued = _seconds(run.get("created_at"), started)
    if queued is not None:
        Gauge("ci_build_queue_seconds", "Run created to started.", registry=registry).set(queued)
    if run.get("status") in ("success", "failure", "cancelled", "skipped"):
        success = Gauge("ci_build_success", "1 when the run succeeded, else 0.", registry=registry)
        success.set(1 if run["status"] == "success" else 0)
        finished = _moment(run.get("finished_at"))
        if finished is not None:
            stamp = Gauge("ci_build_finished_timestamp_seconds", "When the run finished.", registry=registry)
            stamp.set(finished.timestamp())
    stages: dict[str, float] = defaultdict(float)
    for step in events:
        seconds = _seconds(step.get("started_at"), step.get("finished_at")) if step.get("type") == "step" else None
        if seconds is not None and step.get("status") in ("success", "failure"):
            stages[stage_for(str(step["name"]))] += seconds
    if stages:
        stage_gauge = Gauge(
            "ci_build_stage_duration_seconds", "Completed steps summed per stage.", ["stage"], registry=registry
        )
        for stage, seconds in sorted(stages.items()):
            stage_gauge.labels(stage=stage).set(seconds)
    jobs = [
        (job, _seconds(job.get("started_at"), job.get("finished_at"))) for job in events if job.get("type") == "job"
    ]
    if any(seconds is not None for _, seconds in jobs):
        job_gauge = Gauge("ci_build_job_duration_seconds", "Each finished job.", ["job_name"], registry=registry)
        for job, seconds in jobs:
            if seconds is not None:
                job_gauge.labels(job_name=str(job["name"])).set(seconds)
    labels = {"repo": str(run["repo"]), "workflow": str(run["workflow"]), "branch_kind": branch_kind(run)}
    return registry, labels


def _auth_handler(credentials: str) -> Callable[..., Callable[[], None]]:
    token = base64.b64encode(credentials.encode()).decode()

    def handler(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        return default_handler(url, method, timeout, [*headers, ("Authorization", f"Basic {token}")], data)

    return handler


def _group_path(gateway: str, grouping: Mapping[str, str]) -> str:
    """The URL the push goes to, as the Pushgateway's API spells it (values base64url-encoded)."""
    parts = [f"{gateway.rstrip('/')}/metrics/job@base64/{_b64(grouping['job'])}"]
    parts.extend(f"{name}@base64/{_b64(value)}" for name, value in grouping.items() if name != "job")
    return "/".join(parts)


def _b64(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode() or "="


def push(
    options: PushOptions,
    environ: Mapping[str, str],
    *,
    now: datetime | None = None,
    stage_patterns: Mapping[str, list[str]] = DEFAULT_STAGE_PATTERNS,
    sleep: Sleep = time.sleep,
) -> PushOutcome:
    """Reads this run and pushes its metrics, replacing the group's last push. Never raises."""
    warnings: list[str] = []
    try:
        moment = now or datetime.now(UTC)
        record_options = RecordOptions(
            server_url="", status=options.status, vendor_token=options.vendor_token, timeout=options.timeout
        )
        events, found = collect_events(record_options, environ, now=moment, sleep=sleep)
        warnings.extend(found)
        built = run_registry(events, moment, StageMatcher(stage_patterns))
        if built is None:
            warnings.append("no run to push")
            return PushOutcome(False, None, {}, "", warnings)
        registry, labels = built
        extra = {name: value for name, value in options.grouping.items() if name != "job"}
        if "job" in options.grouping:
            warnings.append("--grouping job=… is ignored: --job names the group's job")
        grouping = {"job": options.job, **labels, **extra}
        exposition = generate_latest(registry).decode()
        url = _group_path(options.gateway_url, grouping) if options.gateway_url else None
        if options.dry_run or url is None:
            if url is None:
                warnings.append("no Pushgateway URL (--gateway or SHIPSCOPE_PUSHGATEWAY_URL); nothing pushed")
            return PushOutcome(False, url, grouping, exposition, warnings)
        handler = _auth_handler(options.basic_auth) if options.basic_auth else default_handler
        for attempt in range(options.retries + 1):
            try:
                push_to_gateway(
                    options.gateway_url,
                    job=options.job,
                    registry=registry,
                    grouping_key={name: value for name, value in grouping.items() if name != "job"},
                    timeout=options.timeout,
                    handler=handler,
                )
                return PushOutcome(True, url, grouping, exposition, warnings)
            except Exception as error:  # urllib's errors, timeouts, refused connections: all retried, then reported
                problem = f"push to {url} failed: {type(error).__name__}: {error}"
                if attempt == options.retries:
                    warnings.append(problem)
                    return PushOutcome(False, url, grouping, exposition, warnings)
                sleep(BACKOFF_SECONDS * 2**attempt)
    except Exception as error:  # telemetry must not break the pipeline it watches
        warnings.append(f"shipscope push failed unexpectedly: {type(error).__name__}: {error}")
    return PushOutcome(False, None, {}, "", warnings)

"""Report uploads and the seed's own payloads, each a journaled delivery with the parameters it was sent with.

Formats: ``junit`` (JUnit XML), ``sarif`` (SARIF 2.x), ``cache-log`` (actions/cache and BuildKit logs),
``pushgateway`` (Prometheus text exposition pushed to ``/metrics/job/<job>{/<label>/<value>}``),
``pipeline-export`` (the GitLab JSON export ``{pipeline_id, duration_seconds, status, project, …}``) and
``otlp-traces`` (OTLP/HTTP traces of CI pipelines, ``shipscope.ingest.otlp``).

The parameters (run id, repo, the time a push was received, …) are journaled beside the body, so reprocess turns
the same bytes into the same events.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from shipscope.errors import InputError
from shipscope.events import DEFAULT_SOURCE, Event, PipelineRun, RunStatus
from shipscope.ingest import Delivery
from shipscope.ingest.cache_log import parse_cache_log
from shipscope.ingest.junit import parse_junit
from shipscope.ingest.otlp import KIND as OTLP_TRACES
from shipscope.ingest.otlp import parse_otlp_traces
from shipscope.ingest.sarif import parse_sarif
from shipscope.ingest.webhooks import body_digest, json_object

RECEIVED_AT = "received_at"


def _time_param(params: Mapping[str, str], name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(params[name])
    except KeyError:
        raise InputError(f"missing parameter {name}") from None
    except ValueError:
        raise InputError(f"{name}: expected an RFC 3339 timestamp, got {params[name]!r}") from None
    if moment.tzinfo is None:
        raise InputError(f"{name}: expected an RFC 3339 timestamp with a UTC offset, got {params[name]!r}")
    return moment


def _junit(body: bytes, params: Mapping[str, str]) -> Sequence[Event]:
    # Test cases join their run by (source, run_id): they take the run's source, "generic" unless told.
    return parse_junit(
        body, run_id=params.get("run_id"), job_id=params.get("job_id"), source=params.get("source") or DEFAULT_SOURCE
    )


def _sarif(body: bytes, params: Mapping[str, str], warnings: list[str] | None = None) -> Sequence[Event]:
    repo = params.get("repo")
    if not repo:
        raise InputError("missing parameter repo: the repository the scan belongs to (OWNER/NAME)")
    return parse_sarif(
        body,
        repo=repo,
        scanned_at=_time_param(params, "scanned_at"),
        scan_id=params.get("scan_id"),
        run_id=params.get("run_id"),
        source=params.get("source") or "sarif",
        warnings=warnings,
    )


def _cache_log(body: bytes, params: Mapping[str, str]) -> Sequence[Event]:
    lines = body.decode("utf-8", errors="replace").splitlines()
    return parse_cache_log(
        lines, run_id=params.get("run_id"), job_id=params.get("job_id"), source=params.get("source") or DEFAULT_SOURCE
    )


def _grouping_labels(path: str) -> dict[str, str]:
    """``job/<job>/<label>/<value>/…`` as Pushgateway reads it, including ``<label>@base64/<urlsafe base64>``."""
    parts = [part for part in path.strip("/").split("/")]
    if len(parts) < 2 or len(parts) % 2 or parts[0] not in ("job", "job@base64"):
        raise InputError("a Pushgateway push goes to /metrics/job/<job>{/<label>/<value>}")
    labels: dict[str, str] = {}
    for name, value in zip(parts[::2], parts[1::2], strict=True):
        if name.endswith("@base64"):
            name = name.removesuffix("@base64")
            try:
                # Strict, as Pushgateway's decoder is: a stray character is an error, not silently dropped.
                value = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True).decode()
            except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII input
                raise InputError(f"grouping label {name}: invalid base64 value") from None
        labels[name] = value
    return labels


def _first(labels: Mapping[str, str], *names: str) -> str | None:
    return next((labels[name] for name in names if labels.get(name)), None)


def _pushgateway(body: bytes, params: Mapping[str, str]) -> Sequence[Event]:
    labels = _grouping_labels(params.get("path", ""))
    values: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(body.decode("utf-8")):
            for sample in family.samples:
                values[sample.name] = sample.value
                labels = {**sample.labels, **labels}
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError(f"invalid Prometheus text exposition: {error}") from None
    duration = values.get("ci_build_duration_seconds")
    success = values.get("ci_build_success")
    if duration is None and success is None:
        raise InputError("the push holds neither ci_build_duration_seconds nor ci_build_success")
    received_at = _time_param(params, RECEIVED_AT)
    started_at = received_at - timedelta(seconds=duration) if duration is not None else None
    status: RunStatus = "success" if success is None or success >= 1 else "failure"
    run_id = _first(labels, "pipeline_id", "pipeline", "build_id", "run_id", "instance") or body_digest(body)
    return [
        PipelineRun(
            source="pushgateway",
            id=run_id,
            repo=_first(labels, "project", "repo", "repository") or labels["job"],
            workflow=labels["job"],
            trigger=_first(labels, "trigger") or "push",
            branch=_first(labels, "branch", "ref") or "unknown",
            sha=_first(labels, "sha", "commit") or "unknown",
            status=status,
            created_at=started_at or received_at,
            started_at=started_at,
            finished_at=received_at,
        )
    ]


_EXPORT_STATUSES: Mapping[str, RunStatus] = {
    "success": "success",
    "passed": "success",
    "failed": "failure",
    "failure": "failure",
    "canceled": "cancelled",
    "cancelled": "cancelled",
    "skipped": "skipped",
    "running": "in_progress",
    "pending": "queued",
    "created": "queued",
}


def _pipeline_export(body: bytes, params: Mapping[str, str]) -> Sequence[Event]:
    payload: dict[str, Any] = json_object(body, "pipeline export")
    missing = [name for name in ("pipeline_id", "status", "project") if payload.get(name) in (None, "")]
    if missing:
        raise InputError(f"pipeline export: missing {', '.join(missing)}")
    status = _EXPORT_STATUSES.get(str(payload["status"]).lower())
    if status is None:
        raise InputError(f"pipeline export: status {payload['status']!r} is not one of {', '.join(_EXPORT_STATUSES)}")
    duration = payload.get("duration_seconds")
    if duration is not None and (not isinstance(duration, int | float) or duration < 0):
        raise InputError(f"pipeline export: duration_seconds must be a non-negative number, got {duration!r}")
    received_at = _time_param(params, RECEIVED_AT)
    done = status not in ("queued", "in_progress")
    started_at = received_at - timedelta(seconds=duration) if duration is not None and done else None
    # deployment_frequency is a number the exporter derived; shipscope derives its own from deployments.
    return [
        PipelineRun(
            source="pipeline-export",
            id=str(payload["pipeline_id"]),
            repo=str(payload["project"]),
            workflow=str(payload.get("workflow") or "pipeline"),
            trigger=str(payload.get("trigger") or "push"),
            branch=str(payload.get("ref") or payload.get("branch") or "unknown"),
            sha=str(payload.get("sha") or "unknown"),
            status=status,
            created_at=started_at or received_at,
            started_at=started_at,
            finished_at=received_at if done else None,
        )
    ]


PARSERS: Mapping[str, Callable[[bytes, Mapping[str, str]], Sequence[Event]]] = {
    "junit": _junit,
    "sarif": _sarif,
    "cache-log": _cache_log,
    "pushgateway": _pushgateway,
    "pipeline-export": _pipeline_export,
    OTLP_TRACES: lambda body, params: parse_otlp_traces(body, params).events,
}

_STAMPED = {"sarif": "scanned_at", "pushgateway": RECEIVED_AT, "pipeline-export": RECEIVED_AT}
"""Formats whose events need a time the payload does not carry: it is fixed when the report arrives."""


def report_delivery(fmt: str, body: bytes, params: Mapping[str, str], *, now: datetime | None = None) -> Delivery:
    """The delivery of one report; raises InputError when it cannot be read. The same bytes with the same
    parameters are the same delivery (a duplicate when sent again)."""
    parser = PARSERS.get(fmt)
    if parser is None:
        raise InputError(f"unknown report format {fmt!r}; expected one of {', '.join(PARSERS)}")
    kept = {name: value for name, value in params.items() if value}
    stamp = _STAMPED.get(fmt)
    if stamp and stamp not in kept:
        kept[stamp] = (now or datetime.now(UTC)).isoformat()
    warnings: list[str] = []
    # Only SARIF reports problems that do not refuse the payload; reprocessing has no one to tell them to.
    events = _sarif(body, kept, warnings) if parser is _sarif else parser(body, kept)
    identity = [f"{name}={kept[name]}" for name in sorted(kept) if name != RECEIVED_AT]
    return Delivery(fmt, body_digest(body, fmt, *identity), fmt, body, tuple(events), kept, tuple(warnings))


def decode(fmt: str) -> Callable[[bytes, Mapping[str, str]], Sequence[Event]]:
    return PARSERS[fmt]

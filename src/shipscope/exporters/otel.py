"""Pipeline runs and deployments as OpenTelemetry traces, sent to an OTLP/HTTP endpoint.

Each run attempt is one trace: a run span (``RUN <workflow>``, kind SERVER), a child span per job and a grandchild
per step, with the OpenTelemetry CI/CD semantic conventions (``cicd.pipeline.*``) and the VCS ones (``vcs.*``). Each
deployment is a one-span trace whose resource is the deployed service with its ``service.version`` and
``deployment.environment.name``. Trace and span ids are derived from the stored ids, so exporting the same run
twice sends the same spans and a backend keeps one of each.

The spans are the SDK's ``ReadableSpan``s, built with the store's own timestamps, and go through the SDK's
``OTLPSpanExporter``, which honours the ``OTEL_EXPORTER_OTLP_*`` variables (headers, compression, certificates).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

import shipscope
from shipscope.errors import InputError
from shipscope.metrics.listings import DeploymentRow, JobRecord, RunRecord

SCOPE = InstrumentationScope("shipscope", shipscope.__version__)
BATCH_SPANS = 512
"""Spans a request carries at most (the SDK's batch processor default)."""

_RESULT = {"success": "success", "failure": "failure", "cancelled": "cancellation", "skipped": "skip"}
"""Our run statuses as ``cicd.pipeline.result`` values."""
_TASK_TYPE = {"build": "build", "test": "test", "deploy": "deploy"}
"""Canonical stages that name a ``cicd.pipeline.task.type``."""
AttributeValue = str | int | float | bool


def _id(bits: int, *parts: object) -> int:
    """A stable non-zero id of ``bits`` bits from ``parts``."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[: bits // 8], "big") or 1


def _nanos(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000


def _status(status: str) -> Status:
    return Status(StatusCode.ERROR, status) if status == "failure" else Status(StatusCode.UNSET)


def _attributes(values: dict[str, AttributeValue | None]) -> dict[str, AttributeValue]:
    return {key: value for key, value in values.items() if value is not None}


def _queued(created_at: datetime, started_at: datetime | None) -> float | None:
    return None if started_at is None else (started_at - created_at).total_seconds()


def _context(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def run_spans(run: RunRecord) -> list[ReadableSpan]:
    """The run attempt's trace: the run span first, then each job's span followed by its steps'."""
    trace_id = _id(128, "run", run.source, run.id, run.attempt)
    resource = Resource.create({"service.name": run.repo, "vcs.repository.name": run.repo})
    run_context = _context(trace_id, _id(64, "run", run.source, run.id, run.attempt))
    spans = [
        ReadableSpan(
            name=f"RUN {run.workflow}",
            context=run_context,
            resource=resource,
            kind=SpanKind.SERVER,
            instrumentation_scope=SCOPE,
            start_time=_nanos(run.started_at or run.created_at),
            end_time=_nanos(run.finished_at),
            status=_status(run.status),
            attributes=_attributes(
                {
                    "cicd.pipeline.name": run.workflow,
                    "cicd.pipeline.run.id": run.id,
                    "cicd.pipeline.run.url.full": run.url,
                    "cicd.pipeline.result": _RESULT.get(run.status, run.status),
                    "cicd.pipeline.action.name": "RUN",
                    "cicd.pipeline.run.attempt": run.attempt,
                    "cicd.pipeline.trigger": run.trigger,
                    "vcs.ref.head.name": run.branch,
                    "vcs.ref.head.revision": run.sha,
                    "vcs.change.id": None if run.pr_number is None else str(run.pr_number),
                    "enduser.id": run.actor,
                    "shipscope.queue_seconds": _queued(run.created_at, run.started_at),
                }
            ),
        )
    ]
    for job in run.jobs:
        spans.extend(_job_spans(run, job, run_context, resource))
    return spans


def _job_spans(run: RunRecord, job: JobRecord, parent: SpanContext, resource: Resource) -> Iterator[ReadableSpan]:
    started = job.started_at or job.created_at
    context = _context(parent.trace_id, _id(64, "job", run.source, job.id))
    yield ReadableSpan(
        name=job.name,
        context=context,
        parent=parent,
        resource=resource,
        instrumentation_scope=SCOPE,
        start_time=_nanos(started),
        end_time=_nanos(job.finished_at or started),
        status=_status(job.status),
        attributes=_attributes(
            {
                "cicd.pipeline.task.name": job.name,
                "cicd.pipeline.task.run.id": job.id,
                "cicd.pipeline.task.run.result": _RESULT.get(job.status, job.status),
                "cicd.pipeline.task.type": _TASK_TYPE.get(job.stage or ""),
                "cicd.worker.name": job.runner,
                "shipscope.queue_seconds": _queued(job.created_at, job.started_at),
                "error.type": job.failure_reason,
            }
        ),
    )
    for step in job.steps:
        yield ReadableSpan(
            name=step.name,
            context=_context(parent.trace_id, _id(64, "step", run.source, job.id, step.number)),
            parent=context,
            resource=resource,
            instrumentation_scope=SCOPE,
            start_time=_nanos(step.started_at),
            end_time=_nanos(step.finished_at),
            status=_status(step.status),
            # No cicd.pipeline.task.* here: a step is not a task; its parent span names the job.
            attributes={
                "shipscope.step.number": step.number,
                "shipscope.stage": step.stage,
                "shipscope.step.result": _RESULT.get(step.status, step.status),
            },
        )


def deployment_span(deployment: DeploymentRow) -> ReadableSpan:
    """A deployment as a one-span trace of the deployed service and version."""
    trace_id = _id(128, "deployment", deployment.source, deployment.id)
    resource = Resource.create(
        _attributes(
            {
                "service.name": deployment.service,
                "service.version": deployment.version or deployment.sha,
                "deployment.environment.name": deployment.environment,
            }
        )
    )
    finished = deployment.finished_at or deployment.started_at
    started = deployment.started_at or finished
    assert started is not None and finished is not None
    return ReadableSpan(
        name=f"DEPLOY {deployment.service}",
        context=_context(trace_id, _id(64, "deployment", deployment.source, deployment.id)),
        resource=resource,
        kind=SpanKind.SERVER,
        instrumentation_scope=SCOPE,
        start_time=_nanos(started),
        end_time=_nanos(finished),
        status=_status(deployment.status),
        attributes=_attributes(
            {
                "deployment.id": deployment.id,
                "deployment.status": deployment.status,
                "deployment.kind": deployment.kind,
                "vcs.ref.head.revision": deployment.sha,
                "oci.manifest.digest": deployment.image_digest,
                "enduser.id": deployment.actor,
                "url.full": deployment.url,
                "shipscope.rollback_of": deployment.rollback_of,
            }
        ),
    )


@dataclass(frozen=True)
class ExportOutcome:
    spans: int
    requests: int


def traces_endpoint(endpoint: str) -> str:
    """The traces URL of an OTLP/HTTP endpoint given as its base (``http://collector:4318``) or in full."""
    if not endpoint.startswith(("http://", "https://")):
        raise InputError(f"OTLP endpoint {endpoint!r}: expected an http:// or https:// URL")
    return endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"


def export_spans(spans: Iterable[ReadableSpan], endpoint: str, timeout: float = 10.0) -> ExportOutcome:
    """Sends ``spans`` in batches; an InputError names the batch the endpoint refused (the SDK logs its reason)."""
    exporter = OTLPSpanExporter(endpoint=traces_endpoint(endpoint), timeout=timeout)
    remaining = iter(spans)
    sent = requests = 0
    try:
        while batch := list(islice(remaining, BATCH_SPANS)):
            if exporter.export(batch) is not SpanExportResult.SUCCESS:
                raise InputError(
                    f"{endpoint} did not accept spans {sent + 1}–{sent + len(batch)}; {sent} were sent before"
                )
            sent, requests = sent + len(batch), requests + 1
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
    return ExportOutcome(spans=sent, requests=requests)

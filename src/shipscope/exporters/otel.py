"""Pipeline runs and deployments as OpenTelemetry traces, sent to an OTLP/HTTP endpoint.

Each run attempt is one trace: a run span (``RUN <workflow>``, kind SERVER), a child span per job and a grandchild
per step, with the OpenTelemetry CI/CD semantic conventions (``cicd.pipeline.*``) and the VCS ones (``vcs.*``). Each
deployment is a one-span trace whose resource is the deployed service with its ``service.version`` and
``deployment.environment.name``. Trace and span ids are derived from the stored ids, so exporting the same run
twice sends the same spans and a backend keeps one of each.

The spans are the SDK's ``ReadableSpan``s, built with the store's own timestamps, and go through the SDK's
``OTLPSpanExporter``, which honours the ``OTEL_EXPORTER_OTLP_*`` variables (headers, compression, certificates).
``LiveTraceExporter`` sends them as runs and deployments finish; ``shipscope otel export`` sends a window.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Literal

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

import shipscope
from shipscope.errors import InputError
from shipscope.events import Deployment, PipelineRun
from shipscope.ingest import Delivery
from shipscope.metrics.listings import (
    DeploymentRow,
    JobRecord,
    RunRecord,
    finished_deployments_by_key,
    finished_runs_by_key,
)
from shipscope.store import Store

log = logging.getLogger(__name__)

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


TraceKey = tuple[Literal["run", "deployment"], str, str, int]
"""What a trace is of, its source, its id, and the run's attempt (0 for a deployment)."""
_STOP = object()


class LiveTraceExporter:
    """Sends each run attempt and deployment as a trace once it has finished, off the ingest path.

    ``offer`` (the writer's commit hook) only notes the keys of finished runs and deployments that committed new
    deliveries, in a bounded queue; when the queue is full the keys are dropped and counted, never waited for. A
    thread waits ``settle_seconds`` after a key's first notice, so the job and step webhooks that trail a run's
    ``completed`` one join its trace, then reads the records and sends them. A key is sent once per process; the
    stored ids make the span ids, so a later ``shipscope otel export`` of the same window sends the same spans.
    """

    def __init__(
        self,
        store: Store,
        endpoint: str,
        *,
        settle_seconds: float = 10.0,
        max_queued: int = 10_000,
        timeout: float = 10.0,
    ) -> None:
        self._store = store
        self._endpoint = traces_endpoint(endpoint)
        self._settle_seconds = settle_seconds
        self._timeout = timeout
        self._queue: queue.Queue[TraceKey | object] = queue.Queue(maxsize=max_queued)
        self._sent: OrderedDict[TraceKey, None] = OrderedDict()
        self._max_remembered = max_queued
        self._counts: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._run, name="shipscope-otlp-export", daemon=True)
        self._thread.start()

    def offer(self, deliveries: Sequence[Delivery], is_new: Sequence[bool]) -> None:
        """Queues the finished runs and deployments of the new deliveries; never blocks."""
        for delivery, new in zip(deliveries, is_new, strict=True):
            if not new:
                continue
            for event in delivery.events:
                key: TraceKey
                if isinstance(event, PipelineRun) and event.finished_at is not None:
                    key = ("run", event.source, event.id, event.attempt)
                elif isinstance(event, Deployment) and event.finished_at is not None:
                    key = ("deployment", event.source, event.id, 0)
                else:
                    continue
                try:
                    self._queue.put_nowait(key)
                except queue.Full:
                    self._counts["dropped"] += 1
                    if self._counts["dropped"] == 1 or self._counts["dropped"] % 1000 == 0:
                        log.warning(
                            "the OTLP export queue is full (%s is slow or down): %d traces dropped so far; "
                            "`shipscope otel export --since …` sends them later",
                            self._endpoint,
                            self._counts["dropped"],
                        )

    def tally(self) -> Mapping[str, int]:
        """Traces ``sent``, ``failed`` (the endpoint refused them or could not be reached) and ``dropped``."""
        return dict(self._counts)

    def close(self) -> None:
        """Sends what is waiting to settle, then stops the thread."""
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        due: dict[TraceKey, float] = {}
        while True:
            wait = max(0.0, min(due.values()) - time.monotonic()) if due else None
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            stopping = item is _STOP
            if isinstance(item, tuple) and item not in self._sent:
                due.setdefault(item, time.monotonic() + self._settle_seconds)
            now = time.monotonic()
            ready = [key for key, moment in due.items() if stopping or moment <= now]
            if ready:
                for key in ready:
                    del due[key]
                self._send(ready)
            if stopping:
                return

    def _send(self, keys: list[TraceKey]) -> None:
        run_keys = [(source, id_, attempt) for kind, source, id_, attempt in keys if kind == "run"]
        deployment_keys = [(source, id_) for kind, source, id_, _ in keys if kind == "deployment"]
        try:
            runs = finished_runs_by_key(self._store, run_keys)
            deployments = finished_deployments_by_key(self._store, deployment_keys)
            spans = [span for run in runs for span in run_spans(run)] + [deployment_span(row) for row in deployments]
            export_spans(spans, self._endpoint, self._timeout)
        except Exception as error:
            self._counts["failed"] += len(keys)
            log.warning("live OTLP export of %d traces to %s failed: %s", len(keys), self._endpoint, error)
            return
        self._counts["sent"] += len(runs) + len(deployments)
        for key in keys:
            self._sent[key] = None
        while len(self._sent) > self._max_remembered:
            self._sent.popitem(last=False)

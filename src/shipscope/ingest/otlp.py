"""OTLP/HTTP traces of CI pipelines (``POST /v1/traces``, protobuf or JSON) as runs, jobs and steps.

A span is read by the OpenTelemetry CI/CD semantic conventions:

- a **run** carries ``cicd.pipeline.run.id`` (or ``cicd.pipeline.name``) and no ``cicd.pipeline.task.*``;
- a **job** carries ``cicd.pipeline.task.name`` or ``cicd.pipeline.task.run.id``; its run is the run span above it
  in the same request, or the ``cicd.pipeline.run.id`` it names itself;
- a **step** is a span directly under a job span; steps are numbered by start time.

The repository is the span's or resource's ``vcs.repository.name`` (else ``service.name``); the result is
``cicd.pipeline.result`` / ``cicd.pipeline.task.run.result``, else the span status. Spans that are none of these
are counted in the answer's ``rejectedSpans``, never silently dropped. The OTLP JSON encoding's hex ids and
integer enums are accepted as the specification defines them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from shipscope.errors import InputError
from shipscope.events import Event, Job, PipelineRun, RunStatus, Step
from shipscope.ingest.payload import NUL_REFUSED, holds_nul

SOURCE = "otlp"
KIND = "otlp-traces"
ENCODINGS = ("protobuf", "json")

_RESULTS: dict[str, RunStatus] = {
    "success": "success",
    "failure": "failure",
    "error": "failure",
    "timeout": "failure",
    "cancellation": "cancelled",
    "skip": "skipped",
}
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _request(body: bytes, encoding: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    if encoding == "protobuf":
        try:
            request.ParseFromString(body)
        except DecodeError as error:
            raise InputError(f"OTLP protobuf: not an ExportTraceServiceRequest ({error})") from None
        return request
    if holds_nul(body):
        raise InputError(f"OTLP JSON: {NUL_REFUSED}")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InputError(f"OTLP JSON: {error}") from None
    if not isinstance(document, dict):
        raise InputError("OTLP JSON: expected an object with resourceSpans")
    for number, resource_spans in enumerate(_listed(document, "resourceSpans", "the request"), start=1):
        where = f"resourceSpans[{number}]"
        for scope_number, scope_spans in enumerate(_listed(resource_spans, "scopeSpans", where), start=1):
            spans = _listed(scope_spans, "spans", f"{where}.scopeSpans[{scope_number}]")
            for index, span in enumerate(spans, start=1):
                _hex_ids_to_base64(span, f"{where} span {index}")
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as error:
        raise InputError(f"OTLP JSON: {error}") from None
    return request


def _listed(container: Any, key: str, where: str) -> list[Any]:
    """``container[key]`` as a list (absent or null: empty), refusing any other shape by where it is."""
    if not isinstance(container, dict):
        raise InputError(f"OTLP JSON: {where}: expected an object")
    items = container.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise InputError(f"OTLP JSON: {where}: {key} must be a list")
    return items


def _hex_ids_to_base64(span: Any, where: str) -> None:
    """OTLP JSON writes ids as hex, where protobuf's JSON mapping expects base64."""
    if not isinstance(span, dict):
        raise InputError(f"OTLP JSON: {where}: expected an object")
    for name in _ID_FIELDS:
        value = span.get(name)
        if value in (None, ""):
            continue
        try:
            span[name] = base64.b64encode(bytes.fromhex(value)).decode()
        except (TypeError, ValueError, binascii.Error):
            raise InputError(f"OTLP JSON: {where}: {name} {value!r} is not hex") from None


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: Sequence[KeyValue]) -> dict[str, Any]:
    attributes = {pair.key: _value(pair.value) for pair in pairs}
    for key, value in attributes.items():
        if "\x00" in key or (isinstance(value, str) and "\x00" in value):
            raise InputError(f"OTLP: attribute {key!r}: {NUL_REFUSED}")
    return attributes


def _time(nanos: int) -> datetime:
    return datetime.fromtimestamp(nanos / 1e9, UTC)


def _status(result: Any, span: Span) -> RunStatus:
    if isinstance(result, str) and result.lower() in _RESULTS:
        return _RESULTS[result.lower()]
    return "failure" if span.status.code == Status.STATUS_CODE_ERROR else "success"


@dataclass(frozen=True)
class _Read:
    span: Span
    attributes: dict[str, Any]
    resource: dict[str, Any]

    def get(self, name: str) -> Any:
        return self.attributes.get(name, self.resource.get(name))

    @property
    def is_task(self) -> bool:
        return "cicd.pipeline.task.name" in self.attributes or "cicd.pipeline.task.run.id" in self.attributes

    @property
    def is_run(self) -> bool:
        return not self.is_task and (
            "cicd.pipeline.run.id" in self.attributes or "cicd.pipeline.name" in self.attributes
        )


@dataclass(frozen=True)
class OtlpTraces:
    events: list[Event]
    rejected_spans: int


def parse_otlp_traces(body: bytes, params: Mapping[str, str]) -> OtlpTraces:
    """The runs, jobs and steps of an OTLP export request; ``params["encoding"]`` is protobuf (default) or json."""
    encoding = params.get("encoding", "protobuf")
    if encoding not in ENCODINGS:
        raise InputError(f"OTLP encoding {encoding!r}: expected protobuf or json")
    request = _request(body, encoding)
    spans: dict[bytes, _Read] = {}
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if "\x00" in span.name:
                    raise InputError(f"OTLP: span name {span.name!r}: {NUL_REFUSED}")
                spans[span.span_id] = _Read(span, _attributes(span.attributes), resource)
    runs: dict[bytes, PipelineRun] = {}
    for span_id, read in spans.items():
        if read.is_run:
            runs[span_id] = _run(read)
    events: list[Event] = list(runs.values())
    used = set(runs)
    jobs: dict[bytes, Job] = {}
    for span_id, read in spans.items():
        if read.is_task:
            job = _job(read, _run_above(read, spans, runs))
            if job is not None:
                jobs[span_id] = job
                used.add(span_id)
    events.extend(jobs.values())
    children: dict[bytes, list[_Read]] = {}
    for span_id, read in spans.items():
        if span_id not in used and read.span.parent_span_id in jobs:
            children.setdefault(read.span.parent_span_id, []).append(read)
            used.add(span_id)
    for parent, steps in children.items():
        steps.sort(key=lambda read: (read.span.start_time_unix_nano, read.span.span_id))
        for number, read in enumerate(steps, start=1):
            events.append(
                Step(
                    source=SOURCE,
                    job_id=jobs[parent].id,
                    number=number,
                    name=read.span.name or f"step {number}",
                    status=_status(read.get("cicd.pipeline.task.run.result"), read.span),
                    started_at=_time(read.span.start_time_unix_nano),
                    finished_at=_time(max(read.span.end_time_unix_nano, read.span.start_time_unix_nano)),
                )
            )
    return OtlpTraces(events, len(spans) - len(used))


def _repo(read: _Read) -> str:
    return str(read.get("vcs.repository.name") or read.resource.get("service.name") or "unknown")


def _run(read: _Read) -> PipelineRun:
    span = read.span
    change = read.get("vcs.change.id")
    attempt = read.get("cicd.pipeline.run.attempt")
    return PipelineRun(
        source=SOURCE,
        id=str(read.get("cicd.pipeline.run.id") or span.trace_id.hex()),
        repo=_repo(read),
        workflow=str(read.get("cicd.pipeline.name") or span.name or "pipeline"),
        trigger=str(read.get("cicd.pipeline.trigger") or "unknown"),
        branch=str(read.get("vcs.ref.head.name") or "unknown"),
        pr_number=int(change) if isinstance(change, str | int) and str(change).isdigit() else None,
        sha=str(read.get("vcs.ref.head.revision") or "unknown"),
        actor=read.get("enduser.id"),
        status=_status(read.get("cicd.pipeline.result"), span),
        attempt=attempt if isinstance(attempt, int) and attempt >= 1 else 1,
        created_at=_time(span.start_time_unix_nano),
        started_at=_time(span.start_time_unix_nano),
        finished_at=_time(max(span.end_time_unix_nano, span.start_time_unix_nano)),
        url=read.get("cicd.pipeline.run.url.full"),
    )


def _run_above(read: _Read, spans: Mapping[bytes, _Read], runs: Mapping[bytes, PipelineRun]) -> PipelineRun | None:
    seen: set[bytes] = set()
    parent = read.span.parent_span_id
    while parent and parent not in seen:
        if parent in runs:
            return runs[parent]
        seen.add(parent)
        above = spans.get(parent)
        parent = above.span.parent_span_id if above is not None else b""
    return None


def _job(read: _Read, run: PipelineRun | None) -> Job | None:
    run_id = run.id if run is not None else read.attributes.get("cicd.pipeline.run.id")
    if run_id is None:
        return None
    span = read.span
    name = str(read.attributes.get("cicd.pipeline.task.name") or span.name or "job")
    return Job(
        source=SOURCE,
        id=str(read.attributes.get("cicd.pipeline.task.run.id") or span.span_id.hex()),
        run_id=str(run_id),
        name=name,
        status=_status(read.attributes.get("cicd.pipeline.task.run.result"), span),
        attempt=run.attempt if run is not None else None,
        runner=read.attributes.get("cicd.worker.name"),
        created_at=_time(span.start_time_unix_nano),
        started_at=_time(span.start_time_unix_nano),
        finished_at=_time(max(span.end_time_unix_nano, span.start_time_unix_nano)),
        failure_reason=read.attributes.get("error.type"),
    )


def otlp_response(encoding: str, rejected_spans: int) -> tuple[bytes, str]:
    """The ExportTraceServiceResponse (body, media type) in the request's encoding, with the spans that were not
    CI spans."""
    answer = ExportTraceServiceResponse()
    if rejected_spans:
        answer.partial_success.CopyFrom(
            ExportTracePartialSuccess(
                rejected_spans=rejected_spans,
                error_message=f"{rejected_spans} span(s) are not CI/CD pipeline, task or step spans",
            )
        )
    if encoding == "json":
        return json_format.MessageToJson(answer, indent=None).encode(), "application/json"
    return answer.SerializeToString(), "application/x-protobuf"

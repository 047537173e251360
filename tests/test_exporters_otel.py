"""`shipscope otel export`: runs as run → job → step spans and deployments with service.version, sent over
OTLP/HTTP to a local receiver and decoded with the OpenTelemetry protobuf definitions."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from typer.testing import CliRunner

from shipscope.cli.main import app
from shipscope.config import Settings
from shipscope.store import Store, schema
from shipscope.web.app import create_app
from tests.factories import delivery

runner = CliRunner()
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _nanos(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


EVENTS: list[dict[str, Any]] = [
    {
        "type": "pipeline_run",
        "id": "run-7",
        "repo": "acme/shop",
        "workflow": "CI",
        "trigger": "pull_request",
        "branch": "feature/cart",
        "default_branch": "main",
        "pr_number": 42,
        "sha": "a" * 40,
        "actor": "octocat",
        "status": "failure",
        "created_at": _iso(START),
        "started_at": _iso(START + timedelta(seconds=20)),
        "finished_at": _iso(START + timedelta(minutes=9)),
        "url": "https://ci.example/acme/shop/runs/7",
    },
    {
        "type": "job",
        "id": "job-1",
        "run_id": "run-7",
        "name": "build",
        "stage": "build",
        "status": "success",
        "created_at": _iso(START + timedelta(seconds=20)),
        "started_at": _iso(START + timedelta(seconds=50)),
        "finished_at": _iso(START + timedelta(minutes=4)),
    },
    {
        "type": "job",
        "id": "job-2",
        "run_id": "run-7",
        "name": "unit tests",
        "stage": "test",
        "status": "failure",
        "created_at": _iso(START + timedelta(minutes=4)),
        "started_at": _iso(START + timedelta(minutes=4, seconds=10)),
        "finished_at": _iso(START + timedelta(minutes=9)),
    },
    *(
        {
            "type": "step",
            "job_id": "job-2",
            "number": number,
            "name": name,
            "status": status,
            "started_at": _iso(START + timedelta(minutes=4 + number)),
            "finished_at": _iso(START + timedelta(minutes=5 + number)),
        }
        for number, name, status in ((1, "Checkout", "success"), (2, "pytest", "failure"))
    ),
    {
        "type": "deployment",
        "id": "deploy-3",
        "service": "checkout",
        "environment": "production",
        "sha": "b" * 40,
        "version": "v1.4.2",
        "status": "success",
        "started_at": _iso(START + timedelta(hours=1)),
        "finished_at": _iso(START + timedelta(hours=1, minutes=3)),
    },
]


class _Receiver(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, bytes]]
    answer = 200

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.requests.append((self.path, self.headers["Content-Type"], body))
        self.send_response(self.answer)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server API
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def db_with_a_run(tmp_path: Path) -> str:
    url = f"duckdb:///{tmp_path / 'otel.duckdb'}"
    store = Store(url)
    store.ensure_schema()
    store.ingest([delivery(event) for event in EVENTS], [])
    store.close()
    return url


def _values(attributes: Any) -> dict[str, Any]:
    pairs: list[KeyValue] = list(attributes)
    return {pair.key: getattr(pair.value, pair.value.WhichOneof("value")) for pair in pairs}


def _export(url: str, endpoint: str) -> None:
    result = runner.invoke(app, ["otel", "export", "--db", url, "--endpoint", endpoint, "--since", "2026-11-01"])
    assert result.exit_code == 0, result.output
    assert "sent 6 spans (1 runs, 1 deployments) in 1 requests" in result.stderr


def _decoded(handler: type[_Receiver]) -> list[tuple[dict[str, Any], Span]]:
    spans = []
    for path, content_type, body in handler.requests:
        assert path == "/v1/traces" and content_type == "application/x-protobuf"
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = _values(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                assert scope_spans.scope.name == "shipscope"
                spans.extend((resource, span) for span in scope_spans.spans)
    return spans


def test_runs_export_as_run_job_step_traces(db_with_a_run: str, receiver: tuple[str, type[_Receiver]]) -> None:
    base, handler = receiver
    _export(db_with_a_run, base)
    spans = _decoded(handler)
    by_name = {span.name: (resource, span) for resource, span in spans}
    assert sorted(by_name) == ["Checkout", "DEPLOY checkout", "RUN CI", "build", "pytest", "unit tests"]

    resource, run = by_name["RUN CI"]
    assert resource["service.name"] == "acme/shop"
    assert run.parent_span_id == b"" and run.kind == Span.SPAN_KIND_SERVER
    assert (run.start_time_unix_nano, run.end_time_unix_nano) == (
        _nanos(START + timedelta(seconds=20)),
        _nanos(START + timedelta(minutes=9)),
    )
    assert run.status.code == Status.STATUS_CODE_ERROR
    assert _values(run.attributes) == {
        "cicd.pipeline.name": "CI",
        "cicd.pipeline.run.id": "run-7",
        "cicd.pipeline.run.url.full": "https://ci.example/acme/shop/runs/7",
        "cicd.pipeline.result": "failure",
        "cicd.pipeline.action.name": "RUN",
        "cicd.pipeline.run.attempt": 1,
        "cicd.pipeline.trigger": "pull_request",
        "vcs.ref.head.name": "feature/cart",
        "vcs.ref.head.revision": "a" * 40,
        "vcs.change.id": "42",
        "enduser.id": "octocat",
        "shipscope.queue_seconds": 20.0,
    }

    for job_name, task_type, result in (("build", "build", "success"), ("unit tests", "test", "failure")):
        _, job = by_name[job_name]
        assert job.trace_id == run.trace_id and job.parent_span_id == run.span_id
        attributes = _values(job.attributes)
        assert attributes["cicd.pipeline.task.name"] == job_name
        assert attributes["cicd.pipeline.task.type"] == task_type
        assert attributes["cicd.pipeline.task.run.result"] == result
    _, tests_job = by_name["unit tests"]
    assert tests_job.start_time_unix_nano == _nanos(START + timedelta(minutes=4, seconds=10))
    assert _values(tests_job.attributes)["shipscope.queue_seconds"] == 10.0
    for step_name, number in (("Checkout", 1), ("pytest", 2)):
        _, step = by_name[step_name]
        assert step.trace_id == run.trace_id and step.parent_span_id == tests_job.span_id
        assert step.start_time_unix_nano == _nanos(START + timedelta(minutes=4 + number))
        assert step.end_time_unix_nano == _nanos(START + timedelta(minutes=5 + number))
        assert _values(step.attributes)["shipscope.step.number"] == number
    assert by_name["pytest"][1].status.code == Status.STATUS_CODE_ERROR

    deployed, deployment = by_name["DEPLOY checkout"]
    assert deployed["service.name"] == "checkout" and deployed["service.version"] == "v1.4.2"
    assert deployed["deployment.environment.name"] == "production"
    assert deployment.trace_id != run.trace_id and deployment.parent_span_id == b""
    assert _values(deployment.attributes)["vcs.ref.head.revision"] == "b" * 40
    assert len({span.span_id for _, span in spans}) == 6


def test_exporting_again_sends_the_same_ids(db_with_a_run: str, receiver: tuple[str, type[_Receiver]]) -> None:
    base, handler = receiver
    _export(db_with_a_run, f"{base}/v1/traces")
    first = {(span.trace_id, span.span_id) for _, span in _decoded(handler)}
    handler.requests.clear()
    _export(db_with_a_run, base)
    assert {(span.trace_id, span.span_id) for _, span in _decoded(handler)} == first


def _live_client(db_url: str, endpoint: str) -> TestClient:
    settings = Settings(db=db_url, alert_interval_seconds=0, otlp_endpoint=endpoint, otlp_settle_seconds=0)
    return TestClient(create_app(settings))


def _ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(event) for event in events)


def _eventually(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_server_sends_runs_and_deployments_live_as_they_finish(
    db_url: str, db_with_a_run: str, receiver: tuple[str, type[_Receiver]]
) -> None:
    base, handler = receiver
    _export(db_with_a_run, base)
    exported = {(span.name, span.trace_id, span.span_id, span.parent_span_id) for _, span in _decoded(handler)}
    handler.requests.clear()

    running = {key: value for key, value in EVENTS[0].items() if key != "finished_at"} | {"status": "in_progress"}
    with _live_client(db_url, base) as client:
        # Jobs and steps first, the run still going: nothing is finished, so nothing is sent.
        assert client.post("/api/v1/events", content=_ndjson([running, *EVENTS[1:5]])).status_code == 200
        time.sleep(0.3)
        assert handler.requests == []
        assert client.post("/api/v1/events", content=_ndjson([EVENTS[0], EVENTS[5]])).status_code == 200
        _eventually(lambda: len(_decoded(handler)) == 6)
        live = {(span.name, span.trace_id, span.span_id, span.parent_span_id) for _, span in _decoded(handler)}
        assert live == exported  # the whole trace, with the ids `otel export` gives
        # A redelivery and the same run finishing again send nothing more.
        assert client.post("/api/v1/events", content=_ndjson([EVENTS[0], EVENTS[5]])).json()["duplicates"] == 2
        again = {**EVENTS[0], "finished_at": _iso(START + timedelta(minutes=10))}
        assert client.post("/api/v1/events", content=_ndjson([again])).status_code == 200
        metrics = client.get("/metrics").text
    assert len(_decoded(handler)) == 6  # leaving the client flushed whatever was still queued
    assert 'shipscope_otlp_export_traces_total{outcome="sent"} 2.0' in metrics


def test_a_refusing_collector_neither_fails_nor_loses_ingest(
    tmp_path: Path, receiver: tuple[str, type[_Receiver]]
) -> None:
    base, handler = receiver
    handler.answer = 400
    db_url = f"duckdb:///{tmp_path / 'refused.duckdb'}"
    with _live_client(db_url, base) as client:
        answer = client.post("/api/v1/events", content=_ndjson(EVENTS))
        assert answer.status_code == 200 and answer.json()["stored"] == len(EVENTS)
        _eventually(lambda: 'outcome="failed"} 2.0' in client.get("/metrics").text)
    assert handler.requests  # it was tried
    store = Store(db_url)
    try:
        assert store.query(sa.select(sa.func.count()).select_from(schema.pipeline_runs))[0]["count_1"] == 1
    finally:
        store.close()


def test_a_refusing_endpoint_or_no_endpoint_is_a_clear_error(
    db_with_a_run: str, receiver: tuple[str, type[_Receiver]], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, handler = receiver
    handler.answer = 400
    refused = runner.invoke(app, ["otel", "export", "--db", db_with_a_run, "--endpoint", base, "--since", "2026-11-01"])
    assert refused.exit_code == 2 and "did not accept spans 1–6; 0 were sent before" in refused.stderr
    assert "Traceback" not in refused.output
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    missing = runner.invoke(app, ["otel", "export", "--db", db_with_a_run])
    assert missing.exit_code == 2 and "give --endpoint or set OTEL_EXPORTER_OTLP_ENDPOINT" in missing.stderr
    scheme = runner.invoke(app, ["otel", "export", "--db", db_with_a_run, "--endpoint", "collector:4318"])
    assert scheme.exit_code == 2 and "expected an http:// or https:// URL" in scheme.stderr


# ----- OTLP/HTTP traces received at /v1/traces ---------------------------------------------------------------------


def _hex_ids(document: Any) -> Any:
    """protobuf's JSON mapping writes ids in base64; OTLP JSON writes them in hex."""
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for name in ("traceId", "spanId", "parentSpanId"):
                    if name in span:
                        span[name] = base64.b64decode(span[name]).hex()
    return document


def _received(tmp_path: Path, body: bytes, content_type: str) -> tuple[Any, dict[str, list[dict[str, Any]]]]:
    url = f"duckdb:///{tmp_path / 'received.duckdb'}"
    with TestClient(create_app(Settings(db=url, alert_interval_seconds=0))) as client:
        answer = client.post("/v1/traces", content=body, headers={"Content-Type": content_type})
        again = client.post("/v1/traces", content=body, headers={"Content-Type": content_type})
        assert again.status_code == 200 and again.content == answer.content
    store = Store(url)
    tables = {
        name: store.query(sa.select(table).order_by(*schema.natural_key(table)))
        for name, table in (("runs", schema.pipeline_runs), ("jobs", schema.jobs), ("steps", schema.steps))
    }
    store.close()
    return answer, tables


def _exported_request(db_url: str, receiver: tuple[str, type[_Receiver]]) -> bytes:
    base, handler = receiver
    _export(db_url, base)
    [(_, _, body)] = handler.requests
    return body


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_received_traces_become_runs_jobs_and_steps(
    encoding: str, db_with_a_run: str, receiver: tuple[str, type[_Receiver]], tmp_path: Path
) -> None:
    body = _exported_request(db_with_a_run, receiver)
    content_type = "application/x-protobuf"
    if encoding == "json":
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        body = orjson.dumps(_hex_ids(json_format.MessageToDict(request)))
        content_type = "application/json"
    answer, tables = _received(tmp_path, body, content_type)
    assert answer.status_code == 200 and answer.headers["content-type"] == content_type
    response = ExportTraceServiceResponse()
    if encoding == "json":
        json_format.Parse(answer.text, response)
    else:
        response.ParseFromString(answer.content)
    # The deployment span is not a CI span: counted, not stored and not hidden.
    assert response.partial_success.rejected_spans == 1

    [run] = tables["runs"]
    assert (run["source"], run["id"], run["repo"], run["workflow"]) == ("otlp", "run-7", "acme/shop", "CI")
    assert (run["status"], run["branch"], run["sha"], run["pr_number"]) == ("failure", "feature/cart", "a" * 40, 42)
    assert run["trigger"] == "pull_request" and run["url"] == "https://ci.example/acme/shop/runs/7"
    assert _aware(run["started_at"]) == START + timedelta(seconds=20)
    assert _aware(run["finished_at"]) == START + timedelta(minutes=9)
    assert [(job["id"], job["run_id"], job["name"], job["status"]) for job in tables["jobs"]] == [
        ("job-1", "run-7", "build", "success"),
        ("job-2", "run-7", "unit tests", "failure"),
    ]
    assert [(step["job_id"], step["number"], step["name"], step["status"]) for step in tables["steps"]] == [
        ("job-2", 1, "Checkout", "success"),
        ("job-2", 2, "pytest", "failure"),
    ]
    assert _aware(tables["steps"][1]["finished_at"]) == START + timedelta(minutes=7)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_bad_otlp_payloads_are_refused_with_what_was_wrong(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'bad.duckdb'}"
    span = {"traceId": "zz", "spanId": "00f067aa0ba902b7", "name": "RUN CI", "startTimeUnixNano": "1"}
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    with TestClient(create_app(Settings(db=url, alert_interval_seconds=0))) as client:
        garbage = client.post("/v1/traces", content=b"\xff\xff\xff", headers={"Content-Type": "application/x-protobuf"})
        assert garbage.status_code == 400 and "not an ExportTraceServiceRequest" in garbage.text
        not_hex = client.post(
            "/v1/traces", content=orjson.dumps(document), headers={"Content-Type": "application/json"}
        )
        assert not_hex.status_code == 400 and "traceId 'zz' is not hex" in not_hex.text
        broken = client.post("/v1/traces", content=b'{"resourceSpans": [', headers={"Content-Type": "application/json"})
        assert broken.status_code == 400 and "OTLP JSON" in broken.text
        text = client.post("/v1/traces", content=b"spans", headers={"Content-Type": "text/plain"})
        assert text.status_code == 415 and "application/x-protobuf or application/json" in text.text
        for shape, problem in (
            ({"resourceSpans": True}, "the request: resourceSpans must be a list"),
            ({"resourceSpans": ["x"]}, "resourceSpans[1]: expected an object"),
            ({"resourceSpans": [{"scopeSpans": {}}]}, "resourceSpans[1]: scopeSpans must be a list"),
            ({"resourceSpans": [{"scopeSpans": [{"spans": "s"}]}]}, "scopeSpans[1]: spans must be a list"),
        ):
            wrong = client.post("/v1/traces", content=orjson.dumps(shape), headers={"Content-Type": "application/json"})
            assert wrong.status_code == 400 and problem in wrong.json()["error"], (shape, wrong.text)
        # Protobuf strings may hold NUL, which PostgreSQL text cannot: refused, by where it is.
        span_id = bytes.fromhex("00f067aa0ba902b7")
        for attribute, name, problem in (
            ("RUN CI", "RUN\x00CI", "OTLP: span name 'RUN\\x00CI': text may not contain NUL"),
            ("main\x00", "RUN CI", "OTLP: attribute 'vcs.ref.head.name': text may not contain NUL"),
        ):
            request = ExportTraceServiceRequest()
            spans = request.resource_spans.add().scope_spans.add().spans
            nul_span = spans.add(span_id=span_id, trace_id=bytes(16), name=name, start_time_unix_nano=1)
            nul_span.attributes.add(key="vcs.ref.head.name").value.string_value = attribute
            nul_span.attributes.add(key="cicd.pipeline.name").value.string_value = "ci"
            refused = client.post(
                "/v1/traces", content=request.SerializeToString(), headers={"Content-Type": "application/x-protobuf"}
            )
            assert refused.status_code == 400 and problem in refused.json()["error"], refused.text
        assert not client.app.state.store.rows(schema.pipeline_runs)  # type: ignore[attr-defined]

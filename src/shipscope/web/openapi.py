"""What the raw-body endpoints take, for the OpenAPI document.

These endpoints read their bodies themselves (signatures are checked over the exact bytes, NDJSON is streamed, size is
bounded before parsing), so FastAPI cannot infer the request body: each route declares it here instead, with the
headers the vendor sends.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from shipscope.events import event_json_schema
from shipscope.ingest.github import HANDLED_EVENTS

Schema = dict[str, Any]
OBJECT: Schema = {"type": "object"}
TEXT: Schema = {"type": "string"}
EVENT_REF: Schema = {"$ref": "#/components/schemas/CanonicalEvent"}


def request_body(description: str, content: dict[str, Schema], required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is read raw: media type → schema."""
    return {
        "requestBody": {
            "description": description,
            "required": required,
            "content": {media_type: {"schema": schema} for media_type, schema in content.items()},
        }
    }


def headers(*declared: tuple[str, str, Schema]) -> dict[str, Any]:
    """``openapi_extra`` header parameters: (name, description, schema), none required."""
    return {
        "parameters": [
            {"name": name, "in": "header", "required": False, "description": description, "schema": schema}
            for name, description, schema in declared
        ]
    }


def merged(*extras: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for extra in extras:
        result.update(extra)
    return result


def _fields(required: list[str] | None = None, **properties: Schema) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


EVENTS = request_body(
    "Canonical events (docs/events.md): NDJSON, one event a line, or a JSON array; gzip with Content-Encoding.",
    {
        "application/x-ndjson": TEXT,
        "application/json": {"oneOf": [EVENT_REF, {"type": "array", "items": EVENT_REF}]},
    },
)
GITHUB = merged(
    request_body("A GitHub webhook payload, as GitHub sends it.", {"application/json": OBJECT}),
    headers(
        ("X-GitHub-Event", "The event name.", {"type": "string", "enum": sorted({*HANDLED_EVENTS, "ping"})}),
        ("X-GitHub-Delivery", "The delivery's GUID: the idempotency key.", TEXT),
        ("X-Hub-Signature-256", "sha256=HMAC of the body with the webhook secret.", TEXT),
    ),
)
GITLAB = merged(
    request_body("A GitLab webhook payload, as GitLab sends it.", {"application/json": OBJECT}),
    headers(
        ("X-Gitlab-Event", "The hook name, e.g. Pipeline Hook.", TEXT),
        ("X-Gitlab-Token", "The webhook's secret token.", TEXT),
        ("X-Gitlab-Event-UUID", "The delivery's UUID: the idempotency key.", TEXT),
    ),
)
_ALERT = _fields(
    status={"type": "string", "enum": ["firing", "resolved"]},
    labels={"type": "object", "additionalProperties": TEXT},
    annotations={"type": "object", "additionalProperties": TEXT},
    startsAt=TEXT,
    endsAt=TEXT,
    generatorURL=TEXT,
    fingerprint=TEXT,
)
ALERTMANAGER_NOTIFICATION: Schema = _fields(
    ["alerts"],
    version=TEXT,
    groupKey=TEXT,
    status={"type": "string", "enum": ["firing", "resolved"]},
    receiver=TEXT,
    commonLabels={"type": "object", "additionalProperties": TEXT},
    commonAnnotations={"type": "object", "additionalProperties": TEXT},
    externalURL=TEXT,
    alerts={"type": "array", "items": _ALERT},
)
ALERTMANAGER = request_body(
    "An Alertmanager webhook_config notification.", {"application/json": ALERTMANAGER_NOTIFICATION}
)
PAGERDUTY = merged(
    request_body(
        "A PagerDuty v3 webhook payload.",
        {
            "application/json": _fields(
                ["event"],
                event=_fields(
                    ["event_type"], id=TEXT, event_type=TEXT, resource_type=TEXT, occurred_at=TEXT, data=OBJECT
                ),
            )
        },
    ),
    headers(("X-PagerDuty-Signature", "v1=HMAC of the body, comma-separated when secrets rotate.", TEXT)),
)
FLAGS = merged(
    request_body("A LaunchDarkly-style flag audit entry.", {"application/json": OBJECT}),
    headers(("X-LD-Signature", "HMAC-SHA256 of the body with the webhook secret, hex.", TEXT)),
)
KUBERNETES = request_body("A Kubernetes Event object (v1 or events.k8s.io/v1).", {"application/json": OBJECT})
OPSGENIE = request_body("An Opsgenie webhook integration post.", {"application/json": OBJECT})
JUNIT = request_body("A JUnit XML report.", {"application/xml": TEXT, "text/xml": TEXT})
SARIF = request_body(
    "A SARIF 2.1.0 or 2.0.0 log.", {"application/json": _fields(["runs"], version=TEXT, runs={"type": "array"})}
)
CACHE_LOG = request_body("A CI log holding actions/cache or BuildKit progress lines.", {"text/plain": TEXT})
PIPELINE_EXPORT = request_body(
    "The GitLab pipeline JSON export.",
    {
        "application/json": _fields(
            ["pipeline_id", "status"],
            pipeline_id={"type": "integer"},
            duration_seconds={"type": "number"},
            status=TEXT,
            project=TEXT,
            deployment_frequency={"type": "number"},
        )
    },
)
OTLP_TRACES = request_body(
    "An OTLP ExportTraceServiceRequest.",
    {
        "application/x-protobuf": {"type": "string", "format": "binary"},
        "application/json": _fields(resourceSpans={"type": "array"}),
    },
)
PUSHGATEWAY = request_body("Prometheus text exposition.", {"text/plain": TEXT})
JOURNAL = request_body(
    'Raw payloads, one JSON object a line: {"source", "delivery_id", "kind", "headers", "body" (base64)}.',
    {"application/x-ndjson": TEXT},
)
BACKUP = request_body(
    "Where to write the copy.", {"application/json": _fields(["path"], path={"type": "string", "pattern": "^/"})}
)
CURSOR = request_body("The cursor's new value.", {"application/json": _fields(["value"], value=TEXT)})
ROLLBACK_REQUEST = request_body(
    "The service to roll back, directly or in GitHub's repository_dispatch shape.",
    {
        "application/json": {
            "oneOf": [
                _fields(["service"], service=TEXT, reason=TEXT),
                _fields(
                    ["client_payload"],
                    event_type=TEXT,
                    client_payload=_fields(["service"], service=TEXT, reason=TEXT),
                ),
            ]
        }
    },
)
ALERTMANAGER_ROLLBACK = request_body(
    "An Alertmanager notification of SLO-breach alerts.", {"application/json": ALERTMANAGER_NOTIFICATION}
)
RUNBOOK_TICK = request_body("Who ticked the step.", {"application/json": _fields(by=TEXT)}, required=False)
POSTMORTEM = request_body("The postmortem's summary.", {"application/json": _fields(summary=TEXT)}, required=False)
_ITEM_KIND: Schema = {"type": "string", "enum": ["prevent-recurrence", "mitigate", "detect"]}
ACTION_ITEM = request_body(
    "A new action item.",
    {
        "application/json": _fields(
            ["title", "owner", "due", "kind"],
            title=TEXT,
            owner=TEXT,
            due={"type": "string", "format": "date"},
            kind=_ITEM_KIND,
            link=TEXT,
        )
    },
)
ACTION_ITEM_CHANGE = request_body(
    "What changes.",
    {
        "application/json": _fields(
            status={"type": "string", "enum": ["open", "done"]},
            link=TEXT,
            owner=TEXT,
            due={"type": "string", "format": "date"},
        )
    },
)


def install(app: FastAPI) -> None:
    """Serve the document with the canonical event schemas among its components, where EVENT_REF points."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            spec.setdefault("components", {}).setdefault("schemas", {}).update(
                event_json_schema("#/components/schemas/{model}")
            )
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]

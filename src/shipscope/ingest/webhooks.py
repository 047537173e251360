"""Webhook deliveries: verification (HMAC signature, shared token), JSON decoding, and the journal entry.

The per-vendor translation lives in ``github``, ``gitlab``, ``alertmanager``, ``pagerduty`` and ``opsgenie``;
this module is what their deliveries share: check
that the sender is who it says, read the body as a JSON object (a truncated body is refused with its position),
and wrap the events with the delivery id the vendor sends for idempotency.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from shipscope.errors import AuthError, InputError
from shipscope.events import Event
from shipscope.ingest import Delivery, alertmanager, flags, github, gitlab, kubernetes, opsgenie, pagerduty
from shipscope.ingest.payload import NUL_REFUSED, holds_nul
from shipscope.ingest.signatures import hmac_sha256_matches

GITHUB_EVENT = "X-GitHub-Event"
GITLAB_EVENT = "X-Gitlab-Event"


def body_digest(body: bytes, *parts: str) -> str:
    """A stable id for a payload that came without one."""
    digest = hashlib.blake2b(body, digest_size=16)
    for part in parts:
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


def json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InputError(
            f"{what}: invalid JSON: {error.msg} at line {error.lineno} column {error.colno} (char {error.pos})"
        ) from None
    if not isinstance(value, dict):
        raise InputError(f"{what}: expected a JSON object, got {type(value).__name__}")
    if holds_nul(body):
        raise InputError(f"{what}: {NUL_REFUSED}")
    return value


def verify_github_signature(body: bytes, signature: str | None, secrets: Sequence[str]) -> None:
    """``X-Hub-Signature-256`` must be the HMAC-SHA256 of the body under one of the secrets (several are accepted
    while a secret is rotated). Compared in constant time."""
    if not signature:
        raise AuthError(
            "missing X-Hub-Signature-256 header: the webhook secret is configured, so deliveries must be signed"
        )
    scheme, _, presented = signature.partition("=")
    if scheme != "sha256" or not presented:
        raise AuthError("X-Hub-Signature-256 must be sha256=<hex digest>")
    if not hmac_sha256_matches(body, [presented], secrets):
        raise AuthError("X-Hub-Signature-256 does not match the body under any configured secret")


def verify_gitlab_token(presented: str | None, tokens: Iterable[str]) -> None:
    """``X-Gitlab-Token`` must equal one of the configured tokens, compared in constant time."""
    if not presented:
        raise AuthError("missing X-Gitlab-Token header: a webhook token is configured, so deliveries must carry it")
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(token.encode(), presented.encode())
    if not matched:
        raise AuthError("X-Gitlab-Token does not match any configured token")


@dataclass(frozen=True)
class WebhookDelivery:
    delivery: Delivery
    event: str
    """The vendor's name for what happened (workflow_job, pipeline, …)."""
    handled: bool
    """False for events shipscope does not use: they are journaled and answered "ignored"."""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return headers.get(name.lower()) or headers.get(name)


def github_delivery(body: bytes, headers: Mapping[str, str]) -> WebhookDelivery:
    event = _header(headers, GITHUB_EVENT)
    if not event:
        raise InputError(f"missing {GITHUB_EVENT} header")
    events = github.parse_delivery(event, json_object(body, f"GitHub {event} payload"))
    delivery_id = _header(headers, "X-GitHub-Delivery") or body_digest(body, event)
    delivery = Delivery(github.SOURCE, delivery_id, "github", body, tuple(events), {GITHUB_EVENT: event})
    return WebhookDelivery(delivery, event, event in github.HANDLED_EVENTS)


def gitlab_delivery(body: bytes, headers: Mapping[str, str]) -> WebhookDelivery:
    header = _header(headers, GITLAB_EVENT)
    payload = json_object(body, f"GitLab {header or 'webhook'} payload")
    events = gitlab.parse_delivery(header, payload)
    kind = gitlab.kind_of(header, payload)
    # GitLab sends X-Gitlab-Event-UUID since 15.x; older instances send none, so the payload itself is the key.
    delivery_id = _header(headers, "X-Gitlab-Event-UUID") or body_digest(body, header or "")
    delivery = Delivery(
        gitlab.SOURCE, delivery_id, "gitlab", body, tuple(events), {GITLAB_EVENT: header} if header else {}
    )
    return WebhookDelivery(delivery, kind or header or "unknown", kind in gitlab.HANDLED_KINDS)


def decode_github(body: bytes, headers: Mapping[str, str]) -> Sequence[Event]:
    return github_delivery(body, headers).delivery.events


def decode_gitlab(body: bytes, headers: Mapping[str, str]) -> Sequence[Event]:
    return gitlab_delivery(body, headers).delivery.events


def alertmanager_delivery(body: bytes, headers: Mapping[str, str]) -> WebhookDelivery:
    payload = json_object(body, "Alertmanager notification")
    events = alertmanager.parse_delivery(payload)
    # A notification has no id of its own; the same body re-sent (a retry) is the same delivery.
    delivery = Delivery(alertmanager.SOURCE, body_digest(body), "alertmanager", body, tuple(events))
    return WebhookDelivery(delivery, str(payload.get("status") or "notification"), True)


def pagerduty_delivery(body: bytes, headers: Mapping[str, str]) -> WebhookDelivery:
    payload = json_object(body, "PagerDuty webhook")
    events = pagerduty.parse_delivery(payload)
    delivery_id = pagerduty.event_id(payload) or body_digest(body)
    delivery = Delivery(pagerduty.SOURCE, delivery_id, "pagerduty", body, tuple(events))
    kind = pagerduty.event_type(payload)
    return WebhookDelivery(delivery, kind, kind.startswith("incident."))


def opsgenie_delivery(body: bytes, headers: Mapping[str, str]) -> WebhookDelivery:
    payload = json_object(body, "Opsgenie webhook")
    events = opsgenie.parse_delivery(payload)
    delivery = Delivery(opsgenie.SOURCE, body_digest(body), "opsgenie", body, tuple(events))
    return WebhookDelivery(delivery, opsgenie.action_of(payload), True)


SERVICE_HEADER = "X-Shipscope-Service"
"""Journaled with flag and Kubernetes deliveries: the ``?service=`` their webhook URL named, for reprocessing."""


def flag_delivery(body: bytes, headers: Mapping[str, str]) -> WebhookDelivery:
    payload = json_object(body, "flag audit webhook")
    service = _header(headers, SERVICE_HEADER)
    events = flags.parse_delivery(payload, service)
    delivery_id = str(payload.get("_id") or body_digest(body))
    kept = {SERVICE_HEADER: service} if service else {}
    delivery = Delivery(flags.SOURCE, delivery_id, "flags", body, tuple(events), kept)
    return WebhookDelivery(delivery, str(payload.get("kind") or "flag"), bool(events))


def kubernetes_delivery(body: bytes, headers: Mapping[str, str]) -> WebhookDelivery:
    payload = json_object(body, "Kubernetes event")
    service = _header(headers, SERVICE_HEADER)
    events = kubernetes.parse_delivery(payload, service)
    kept = {SERVICE_HEADER: service} if service else {}
    delivery = Delivery(kubernetes.SOURCE, kubernetes.delivery_id(payload), "kubernetes", body, tuple(events), kept)
    return WebhookDelivery(delivery, "event", True)

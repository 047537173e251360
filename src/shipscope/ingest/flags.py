"""LaunchDarkly-style feature-flag audit webhooks → ``flag_toggle`` timeline events.

LaunchDarkly posts one audit-log entry per change (https://docs.launchdarkly.com/home/connecting/webhooks):
``{_id, kind: "flag", name, title, titleVerb, date (epoch ms), member {email, firstName, lastName}, accesses
[{action, resource}], currentVersion {key, tags, …}}``, signed in ``X-LD-Signature`` with the hex HMAC-SHA256 of the
body. A flag names no service: it is the ``?service=`` of the webhook's URL, else the flag's ``service:NAME`` tag,
else none (the change then shows on every service's timeline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from shipscope.errors import AuthError, InputError
from shipscope.events import Event, TimelineEvent, timeline_details
from shipscope.ingest.payload import Node
from shipscope.ingest.signatures import hmac_sha256_matches

SOURCE: Final = "flags"
SIGNATURE_HEADER: Final = "X-LD-Signature"


def verify_signature(body: bytes, signature: str | None, secrets: Sequence[str]) -> None:
    if not signature:
        raise AuthError(f"missing {SIGNATURE_HEADER} header: a flag webhook secret is configured")
    if not hmac_sha256_matches(body, [signature], secrets):
        raise AuthError(f"{SIGNATURE_HEADER} does not match the body under any configured secret")


def parse_delivery(payload: Mapping[str, Any], service: str | None = None) -> list[Event]:
    root = Node(payload)
    if root.opt_text("kind") not in (None, "flag"):
        return []  # segments, projects, members: not a change to what runs
    identifier = root.text("_id")
    millis = root.integer("date")
    try:
        at = datetime.fromtimestamp(millis / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise InputError(f"date: {millis} is not a time in epoch milliseconds") from None
    version = root.opt_node("currentVersion")
    tags = (version.opt_texts("tags") if version else None) or []
    tagged = next((tag.split(":", 1)[1] for tag in tags if tag.startswith("service:") and tag[8:]), None)
    member = root.opt_node("member")
    who = None
    if member is not None:
        names = " ".join(part for part in (member.opt_text("firstName"), member.opt_text("lastName")) if part)
        who = names or member.opt_text("email")
    name = root.opt_text("name") or (version.opt_text("key") if version else None) or identifier
    environments = sorted(
        {
            part.split("/", 1)[1]
            for access in root.nodes("accesses")
            for part in (access.opt_text("resource") or "").split(":")
            if part.startswith("env/")
        }
    )
    title = root.opt_text("title") or f"{who or 'someone'} {root.opt_text('titleVerb') or 'changed'} {name}"
    details = {
        "flag": name,
        "key": version.opt_text("key") if version else None,
        "actions": [access.opt_text("action") for access in root.nodes("accesses") if access.opt_text("action")],
        "environments": environments,
        "by": who,
        "tags": tags,
    }
    return [
        TimelineEvent(
            source=SOURCE,
            id=identifier,
            kind="flag_toggle",
            service=service or tagged,
            at=at,
            title=title,
            details=timeline_details(details),
        )
    ]

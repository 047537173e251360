"""Notices when a threshold starts or stops being violated: Slack incoming webhooks and generic JSON webhooks.

``transitions`` compares the violations of one evaluation with those noticed before (``NoticeState.active``, keyed
``threshold:subject``): a violation is announced once when it starts and once when it clears, never again while it
holds. ``slack_payload`` and ``webhook_payload`` are pure renderings; ``Notifier`` posts them.

A notice that cannot be delivered never breaks the caller: ``Notifier.send`` retries 429 (honouring
``Retry-After``), 5xx and transport errors with backoff, then returns a warning per URL that failed; it never
raises for the remote side. Warnings and dry runs show a URL's scheme and host only, since a Slack webhook URL is
a secret.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx

from shipscope.integrations.http import OutboundRequest, send
from shipscope.metrics.thresholds import Violation

__all__ = [
    "NoticeState",
    "Notifier",
    "slack_payload",
    "transitions",
    "webhook_payload",
]

log = logging.getLogger(__name__)

HEADER_LIMIT = 150
"""Slack: a header block's plain_text is at most 150 characters."""
SECTION_LIMIT = 3000
"""Slack: a section block's text is at most 3000 characters."""
BLOCK_LIMIT = 50
"""Slack: a message holds at most 50 blocks."""
HEADERS = {"Content-Type": "application/json; charset=utf-8"}
MAX_BACKOFF = 60.0


def _key(notice: Mapping[str, Any]) -> str:
    return f"{notice['threshold']}:{notice['subject']}"


def transitions(
    previous: Mapping[str, Mapping[str, Any]], current: Sequence[Violation]
) -> tuple[list[Violation], list[dict[str, Any]]]:
    """(started, cleared): violations of ``current`` not in ``previous``, and notices of ``previous`` now gone.

    ``previous`` maps ``threshold:subject`` to a violation's ``to_json()``, as ``NoticeState.active`` holds them.
    """
    keys = {violation.key for violation in current}
    started = [violation for violation in current if violation.key not in previous]
    cleared = [dict(notice) for key, notice in previous.items() if key not in keys]
    return started, cleared


@dataclass
class NoticeState:
    """The violations already announced, keyed ``threshold:subject`` (persist it with ``to_json``)."""

    active: dict[str, dict[str, Any]] = field(default_factory=dict)

    def update(self, current: Sequence[Violation]) -> tuple[list[Violation], list[dict[str, Any]]]:
        """The transitions to ``current``; afterwards ``active`` holds ``current``."""
        started, cleared = transitions(self.active, current)
        self.active = {violation.key: violation.to_json() for violation in current}
        return started, cleared

    def to_json(self) -> dict[str, Any]:
        return {"active": dict(self.active)}

    @classmethod
    def from_json(cls, shape: Mapping[str, Any]) -> NoticeState:
        active = shape.get("active", {})
        return cls({str(key): dict(value) for key, value in active.items()})


# ----- payloads ----------------------------------------------------------------------------------------------------


def _mrkdwn_escape(text: str) -> str:
    """Slack's control characters in mrkdwn text: ``&``, ``<`` and ``>``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary(started: Sequence[Violation], cleared: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    if started:
        parts.append(f"{len(started)} threshold violation{'s' if len(started) != 1 else ''} started")
    if cleared:
        parts.append(f"{len(cleared)} cleared")
    return "shipscope: " + (", ".join(parts) if parts else "no threshold changes")


def slack_payload(
    started: Sequence[Violation], cleared: Sequence[Mapping[str, Any]], *, dashboard_url: str | None = None
) -> dict[str, Any]:
    """A Slack Block Kit message: a header, a section per started or cleared violation, a context line, and a
    ``text`` fallback for notifications. Within Slack's limits: 50 blocks, header 150 and section 3000 characters."""
    summary = _summary(started, cleared)
    lines = [
        f":rotating_light: *{_mrkdwn_escape(violation.threshold)}* `{_mrkdwn_escape(violation.subject)}`\n"
        f"{_mrkdwn_escape(violation.message)}"
        for violation in started
    ]
    lines += [
        f":white_check_mark: *{_mrkdwn_escape(str(notice.get('threshold')))}* "
        f"`{_mrkdwn_escape(str(notice.get('subject')))}` cleared\n"
        f"was: {_mrkdwn_escape(str(notice.get('message', '')))}"
        for notice in cleared
    ]
    room = BLOCK_LIMIT - 2  # the header and the context
    shown = lines if len(lines) <= room else lines[: room - 1]
    sections = [{"type": "section", "text": {"type": "mrkdwn", "text": _clip(line, SECTION_LIMIT)}} for line in shown]
    if len(shown) < len(lines):
        more = f"…and {len(lines) - len(shown)} more"
        sections.append({"type": "section", "text": {"type": "mrkdwn", "text": more}})
    context = (
        f"<{dashboard_url}|Open the shipscope dashboard>"
        if dashboard_url
        else "Sent by shipscope when a threshold starts or stops being violated"
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(summary, HEADER_LIMIT), "emoji": True}},
        *sections,
        {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
    ]
    fallback = "\n".join([summary, *(violation.message for violation in started)])
    return {"text": _clip(fallback, SECTION_LIMIT), "blocks": blocks}


def webhook_payload(started: Sequence[Violation], cleared: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The generic webhook body: ``{"started": [violation…], "cleared": [violation…]}`` (``Violation.to_json``)."""
    return {"started": [violation.to_json() for violation in started], "cleared": [dict(n) for n in cleared]}


# ----- delivery ----------------------------------------------------------------------------------------------------


def _redact(url: str) -> str:
    """``scheme://host/…``: webhook URLs carry their secret in the path."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/…"


class Notifier:
    """Posts notices to Slack incoming webhooks and generic JSON webhooks.

    ``client`` is an ``httpx.Client`` to use (tests and proxies); without one each ``send`` opens its own.
    ``retries`` is the number of retries after the first attempt; ``sleep`` waits between them (injectable).
    """

    def __init__(
        self,
        *,
        slack_urls: Sequence[str] = (),
        webhook_urls: Sequence[str] = (),
        client: httpx.Client | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        dashboard_url: str | None = None,
    ) -> None:
        self.slack_urls = tuple(slack_urls)
        self.webhook_urls = tuple(webhook_urls)
        self.client = client
        self.timeout = timeout
        self.retries = max(0, retries)
        self.sleep = sleep
        self.dashboard_url = dashboard_url

    def requests(self, started: Sequence[Violation], cleared: Sequence[Mapping[str, Any]]) -> list[tuple[str, bytes]]:
        """(url, body) of each request ``send`` would make; none when nothing started or cleared."""
        if not started and not cleared:
            return []
        slack = _encode(slack_payload(started, cleared, dashboard_url=self.dashboard_url))
        hook = _encode(webhook_payload(started, cleared))
        return [(url, slack) for url in self.slack_urls] + [(url, hook) for url in self.webhook_urls]

    def send(self, started: Sequence[Violation], cleared: Sequence[Mapping[str, Any]]) -> list[str]:
        """Posts the notices; returns a warning per URL that could not be reached. Never raises for the remote."""
        planned = self.requests(started, cleared)
        if not planned:
            return []
        if self.client is not None:
            return self._send_all(self.client, planned)
        with httpx.Client(timeout=self.timeout) as client:
            return self._send_all(client, planned)

    def dry_run(
        self, started: Sequence[Violation], cleared: Sequence[Mapping[str, Any]], *, file: TextIO | None = None
    ) -> list[tuple[str, Any]]:
        """Prints the requests ``send`` would make (URL redacted) and returns (url, json body) pairs; sends nothing."""
        out = file if file is not None else sys.stdout
        planned = self.requests(started, cleared)
        for url, body in planned:
            print(f"POST {_redact(url)}", file=out)
            for name, value in HEADERS.items():
                print(f"{name}: {value}", file=out)
            print(file=out)
            print(body.decode(), file=out)
            print(file=out)
        return [(url, json.loads(body)) for url, body in planned]

    def _send_all(self, client: httpx.Client, planned: Sequence[tuple[str, bytes]]) -> list[str]:
        warnings: list[str] = []
        for url, body in planned:
            warning = self._post(client, url, body)
            if warning is not None:
                log.warning("%s", warning)
                warnings.append(warning)
        return warnings

    def _post(self, client: httpx.Client, url: str, body: bytes) -> str | None:
        request = OutboundRequest("notice", "POST", url, HEADERS, json.loads(body), secrets=(url,), what="notice")
        outcome = send(client, request, retries=self.retries, timeout=self.timeout, sleep=self.sleep)
        if outcome.ok:
            return None
        where = _redact(url)
        if outcome.status is not None and outcome.status < 500 and outcome.status != 429:
            return f"notice to {where} rejected: {outcome.detail}"
        return f"notice to {where} not delivered: {outcome.detail}"


def _encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()

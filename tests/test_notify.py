"""Notices: transitions, and real local HTTP servers standing in for Slack incoming webhooks and a generic webhook.

The Slack stand-in checks each request against Slack's documented contract for incoming webhooks and Block Kit
(POST, a JSON body with ``text`` and/or ``blocks``; header, section and context blocks with plain_text/mrkdwn text
objects; header text ≤ 150 and section text ≤ 3000 characters; at most 50 blocks) and answers ``ok`` with 200, or
what the test scripted (429 with Retry-After, 500, …).
"""

from __future__ import annotations

import io
import json
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from shipscope.integrations.notify import NoticeState, Notifier, slack_payload, transitions, webhook_payload
from shipscope.metrics.thresholds import Violation

TEXT_TYPES = {"plain_text", "mrkdwn"}


def slack_problems(method: str, content_type: str, raw: bytes) -> list[str]:
    """What a Slack incoming webhook would reject in this request."""
    problems: list[str] = []
    if method != "POST":
        problems.append(f"method {method}")
    if not content_type.startswith("application/json"):
        problems.append(f"content type {content_type!r}")
    try:
        body = json.loads(raw)
    except ValueError:
        return [*problems, "body is not JSON"]
    if not isinstance(body, dict) or not ("text" in body or "blocks" in body):
        return [*problems, "no text and no blocks"]
    if "text" in body and not isinstance(body["text"], str):
        problems.append("text is not a string")
    blocks = body.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        return [*problems, "blocks: not a list of at most 50"]

    def text_object(obj: Any, where: str, limit: int | None = None, types: set[str] = TEXT_TYPES) -> None:
        if not isinstance(obj, dict) or obj.get("type") not in types or not isinstance(obj.get("text"), str):
            problems.append(f"{where}: not a text object of type {sorted(types)}")
            return
        if not obj["text"]:
            problems.append(f"{where}: empty text")
        if limit is not None and len(obj["text"]) > limit:
            problems.append(f"{where}: {len(obj['text'])} characters > {limit}")
        if obj["type"] == "mrkdwn" and "emoji" in obj:
            problems.append(f"{where}: emoji is only for plain_text")

    for index, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        where = f"blocks[{index}] ({kind})"
        if kind == "header":
            text_object(block.get("text"), where, 150, {"plain_text"})
        elif kind == "section":
            text_object(block.get("text"), where, 3000)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                problems.append(f"{where}: 1 to 10 elements")
            else:
                for position, element in enumerate(elements):
                    text_object(element, f"{where}.elements[{position}]")
        else:
            problems.append(f"{where}: unexpected block type")
    return problems


@dataclass
class Received:
    method: str
    path: str
    content_type: str
    body: Any
    problems: list[str]


@dataclass
class Vendor:
    """A local HTTP server; ``script`` holds (status, headers, body) answers, then 200 ``ok``."""

    slack: bool
    received: list[Received] = field(default_factory=list)
    script: deque[tuple[int, dict[str, str], str]] = field(default_factory=deque)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                content_type = self.headers.get("Content-Type", "")
                problems = slack_problems(self.command, content_type, raw) if vendor.slack else []
                if not vendor.slack and not content_type.startswith("application/json"):
                    problems.append(f"content type {content_type!r}")
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                vendor.received.append(Received(self.command, self.path, content_type, body, problems))
                status, headers, answer = (
                    (400, {}, "invalid_payload")
                    if problems
                    else (vendor.script.popleft() if vendor.script else (200, {}, "ok"))
                )
                data = answer.encode()
                self.send_response(status)
                for name, value in {"Content-Type": "text/plain", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = _handle
            do_GET = _handle
            do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def serve(vendor: Vendor, path: str) -> Iterator[Vendor]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), vendor.handler())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    vendor.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        yield vendor
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def slack() -> Iterator[Vendor]:
    yield from serve(Vendor(slack=True), "/services/T000/B000/secret-token")


@pytest.fixture
def hook() -> Iterator[Vendor]:
    yield from serve(Vendor(slack=False), "/hooks/shipscope")


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def violation(threshold: str = "pr_build_p95", subject: str = "acme/shop", value: float = 1170.0) -> Violation:
    return Violation(
        threshold,
        subject,
        value,
        900.0,
        {"p50": 900.0, "p95": value, "samples": 2},
        f"{subject}: the p95 build time of PR runs of ci is {value / 60:.3g} min, above the limit of 15 min",
    )


# ----- transitions -------------------------------------------------------------------------------------------------


def test_a_violation_starts_once_is_not_repeated_and_clears_once() -> None:
    state = NoticeState()
    pr, queue = violation(), violation("queue_median", "linux", 200.0)
    assert state.update([pr]) == ([pr], [])
    assert state.update([pr, queue]) == ([queue], [])  # pr still violated: not repeated
    assert state.update([pr, queue]) == ([], [])
    started, cleared = state.update([queue])
    assert started == [] and cleared == [pr.to_json()]
    assert state.update([queue]) == ([], [])  # cleared once only
    assert list(state.active) == ["queue_median:linux"]
    # The state survives a round trip through JSON.
    restored = NoticeState.from_json(json.loads(json.dumps(state.to_json())))
    assert transitions(restored.active, []) == ([], [queue.to_json()])


def test_a_changed_value_of_a_held_violation_is_not_a_new_notice() -> None:
    previous = {violation().key: violation().to_json()}
    assert transitions(previous, [violation(value=1500.0)]) == ([], [])


# ----- payloads ----------------------------------------------------------------------------------------------------


def test_slack_payload_shape() -> None:
    payload = slack_payload(
        [violation()], [violation("flaky_rate", "acme/api", 0.02).to_json()], dashboard_url="https://ship.example/"
    )
    assert slack_problems("POST", "application/json", json.dumps(payload).encode()) == []
    header, started, cleared, context = payload["blocks"]
    assert header["text"]["text"] == "shipscope: 1 threshold violation started, 1 cleared"
    assert started["text"]["text"].startswith(":rotating_light: *pr_build_p95* `acme/shop`\n")
    assert "19.5 min, above the limit of 15 min" in started["text"]["text"]
    assert cleared["text"]["text"].startswith(":white_check_mark: *flaky_rate* `acme/api` cleared")
    assert context["elements"] == [{"type": "mrkdwn", "text": "<https://ship.example/|Open the shipscope dashboard>"}]
    assert payload["text"].startswith("shipscope: 1 threshold violation started, 1 cleared\nacme/shop")


def test_slack_payload_stays_within_slack_limits() -> None:
    many = [violation(subject=f"acme/repo-{index}") for index in range(80)]
    long = Violation("suite_duration", "acme/<shop>", 1.0, 0.5, {}, "x & y " * 1000)
    payload = slack_payload([long, *many], [])
    assert slack_problems("POST", "application/json", json.dumps(payload).encode()) == []
    assert len(payload["blocks"]) == 50
    # 81 notices, 48 blocks of room between the header and the context: 47 shown and one "more" section.
    assert payload["blocks"][-2]["text"]["text"] == "…and 34 more"
    assert "`acme/&lt;shop&gt;`" in payload["blocks"][1]["text"]["text"]
    assert len(payload["blocks"][1]["text"]["text"]) == 3000


def test_webhook_payload() -> None:
    cleared = violation("queue_median", "linux").to_json()
    assert webhook_payload([violation()], [cleared]) == {"started": [violation().to_json()], "cleared": [cleared]}


# ----- delivery to local servers -----------------------------------------------------------------------------------


def test_send_to_slack_and_a_webhook(slack: Vendor, hook: Vendor) -> None:
    sleeps = Sleeps()
    notifier = Notifier(slack_urls=[slack.url], webhook_urls=[hook.url], sleep=sleeps, dashboard_url="https://d/")
    cleared = [violation("cache_hit_rate", "acme/api", 0.5).to_json()]
    assert notifier.send([violation()], cleared) == []
    (to_slack,) = slack.received
    assert to_slack.problems == [] and to_slack.method == "POST"
    assert to_slack.path == "/services/T000/B000/secret-token"
    assert to_slack.body == slack_payload([violation()], cleared, dashboard_url="https://d/")
    (to_hook,) = hook.received
    assert to_hook.problems == [] and to_hook.content_type.startswith("application/json")
    assert to_hook.body == {"started": [violation().to_json()], "cleared": cleared}
    assert sleeps == []


def test_nothing_started_or_cleared_sends_nothing(slack: Vendor) -> None:
    assert Notifier(slack_urls=[slack.url]).send([], []) == []
    assert slack.received == []


def test_429_waits_for_retry_after(slack: Vendor) -> None:
    slack.script.extend([(429, {"Retry-After": "2"}, "rate_limited"), (429, {"Retry-After": "1"}, "rate_limited")])
    sleeps = Sleeps()
    assert Notifier(slack_urls=[slack.url], sleep=sleeps).send([violation()], []) == []
    assert len(slack.received) == 3
    assert sleeps == [2.0, 1.0]


def test_5xx_is_retried_with_backoff_then_given_up_without_raising(slack: Vendor) -> None:
    slack.script.extend([(500, {}, "oops"), (503, {}, "busy")])
    sleeps = Sleeps()
    notifier = Notifier(slack_urls=[slack.url], sleep=sleeps)
    assert notifier.send([violation()], []) == []
    assert sleeps == [0.5, 1.0]

    slack.received.clear()
    slack.script.extend([(500, {}, "oops")] * 4)
    sleeps.clear()
    (warning,) = notifier.send([violation()], [])
    assert len(slack.received) == 4 and sleeps == [0.5, 1.0, 2.0]
    assert (
        warning.startswith("notice to http://127.0.0.1:")
        and "not delivered: HTTP 500: oops (after 4 attempts)" in warning
    )
    assert "secret-token" not in warning


def test_a_4xx_answer_is_not_retried(slack: Vendor, hook: Vendor) -> None:
    slack.script.append((404, {}, "no_service"))
    sleeps = Sleeps()
    warnings = Notifier(slack_urls=[slack.url], webhook_urls=[hook.url], sleep=sleeps).send([violation()], [])
    assert warnings == [f"notice to {slack.url.split('/services')[0]}/… rejected: HTTP 404: no_service"]
    assert len(slack.received) == 1 and len(hook.received) == 1 and sleeps == []


def test_an_unreachable_server_is_a_warning() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps = Sleeps()
    (warning,) = Notifier(webhook_urls=[f"http://127.0.0.1:{port}/x"], retries=1, sleep=sleeps).send([violation()], [])
    assert "not delivered: ConnectError" in warning and "(after 2 attempts)" in warning and sleeps == [0.5]


def test_an_injected_client_is_used(hook: Vendor) -> None:
    with httpx.Client(headers={"User-Agent": "shipscope-test"}) as client:
        assert Notifier(webhook_urls=[hook.url], client=client).send([violation()], []) == []
    assert len(hook.received) == 1


def test_dry_run_prints_the_exact_requests_and_sends_nothing(slack: Vendor, hook: Vendor) -> None:
    out = io.StringIO()
    notifier = Notifier(slack_urls=[slack.url], webhook_urls=[hook.url])
    planned = notifier.dry_run([violation()], [], file=out)
    assert planned == [
        (slack.url, slack_payload([violation()], [])),
        (hook.url, webhook_payload([violation()], [])),
    ]
    assert slack.received == [] and hook.received == []
    printed = out.getvalue()
    assert printed.count("POST http://127.0.0.1:") == 2 and "secret-token" not in printed
    assert json.dumps(slack_payload([violation()], []), ensure_ascii=False) in printed
    assert "Content-Type: application/json" in printed

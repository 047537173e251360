"""Outbound HTTP for every vendor module: one request, sent with a timeout and retried with backoff on 429, 5xx and
transport errors (a 429's ``Retry-After`` honoured up to a cap), or printed for a dry run with its secrets masked.

A vendor module builds ``OutboundRequest``s and knows nothing of how they are sent; ``send`` never raises for the
remote side: the outcome says what happened.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

Sleep = Callable[[float], None]
MAX_RETRY_AFTER_SECONDS = 60.0
BACKOFF_SECONDS = 0.5


@dataclass(frozen=True)
class OutboundRequest:
    vendor: str
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    secrets: Sequence[str] = ()
    """Values (tokens, keys, webhook URLs) that a dry run or an error message must never show."""
    what: str = ""
    """What the request does, e.g. "create the release"."""
    refusal: Callable[[Any], str | None] | None = field(default=None, compare=False)
    """For APIs that answer 200 with errors in the body (GraphQL): the problem in a parsed answer, or None."""

    def masked(self, text: str) -> str:
        for secret in sorted((value for value in self.secrets if value), key=len, reverse=True):
            text = text.replace(secret, "****")
        return text

    def render(self) -> str:
        """The exact request, secrets masked: what ``--dry-run`` prints."""
        lines = [f"{self.method} {self.url}", *(f"{name}: {value}" for name, value in self.headers.items())]
        if self.json is not None:
            lines += ["", json.dumps(self.json, indent=2, ensure_ascii=False)]
        return self.masked("\n".join(lines))


@dataclass(frozen=True)
class Outcome:
    vendor: str
    what: str
    ok: bool
    attempts: int
    status: int | None = None
    """The last HTTP status, None when no answer came."""
    detail: str = ""
    """Why it failed, or what the vendor answered that matters (an id)."""
    answer: Any = None
    """The parsed JSON answer of a success, when there is one."""

    def to_json(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "what": self.what,
            "ok": self.ok,
            "attempts": self.attempts,
            "status": self.status,
            "detail": self.detail,
        }


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), capped; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def where(url: str) -> str:
    """``scheme://host[:port]``, for messages about a URL that may carry a secret in its path."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


def send(
    client: httpx.Client,
    request: OutboundRequest,
    *,
    retries: int = 3,
    timeout: float = 10.0,
    sleep: Sleep = time.sleep,
) -> Outcome:
    """Sends ``request``: up to ``retries`` more attempts after a 429, a 5xx, a timeout or a connection error."""
    problem = "not attempted"
    status: int | None = None
    attempts = 0
    for attempt in range(retries + 1):
        attempts = attempt + 1
        delay = BACKOFF_SECONDS * 2**attempt
        try:
            response = client.request(
                request.method, request.url, headers=dict(request.headers), json=request.json, timeout=timeout
            )
        except httpx.TimeoutException:
            status, problem = None, f"no answer within {timeout:g} s"
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            status, problem = None, request.masked(f"{type(error).__name__}: {error}")
        else:
            status = response.status_code
            if response.is_success:
                answer = _json_or_none(response)
                refused = request.refusal(answer) if request.refusal is not None else None
                if refused is not None:
                    return Outcome(request.vendor, request.what, False, attempts, status, request.masked(refused))
                return Outcome(request.vendor, request.what, True, attempts, status, answer=answer)
            problem = f"HTTP {status}: {request.masked(response.text[:300])}".rstrip(": ")
            if status == 429:
                asked = retry_after_seconds(response.headers.get("Retry-After"))
                delay = asked if asked is not None else delay
            elif status < 500:
                return Outcome(request.vendor, request.what, False, attempts, status, problem)
        if attempt < retries:
            sleep(delay)
    return Outcome(request.vendor, request.what, False, attempts, status, f"{problem} (after {attempts} attempts)")


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None

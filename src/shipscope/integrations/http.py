"""Outbound HTTP for every vendor module: one request, sent with a timeout and retried with backoff on 429, 5xx and
transport errors (a 429's ``Retry-After`` honoured up to a cap), or printed for a dry run with its secrets masked.

A vendor module builds ``OutboundRequest``s and knows nothing of how they are sent; ``send`` never raises for the
remote side: the outcome says what happened.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
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


def masked(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced by ``****`` (the longest first, so no part of one is left showing)."""
    for secret in sorted((value for value in secrets if value), key=len, reverse=True):
        text = text.replace(secret, "****")
    return text


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
        return masked(text, self.secrets)

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


ALLOW_LINK_LOCAL = "SHIPSCOPE_OUTBOUND_ALLOW_LINK_LOCAL"
_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})


def forbidden_destination(url: str, *, allow_link_local: bool | None = None) -> str | None:
    """Why an outbound URL may not be called, or None. Link-local and cloud metadata addresses (169.254.0.0/16 with
    169.254.169.254, fe80::/10, fd00:ec2::254) are refused unless ``SHIPSCOPE_OUTBOUND_ALLOW_LINK_LOCAL=true``: a
    configured webhook URL must not become a way to read the machine's cloud credentials. Loopback and private
    addresses stay allowed (an on-premises Grafana, a test server)."""
    allowed = (
        os.environ.get(ALLOW_LINK_LOCAL, "").strip().lower() in ("1", "true", "yes")
        if allow_link_local is None
        else allow_link_local
    )
    if allowed:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return f"{where(url)} is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return f"{where(url)}: only http and https are called"
    if host.lower() in _METADATA_HOSTS:
        return f"{where(url)} is a cloud metadata service (set {ALLOW_LINK_LOCAL}=true to allow)"
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError):
        return None  # unresolvable: the request itself fails and says so
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if (mapped or ip).is_link_local or ip == ipaddress.ip_address("fd00:ec2::254"):
            return f"{where(url)} resolves to the link-local address {address} (set {ALLOW_LINK_LOCAL}=true to allow)"
    return None


def send(
    client: httpx.Client,
    request: OutboundRequest,
    *,
    retries: int = 3,
    timeout: float = 10.0,
    sleep: Sleep = time.sleep,
) -> Outcome:
    """Sends ``request``: up to ``retries`` more attempts after a 429, a 5xx, a timeout or a connection error."""
    refused = forbidden_destination(request.url)
    if refused is not None:
        return Outcome(request.vendor, request.what, False, 0, None, f"refused: {refused}")
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

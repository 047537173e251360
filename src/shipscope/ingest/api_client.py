"""The HTTP policy the GitHub and GitLab API backfills share: auth, pagination, rate limits, retries and a budget.

Policy lives here and I/O in httpx, so tests point ``base_url`` at a local server (or inject a transport).

Errors, all ShipscopeError:

ApiError          the API answered an error, or could not be reached in ATTEMPTS tries; names the status and the URL
RateLimited       the vendor's rate limit needs a longer wait than ``max_wait_seconds``; names the reset time (UTC)
BudgetExhausted   this run's request budget is spent

None of them, nor any log record, carries the token: it travels only in a request header, and any text taken from
a response is redacted before it is put in a message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol

import httpx

from shipscope import __version__
from shipscope.errors import InputError, ShipscopeError

log = logging.getLogger(__name__)

Vendor = Literal["github", "gitlab"]

PER_PAGE = 100
"""Both vendors' largest page size."""
ATTEMPTS = 3
"""Tries of one request that fails with a 5xx or a transport error before ApiError."""
BACKOFF_SECONDS = 1.0
"""The first pause between such tries; it doubles each time."""
RATE_LIMIT_WAITS = 5
"""Rate-limit waits in a row for one request before giving up with RateLimited."""
UNSPECIFIED_WAIT_SECONDS = 60.0
"""GitHub: 'otherwise wait for at least one minute', doubling on repeats. GitLab's limits are per minute too."""
MAX_REDIRECTS = 5

_VENDOR_NAMES: Mapping[Vendor, str] = {"github": "GitHub", "gitlab": "GitLab"}
_REMAINING_HEADER: Mapping[Vendor, str] = {"github": "X-RateLimit-Remaining", "gitlab": "RateLimit-Remaining"}
_RESET_HEADER: Mapping[Vendor, str] = {"github": "X-RateLimit-Reset", "gitlab": "RateLimit-Reset"}
_SECONDARY_LIMIT = re.compile(r"secondary rate limit|abuse detection", re.IGNORECASE)
_LINK = re.compile(r"<([^>]*)>\s*;\s*rel=\"?([^\";]*)\"?")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MESSAGE_LIMIT = 300


class ApiError(ShipscopeError):
    """The vendor API answered with an error, or could not be reached."""

    status = 502

    def __init__(self, message: str, *, url: str, http_status: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.url = url
        self.http_status = http_status
        """The vendor's HTTP status; None when no answer came."""


class RateLimited(ShipscopeError):
    """The vendor's rate limit would need a longer wait than the client may sleep."""

    status = 503

    def __init__(self, vendor: Vendor, reset_at: datetime, *, secondary: bool = False) -> None:
        what = "secondary rate limit hit" if secondary else "rate limit exhausted"
        super().__init__(
            f"{_VENDOR_NAMES[vendor]} {what}; it resets at {utc_iso(reset_at)} — run again then; "
            "the backfill resumes from its cursor"
        )
        self.reset_at = reset_at


class BudgetExhausted(ShipscopeError):
    """This run has sent as many requests as its budget allows."""

    status = 503

    def __init__(self, budget: int) -> None:
        super().__init__(
            f"request budget of {budget} requests used up; run again to continue from the saved cursor",
            hint="raise the budget to do more in one run",
        )
        self.budget = budget


class CursorStore(Protocol):
    """Small persistent strings by key: backfill cursors and the ETags of conditional requests."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...


@dataclass(frozen=True)
class Page:
    """One page of a list endpoint."""

    url: str
    """The URL requested (the key of its ETag)."""
    items: list[dict[str, Any]]
    not_modified: bool = False
    """A 304 to a conditional request: the page is as it was when its ETag was stored, and ``items`` is empty."""
    etag: str | None = None
    next_url: str | None = None
    """The next page, from Link (GitHub, GitLab) or X-Next-Page (GitLab); for a 304, as stored with the ETag."""
    total_count: int | None = None
    """The ``total_count`` of a wrapped list (GitHub's ``{"total_count": …, "workflow_runs": […]}``)."""


@dataclass
class _EtagRecord:
    """What is stored per URL, so a 304 page can still say where the next page is and how many there were."""

    etag: str
    next_url: str | None = None
    total_count: int | None = None

    def dump(self) -> str:
        return json.dumps({"etag": self.etag, "next": self.next_url, "total": self.total_count})

    @classmethod
    def load(cls, text: str | None) -> _EtagRecord | None:
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("etag"), str):
            return None
        next_url, total = data.get("next"), data.get("total")
        return cls(
            data["etag"],
            next_url if isinstance(next_url, str) else None,
            total if isinstance(total, int) else None,
        )


def utc_iso(moment: datetime) -> str:
    """2026-11-27T14:05:00Z: whole seconds, UTC."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _utcnow() -> datetime:
    return datetime.now(UTC)


_DEFAULT_PORTS: Mapping[str, int] = {"http": 80, "https": 443}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(url.scheme)


def stable_hash(value: object) -> str:
    """A short digest of a JSON value that does not depend on key order: the version of an object with no
    ``updated_at``, so an unchanged object gets the same delivery id next time and a changed one a new id."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def object_id(obj: Mapping[str, Any], key: str, url: str, vendor: str) -> str:
    """An API object's id (a number or a non-empty string), or ApiError naming the request that lacked it."""
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value:
        return value
    raise ApiError(f"{vendor} API answered GET {url} with an item without {key!r}", url=url)


def is_gone(error: ApiError) -> bool:
    """A child of a listed object that is no longer there (deleted meanwhile, or past retention)."""
    return error.http_status in (404, 410)


def object_version(obj: Mapping[str, Any]) -> str:
    """What tells two states of an API object apart: its ``updated_at``, else a hash of the whole object."""
    updated_at = obj.get("updated_at")
    return updated_at if isinstance(updated_at, str) and updated_at else stable_hash(obj)


def start_of_day(since: datetime) -> datetime:
    """Passes start at midnight UTC: the same URLs all day long, so their ETags keep answering 304."""
    if since.tzinfo is None:
        raise InputError("since: expected a time with a UTC offset")
    return since.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def journal_envelope(kind: str, body: bytes, source: str) -> tuple[str, dict[str, Any]]:
    """(resource, object) of a journaled backfill delivery of ``source``; InputError when it cannot be read."""
    prefix = f"{source}:"
    if not kind.startswith(prefix):
        raise InputError(f"not a {source} journal kind: {kind!r}")
    try:
        data = json.loads(body)
    except ValueError as error:
        raise InputError(f"{kind} body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise InputError(f"{kind} body: expected a JSON object")
    return kind.removeprefix(prefix), data


class StagedStore:
    """A CursorStore whose writes wait for ``commit``, for ETags that may only count once their page is journaled.

    A 304 answer means "you have this already": that is only true once the deliveries built from the 200 answer
    were taken by the caller. Until then the new ETags stay here, and an interrupted run leaves the stored ones
    as they were.
    """

    def __init__(self, store: CursorStore, prefix: str) -> None:
        self._store = store
        self._prefix = prefix
        self._staged: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        staged = self._staged.get(key)
        return staged if staged is not None else self._store.get(self._prefix + key)

    def set(self, key: str, value: str) -> None:
        self._staged[key] = value

    def commit(self) -> None:
        for key, value in self._staged.items():
            self._store.set(self._prefix + key, value)
        self._staged.clear()

    def discard(self) -> None:
        self._staged.clear()


@dataclass
class _Attempts:
    """Counts for one logical request across its retries."""

    failures: int = 0
    rate_waits: int = 0
    redirects: int = 0


class ApiClient:
    """GETs against one vendor's REST API, with its auth, pagination and rate-limit rules.

    Every HTTP request counts against ``budget``; when it is spent the next request raises BudgetExhausted before
    it is sent. Rate-limit waits up to ``max_wait_seconds`` are slept (through ``sleep``, so tests do not wait);
    a longer one raises RateLimited naming the reset time. 5xx answers and transport errors are tried ATTEMPTS
    times with exponential backoff, then raise ApiError.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        vendor: Vendor,
        budget: int = 5000,
        max_wait_seconds: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = _utcnow,
        timeout: float = 30.0,
    ) -> None:
        if vendor not in _VENDOR_NAMES:
            raise ValueError(f"vendor must be github or gitlab, not {vendor!r}")
        if budget < 1:
            raise ValueError("budget must be at least 1 request")
        self.base_url = base_url.rstrip("/")
        self._base = httpx.URL(self.base_url)
        if self._base.scheme not in ("http", "https") or not self._base.host:
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        self.vendor: Vendor = vendor
        self.budget = budget
        self.max_wait_seconds = max_wait_seconds
        self.requests_made = 0
        self._sleep = sleep
        self._clock = clock
        self._secret = token or None
        self._quota_resets_at: datetime | None = None
        headers = {"User-Agent": f"shipscope/{__version__}"}
        if vendor == "github":
            headers["Accept"] = "application/vnd.github+json"
            headers["X-GitHub-Api-Version"] = "2022-11-28"
            if token:
                headers["Authorization"] = f"Bearer {token}"
        else:
            headers["Accept"] = "application/json"
            if token:
                headers["PRIVATE-TOKEN"] = token
        # Redirects are followed here, and only on the same origin: httpx would carry a PRIVATE-TOKEN header to
        # any host a redirect names.
        self._http = httpx.Client(headers=headers, transport=transport, timeout=timeout, follow_redirects=False)

    def __repr__(self) -> str:
        return f"ApiClient({self.base_url!r}, vendor={self.vendor!r}, budget={self.budget})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def vendor_name(self) -> str:
        return _VENDOR_NAMES[self.vendor]

    @property
    def requests_left(self) -> int:
        return max(0, self.budget - self.requests_made)

    def now(self) -> datetime:
        """The injected clock's time, in UTC."""
        return self._clock().astimezone(UTC)

    # --- public requests ----------------------------------------------------------------------------------------

    def get_object(
        self, path: str, params: Mapping[str, str] | None = None, *, etag_store: CursorStore | None = None
    ) -> dict[str, Any] | None:
        """One JSON object; None when ``etag_store`` holds its ETag and the API answers 304 Not Modified."""
        url = self._url(path, params or {}, paged=False)
        record = _EtagRecord.load(etag_store.get(url)) if etag_store is not None else None
        response = self._send(url, record)
        if response.status_code == 304:
            return None
        data = self._json(response, url)
        if not isinstance(data, dict):
            raise self._shape_error(url, "an object")
        etag = response.headers.get("ETag")
        if etag_store is not None and etag:
            etag_store.set(url, _EtagRecord(etag).dump())
        return data

    def get_page(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        items_key: str | None = None,
        etag_store: CursorStore | None = None,
    ) -> Page:
        """One page of a list. ``path`` is relative to base_url, or a next-page URL on the same origin.

        ``items_key`` names the list in an endpoint that wraps it in an object (``workflow_runs``, ``jobs``).
        per_page=100 is added to a relative path unless ``params`` sets it.
        """
        url = self._url(path, params or {}, paged=True)
        record = _EtagRecord.load(etag_store.get(url)) if etag_store is not None else None
        response = self._send(url, record)
        next_url = self._next_url(response, url)
        if response.status_code == 304:
            assert record is not None  # _send only accepts a 304 to a conditional request
            return Page(
                url,
                [],
                not_modified=True,
                etag=record.etag,
                next_url=next_url or record.next_url,
                total_count=record.total_count,
            )
        items, total_count = self._items(self._json(response, url), items_key, url)
        etag = response.headers.get("ETag")
        if etag_store is not None and etag:
            etag_store.set(url, _EtagRecord(etag, next_url, total_count).dump())
        return Page(url, items, etag=etag, next_url=next_url, total_count=total_count)

    def get_pages(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        items_key: str | None = None,
        etag_store: CursorStore | None = None,
    ) -> Iterator[Page]:
        """Every page of a list, following the next-page links; see get_page."""
        page = self.get_page(path, params, items_key=items_key, etag_store=etag_store)
        yield page
        while page.next_url is not None:
            page = self.get_page(page.next_url, items_key=items_key, etag_store=etag_store)
            yield page

    # --- URLs ---------------------------------------------------------------------------------------------------

    def _url(self, path: str, params: Mapping[str, str], *, paged: bool) -> str:
        if path.startswith(("http://", "https://")):
            url = self._same_origin(httpx.URL(path), path)
        else:
            if not path.startswith("/"):
                raise ValueError(f"API paths start with '/', got {path!r}")
            url = httpx.URL(self.base_url + path)
            if paged and "per_page" not in params:
                url = url.copy_set_param("per_page", str(PER_PAGE))
        if params:
            url = url.copy_merge_params(dict(params))
        return str(url)

    def _same_origin(self, url: httpx.URL, shown: str) -> httpx.URL:
        if _origin(url) != _origin(self._base):
            raise ApiError(
                f"{self.vendor_name} pointed to {url.scheme}://{url.host}, which is not the API at {self.base_url}; "
                "refusing to send the token there",
                url=shown,
                hint="check the API base URL (and, for GitLab, its external_url setting)",
            )
        return url

    def _next_url(self, response: httpx.Response, url: str) -> str | None:
        if self.vendor == "gitlab":
            # X-Next-Page first: a GitLab behind a proxy with a wrong external_url sends Links to the wrong host.
            next_page = response.headers.get("X-Next-Page", "").strip()
            if next_page:
                return str(httpx.URL(url).copy_set_param("page", next_page))
            if "X-Next-Page" in response.headers:
                return None
        for target, rels in _LINK.findall(response.headers.get("Link", "")):
            if "next" in rels.split():
                joined = httpx.URL(url).join(target)
                return str(self._same_origin(joined, target))
        return None

    # --- sending ------------------------------------------------------------------------------------------------

    def _send(self, url: str, record: _EtagRecord | None) -> httpx.Response:
        """A 2xx answer, or a 304 to a conditional request; everything else is retried, waited out or raised."""
        headers = {"If-None-Match": record.etag} if record is not None else {}
        tries = _Attempts()
        target = url
        while True:
            self._wait_for_quota()
            self._spend()
            try:
                response = self._http.get(target, headers=headers)
            except httpx.TransportError as error:
                tries.failures += 1
                reason = type(error).__name__
                if tries.failures >= ATTEMPTS:
                    raise ApiError(
                        f"{self.vendor_name} API could not be reached ({reason}) after {ATTEMPTS} attempts: GET {url}",
                        url=url,
                    ) from error
                self._back_off(tries.failures, f"{reason} on GET {url}")
                continue
            status = response.status_code
            log.debug("GET %s -> %s", target, status)
            self._note_quota(response)
            limited = self._rate_limit(response, tries.rate_waits)
            if limited is not None:
                wait, reset_at, secondary = limited
                tries.rate_waits += 1
                if wait > self.max_wait_seconds or tries.rate_waits > RATE_LIMIT_WAITS:
                    raise RateLimited(self.vendor, reset_at, secondary=secondary)
                log.warning("%s rate limit hit; waiting %.0f s (until %s)", self.vendor_name, wait, utc_iso(reset_at))
                self._sleep(wait)
                continue
            if status >= 500:
                tries.failures += 1
                if tries.failures >= ATTEMPTS:
                    raise ApiError(
                        f"{self.vendor_name} API answered HTTP {status} to GET {url} ({ATTEMPTS} attempts)",
                        url=url,
                        http_status=status,
                        hint="the service may be having trouble; run again later to resume from the saved cursor",
                    )
                self._back_off(tries.failures, f"HTTP {status} on GET {url}")
                continue
            if status == 304 and record is not None:
                return response
            if status in _REDIRECTS and "Location" in response.headers and tries.redirects < MAX_REDIRECTS:
                tries.redirects += 1
                location = response.headers["Location"]
                target = str(self._same_origin(httpx.URL(target).join(location), location))
                continue
            if 200 <= status < 300:
                return response
            raise self._refusal(response, url)

    def _spend(self) -> None:
        if self.requests_made >= self.budget:
            raise BudgetExhausted(self.budget)
        self.requests_made += 1

    def _back_off(self, failures: int, what: str) -> None:
        delay = BACKOFF_SECONDS * 2 ** (failures - 1)
        log.warning("%s API: %s; trying again in %.0f s", self.vendor_name, what, delay)
        self._sleep(delay)

    # --- rate limits --------------------------------------------------------------------------------------------

    def _reset_time(self, response: httpx.Response) -> datetime | None:
        value = response.headers.get(_RESET_HEADER[self.vendor], "").strip()
        try:
            return datetime.fromtimestamp(int(value), UTC)
        except (ValueError, OverflowError, OSError):
            return None

    def _note_quota(self, response: httpx.Response) -> None:
        """When a successful answer says no requests are left, the next one waits for the reset (or raises)."""
        if response.headers.get(_REMAINING_HEADER[self.vendor], "").strip() == "0":
            self._quota_resets_at = self._reset_time(response)

    def _wait_for_quota(self) -> None:
        resets_at, self._quota_resets_at = self._quota_resets_at, None
        if resets_at is None:
            return
        wait = (resets_at - self.now()).total_seconds()
        if wait <= 0:
            return
        if wait > self.max_wait_seconds:
            self._quota_resets_at = resets_at  # still exhausted if the caller tries again
            raise RateLimited(self.vendor, resets_at)
        log.warning("%s rate limit used up; waiting %.0f s until %s", self.vendor_name, wait + 1, utc_iso(resets_at))
        self._sleep(wait + 1)  # a second of slack: the reset is given in whole seconds

    def _rate_limit(self, response: httpx.Response, waits_so_far: int) -> tuple[float, datetime, bool] | None:
        """(seconds to wait, when the limit resets, is it a secondary limit) for a rate-limit answer, else None.

        GitHub: 403 or 429 with X-RateLimit-Remaining 0 (primary) or a message naming a secondary rate limit; a
        Retry-After header comes first, then the reset time, else a minute, doubling. GitLab: 429, the same way.
        A 403 that is neither is a permission problem, not a rate limit.
        """
        status = response.status_code
        if status not in (403, 429):
            return None
        remaining = response.headers.get(_REMAINING_HEADER[self.vendor], "").strip()
        secondary = False
        if self.vendor == "github":
            secondary = bool(_SECONDARY_LIMIT.search(self._message(response)))
            if status == 403 and not secondary and remaining != "0":
                return None
        elif status != 429:
            return None
        now = self.now()
        retry_after = _seconds(response.headers.get("Retry-After"), now)
        reset = self._reset_time(response)
        if retry_after is not None:
            return retry_after, now + timedelta(seconds=retry_after), secondary
        if remaining == "0" and reset is not None:
            wait = max(0.0, (reset - now).total_seconds())
            return wait + 1, reset, secondary
        wait = UNSPECIFIED_WAIT_SECONDS * 2**waits_so_far
        return wait, now + timedelta(seconds=wait), secondary

    # --- answers ------------------------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _message(self, response: httpx.Response) -> str:
        """The error message of an answer (GitHub ``message``, GitLab ``message`` or ``error``), redacted."""
        try:
            data = response.json()
        except ValueError:
            text = response.text
        else:
            value = (data.get("message") or data.get("error")) if isinstance(data, dict) else None
            text = value if isinstance(value, str) else json.dumps(value) if value is not None else ""
        text = " ".join(text.split())
        if len(text) > _MESSAGE_LIMIT:
            text = text[:_MESSAGE_LIMIT] + "…"
        return self._redact(text)

    def _refusal(self, response: httpx.Response, url: str) -> ApiError:
        status = response.status_code
        message = self._message(response)
        detail = f": {message}" if message else ""
        name = self.vendor_name
        hints = {
            401: f"the {name} token is missing, expired or wrong",
            403: f"the {name} token lacks a scope or permission this read needs",
            404: f"check the name or id, and that the {name} token can read it",
        }
        return ApiError(
            f"{name} API answered HTTP {status} to GET {url}{detail}",
            url=url,
            http_status=status,
            hint=hints.get(status),
        )

    def _json(self, response: httpx.Response, url: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                f"{self.vendor_name} API answered GET {url} with something other than JSON",
                url=url,
                http_status=response.status_code,
            ) from None

    def _shape_error(self, url: str, expected: str) -> ApiError:
        return ApiError(f"{self.vendor_name} API answered GET {url} with JSON that is not {expected}", url=url)

    def _items(self, data: Any, items_key: str | None, url: str) -> tuple[list[dict[str, Any]], int | None]:
        total_count = None
        if items_key is not None:
            if not isinstance(data, dict):
                raise self._shape_error(url, f"an object with {items_key!r}")
            total = data.get("total_count")
            total_count = total if isinstance(total, int) and not isinstance(total, bool) else None
            data = data.get(items_key)
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise self._shape_error(url, "a list of objects")
        return data, total_count


def _seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After value: seconds, or an HTTP date."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            return None
        seconds = (moment - now).total_seconds()
    return max(0.0, seconds)

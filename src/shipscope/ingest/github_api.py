"""GitHub REST API backfill: a repository's recent history as journal deliveries.

``backfill`` walks, in order: workflow runs (with each completed run's earlier attempts and jobs), deployments
(with their statuses), pull requests and commits. Every API object becomes one Delivery whose events come from the
webhook converters in ``shipscope.ingest.github`` (event source "github", so a run seen by webhook and by backfill
is one row); the journal source is SOURCE. ``decode`` turns a journaled body back into the same events.

Journal kinds and bodies: kind ``github-api:<resource>``, body a JSON object holding the API object verbatim next
to what its converter needs besides, like a webhook payload:

    github-api:workflow_run   {"repository": R, "workflow_run": <run or run attempt>}
    github-api:job            {"repository": R, "job": <job>}
    github-api:deployment     {"repository": R, "deployment": <deployment>, "statuses": [<status>, … newest first]}
    github-api:pull_request   {"repository": R, "pull_request": <pull request>}
    github-api:commit         {"repository": R, "commit": <commit>}

where R is {"full_name", "name", "default_branch"} from ``GET /repos/{repo}`` (a run's own ``repository`` lacks
the default branch). Delivery ids are ``<resource>:<object id>:<version>``: the version is the object's
``updated_at`` (a deployment's: its newest status's), else a stable hash of the object; object ids are the API
ids, except runs (``<id>/<attempt>``) and commits (``<owner>/<name>@<sha>``, since forks share shas).

Cursors, under ``github:<owner>/<name>:<resource>`` for resource in RESOURCES, hold JSON:
``{"since", "complete", "page", "done", "windows"}``: the window start of the pass, whether the resource is done
for that pass, the URL of the page being worked on (None: the first), the ids already yielded from that page
(workflow runs and deployments, which are yielded one at a time with their children) and, for workflow runs,
the created-at windows still to walk. A run stopped by the budget, a rate limit or an error resumes there. Once
every resource is complete, the next run starts a new pass; ETags (kept under ``github:<repo>:etag:<url>``) then
make unchanged pages of runs and commits, and the jobs and attempts of unchanged runs, cost no rate limit.

Known limits: the statuses of a deployment are read from their first page (100, newest first); a pull request
updated while the pass is walking the list may move ahead of the walk and wait for the next pass.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shipscope.errors import InputError
from shipscope.events import Event
from shipscope.ingest import Delivery
from shipscope.ingest.api_client import (
    ApiClient,
    ApiError,
    BudgetExhausted,
    CursorStore,
    StagedStore,
    is_gone,
    journal_envelope,
    object_id,
    object_version,
    stable_hash,
    start_of_day,
    utc_iso,
)
from shipscope.ingest.github import change_from_api_commit, deployment_event, job_events, pull_request_event
from shipscope.ingest.github import run_from_workflow_run as _run_event

log = logging.getLogger(__name__)

SOURCE = "github-api"
"""The journal source; the events themselves carry the github converters' source, "github"."""
DEFAULT_BASE_URL = "https://api.github.com"
RESOURCES = ("workflow_runs", "deployments", "pull_requests", "commits")
"""Cursor names, in the order backfill walks them."""
KINDS = frozenset(f"{SOURCE}:{name}" for name in ("workflow_run", "job", "deployment", "pull_request", "commit"))
SEARCH_CAP = 1000
"""GitHub returns at most this many runs for one ``created`` filter; a larger window is split in two."""

_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_STUCK = (
    "this run took nothing: the budget does not cover one step (the repository, a page, and a run with its jobs "
    "or a deployment with its statuses); raise it"
)


def api_base_url(host: str | None = None) -> str:
    """The REST API of github.com, or of a GitHub Enterprise Server at ``host`` (``https://HOST/api/v3``)."""
    if host is None or host in ("github.com", "api.github.com"):
        return DEFAULT_BASE_URL
    return f"https://{host}/api/v3"


def cursor_key(repo: str, resource: str) -> str:
    return f"github:{repo}:{resource}"


# --- events (shared by backfill and decode) -------------------------------------------------------------------


def _member(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = body.get(key)
    if not isinstance(value, Mapping):
        raise InputError(f"{key}: expected an object")
    return value


def _current_status(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The newest status that says how the deployment went; ``inactive`` only says a later one replaced it."""
    statuses = body.get("statuses")
    if statuses is None:
        return None
    if not isinstance(statuses, list) or not all(isinstance(status, Mapping) for status in statuses):
        raise InputError("statuses: expected an array of objects")
    return next((status for status in statuses if status.get("state") != "inactive"), None)


def _events(resource: str, body: Mapping[str, Any]) -> list[Event]:
    repository = _member(body, "repository")
    if resource == "workflow_run":
        return [_run_event(_member(body, "workflow_run"), repository)]
    if resource == "job":
        return list(job_events(_member(body, "job")))
    if resource == "deployment":
        return [deployment_event(_member(body, "deployment"), repository, _current_status(body))]
    if resource == "pull_request":
        return [pull_request_event(_member(body, "pull_request"), repository)]
    if resource == "commit":
        full_name = repository.get("full_name")
        if not isinstance(full_name, str) or not full_name:
            raise InputError("repository.full_name: required field is missing")
        return [change_from_api_commit(_member(body, "commit"), full_name)]
    raise InputError(f"unknown journal kind {SOURCE}:{resource}")


def decode(kind: str, body: bytes) -> list[Event]:
    """The events of a journaled backfill delivery (for reprocess); InputError when the body no longer converts."""
    return _events(*journal_envelope(kind, body, SOURCE))


# --- helpers --------------------------------------------------------------------------------------------------


def _ident(obj: Mapping[str, Any], key: str, url: str) -> str:
    return object_id(obj, key, url, "GitHub")


def _time(obj: Mapping[str, Any], key: str) -> datetime | None:
    value = obj.get(key)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _older(obj: Mapping[str, Any], key: str, since: datetime) -> bool:
    moment = _time(obj, key)
    return moment is not None and moment < since


def _search_time(moment: datetime, *, bare_date: bool) -> str:
    if bare_date and moment.time() == datetime.min.time():
        return moment.strftime("%Y-%m-%d")
    return utc_iso(moment)


def _created(low: datetime, high: datetime | None) -> str:
    """A ``created`` filter in GitHub's search syntax: ``>=2026-08-29`` or an inclusive ``a..b``."""
    if high is None:
        return f">={_search_time(low, bare_date=True)}"
    return f"{_search_time(low, bare_date=True)}..{_search_time(high, bare_date=False)}"


Window = tuple[datetime, datetime | None]


def _halves(window: Window, now: datetime) -> list[Window] | None:
    """The newer and the older half of a created-at window (whole seconds, inclusive), or None below 2 s."""
    low, high = window
    end = high or now
    if (end - low).total_seconds() < 2:
        return None
    middle = (low + (end - low) / 2).replace(microsecond=0)
    return [(middle + timedelta(seconds=1), high), (low, middle)]


@dataclass
class _Cursor:
    since: datetime
    complete: bool = False
    page: str | None = None
    done: list[str] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)

    def dump(self) -> str:
        return json.dumps(
            {
                "since": utc_iso(self.since),
                "complete": self.complete,
                "page": self.page,
                "done": self.done,
                "windows": [[utc_iso(low), utc_iso(high) if high else None] for low, high in self.windows],
            }
        )

    @classmethod
    def load(cls, text: str | None) -> _Cursor | None:
        """The saved cursor; None when there is none or it cannot be read (a fresh pass is then the safe choice)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            since = datetime.fromisoformat(data["since"])
            windows = [
                (datetime.fromisoformat(low), datetime.fromisoformat(high) if high else None)
                for low, high in data.get("windows") or []
            ]
            if since.tzinfo is None or any(moment and moment.tzinfo is None for window in windows for moment in window):
                raise ValueError("a time without a UTC offset")
            page = data.get("page")
            done = [str(item) for item in data.get("done") or []]
            return cls(since, bool(data.get("complete")), page if isinstance(page, str) else None, done, windows)
        except (ValueError, KeyError, TypeError) as error:
            log.warning("ignoring an unreadable GitHub backfill cursor (%s): %.200s", error, text)
            return None


# --- the walk -------------------------------------------------------------------------------------------------


class _Backfill:
    def __init__(
        self,
        client: ApiClient,
        repository: dict[str, Any],
        cursors: CursorStore,
        progress: Callable[[str, int], None] | None,
    ) -> None:
        self.client = client
        self.repository = repository
        self.repo: str = repository["full_name"]
        self.cursors = cursors
        self.progress = progress
        self.counts: Counter[str] = Counter()
        etag_prefix = f"github:{self.repo}:etag:"
        self.page_etags = StagedStore(cursors, etag_prefix)
        """ETags of list pages, committed once the whole page is yielded."""
        self.item_etags = StagedStore(cursors, etag_prefix)
        """ETags of one run's attempts and jobs, committed once that run is yielded."""

    def save(self, resource: str, cursor: _Cursor) -> None:
        self.cursors.set(cursor_key(self.repo, resource), cursor.dump())

    def taken(self, resource: str, deliveries: list[Delivery]) -> None:
        self.counts[resource] += len(deliveries)
        if self.progress is not None:
            self.progress(resource, self.counts[resource])

    def delivery(self, resource: str, object_id: str, version: str, obj: Mapping[str, Any], **extra: Any) -> Delivery:
        body = {"repository": self.repository, resource: obj, **extra}
        try:
            events = tuple(_events(resource, body))
        except InputError as error:
            # Kept without events: the body is journaled verbatim, so a converter fix and a reprocess recover it.
            log.warning("GitHub %s %s journaled without events: %s", resource, object_id, error.message)
            events = ()
        return Delivery(
            source=SOURCE,
            delivery_id=f"{resource}:{object_id}:{version}",
            kind=f"{SOURCE}:{resource}",
            body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
            events=events,
        )

    def plan(self, since: datetime) -> list[tuple[str, _Cursor]]:
        """Resume the pass in progress (skipping what it completed), or start a new one over every resource."""
        saved = {resource: _Cursor.load(self.cursors.get(cursor_key(self.repo, resource))) for resource in RESOURCES}
        usable = {resource: cursor for resource, cursor in saved.items() if cursor and cursor.since <= since}
        if any(not cursor.complete for cursor in usable.values()):
            planned = []
            for resource in RESOURCES:
                cursor = usable.get(resource)
                if cursor is None:
                    cursor = _Cursor(since)
                    self.save(resource, cursor)
                if not cursor.complete:
                    planned.append((resource, cursor))
            return planned
        fresh = [(resource, _Cursor(since)) for resource in RESOURCES]
        for resource, cursor in fresh:
            # Written now, so a pass stopped early is resumed, not mistaken for the last one that completed.
            self.save(resource, cursor)
        return fresh

    def finish(self, resource: str, cursor: _Cursor) -> None:
        cursor.complete, cursor.page, cursor.done, cursor.windows = True, None, [], []
        self.save(resource, cursor)

    # --- workflow runs and their jobs -------------------------------------------------------------------------

    def workflow_runs(self, cursor: _Cursor) -> Iterator[list[Delivery]]:
        path = f"/repos/{self.repo}/actions/runs"
        if not cursor.windows and cursor.page is None:
            cursor.windows = [(cursor.since, None)]
        while cursor.windows:
            window = cursor.windows[0]
            first = cursor.page is None
            page = self.client.get_page(
                cursor.page or path,
                {"created": _created(*window)} if first else None,
                items_key="workflow_runs",
                # A page partly yielded must be read again in full, never answered by a 304.
                etag_store=None if cursor.done else self.page_etags,
            )
            if first and (page.total_count or 0) > SEARCH_CAP:
                halves = _halves(window, self.client.now())
                if halves is not None:
                    self.page_etags.discard()
                    cursor.windows[0:1] = halves
                    self.save("workflow_runs", cursor)
                    continue
                log.warning("GitHub lists only %d of the %s runs created in %s", SEARCH_CAP, page.total_count, window)
            for run in page.items:
                run_id = _ident(run, "id", page.url)
                if run_id in cursor.done:
                    continue
                deliveries = self._run_and_jobs(run, run_id)
                yield deliveries
                self.item_etags.commit()
                cursor.done.append(run_id)
                self.save("workflow_runs", cursor)
                self.taken("workflow_runs", deliveries)
            self.page_etags.commit()
            cursor.page, cursor.done = page.next_url, []
            if cursor.page is None:
                cursor.windows.pop(0)
            self.save("workflow_runs", cursor)
        self.finish("workflow_runs", cursor)

    def _run_and_jobs(self, run: dict[str, Any], run_id: str) -> list[Delivery]:
        """The run; once completed, also its earlier attempts (the list shows only the latest) and every job."""
        attempt = run.get("run_attempt")
        attempt = attempt if isinstance(attempt, int) and not isinstance(attempt, bool) and attempt >= 1 else 1
        deliveries = [self.delivery("workflow_run", f"{run_id}/{attempt}", object_version(run), run)]
        if run.get("status") != "completed":
            return deliveries  # its jobs come with the pass that sees it completed
        base = f"/repos/{self.repo}/actions/runs/{run_id}"
        for earlier in range(1, attempt):
            try:
                previous = self.client.get_object(f"{base}/attempts/{earlier}", etag_store=self.item_etags)
            except ApiError as error:
                if not is_gone(error):
                    raise
                log.warning("GitHub run %s: attempt %d is gone (%s)", run_id, earlier, error.message)
                continue
            if previous is not None:
                deliveries.append(
                    self.delivery("workflow_run", f"{run_id}/{earlier}", object_version(previous), previous)
                )
        try:
            for page in self.client.get_pages(
                f"{base}/jobs", {"filter": "all"}, items_key="jobs", etag_store=self.item_etags
            ):
                for job in page.items:
                    deliveries.append(self.delivery("job", _ident(job, "id", page.url), object_version(job), job))
        except ApiError as error:
            if not is_gone(error):
                raise
            log.warning("GitHub run %s: its jobs are gone (%s)", run_id, error.message)
        return deliveries

    # --- deployments ------------------------------------------------------------------------------------------

    def deployments(self, cursor: _Cursor) -> Iterator[list[Delivery]]:
        path = f"/repos/{self.repo}/deployments"
        while True:
            page = self.client.get_page(cursor.page or path)
            reached_older = False
            for deployment in page.items:
                # Newest first: the first one created before the window ends the walk (after this page).
                if _older(deployment, "created_at", cursor.since):
                    reached_older = True
                    continue
                deployment_id = _ident(deployment, "id", page.url)
                if deployment_id in cursor.done:
                    continue
                try:
                    statuses: list[dict[str, Any]] | None = self.client.get_page(
                        f"{path}/{deployment_id}/statuses"
                    ).items
                except ApiError as error:
                    if not is_gone(error):
                        raise
                    log.warning("GitHub deployment %s is gone (%s)", deployment_id, error.message)
                    statuses = None
                if statuses is not None:
                    version = object_version(statuses[0]) if statuses else object_version(deployment)
                    deliveries = [self.delivery("deployment", deployment_id, version, deployment, statuses=statuses)]
                    yield deliveries
                    self.taken("deployments", deliveries)
                cursor.done.append(deployment_id)
                self.save("deployments", cursor)
            if reached_older or page.next_url is None:
                break
            cursor.page, cursor.done = page.next_url, []
            self.save("deployments", cursor)
        self.finish("deployments", cursor)

    # --- pull requests ----------------------------------------------------------------------------------------

    def pull_requests(self, cursor: _Cursor) -> Iterator[list[Delivery]]:
        path = f"/repos/{self.repo}/pulls"
        params = {"state": "all", "sort": "updated", "direction": "desc"}
        while True:
            page = self.client.get_page(cursor.page or path, None if cursor.page else params)
            deliveries = []
            reached_older = False
            for pull_request in page.items:
                if _older(pull_request, "updated_at", cursor.since):
                    reached_older = True  # most recently updated first: the rest are older still
                    continue
                object_id = _ident(pull_request, "id", page.url)
                deliveries.append(self.delivery("pull_request", object_id, object_version(pull_request), pull_request))
            if deliveries:
                yield deliveries
                self.taken("pull_requests", deliveries)
            if reached_older or page.next_url is None:
                break
            cursor.page = page.next_url
            self.save("pull_requests", cursor)
        self.finish("pull_requests", cursor)

    # --- commits ----------------------------------------------------------------------------------------------

    def commits(self, cursor: _Cursor) -> Iterator[list[Delivery]]:
        path = f"/repos/{self.repo}/commits"
        while True:
            page = self.client.get_page(
                cursor.page or path,
                None if cursor.page else {"since": utc_iso(cursor.since)},
                etag_store=self.page_etags,
            )
            deliveries = [
                self.delivery("commit", f"{self.repo}@{_ident(commit, 'sha', page.url)}", stable_hash(commit), commit)
                for commit in page.items
            ]
            if deliveries:
                yield deliveries
                self.taken("commits", deliveries)
            self.page_etags.commit()
            if page.next_url is None:
                break
            cursor.page = page.next_url
            self.save("commits", cursor)
        self.finish("commits", cursor)


def _repository(client: ApiClient, repo: str) -> dict[str, Any]:
    info = client.get_object(f"/repos/{repo}")
    assert info is not None  # no ETag was sent
    full_name, name = info.get("full_name"), info.get("name")
    if not isinstance(full_name, str) or not _REPO.fullmatch(full_name) or not isinstance(name, str):
        raise ApiError(f"GitHub API answered GET /repos/{repo} without a usable full_name", url=f"/repos/{repo}")
    default_branch = info.get("default_branch")
    return {
        "full_name": full_name,
        "name": name,
        "default_branch": default_branch if isinstance(default_branch, str) else None,
    }


def backfill(
    client: ApiClient,
    repo: str,
    since: datetime,
    cursors: CursorStore,
    *,
    progress: Callable[[str, int], None] | None = None,
) -> Iterator[list[Delivery]]:
    """Deliveries for ``repo`` (``OWNER/NAME``) from ``since`` (rounded down to midnight UTC) on, a list at a time.

    Journal each list before asking for the next: the cursor moves past a list only when the next one is asked
    for, so a run that stops (BudgetExhausted, RateLimited, ApiError, or the caller's own failure) resumes with the
    first list that was not taken. ``progress(resource, n)`` reports how many deliveries of a resource were taken.
    """
    if not _REPO.fullmatch(repo):
        raise InputError(f"repository: expected OWNER/NAME, got {repo!r}")
    start = start_of_day(since)
    walk = _Backfill(client, _repository(client, repo), cursors, progress)
    walkers: Mapping[str, Callable[[_Cursor], Iterator[list[Delivery]]]] = {
        "workflow_runs": walk.workflow_runs,
        "deployments": walk.deployments,
        "pull_requests": walk.pull_requests,
        "commits": walk.commits,
    }
    taken = False
    try:
        for resource, cursor in walk.plan(start):
            for deliveries in walkers[resource](cursor):
                taken = True
                yield deliveries
    except BudgetExhausted as error:
        if not taken:
            error.hint = _STUCK
        raise

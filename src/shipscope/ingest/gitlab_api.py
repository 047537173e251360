"""GitLab REST API backfill: a project's recent history as journal deliveries.

``backfill`` reads the project (for its path and default branch), then walks pipelines (each with its full record
and every job, retried ones included), deployments and merge requests. Every API object becomes one Delivery whose
events come from the REST converters in ``shipscope.ingest.gitlab`` (event source "gitlab", shared with the
webhooks); the journal source is SOURCE. ``decode`` turns a journaled body back into the same events.

Journal kinds and bodies: kind ``gitlab-api:<resource>``, body a JSON object holding the API object verbatim next
to the project facts its converter needs:

    gitlab-api:pipeline        {"project": P, "pipeline": <GET /projects/:id/pipelines/:pipeline_id>}
    gitlab-api:job             {"project": P, "job": <job of GET …/pipelines/:pipeline_id/jobs>}
    gitlab-api:deployment      {"project": P, "deployment": <deployment>}
    gitlab-api:merge_request   {"project": P, "merge_request": <merge request>}

where P is {"id", "name", "path_with_namespace", "default_branch"}; a deployment's service is the project's name,
as for the deployment webhook. Delivery ids are ``<resource>:<id>:<updated_at>``, and for jobs (which have no
``updated_at``) ``job:<id>:<stable hash of the job>``.

Cursors, under ``gitlab:<path_with_namespace>:<resource>`` for resource in RESOURCES, hold JSON
``{"since", "after", "done"}``: every list is read in ``updated_at`` order, so the cursor is the newest
``updated_at`` taken and the ids taken at exactly that time. Each page is asked for by ``updated_after`` from the
cursor rather than by page number, so an object updated during the walk (which moves to the end of the list)
cannot shift another past the walk. A run that stops resumes from its cursor, and a later run only reads what
changed since: the cursor is never reset, except when ``since`` reaches further back than the cursor's.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from shipscope.errors import InputError
from shipscope.events import Event
from shipscope.ingest import Delivery
from shipscope.ingest.api_client import (
    ApiClient,
    ApiError,
    BudgetExhausted,
    CursorStore,
    Page,
    is_gone,
    journal_envelope,
    object_id,
    object_version,
    stable_hash,
    start_of_day,
    utc_iso,
)
from shipscope.ingest.gitlab import (
    deployment_from_api,
    job_from_api_job,
    pull_request_from_api_merge_request,
    run_from_api_pipeline,
)

log = logging.getLogger(__name__)

SOURCE = "gitlab-api"
"""The journal source; the events themselves carry the gitlab converters' source, "gitlab"."""
DEFAULT_BASE_URL = "https://gitlab.com/api/v4"
RESOURCES = ("pipelines", "deployments", "merge_requests")
"""Cursor names, in the order backfill walks them."""
KINDS = frozenset(f"{SOURCE}:{name}" for name in ("pipeline", "job", "deployment", "merge_request"))

_STUCK = (
    "this run took nothing: the budget does not cover one step (the project, a page, and a pipeline with its "
    "jobs); raise it"
)
_OVERLAP = timedelta(seconds=1)
"""How far before the cursor each query starts, whether GitLab's updated_after is inclusive or not."""


def api_base_url(host: str | None = None) -> str:
    """The REST API of gitlab.com, or of a self-managed GitLab at ``host`` (``https://HOST/api/v4``)."""
    return DEFAULT_BASE_URL if host is None or host == "gitlab.com" else f"https://{host}/api/v4"


def cursor_key(project_path: str, resource: str) -> str:
    return f"gitlab:{project_path}:{resource}"


# --- events (shared by backfill and decode) -------------------------------------------------------------------


def _member(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = body.get(key)
    if not isinstance(value, Mapping):
        raise InputError(f"{key}: expected an object")
    return value


def _project_text(project: Mapping[str, Any], key: str) -> str:
    value = project.get(key)
    if not isinstance(value, str) or not value:
        raise InputError(f"project.{key}: required field is missing")
    return value


def _events(resource: str, body: Mapping[str, Any]) -> list[Event]:
    project = _member(body, "project")
    if resource == "pipeline":
        default_branch = project.get("default_branch")
        return [
            run_from_api_pipeline(
                _member(body, "pipeline"),
                _project_text(project, "path_with_namespace"),
                default_branch if isinstance(default_branch, str) and default_branch else None,
            )
        ]
    if resource == "job":
        return [job_from_api_job(_member(body, "job"))]
    if resource == "deployment":
        return [deployment_from_api(_member(body, "deployment"), _project_text(project, "name"))]
    if resource == "merge_request":
        path = _project_text(project, "path_with_namespace")
        return [pull_request_from_api_merge_request(_member(body, "merge_request"), path)]
    raise InputError(f"unknown journal kind {SOURCE}:{resource}")


def decode(kind: str, body: bytes) -> list[Event]:
    """The events of a journaled backfill delivery (for reprocess); InputError when the body no longer converts."""
    return _events(*journal_envelope(kind, body, SOURCE))


# --- helpers --------------------------------------------------------------------------------------------------


def _ident(obj: Mapping[str, Any], key: str, url: str) -> str:
    return object_id(obj, key, url, "GitLab")


def _updated_at(obj: Mapping[str, Any], url: str) -> datetime:
    value = obj.get("updated_at")
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ApiError(f"GitLab API answered GET {url} with an item without a usable updated_at", url=url)
    return parsed.astimezone(UTC)


@dataclass
class _Cursor:
    since: datetime
    after: datetime | None = None
    done: list[str] = field(default_factory=list)

    def dump(self) -> str:
        after = self.after.isoformat() if self.after is not None else None
        return json.dumps({"since": self.since.isoformat(), "after": after, "done": self.done})

    @classmethod
    def load(cls, text: str | None) -> _Cursor | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            since = datetime.fromisoformat(data["since"])
            after = datetime.fromisoformat(data["after"]) if data.get("after") else None
            if since.tzinfo is None or (after is not None and after.tzinfo is None):
                raise ValueError("a time without a UTC offset")
            return cls(since, after, [str(item) for item in data.get("done") or []])
        except (ValueError, KeyError, TypeError) as error:
            log.warning("ignoring an unreadable GitLab backfill cursor (%s): %.200s", error, text)
            return None

    def unseen(self, item_id: str, updated_at: datetime) -> bool:
        if self.after is None or updated_at > self.after:
            return True
        return updated_at == self.after and item_id not in self.done

    def advance(self, item_id: str, updated_at: datetime) -> None:
        if self.after is None or updated_at > self.after:
            self.after, self.done = updated_at, [item_id]
        elif updated_at == self.after and item_id not in self.done:
            self.done.append(item_id)


# --- the walk -------------------------------------------------------------------------------------------------


class _Backfill:
    def __init__(
        self,
        client: ApiClient,
        project: dict[str, Any],
        cursors: CursorStore,
        progress: Callable[[str, int], None] | None,
    ) -> None:
        self.client = client
        self.project = project
        self.path: str = project["path_with_namespace"]
        self.base = f"/projects/{project['id']}"
        self.cursors = cursors
        self.progress = progress
        self.counts: Counter[str] = Counter()

    def cursor(self, resource: str, since: datetime) -> _Cursor:
        saved = _Cursor.load(self.cursors.get(cursor_key(self.path, resource)))
        if saved is None or saved.since > since:
            return _Cursor(since)  # nothing yet, or the window now reaches back further than the cursor covers
        return saved

    def save(self, resource: str, cursor: _Cursor) -> None:
        self.cursors.set(cursor_key(self.path, resource), cursor.dump())

    def taken(self, resource: str, deliveries: list[Delivery]) -> None:
        self.counts[resource] += len(deliveries)
        if self.progress is not None:
            self.progress(resource, self.counts[resource])

    def delivery(self, resource: str, object_id: str, version: str, obj: Mapping[str, Any]) -> Delivery:
        body = {"project": self.project, resource: obj}
        try:
            events = tuple(_events(resource, body))
        except InputError as error:
            # Kept without events: the body is journaled verbatim, so a converter fix and a reprocess recover it.
            log.warning("GitLab %s %s journaled without events: %s", resource, object_id, error.message)
            events = ()
        return Delivery(
            source=SOURCE,
            delivery_id=f"{resource}:{object_id}:{version}",
            kind=f"{SOURCE}:{resource}",
            body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
            events=events,
        )

    def _pages(self, path: str, params: Mapping[str, str], cursor: _Cursor, since: datetime) -> Iterator[Page]:
        """Pages holding objects not yet taken, in updated_at order, each one asked for from the cursor.

        The caller takes a page's new objects (and advances the cursor) before asking for the next page. When a
        page holds nothing new (many objects updated within the overlap), the walk follows its next-page link.
        """
        while True:
            start = since if cursor.after is None else max(since, cursor.after - _OVERLAP)
            query = {**params, "updated_after": utc_iso(start), "order_by": "updated_at", "sort": "asc"}
            page = self.client.get_page(path, query)
            while True:
                before = (cursor.after, len(cursor.done))
                yield page
                if page.next_url is None:
                    return
                if (cursor.after, len(cursor.done)) != before:
                    break  # progress: ask again from the cursor
                page = self.client.get_page(page.next_url)

    def _unseen(self, page: Page, cursor: _Cursor) -> list[tuple[str, datetime, dict[str, Any]]]:
        items = [(_ident(item, "id", page.url), _updated_at(item, page.url), item) for item in page.items]
        items.sort(key=lambda entry: (entry[1], entry[0]))
        return [entry for entry in items if cursor.unseen(entry[0], entry[1])]

    def pipelines(self, since: datetime) -> Iterator[list[Delivery]]:
        cursor = self.cursor("pipelines", since)
        for page in self._pages(f"{self.base}/pipelines", {}, cursor, since):
            for pipeline_id, updated_at, _ in self._unseen(page, cursor):
                deliveries = self._pipeline_and_jobs(pipeline_id)
                if deliveries:
                    yield deliveries
                    self.taken("pipelines", deliveries)
                cursor.advance(pipeline_id, updated_at)
                self.save("pipelines", cursor)

    def _pipeline_and_jobs(self, pipeline_id: str) -> list[Delivery]:
        """The full pipeline (the list items lack its timing) and every job of it, retried ones included."""
        path = f"{self.base}/pipelines/{pipeline_id}"
        try:
            pipeline = self.client.get_object(path)
        except ApiError as error:
            if not is_gone(error):
                raise
            log.warning("GitLab pipeline %s is gone (%s)", pipeline_id, error.message)
            return []
        assert pipeline is not None  # no ETag was sent
        deliveries = [self.delivery("pipeline", pipeline_id, object_version(pipeline), pipeline)]
        try:
            for page in self.client.get_pages(f"{path}/jobs", {"include_retried": "true"}):
                for job in page.items:
                    deliveries.append(self.delivery("job", _ident(job, "id", page.url), stable_hash(job), job))
        except ApiError as error:
            if not is_gone(error):
                raise
            log.warning("GitLab pipeline %s: its jobs are gone (%s)", pipeline_id, error.message)
        return deliveries

    def flat(
        self, resource: str, kind: str, path: str, params: Mapping[str, str], since: datetime
    ) -> Iterator[list[Delivery]]:
        """A list whose objects need no further request: one list of deliveries per page."""
        cursor = self.cursor(resource, since)
        for page in self._pages(path, params, cursor, since):
            unseen = self._unseen(page, cursor)
            if not unseen:
                continue
            deliveries = [self.delivery(kind, item_id, object_version(item), item) for item_id, _, item in unseen]
            yield deliveries
            for item_id, updated_at, _ in unseen:
                cursor.advance(item_id, updated_at)
            self.save(resource, cursor)
            self.taken(resource, deliveries)


def _project(client: ApiClient, project: str) -> dict[str, Any]:
    path = f"/projects/{quote(project, safe='')}"
    info = client.get_object(path)
    assert info is not None  # no ETag was sent
    project_id, name, full_path = info.get("id"), info.get("name"), info.get("path_with_namespace")
    if not isinstance(project_id, int) or not isinstance(name, str) or not isinstance(full_path, str) or not full_path:
        raise ApiError(f"GitLab API answered GET {path} without the project's id, name and path", url=path)
    default_branch = info.get("default_branch")
    return {
        "id": project_id,
        "name": name,
        "path_with_namespace": full_path,
        "default_branch": default_branch if isinstance(default_branch, str) and default_branch else None,
    }


def backfill(
    client: ApiClient,
    project: str,
    since: datetime,
    cursors: CursorStore,
    *,
    progress: Callable[[str, int], None] | None = None,
) -> Iterator[list[Delivery]]:
    """Deliveries for ``project`` (numeric id or ``group/…/name`` path) updated since ``since`` (rounded down to
    midnight UTC), a list at a time.

    Journal each list before asking for the next: the cursor moves past a list only when the next one is asked
    for, so a run that stops (BudgetExhausted, RateLimited, ApiError, or the caller's own failure) resumes with the
    first list that was not taken. ``progress(resource, n)`` reports how many deliveries of a resource were taken.
    """
    if not project.strip():
        raise InputError("project: expected a numeric id or a group/name path")
    start = start_of_day(since)
    walk = _Backfill(client, _project(client, project.strip()), cursors, progress)
    walks = (
        walk.pipelines(start),
        walk.flat("deployments", "deployment", f"{walk.base}/deployments", {}, start),
        walk.flat("merge_requests", "merge_request", f"{walk.base}/merge_requests", {"state": "all"}, start),
    )
    taken = False
    try:
        for batches in walks:
            for deliveries in batches:
                taken = True
                yield deliveries
    except BudgetExhausted as error:
        if not taken:
            error.hint = _STUCK
        raise

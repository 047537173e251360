"""GitHub and GitLab API backfills against a real HTTP server on 127.0.0.1 that stands in for the vendor.

The server (FakeApi) serves API-shaped pages built from the real webhook payloads in /work/shared/fixtures, checks
every request against the vendor's documented contract (auth header, GitHub's Accept and API-version headers,
per_page=100 on lists, the list parameters the backfill relies on, If-None-Match only with an ETag it gave out)
and can script failures: rate limits, 5xx answers, odd next-page links. Nothing in httpx is mocked; the client
gets an injected clock and sleep, so no test waits.

How the REST objects are derived from the fixtures (the webhook objects are the REST objects for GitHub runs,
jobs, deployments, statuses and pull requests; only ids and times are changed where several are needed):
- GitHub runs: the ``workflow_run`` of workflow_run.completed.success.json and …with-pull-requests.json, and the
  queued one of workflow_run.requested.json, given distinct ids (they all share 289782451) and created times an
  hour apart; one of them is attempt 2 of its run, its attempt 1 (``/attempts/1``) the same run failed earlier.
- GitHub jobs: the ``workflow_job`` of workflow_job.completed.success.json / …failure.json, re-parented to each run
  (``run_id``, ``run_attempt``) with distinct ids.
- GitHub deployments: ``deployment`` of deployment.created.json (statuses: deployment_status.success.json's, plus
  a newer ``inactive`` copy of it, GitHub's mark of a superseded deployment), of deployment.created.gh-pages.json
  (id made distinct; status: deployment_status.in_progress.gh-pages.json's) and of
  deployment_status.failure.no-action.zulip.json (created in 2015, before the window: the walk stops there).
- GitHub pull requests: pull_request.closed.not-merged.json's, a copy of pull_request.opened.json's as number 3
  updated a day later, and pull_request.closed.not-merged.go-scm.json's (2018, before the window).
- GitHub commits: the REST shape ``{"sha", "commit": {"author": {name, email, date}, "committer": {…}, "message"},
  "author": {"login"}}`` filled from the webhook commits of push.new-branch.json and the ``head_commit`` of
  workflow_run.completed.success.json (webhook ``id`` → ``sha``, ``timestamp`` → the dates, ``username`` → login).
- GitLab: the REST API names most fields as the hooks do, but writes times as ISO 8601 (hooks: "2016-08-12
  15:23:28 UTC"). Pipelines are the ``object_attributes`` of the three pipeline hooks (ids made distinct) with
  ``updated_at`` = ``finished_at``, ``started_at`` = ``finished_at`` − ``duration``, ``web_url`` and the hook's
  ``user``; jobs are the hooks' ``builds`` with ``pipeline: {"id": …}``; deployments come from the deployment hooks
  (``deployment_id`` → ``id``, ``status_changed_at`` → ``updated_at``, the sha from ``commit_url``, ``environment``
  → ``{"name"}``, ``deployable_url`` → ``deployable.web_url``); merge requests are the merge request hooks'
  ``object_attributes`` with ``author`` = the hook's ``user`` (for the opened one GitLab says the actor is the
  author; for the merged one the author_id's user is taken to be the same person), ``sha`` =
  ``last_commit.id`` and ``labels`` as names, the REST default.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from shipscope.errors import ShipscopeError
from shipscope.events import Deployment, Job, PipelineRun, PullRequest
from shipscope.ingest import Delivery, github_api, gitlab_api
from shipscope.ingest.api_client import ApiClient, ApiError, BudgetExhausted, RateLimited
from shipscope.ingest.gitlab import parse_timestamp
from tests.conftest import FIXTURES

NOW = datetime(2026, 11, 27, 14, 0, 0, tzinfo=UTC)
TOKEN = "tok-3f9a1c77e2b84d6d9b5e0c1a2f4e6d8b"
REPO = "octo-org/octo-repo"
GITHUB_SINCE = datetime(2019, 1, 1, tzinfo=UTC)
GITLAB_PROJECT = "gitlab-org/gitlab-test"
GITLAB_SINCE = datetime(2013, 1, 1, tzinfo=UTC)

Answer = tuple[int, dict[str, str], Any]


def load(vendor: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / vendor / name).read_text())
    return data


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --- the stand-in server --------------------------------------------------------------------------------------


class Clock:
    """The client's clock and sleep: sleeping only moves the clock and is recorded."""

    def __init__(self) -> None:
        self.now = NOW
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


class DictStore(dict[str, str]):
    """A dict-backed CursorStore."""

    def set(self, key: str, value: str) -> None:
        self[key] = value


@dataclass
class Fault:
    """A scripted answer to the next ``times`` requests whose path ends with ``path`` (and whose query has
    ``query``). ``status`` None: the normal answer with ``headers`` added (or replaced)."""

    path: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    times: int = 1
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0

    @property
    def url(self) -> str:
        return f"{self.path}?{urlencode(self.query)}" if self.query else self.path


Route = Callable[[re.Match[str], dict[str, str]], Answer]


class FakeApi:
    """GitHub or GitLab on 127.0.0.1: routes, the vendor's contract checks, pagination, ETags and faults."""

    def __init__(self, vendor: str, *, page_size: int = 2) -> None:
        self.vendor = vendor
        self.page_size = page_size
        """Page size the server uses (at most the per_page asked for), small so a few objects make many pages."""
        self.routes: list[tuple[re.Pattern[str], Route, bool]] = []
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.violations: list[str] = []
        self.issued_etags: set[str] = set()
        self.link_host: str | None = None
        """GitLab: the host its Link headers name (a GitLab with a wrong external_url); None: this server."""
        self.before_answer: Callable[[Seen], None] | None = None
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                status, headers, body = fake.handle(self.path, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def route(self, pattern: str, handler: Route, *, listing: bool = False) -> None:
        self.routes.append((re.compile(pattern), handler, listing))

    def fail(self, path: str, status: int | None = None, **kwargs: Any) -> Fault:
        fault = Fault(path, status, **kwargs)
        self.faults.append(fault)
        return fault

    def paths(self) -> list[str]:
        return [seen.path for seen in self.seen]

    # --- the contract -----------------------------------------------------------------------------------------

    def _check(self, seen: Seen, listing: bool) -> int | None:
        headers = seen.headers
        if self.vendor == "github":
            if headers.get("authorization") != f"Bearer {TOKEN}":
                self.violations.append(f"{seen.url}: Authorization is not 'Bearer <token>'")
                return 401
            if headers.get("accept") != "application/vnd.github+json":
                self.violations.append(f"{seen.url}: Accept is {headers.get('accept')!r}")
            if headers.get("x-github-api-version") != "2022-11-28":
                self.violations.append(f"{seen.url}: X-GitHub-Api-Version is {headers.get('x-github-api-version')!r}")
            if "private-token" in headers:
                self.violations.append(f"{seen.url}: a GitLab header sent to GitHub")
        else:
            if headers.get("private-token") != TOKEN:
                self.violations.append(f"{seen.url}: PRIVATE-TOKEN is missing or wrong")
                return 401
            if "authorization" in headers:
                self.violations.append(f"{seen.url}: an Authorization header sent to GitLab")
        if listing and seen.query.get("per_page") != "100":
            self.violations.append(f"{seen.url}: a list asked for without per_page=100")
        if_none_match = headers.get("if-none-match")
        if if_none_match is not None and if_none_match not in self.issued_etags:
            self.violations.append(f"{seen.url}: If-None-Match {if_none_match!r} was never given out")
        return None

    def _rate_headers(self) -> dict[str, str]:
        reset = str(int((NOW + timedelta(hours=1)).timestamp()))
        if self.vendor == "github":
            return {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4000", "X-RateLimit-Reset": reset}
        return {"RateLimit-Limit": "2000", "RateLimit-Remaining": "1999", "RateLimit-Reset": reset}

    def handle(self, raw: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            parts = urlsplit(raw)
            seen = Seen(parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)), headers)
            self.seen.append(seen)
            if self.before_answer is not None:
                self.before_answer(seen)
            status, answer_headers, body = self._answer(seen)
            seen.status = status
            return status, answer_headers, body

    def _answer(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        match = None
        handler: Route | None = None
        listing = False
        for pattern, route, is_listing in self.routes:
            match = pattern.fullmatch(seen.path)
            if match:
                handler, listing = route, is_listing
                break
        refused = self._check(seen, listing)
        if refused is not None:
            return refused, {"Content-Type": "application/json"}, b'{"message": "Bad credentials"}'
        fault = next(
            (
                fault
                for fault in self.faults
                if fault.times > 0
                and seen.path.endswith(fault.path)
                and all(seen.query.get(key) == value for key, value in fault.query.items())
            ),
            None,
        )
        if fault is not None:
            fault.times -= 1
            if fault.status is not None:
                body = json.dumps(fault.body).encode() if fault.body is not None else b""
                return fault.status, {"Content-Type": "application/json", **fault.headers}, body
        if handler is None or match is None:
            status, headers, data = 404, {}, {"message": "Not Found"}
        else:
            status, headers, data = handler(match, seen.query)
        body = json.dumps(data).encode()
        headers = {"Content-Type": "application/json", **self._rate_headers(), **headers}
        if status == 200:
            etag = f'W/"{hashlib.sha1(body).hexdigest()}"'
            self.issued_etags.add(etag)
            headers["ETag"] = etag
            if seen.headers.get("if-none-match") == etag:
                # A 304 carries no body and, here, no Link: the client must remember where the next page was.
                headers = {key: value for key, value in headers.items() if key not in ("Link", "Content-Type")}
                status, body = 304, b""
        if fault is not None:
            headers.update(fault.headers)
        return status, headers, body

    # --- pagination -------------------------------------------------------------------------------------------

    def paged(self, seen_path: str, query: dict[str, str], items: list[Any], *, key: str | None = None) -> Answer:
        per_page = min(int(query.get("per_page", "30")), self.page_size)
        page = int(query.get("page", "1"))
        chunk = items[(page - 1) * per_page : page * per_page]
        pages = max(1, -(-len(items) // per_page))

        def link(number: int, host: str | None = None) -> str:
            return f"{host or self.base}{seen_path}?{urlencode({**query, 'page': str(number)})}"

        headers: dict[str, str] = {}
        rels = []
        if page < pages:
            rels.append(f'<{link(page + 1, self.link_host)}>; rel="next"')
        rels.append(f'<{link(pages, self.link_host)}>; rel="last"')
        if self.vendor == "gitlab":
            headers.update(
                {
                    "X-Page": str(page),
                    "X-Per-Page": str(per_page),
                    "X-Next-Page": str(page + 1) if page < pages else "",
                    "X-Prev-Page": str(page - 1) if page > 1 else "",
                    "X-Total": str(len(items)),
                    "X-Total-Pages": str(pages),
                }
            )
        headers["Link"] = ", ".join(rels)
        body: Any = chunk if key is None else {"total_count": len(items), key: chunk}
        return 200, headers, body


# --- GitHub, built from the fixtures --------------------------------------------------------------------------


@dataclass
class GitHubData:
    repository: dict[str, Any]
    runs: list[dict[str, Any]]
    attempts: dict[tuple[int, int], dict[str, Any]]
    jobs: dict[int, list[dict[str, Any]]]
    deployments: list[dict[str, Any]]
    statuses: dict[int, list[dict[str, Any]]]
    pulls: list[dict[str, Any]]
    commits: list[dict[str, Any]]
    search_cap: int = 1000


def _github_job(source: str, job_id: int, run: dict[str, Any], attempt: int) -> dict[str, Any]:
    job = copy.deepcopy(load("github", source)["workflow_job"])
    job.update(id=job_id, run_id=run["id"], run_attempt=attempt, head_sha=run["head_sha"])
    return job


def _rest_commit(sha: str, message: str, timestamp: str, author: dict[str, Any], committer: dict[str, Any]) -> dict:
    def person(who: dict[str, Any]) -> dict[str, Any]:
        return {"name": who.get("name"), "email": who.get("email"), "date": timestamp}

    login = author.get("username")
    return {
        "sha": sha,
        "commit": {"author": person(author), "committer": person(committer), "message": message},
        "author": {"login": login} if login else None,
        "committer": None,
        "parents": [],
    }


def github_data() -> GitHubData:
    completed = load("github", "workflow_run.completed.success.json")
    repository = completed["repository"]
    first = copy.deepcopy(completed["workflow_run"])
    first["id"] = 289782451
    second = copy.deepcopy(load("github", "workflow_run.completed.with-pull-requests.json")["workflow_run"])
    second.update(id=289782452, run_attempt=2, run_number=162)
    third = copy.deepcopy(completed["workflow_run"])
    third.update(id=289782453, run_number=161)
    queued = copy.deepcopy(load("github", "workflow_run.requested.json")["workflow_run"])
    queued.update(id=289782460, run_number=164)
    old = copy.deepcopy(completed["workflow_run"])
    old.update(id=289782400, run_number=1)
    start = parse(first["created_at"])
    for run, hours in ((queued, -1), (first, 0), (second, 1), (third, 2), (old, 24 * 365 * 3)):
        created = start - timedelta(hours=hours)
        run.update(created_at=iso(created), run_started_at=iso(created + timedelta(seconds=25)))
        run["updated_at"] = iso(created + timedelta(seconds=25 if run is queued else 300))
    earlier = copy.deepcopy(second)
    earlier.update(
        run_attempt=1, conclusion="failure", updated_at=iso(parse(second["created_at"]) + timedelta(minutes=2))
    )
    jobs = {
        first["id"]: [
            _github_job("workflow_job.completed.success.json", 2890001, first, 1),
            _github_job("workflow_job.completed.failure.json", 2890002, first, 1),
        ],
        second["id"]: [
            _github_job("workflow_job.completed.failure.json", 2890003, second, 1),
            _github_job("workflow_job.completed.success.json", 2890004, second, 2),
            _github_job("workflow_job.completed.success.json", 2890005, second, 2),
        ],
        third["id"]: [_github_job("workflow_job.completed.success.json", 2890006, third, 1)],
    }

    production = copy.deepcopy(load("github", "deployment.created.json")["deployment"])
    success = load("github", "deployment_status.success.json")["deployment_status"]
    superseded = copy.deepcopy(success)
    superseded.update(id=success["id"] + 1, state="inactive", created_at="2019-05-20T10:00:00Z")
    superseded["updated_at"] = superseded["created_at"]
    pages = copy.deepcopy(load("github", "deployment.created.gh-pages.json")["deployment"])
    pages["id"] = production["id"] + 1
    pages_status = load("github", "deployment_status.in_progress.gh-pages.json")["deployment_status"]
    ancient = load("github", "deployment_status.failure.no-action.zulip.json")
    statuses = {
        production["id"]: [superseded, success],
        pages["id"]: [pages_status],
        ancient["deployment"]["id"]: [ancient["deployment_status"]],
    }

    closed = load("github", "pull_request.closed.not-merged.json")["pull_request"]
    third_pr = copy.deepcopy(load("github", "pull_request.opened.json")["pull_request"])
    third_pr.update(id=279147440, number=3, updated_at="2019-05-16T09:00:00Z")
    old_pr = load("github", "pull_request.closed.not-merged.go-scm.json")["pull_request"]

    pushed = load("github", "push.new-branch.json")["commits"][0]
    head = completed["workflow_run"]["head_commit"]
    commits = [
        _rest_commit(head["id"], head["message"], head["timestamp"], head["author"], head["committer"]),
        _rest_commit(pushed["id"], pushed["message"], pushed["timestamp"], pushed["author"], pushed["committer"]),
    ]
    return GitHubData(
        repository=repository,
        runs=[queued, first, second, third, old],
        attempts={(second["id"], 1): earlier},
        jobs=jobs,
        deployments=[pages, production, ancient["deployment"]],
        statuses=statuses,
        pulls=[third_pr, closed, old_pr],
        commits=commits,
    )


def _created_range(value: str) -> tuple[datetime, datetime]:
    def bound(text: str, end: bool) -> datetime:
        if "T" in text:
            return parse(text)
        day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return day + timedelta(days=1) - timedelta(microseconds=1) if end else day

    if value.startswith(">="):
        return bound(value[2:], False), datetime.max.replace(tzinfo=UTC)
    low, high = value.split("..")
    return bound(low, False), bound(high, True)


def serve_github(api: FakeApi, data: GitHubData) -> None:
    repo = re.escape(REPO)

    def require(query: dict[str, str], **expected: str) -> None:
        for key, value in expected.items():
            if query.get(key) != value:
                api.violations.append(f"expected {key}={value}, got {query.get(key)!r}")

    def runs(match: re.Match[str], query: dict[str, str]) -> Answer:
        if "created" not in query:
            api.violations.append("runs listed without a created filter")
        low, high = _created_range(query.get("created", ">=1970-01-01"))
        chosen = [run for run in data.runs if low <= parse(run["created_at"]) <= high]
        chosen.sort(key=lambda run: (run["created_at"], run["id"]), reverse=True)
        status, headers, body = api.paged(match.string, query, chosen[: data.search_cap], key="workflow_runs")
        body["total_count"] = len(chosen)  # GitHub counts them all, yet lists only the first search_cap
        return status, headers, body

    def jobs(match: re.Match[str], query: dict[str, str]) -> Answer:
        require(query, filter="all")
        return api.paged(match.string, query, data.jobs.get(int(match["run"]), []), key="jobs")

    def attempt(match: re.Match[str], query: dict[str, str]) -> Answer:
        found = data.attempts.get((int(match["run"]), int(match["n"])))
        return (200, {}, found) if found else (404, {}, {"message": "Not Found"})

    def deployments(match: re.Match[str], query: dict[str, str]) -> Answer:
        ordered = sorted(data.deployments, key=lambda d: (d["created_at"], d["id"]), reverse=True)
        return api.paged(match.string, query, ordered)

    def statuses(match: re.Match[str], query: dict[str, str]) -> Answer:
        return api.paged(match.string, query, data.statuses.get(int(match["id"]), []))

    def pulls(match: re.Match[str], query: dict[str, str]) -> Answer:
        require(query, state="all", sort="updated", direction="desc")
        ordered = sorted(data.pulls, key=lambda pr: (pr["updated_at"], pr["id"]), reverse=True)
        return api.paged(match.string, query, ordered)

    def commits(match: re.Match[str], query: dict[str, str]) -> Answer:
        since = parse(query["since"]) if "since" in query else datetime.min.replace(tzinfo=UTC)
        chosen = [c for c in data.commits if parse(c["commit"]["committer"]["date"]) >= since]
        chosen.sort(key=lambda c: c["commit"]["committer"]["date"], reverse=True)
        return api.paged(match.string, query, chosen)

    api.route(rf"/repos/{repo}", lambda match, query: (200, {}, data.repository))
    api.route(rf"/repos/{repo}/actions/runs", runs, listing=True)
    api.route(rf"/repos/{repo}/actions/runs/(?P<run>\d+)/jobs", jobs, listing=True)
    api.route(rf"/repos/{repo}/actions/runs/(?P<run>\d+)/attempts/(?P<n>\d+)", attempt)
    api.route(rf"/repos/{repo}/deployments", deployments, listing=True)
    api.route(rf"/repos/{repo}/deployments/(?P<id>\d+)/statuses", statuses, listing=True)
    api.route(rf"/repos/{repo}/pulls", pulls, listing=True)
    api.route(rf"/repos/{repo}/commits", commits, listing=True)


# --- GitLab, built from the fixtures --------------------------------------------------------------------------


def rest_time(value: str | None) -> str | None:
    """A hook timestamp ('2016-08-12 15:23:28 UTC') as the REST API writes it ('2016-08-12T15:23:28.000Z')."""
    if value is None:
        return None
    return parse_timestamp(value, "fixture").astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class GitLabData:
    project: dict[str, Any]
    pipelines: list[dict[str, Any]]
    jobs: dict[int, list[dict[str, Any]]]
    deployments: list[dict[str, Any]]
    merge_requests: list[dict[str, Any]]


def _rest_pipeline(
    hook: dict[str, Any], pipeline_id: int, web_url: str, job_ids: int = 0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    attrs = hook["object_attributes"]
    finished_at = rest_time(attrs.get("finished_at"))
    duration = attrs.get("duration")
    started_at = None
    if finished_at and duration is not None:
        started_at = iso(parse(finished_at) - timedelta(seconds=duration)).replace("Z", ".000Z")
    pipeline = {
        "id": pipeline_id,
        "iid": attrs.get("iid"),
        "project_id": 1,
        "name": attrs.get("name"),
        "sha": attrs["sha"],
        "ref": attrs["ref"],
        "status": attrs["status"],
        "source": attrs.get("source"),
        "created_at": rest_time(attrs["created_at"]),
        "updated_at": finished_at or rest_time(attrs["created_at"]),
        "started_at": started_at,
        "finished_at": finished_at,
        "duration": duration,
        "queued_duration": attrs.get("queued_duration"),
        "web_url": f"{web_url}/-/pipelines/{pipeline_id}",
        "user": hook.get("user"),
    }
    jobs = []
    for build in hook.get("builds") or []:
        job = {key: value for key, value in build.items() if not key.endswith("_at")}
        for key in ("created_at", "started_at", "finished_at"):
            job[key] = rest_time(build.get(key))
        job["pipeline"] = {"id": pipeline_id, "project_id": 1, "ref": attrs["ref"], "sha": attrs["sha"]}
        job["id"] = build["id"] + job_ids
        job["web_url"] = f"{web_url}/-/jobs/{job['id']}"
        jobs.append(job)
    return pipeline, jobs


def _rest_deployment(hook: dict[str, Any]) -> dict[str, Any]:
    changed_at = rest_time(hook["status_changed_at"])
    finished = hook["status"] in ("success", "failed", "canceled")
    return {
        "id": hook["deployment_id"],
        "ref": hook["ref"],
        "sha": hook["commit_url"].rsplit("/", 1)[-1],
        "status": hook["status"],
        "created_at": changed_at,
        "updated_at": changed_at,
        "user": hook["user"],
        "environment": {"name": hook["environment"], "slug": hook["environment_slug"]},
        "deployable": {
            "id": hook["deployable_id"],
            "web_url": hook["deployable_url"],
            "status": hook["status"],
            "finished_at": changed_at if finished else None,
        },
    }


def _rest_merge_request(hook: dict[str, Any]) -> dict[str, Any]:
    attrs = hook["object_attributes"]
    labels = attrs.get("labels") if "labels" in attrs else hook.get("labels")
    return {
        "id": attrs["id"],
        "iid": attrs["iid"],
        "title": attrs["title"],
        "state": attrs["state"],
        "created_at": rest_time(attrs["created_at"]),
        "updated_at": rest_time(attrs["updated_at"]),
        "merged_at": None,
        "closed_at": None,
        "target_branch": attrs["target_branch"],
        "source_branch": attrs["source_branch"],
        "author": {"id": attrs["author_id"], "username": hook["user"]["username"]},
        "sha": attrs["last_commit"]["id"],
        "labels": [label["title"] for label in labels or []],
    }


def gitlab_data() -> GitLabData:
    success = load("gitlab", "pipeline_hook.success.json")
    hook_project = success["project"]
    project = {key: hook_project[key] for key in ("id", "name", "path_with_namespace", "default_branch", "web_url")}
    pipelines, jobs = [], {}
    for name, pipeline_id, job_ids in (
        ("pipeline_hook.success.json", 31, 0),
        ("pipeline_hook.subgroup.go-scm.json", 32, 1000),  # its job shares 31's job id; 32 ties with 31 on time
        ("pipeline_hook.failed.minimal.otel.json", 33, 0),
    ):
        pipeline, pipeline_jobs = _rest_pipeline(load("gitlab", name), pipeline_id, project["web_url"], job_ids)
        pipelines.append(pipeline)
        jobs[pipeline_id] = pipeline_jobs
    deployments = [
        _rest_deployment(load("gitlab", "deployment_hook.success.json")),
        _rest_deployment(load("gitlab", "deployment_hook.failed.zulip.json")),
    ]
    merge_requests = [
        _rest_merge_request(load("gitlab", "merge_request_hook.opened.json")),
        _rest_merge_request(load("gitlab", "merge_request_hook.merged.go-scm.json")),
    ]
    return GitLabData(project, pipelines, jobs, deployments, merge_requests)


def serve_gitlab(api: FakeApi, data: GitLabData) -> None:
    def keyset(query: dict[str, str], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for key, value in (("order_by", "updated_at"), ("sort", "asc")):
            if query.get(key) != value:
                api.violations.append(f"expected {key}={value}, got {query.get(key)!r}")
        after = parse(query["updated_after"]) if "updated_after" in query else None
        if after is None:
            api.violations.append("a list asked for without updated_after")
        chosen = [item for item in items if after is None or parse(item["updated_at"]) > after]
        return sorted(chosen, key=lambda item: (item["updated_at"], item["id"]))

    def pipeline(match: re.Match[str], query: dict[str, str]) -> Answer:
        found = [p for p in data.pipelines if p["id"] == int(match["id"])]
        return (200, {}, found[0]) if found else (404, {}, {"message": "404 Not found"})

    def jobs(match: re.Match[str], query: dict[str, str]) -> Answer:
        if query.get("include_retried") != "true":
            api.violations.append("jobs listed without include_retried=true")
        return api.paged(match.string, query, data.jobs.get(int(match["id"]), []))

    def merge_requests(match: re.Match[str], query: dict[str, str]) -> Answer:
        if query.get("state") != "all":
            api.violations.append("merge requests listed without state=all")
        return api.paged(match.string, query, keyset(query, data.merge_requests))

    # Only the URL-encoded path names the project, as GitLab wants: a raw "gitlab-org/gitlab-test" is a 404.
    api.route(r"/api/v4/projects/(1|gitlab-org%2Fgitlab-test)", lambda match, query: (200, {}, data.project))
    api.route(
        r"/api/v4/projects/1/pipelines",
        lambda match, query: api.paged(match.string, query, keyset(query, data.pipelines)),
        listing=True,
    )
    api.route(r"/api/v4/projects/1/pipelines/(?P<id>\d+)", pipeline)
    api.route(r"/api/v4/projects/1/pipelines/(?P<id>\d+)/jobs", jobs, listing=True)
    api.route(
        r"/api/v4/projects/1/deployments",
        lambda match, query: api.paged(match.string, query, keyset(query, data.deployments)),
        listing=True,
    )
    api.route(r"/api/v4/projects/1/merge_requests", merge_requests, listing=True)


# --- fixtures and helpers -------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def github() -> Iterator[tuple[FakeApi, GitHubData]]:
    api = FakeApi("github")
    data = github_data()
    serve_github(api, data)
    yield api, data
    api.close()


@pytest.fixture
def gitlab() -> Iterator[tuple[FakeApi, GitLabData]]:
    api = FakeApi("gitlab")
    data = gitlab_data()
    serve_gitlab(api, data)
    yield api, data
    api.close()


def github_client(api: FakeApi, clock: Clock, *, budget: int = 5000, max_wait: float = 60.0) -> ApiClient:
    return ApiClient(
        api.base, token=TOKEN, vendor="github", budget=budget, max_wait_seconds=max_wait, sleep=clock.sleep, clock=clock
    )


def gitlab_client(api: FakeApi, clock: Clock, *, budget: int = 5000, max_wait: float = 60.0) -> ApiClient:
    return ApiClient(
        f"{api.base}/api/v4",
        token=TOKEN,
        vendor="gitlab",
        budget=budget,
        max_wait_seconds=max_wait,
        sleep=clock.sleep,
        clock=clock,
    )


def take(batches: Iterator[list[Delivery]]) -> tuple[list[Delivery], ShipscopeError | None]:
    """What a caller journals before the backfill stops, and why it stopped (None: it finished)."""
    taken: list[Delivery] = []
    try:
        for batch in batches:
            taken.extend(batch)
    except ShipscopeError as error:
        return taken, error
    return taken, None


def github_run(api: FakeApi, clock: Clock, store: DictStore, **client_options: Any) -> tuple[list, Any]:
    with github_client(api, clock, **client_options) as client:
        return take(github_api.backfill(client, REPO, GITHUB_SINCE, store))


def gitlab_run(api: FakeApi, clock: Clock, store: DictStore, **client_options: Any) -> tuple[list, Any]:
    with gitlab_client(api, clock, **client_options) as client:
        return take(gitlab_api.backfill(client, GITLAB_PROJECT, GITLAB_SINCE, store))


def ids(deliveries: list[Delivery]) -> list[str]:
    return [delivery.delivery_id for delivery in deliveries]


def of_kind(deliveries: list[Delivery], resource: str, source: str = "github-api") -> list[Delivery]:
    return [delivery for delivery in deliveries if delivery.kind == f"{source}:{resource}"]


def cursor(store: DictStore, key: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(store[key])
    return data


# --- GitHub ---------------------------------------------------------------------------------------------------


def test_github_backfill_reads_every_resource_and_journals_what_decode_reads_back(
    github: tuple[FakeApi, GitHubData], clock: Clock
) -> None:
    api, data = github
    store = DictStore()
    progress: list[tuple[str, int]] = []
    with github_client(api, clock) as client:
        deliveries = [
            delivery
            for batch in github_api.backfill(
                client, REPO, GITHUB_SINCE, store, progress=lambda name, n: progress.append((name, n))
            )
            for delivery in batch
        ]
    assert api.violations == []
    assert len(set(ids(deliveries))) == len(deliveries)
    assert {delivery.source for delivery in deliveries} == {github_api.SOURCE}
    assert {delivery.kind for delivery in deliveries} == github_api.KINDS
    for delivery in deliveries:
        assert delivery.events, delivery.delivery_id
        assert {event.source for event in delivery.events} == {"github"}
        assert github_api.decode(delivery.kind, delivery.body) == list(delivery.events)

    runs = [event for d in of_kind(deliveries, "workflow_run") for event in d.events]
    assert all(isinstance(run, PipelineRun) for run in runs)
    assert sorted((run.id, run.attempt, run.status) for run in runs if isinstance(run, PipelineRun)) == [
        ("289782451", 1, "success"),
        ("289782452", 1, "failure"),  # the earlier attempt, read from /attempts/1
        ("289782452", 2, "success"),
        ("289782453", 1, "success"),
        ("289782460", 1, "queued"),
    ]  # and not 289782400, created before the window
    first = next(run for run in runs if isinstance(run, PipelineRun) and run.id == "289782451")
    assert (first.repo, first.default_branch, first.branch) == (REPO, "master", "master")
    jobs = [event for d in of_kind(deliveries, "job") for event in d.events if isinstance(event, Job)]
    assert sorted((job.id, job.run_id, job.attempt) for job in jobs) == [
        ("2890001", "289782451", 1),
        ("2890002", "289782451", 1),
        ("2890003", "289782452", 1),
        ("2890004", "289782452", 2),
        ("2890005", "289782452", 2),
        ("2890006", "289782453", 1),
    ]
    assert "/repos/octo-org/octo-repo/actions/runs/289782460/jobs" not in api.paths()  # queued: no jobs yet

    deployments = {
        event.id: event
        for d in of_kind(deliveries, "deployment")
        for event in d.events
        if isinstance(event, Deployment)
    }
    assert {key: (d.environment, d.status) for key, d in deployments.items()} == {
        "145988746": ("production", "success"),  # its newest status is inactive: the one before says how it went
        "145988747": ("github-pages", "in_progress"),
    }
    assert deployments["145988746"].finished_at == datetime(2019, 5, 15, 15, 20, 55, tzinfo=UTC)
    deployment_body = json.loads(of_kind(deliveries, "deployment")[0].body)
    assert set(deployment_body) == {"repository", "deployment", "statuses"}
    assert "/repos/octo-org/octo-repo/deployments/710692/statuses" not in api.paths()  # created before the window

    pulls = [event for d in of_kind(deliveries, "pull_request") for event in d.events if isinstance(event, PullRequest)]
    assert sorted(pr.number for pr in pulls) == [2, 3]
    changes = [event for d in of_kind(deliveries, "commit") for event in d.events]
    assert len(changes) == 2

    # Pagination followed GitHub's Link headers, every list asked for 100 a page.
    runs_requests = [seen for seen in api.seen if seen.path.endswith("/actions/runs")]
    assert [seen.query.get("page") for seen in runs_requests] == [None, "2"]  # 4 runs in the window
    assert runs_requests[0].query["created"] == ">=2019-01-01"
    assert [seen.query.get("page") for seen in api.seen if seen.path.endswith("/289782452/jobs")] == [None, "2"]
    assert [seen.query.get("page") for seen in api.seen if seen.path.endswith("/pulls")] == [None, "2"]
    assert next(seen for seen in api.seen if seen.path.endswith("/commits")).query["since"] == "2019-01-01T00:00:00Z"

    for resource in github_api.RESOURCES:
        assert cursor(store, f"github:{REPO}:{resource}")["complete"] is True
    assert progress[-1] == ("commits", 2)
    assert ("workflow_runs", 11) in progress  # 5 runs and attempts + 6 jobs, counted as they were taken
    assert clock.sleeps == []


def test_github_rerun_is_answered_by_etags(github: tuple[FakeApi, GitHubData], clock: Clock) -> None:
    api, data = github
    store = DictStore()
    first, error = github_run(api, clock, store)
    assert error is None
    # Nothing changed: unchanged pages of runs and commits answer 304 and yield nothing.
    api.seen.clear()
    again, error = github_run(api, clock, store)
    assert error is None
    assert api.violations == []
    assert of_kind(again, "workflow_run") == of_kind(again, "job") == of_kind(again, "commit") == []
    assert set(ids(again)) <= set(ids(first))  # deployments and pull requests are read again: duplicates only
    conditional = [seen for seen in api.seen if "if-none-match" in seen.headers]
    assert {seen.status for seen in conditional} == {304}
    assert {seen.path.rsplit("/", 1)[-1] for seen in conditional} == {"runs", "commits"}
    # the stored next link is followed through the 304s
    assert [seen.query.get("page") for seen in conditional if seen.path.endswith("/runs")] == [None, "2"]

    # One run changed: its page is read again, the run is new, its jobs (unchanged) answer 304.
    data.runs[1]["updated_at"] = "2020-10-05T17:00:00Z"
    data.runs[1]["display_title"] = "re-run"
    api.seen.clear()
    third, error = github_run(api, clock, store)
    assert error is None
    # The run is new; the other run on its page is read again (a duplicate the journal drops).
    assert set(ids(third)) - set(ids(first)) == {"workflow_run:289782451/1:2020-10-05T17:00:00Z"}
    assert of_kind(third, "job") == []
    jobs_requests = [seen for seen in api.seen if seen.path.endswith("/jobs")]
    assert jobs_requests and {seen.status for seen in jobs_requests} == {304}
    assert api.violations == []


@functools.cache
def _clean_github_ids() -> frozenset[str]:
    """The delivery ids of an undisturbed backfill of the GitHub fixtures."""
    api = FakeApi("github")
    try:
        serve_github(api, github_data())
        deliveries, error = github_run(api, Clock(), DictStore())
        assert error is None
        return frozenset(ids(deliveries))
    finally:
        api.close()


def test_github_primary_rate_limit_near_reset_is_slept_through(
    github: tuple[FakeApi, GitHubData], clock: Clock
) -> None:
    api, _ = github
    reset = NOW + timedelta(seconds=30)
    limit = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(reset.timestamp()))}
    api.fail(
        "/actions/runs",
        403,
        headers=limit,
        body={"message": "API rate limit exceeded for user ID 1."},
        query={"page": "2"},
    )
    deliveries, error = github_run(api, clock, DictStore())
    assert error is None
    assert clock.sleeps == [31.0]  # until the reset, and a second of slack
    assert set(ids(deliveries)) == _clean_github_ids()
    assert [seen.status for seen in api.seen if seen.query.get("page") == "2" and seen.path.endswith("/runs")] == [
        403,
        200,
    ]


def test_github_primary_rate_limit_far_reset_raises_naming_it_and_resumes(
    github: tuple[FakeApi, GitHubData], clock: Clock
) -> None:
    api, _ = github
    store = DictStore()
    reset = NOW + timedelta(hours=1, minutes=5)
    limit = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(reset.timestamp()))}
    api.fail("/pulls", 429, headers=limit, body={"message": "API rate limit exceeded"})
    first, error = github_run(api, clock, store)
    assert isinstance(error, RateLimited)
    assert error.message == (
        "GitHub rate limit exhausted; it resets at 2026-11-27T15:05:00Z — run again then; "
        "the backfill resumes from its cursor"
    )
    assert error.reset_at == reset
    assert clock.sleeps == []
    assert cursor(store, f"github:{REPO}:deployments")["complete"] is True
    assert cursor(store, f"github:{REPO}:pull_requests")["complete"] is False

    api.seen.clear()
    second, error = github_run(api, clock, store)
    assert error is None
    assert [seen.path.rsplit("/", 1)[-1] for seen in api.seen] == ["octo-repo", "pulls", "pulls", "commits"]
    assert not set(ids(first)) & set(ids(second))
    assert set(ids(first)) | set(ids(second)) == _clean_github_ids()


def test_github_secondary_rate_limit_waits_retry_after(github: tuple[FakeApi, GitHubData], clock: Clock) -> None:
    api, _ = github
    message = (
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach "
        "out to GitHub Support for help, please include the request ID."
    )
    api.fail("/deployments", 403, headers={"Retry-After": "7"}, body={"message": message})
    deliveries, error = github_run(api, clock, DictStore())
    assert error is None
    assert clock.sleeps == [7.0]
    assert set(ids(deliveries)) == _clean_github_ids()


def test_github_secondary_rate_limit_too_long_raises(github: tuple[FakeApi, GitHubData], clock: Clock) -> None:
    api, _ = github
    body = {"message": "You have exceeded a secondary rate limit."}
    api.fail("/deployments", 403, headers={"Retry-After": "600"}, body=body)
    _, error = github_run(api, clock, DictStore())
    assert isinstance(error, RateLimited)
    assert error.message.startswith("GitHub secondary rate limit hit; it resets at 2026-11-27T14:10:00Z")


def test_github_forbidden_is_not_taken_for_a_rate_limit(github: tuple[FakeApi, GitHubData], clock: Clock) -> None:
    api, _ = github
    api.fail("/deployments", 403, body={"message": "Resource not accessible by personal access token"})
    _, error = github_run(api, clock, DictStore())
    assert isinstance(error, ApiError)
    assert error.http_status == 403
    assert "Resource not accessible" in error.message
    assert error.hint and "scope" in error.hint
    assert clock.sleeps == []


def test_github_quota_used_up_by_a_page_waits_or_raises_before_the_next_request(
    github: tuple[FakeApi, GitHubData], clock: Clock
) -> None:
    api, _ = github
    soon = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int((NOW + timedelta(seconds=20)).timestamp()))}
    api.fail("/actions/runs", None, headers=soon)
    deliveries, error = github_run(api, clock, DictStore())
    assert error is None
    assert clock.sleeps == [21.0]

    later = NOW + timedelta(hours=2)
    store = DictStore()
    api.fail("/pulls", None, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(later.timestamp()))})
    api.seen.clear()
    taken, error = github_run(api, Clock(), store)
    assert isinstance(error, RateLimited)
    assert "resets at 2026-11-27T16:00:00Z" in error.message
    assert api.seen[-1].path.endswith("/pulls")  # the page that used the quota up was the last request sent
    assert of_kind(taken, "pull_request")  # and it was taken, its cursor saved
    assert cursor(store, f"github:{REPO}:pull_requests")["page"].endswith("page=2")


def test_github_502_in_a_page_run_is_retried(github: tuple[FakeApi, GitHubData], clock: Clock) -> None:
    api, _ = github
    api.fail("/actions/runs", 502, body={"message": "Server Error"}, query={"page": "2"})
    deliveries, error = github_run(api, clock, DictStore())
    assert error is None
    assert clock.sleeps == [1.0]
    assert set(ids(deliveries)) == _clean_github_ids()


def test_github_persistent_502_raises_and_the_next_run_resumes_there(
    github: tuple[FakeApi, GitHubData], clock: Clock
) -> None:
    api, data = github
    store = DictStore()
    broken = f"/deployments/{data.deployments[1]['id']}/statuses"
    api.fail(broken, 502, body={"message": "Server Error"}, times=3)
    first, error = github_run(api, clock, store)
    assert isinstance(error, ApiError)
    assert error.http_status == 502
    assert broken in error.url and "HTTP 502" in error.message and broken in error.message
    assert clock.sleeps == [1.0, 2.0]
    saved = cursor(store, f"github:{REPO}:deployments")
    assert saved["done"] == [str(data.deployments[0]["id"])] and saved["complete"] is False

    api.seen.clear()
    second, error = github_run(api, clock, store)
    assert error is None
    # The runs were complete: the second run reads the repository, then the deployments page it stopped in, and
    # only the statuses it had not read.
    assert api.paths()[:3] == [
        f"/repos/{REPO}",
        f"/repos/{REPO}/deployments",
        f"/repos/{REPO}{broken}",
    ]
    assert not set(ids(first)) & set(ids(second))
    assert set(ids(first)) | set(ids(second)) == _clean_github_ids()


@pytest.mark.parametrize("budget", [6, 9, 14])
def test_github_budget_exhaustion_resumes_without_duplicates(
    github: tuple[FakeApi, GitHubData], clock: Clock, budget: int
) -> None:
    api, _ = github
    clean = _clean_github_ids()
    store = DictStore()
    journal: list[str] = []
    runs = 0
    while True:
        runs += 1
        before = len(api.seen)
        taken, error = github_run(api, clock, store, budget=budget)
        journal.extend(ids(taken))
        if error is None:
            break
        assert isinstance(error, BudgetExhausted)
        assert error.message == (
            f"request budget of {budget} requests used up; run again to continue from the saved cursor"
        )
        assert len(api.seen) - before == budget  # the request over budget was never sent
        assert any(not json.loads(value).get("complete", True) for key, value in store.items() if ":etag:" not in key)
        assert runs < 40
    assert len(journal) == len(set(journal))
    assert set(journal) == clean
    assert api.violations == []
    # Each run after the first repeats only the repository read and the page it stopped in (and, at worst, the
    # requests of the one run or deployment it was in the middle of).
    single = FakeApi("github")
    try:
        serve_github(single, github_data())
        github_run(single, Clock(), DictStore())
        assert len(api.seen) <= len(single.seen) + (runs - 1) * 4
    finally:
        single.close()


def test_github_search_cap_splits_the_created_window(clock: Clock) -> None:
    api = FakeApi("github", page_size=100)
    try:
        data = github_data()
        queued = load("github", "workflow_run.requested.json")["workflow_run"]
        runs = []
        for n in range(1234):
            run = copy.deepcopy(queued)
            created = datetime(2020, 10, 5, 16, 0, tzinfo=UTC) - timedelta(minutes=7 * n)
            run.update(id=400000000 + n, created_at=iso(created), updated_at=iso(created))
            runs.append(run)
        data.runs = runs
        serve_github(api, data)
        deliveries, error = github_run(api, clock, DictStore())
        assert error is None
        got = of_kind(deliveries, "workflow_run")
        assert len(got) == 1234 == len(set(ids(got)))
        windows = {
            seen.query["created"]
            for seen in api.seen
            if seen.path.endswith("/actions/runs") and "page" not in seen.query
        }
        assert len(windows) > 1 and ">=2019-01-01" in windows
        assert api.violations == []
    finally:
        api.close()


def test_github_next_link_to_another_host_is_refused(github: tuple[FakeApi, GitHubData], clock: Clock) -> None:
    api, _ = github
    api.fail("/pulls", None, headers={"Link": '<https://collector.example/steal?page=2>; rel="next"'})
    _, error = github_run(api, clock, DictStore())
    assert isinstance(error, ApiError)
    assert "refusing to send the token" in error.message


def test_github_decode_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ShipscopeError, match="not a github-api journal kind"):
        github_api.decode("github:workflow_run", b"{}")
    with pytest.raises(ShipscopeError, match="not JSON"):
        github_api.decode("github-api:job", b"{")
    with pytest.raises(ShipscopeError, match="unknown journal kind"):
        github_api.decode("github-api:issue", b'{"repository": {}}')


def test_github_base_urls() -> None:
    assert github_api.api_base_url() == "https://api.github.com"
    assert github_api.api_base_url("ghe.example.com") == "https://ghe.example.com/api/v3"
    assert gitlab_api.api_base_url() == "https://gitlab.com/api/v4"
    assert gitlab_api.api_base_url("gitlab.example.com") == "https://gitlab.example.com/api/v4"


# --- the token ------------------------------------------------------------------------------------------------


def test_the_token_never_appears_in_errors_or_logs(
    github: tuple[FakeApi, GitHubData], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    api, _ = github
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []

    # An answer that echoes the token back, a 404, a persistent 502, a rate limit, a spent budget.
    api.fail("/pulls", 401, body={"message": f"Bad credentials: {TOKEN}"})
    errors.append(github_run(api, clock, DictStore())[1])
    api.fail("/deployments", 404, body={"message": "Not Found"})
    errors.append(github_run(api, clock, DictStore())[1])
    api.fail("/commits", 502, body={"message": f"upstream said {TOKEN}"}, times=3)
    errors.append(github_run(api, clock, DictStore())[1])
    reset = str(int((NOW + timedelta(hours=3)).timestamp()))
    api.fail("/actions/runs", 403, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}, body={})
    errors.append(github_run(api, clock, DictStore())[1])
    errors.append(github_run(api, clock, DictStore(), budget=2)[1])
    # Nothing listening: transport errors, retried, then ApiError.
    closed = FakeApi("github")
    closed.close()
    errors.append(github_run(closed, clock, DictStore())[1])

    kinds = [type(error).__name__ for error in errors]
    assert kinds == ["ApiError", "ApiError", "ApiError", "RateLimited", "BudgetExhausted", "ApiError"]
    assert "***" in str(errors[0])
    for error in errors:
        chain: BaseException | None = error
        while chain is not None:
            for text in (str(chain), repr(chain), str(getattr(chain, "hint", "")), repr(chain.args)):
                assert TOKEN not in text
            chain = chain.__cause__ or chain.__context__
    assert caplog.records
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        assert TOKEN not in repr(record.args)
    client = github_client(api, clock)
    assert TOKEN not in repr(client) and TOKEN not in str(vars(client).get("base_url"))
    client.close()


# --- GitLab ---------------------------------------------------------------------------------------------------


def test_gitlab_backfill_reads_every_resource_and_journals_what_decode_reads_back(
    gitlab: tuple[FakeApi, GitLabData], clock: Clock
) -> None:
    api, data = gitlab
    api.link_host = "http://gitlab.internal:8080"  # a wrong external_url: X-Next-Page must be what is followed
    store = DictStore()
    deliveries, error = gitlab_run(api, clock, store)
    assert error is None
    assert api.violations == []
    assert api.seen[0].path == "/api/v4/projects/gitlab-org%2Fgitlab-test"
    assert len(set(ids(deliveries))) == len(deliveries)
    assert {delivery.kind for delivery in deliveries} == gitlab_api.KINDS
    for delivery in deliveries:
        assert delivery.source == gitlab_api.SOURCE
        assert delivery.events, delivery.delivery_id
        assert {event.source for event in delivery.events} == {"gitlab"}
        assert gitlab_api.decode(delivery.kind, delivery.body) == list(delivery.events)

    pipelines = [e for d in of_kind(deliveries, "pipeline", "gitlab-api") for e in d.events]
    assert [(run.id, run.status) for run in pipelines if isinstance(run, PipelineRun)] == [
        ("31", "success"),
        ("32", "success"),
        ("33", "failure"),
    ]
    run = pipelines[0]
    assert isinstance(run, PipelineRun)
    assert (run.repo, run.default_branch, run.trigger) == (GITLAB_PROJECT, "master", "pull_request")
    assert run.started_at == datetime(2016, 8, 12, 15, 25, 26, tzinfo=UTC)
    jobs = [e for d in of_kind(deliveries, "job", "gitlab-api") for e in d.events if isinstance(e, Job)]
    assert sorted((job.run_id, job.id) for job in jobs) == [
        ("31", "376"),
        ("31", "377"),
        ("31", "378"),
        ("31", "379"),
        ("31", "380"),
        ("32", "1380"),
    ]
    job_pages = [seen.query.get("page") for seen in api.seen if seen.path.endswith("/pipelines/31/jobs")]
    assert job_pages == [None, "2", "3"]  # five jobs, two a page, by X-Next-Page
    assert all(seen.path.startswith("/api/v4/") for seen in api.seen)

    deployments = [e for d in of_kind(deliveries, "deployment", "gitlab-api") for e in d.events]
    assert [(d.id, d.status, d.service) for d in deployments if isinstance(d, Deployment)] == [
        ("15", "success", "Gitlab Test"),
        ("988604916", "failure", "Gitlab Test"),
    ]
    merge_requests = [e for d in of_kind(deliveries, "merge_request", "gitlab-api") for e in d.events]
    assert [(pr.number, pr.author, pr.labels) for pr in merge_requests if isinstance(pr, PullRequest)] == [
        (1, "user1", ["API"]),
        (1, "sytses", []),
    ]
    saved = cursor(store, f"gitlab:{GITLAB_PROJECT}:pipelines")
    assert saved["after"] == "2022-01-01T13:00:00+00:00" and saved["done"] == ["33"]


def test_gitlab_rerun_reads_only_what_changed(gitlab: tuple[FakeApi, GitLabData], clock: Clock) -> None:
    api, data = gitlab
    store = DictStore()
    first, _ = gitlab_run(api, clock, store)
    api.seen.clear()
    again, error = gitlab_run(api, clock, store)
    assert error is None and again == []
    mr_query = next(seen for seen in api.seen if seen.path.endswith("/merge_requests")).query
    assert mr_query["updated_after"] == "2017-12-10T17:08:06Z"  # a second before the cursor

    data.merge_requests[0]["updated_at"] = "2024-02-02T10:00:00.000Z"
    data.merge_requests[0]["state"] = "merged"
    third, error = gitlab_run(api, clock, store)
    assert error is None
    assert ids(third) == ["merge_request:99:2024-02-02T10:00:00.000Z"]
    assert api.violations == []


def test_gitlab_object_updated_during_the_walk_shifts_nothing_past_it(
    gitlab: tuple[FakeApi, GitLabData], clock: Clock
) -> None:
    api, data = gitlab
    extra = []
    for n in range(5):
        mr = copy.deepcopy(data.merge_requests[1])
        mr.update(id=7000 + n, iid=10 + n, updated_at=f"2018-01-0{n + 1}T00:00:00.000Z")
        extra.append(mr)
    data.merge_requests.extend(extra)
    served = {"merge_requests": 0}

    def touch_first(seen: Seen) -> None:
        # After the first page of merge requests, the oldest one is updated: it moves to the end of the list, and
        # with page numbers the walk would skip the one that slid into page 1.
        if seen.path.endswith("/merge_requests"):
            served["merge_requests"] += 1
            if served["merge_requests"] == 2:
                data.merge_requests[0]["updated_at"] = "2025-01-01T00:00:00.000Z"

    api.before_answer = touch_first
    deliveries, error = gitlab_run(api, clock, DictStore())
    assert error is None
    numbers = sorted(
        json.loads(d.body)["merge_request"]["iid"] for d in of_kind(deliveries, "merge_request", "gitlab-api")
    )
    assert set(numbers) == {1, 10, 11, 12, 13, 14} and 1 in numbers


def test_gitlab_429_waits_retry_after(gitlab: tuple[FakeApi, GitLabData], clock: Clock) -> None:
    api, _ = gitlab
    api.fail("/deployments", 429, headers={"Retry-After": "5"}, body={"message": "429 Too Many Requests"})
    deliveries, error = gitlab_run(api, clock, DictStore())
    assert error is None
    assert clock.sleeps == [5.0]
    assert len(of_kind(deliveries, "deployment", "gitlab-api")) == 2


def test_gitlab_remaining_zero_waits_for_the_reset(gitlab: tuple[FakeApi, GitLabData], clock: Clock) -> None:
    api, _ = gitlab
    reset = str(int((NOW + timedelta(seconds=10)).timestamp()))
    api.fail("/pipelines", None, headers={"RateLimit-Remaining": "0", "RateLimit-Reset": reset})
    _, error = gitlab_run(api, clock, DictStore())
    assert error is None
    assert clock.sleeps == [11.0]

    far = str(int((NOW + timedelta(minutes=30)).timestamp()))
    api.fail("/merge_requests", 429, headers={"RateLimit-Remaining": "0", "RateLimit-Reset": far}, body={})
    _, error = gitlab_run(api, Clock(), DictStore())
    assert isinstance(error, RateLimited)
    assert error.message.startswith("GitLab rate limit exhausted; it resets at 2026-11-27T14:30:00Z")


@pytest.mark.parametrize("budget", [7, 10])
def test_gitlab_budget_exhaustion_resumes_without_duplicates(
    gitlab: tuple[FakeApi, GitLabData], clock: Clock, budget: int
) -> None:
    api, _ = gitlab
    complete, _ = gitlab_run(api, clock, DictStore())
    store = DictStore()
    journal: list[str] = []
    for _attempt in range(30):
        taken, error = gitlab_run(api, clock, store, budget=budget)
        journal.extend(ids(taken))
        if error is None:
            break
        assert isinstance(error, BudgetExhausted)
    else:
        pytest.fail("the backfill never finished")
    assert len(journal) == len(set(journal))
    assert set(journal) == set(ids(complete))


def test_gitlab_persistent_502_saves_the_cursor_and_resumes(gitlab: tuple[FakeApi, GitLabData], clock: Clock) -> None:
    api, _ = gitlab
    store = DictStore()
    api.fail("/pipelines/32", 502, times=3)
    first, error = gitlab_run(api, clock, store)
    assert isinstance(error, ApiError) and error.http_status == 502
    assert "/api/v4/projects/1/pipelines/32" in error.message
    assert cursor(store, f"gitlab:{GITLAB_PROJECT}:pipelines")["done"] == ["31"]
    api.seen.clear()
    second, error = gitlab_run(api, clock, store)
    assert error is None
    assert "/api/v4/projects/1/pipelines/31" not in api.paths()
    assert not set(ids(first)) & set(ids(second))


def test_github_budget_too_small_for_one_step_says_so(github: tuple[FakeApi, GitHubData], clock: Clock) -> None:
    api, _ = github
    store = DictStore()
    first, error = github_run(api, clock, store, budget=3)
    assert isinstance(error, BudgetExhausted) and first  # the queued run and the first completed one fit
    saved = cursor(store, f"github:{REPO}:workflow_runs")
    assert (saved["page"].endswith("page=2"), saved["done"]) == (True, [])  # the first page is taken in full
    assert error.hint == "raise the budget to do more in one run"
    # The next step needs the repository, the page, and a run with an earlier attempt and two pages of jobs: 5.
    second, error = github_run(api, clock, store, budget=3)
    assert isinstance(error, BudgetExhausted) and second == []
    assert error.hint is not None and error.hint.startswith("this run took nothing")


def test_github_child_gone_meanwhile_is_skipped(github: tuple[FakeApi, GitHubData], clock: Clock) -> None:
    api, _ = github
    api.fail("/attempts/1", 404, body={"message": "Not Found"})
    deliveries, error = github_run(api, clock, DictStore())
    assert error is None
    assert _clean_github_ids() - set(ids(deliveries)) == {"workflow_run:289782452/1:2020-10-05T15:35:24Z"}


PULLS = {"state": "all", "sort": "updated", "direction": "desc"}


def test_api_client_pages_etags_and_budget(github: tuple[FakeApi, GitHubData], clock: Clock) -> None:
    api, _ = github
    etags = DictStore()
    with github_client(api, clock, budget=4) as client:
        pages = list(client.get_pages(f"/repos/{REPO}/pulls", PULLS, etag_store=etags))
        assert [len(page.items) for page in pages] == [2, 1]
        assert [page.not_modified for page in pages] == [False, False]
        assert (
            pages[0].next_url
            == f"{api.base}/repos/{REPO}/pulls?per_page=100&state=all&sort=updated&direction=desc&page=2"
        )
        again = list(client.get_pages(f"/repos/{REPO}/pulls", PULLS, etag_store=etags))
        # 304s: no items, the ETag sent back, and the next page found from what was stored with the ETag.
        assert [(page.not_modified, page.items, page.etag) for page in again] == [
            (True, [], pages[0].etag),
            (True, [], pages[1].etag),
        ]
        assert again[0].next_url == pages[0].next_url
        assert client.requests_made == 4
        with pytest.raises(BudgetExhausted):
            client.get_object(f"/repos/{REPO}")
    assert len(api.seen) == 4  # refused before sending
    assert [seen.status for seen in api.seen] == [200, 200, 304, 304]
    assert api.violations == []


def test_api_client_retries_transport_errors_then_raises(clock: Clock) -> None:
    closed = FakeApi("gitlab")
    closed.close()
    with gitlab_client(closed, clock) as client:
        with pytest.raises(ApiError) as raised:
            client.get_object("/projects/1")
        assert client.requests_made == 3
    assert clock.sleeps == [1.0, 2.0]
    assert raised.value.http_status is None
    assert "could not be reached (ConnectError) after 3 attempts" in raised.value.message

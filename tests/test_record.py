"""`shipscope record` against a real local HTTP server standing in for shipscope and for the GitHub/GitLab APIs."""

from __future__ import annotations

import copy
import json
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from shipscope.events import EventError, parse_event
from shipscope.ingest import Delivery
from shipscope.ingest.generic import read_record
from shipscope.record import (
    RecordOptions,
    RecordOutcome,
    collect_events,
    detect_ci,
    map_status,
    record,
)
from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
INGEST_TOKEN = "ingest-secret"
VENDOR_TOKEN = "vendor-secret"

GITHUB_RUN = FIXTURES / "github" / "workflow_run.completed.success.json"
GITHUB_REPO = "octo-org/octo-repo"
GITHUB_RUN_ID = "289782451"
GITHUB_SHA = "3484a3fb816e0859fd6e1cea078d76385ff50625"
CURRENT_RUNNER = "GitHub Actions 6"  # the runner of workflow_job.in_progress.with-queued-steps.json

GITLAB_PIPELINE = FIXTURES / "gitlab" / "pipeline_hook.success.json"
GITLAB_PIPELINE_ID = "31"
GITLAB_RECORDER_JOB = 381

JUNIT_CASES = {"pytest.fail.xml": 5, "surefire.flakyFailure.xml": 2}
SARIF_FINDINGS = {"codeql.valid-sarif.sarif": 3, "trivy.alpine-310.sarif": 4}


# ── the stand-in server ─────────────────────────────────────────────────────────────────────────────────────────


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeServer:
    """shipscope's POST /api/v1/events (validating every line as a canonical event) plus scripted GET routes."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.routes: dict[str, Callable[[Seen], Answer]] = {}
        self.scripted: list[Answer] = []
        """Answers to the next POSTs, before any is stored; then every POST is validated and stored."""
        self.token = INGEST_TOKEN
        self.max_lines: int | None = None
        self.events: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        # A short poll interval makes shutdown() quick: it waits for the serving loop to notice.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def posts(self) -> list[Seen]:
        return [seen for seen in self.requests if seen.method == "POST"]

    def gets(self) -> list[Seen]:
        return [seen for seen in self.requests if seen.method == "GET"]

    def answer(self, seen: Seen) -> Answer:
        with self._lock:
            self.requests.append(seen)
            if seen.method == "GET":
                route = self.routes.get(seen.path)
                return route(seen) if route else Answer(404, {"message": "Not Found"})
            if seen.path != "/api/v1/events":
                return Answer(404, {"ok": False, "error": "not found"})
            if seen.headers.get("authorization") != f"Bearer {self.token}":
                return Answer(401, {"ok": False, "status": 401, "error": "missing or unknown API token"})
            if self.scripted:
                return self.scripted.pop(0)
            return self._store(seen)

    def _store(self, seen: Seen) -> Answer:
        if seen.headers.get("content-type") != "application/x-ndjson":
            self.problems.append(f"Content-Type {seen.headers.get('content-type')!r}")
        lines = [line for line in seen.body.split(b"\n") if line.strip()]
        if self.max_lines is not None and len(lines) > self.max_lines:
            return Answer(413, {"ok": False, "status": 413, "error": "body too large"})
        stored = 0
        rejected = []
        for number, line in enumerate(lines, start=1):
            try:
                parse_event(json.loads(line))
            except (ValueError, EventError) as error:
                self.problems.append(f"line {number}: {error}")
                rejected.append({"line": number, "error": str(error)})
                continue
            self.events.append(json.loads(line))
            stored += 1
        status = 200 if not rejected else (207 if stored else 400)
        return Answer(
            status, {"stored": stored, "duplicates": 0, "rejected_count": len(rejected), "rejected": rejected}
        )


def _handler(fake: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            seen = Seen(
                method=self.command,
                path=parts.path,
                query={key: values[-1] for key, values in parse_qs(parts.query).items()},
                headers={key.lower(): value for key, value in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            answer = fake.answer(seen)
            body = json.dumps(answer.body).encode() if answer.body is not None else b""
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def closed_port_url() -> str:
    """A URL where nothing listens: the port was bound once and released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


# ── fixtures as the vendor APIs serve them ──────────────────────────────────────────────────────────────────────


def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def github_run_object() -> dict[str, Any]:
    """The run as REST `GET …/actions/runs/{id}` gives it: the webhook's workflow_run, which embeds its repository."""
    run: dict[str, Any] = _load(GITHUB_RUN)["workflow_run"]
    assert str(run["id"]) == GITHUB_RUN_ID and run["repository"]["full_name"] == GITHUB_REPO
    return run


def github_job(name: str) -> dict[str, Any]:
    # The fixtures come from different runs; the API lists jobs of the run asked for, so their run_id is that run's.
    job: dict[str, Any] = copy.deepcopy(_load(FIXTURES / "github" / name)["workflow_job"])
    job["run_id"] = int(GITHUB_RUN_ID)
    return job


def completed_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if step.get("started_at") and step.get("completed_at")]


def serve_github(server: FakeServer, jobs: list[dict[str, Any]]) -> None:
    base = f"/repos/{GITHUB_REPO}/actions/runs/{GITHUB_RUN_ID}"
    server.routes[base] = lambda seen: Answer(200, github_run_object())
    server.routes[f"{base}/attempts/1/jobs"] = lambda seen: Answer(200, {"total_count": len(jobs), "jobs": jobs})


def github_env(api_url: str, **overrides: str) -> dict[str, str]:
    env = {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_RUN_ID": GITHUB_RUN_ID,
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_REPOSITORY": GITHUB_REPO,
        "GITHUB_WORKFLOW": "CI",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_REF": "refs/heads/master",
        "GITHUB_REF_NAME": "master",
        "GITHUB_HEAD_REF": "",
        "GITHUB_BASE_REF": "",
        "GITHUB_SHA": GITHUB_SHA,
        "GITHUB_ACTOR": "octocat",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_API_URL": api_url,
        "RUNNER_NAME": CURRENT_RUNNER,
    }
    env.update(overrides)
    return env


def gitlab_builds() -> list[dict[str, Any]]:
    """The pipeline hook's builds as REST `GET …/pipelines/:id/jobs` lists them (each names its pipeline), plus the
    recording job itself, still running in .post."""
    builds = copy.deepcopy(_load(GITLAB_PIPELINE)["builds"])
    recorder = {
        "id": GITLAB_RECORDER_JOB,
        "stage": ".post",
        "name": "shipscope-record",
        "status": "running",
        "created_at": "2016-08-12T15:23:28.000Z",
        "started_at": "2016-08-12T15:26:40.000Z",
        "finished_at": None,
        "allow_failure": True,
        "runner": None,
    }
    for build in [*builds, recorder]:
        build["pipeline"] = {"id": int(GITLAB_PIPELINE_ID), "project_id": 1, "status": "running"}
    return [*builds, recorder]


def serve_gitlab(server: FakeServer, builds: list[dict[str, Any]]) -> None:
    base = f"/api/v4/projects/1/pipelines/{GITLAB_PIPELINE_ID}"
    pipeline = {**_load(GITLAB_PIPELINE)["object_attributes"], "status": "running"}
    server.routes[base] = lambda seen: Answer(200, pipeline)

    def jobs(seen: Seen) -> Answer:
        # Two pages, as GitLab paginates, to show the X-Next-Page header is followed.
        if seen.query.get("page") == "2":
            return Answer(200, builds[3:])
        return Answer(200, builds[:3], {"X-Next-Page": "2"})

    server.routes[f"{base}/jobs"] = jobs


def gitlab_env(api_url: str, **overrides: str) -> dict[str, str]:
    env = {
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_PIPELINE_ID": GITLAB_PIPELINE_ID,
        "CI_PROJECT_ID": "1",
        "CI_PROJECT_PATH": "gitlab-org/gitlab-test",
        "CI_PROJECT_URL": "https://gitlab.example.com/gitlab-org/gitlab-test",
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_COMMIT_REF_NAME": "test",
        "CI_COMMIT_SHA": "bcbb5ec396a2c0f828686f14fac9b80b780504f2",
        "CI_DEFAULT_BRANCH": "master",
        "CI_MERGE_REQUEST_IID": "1",
        "GITLAB_USER_LOGIN": "user1",
        "CI_PIPELINE_CREATED_AT": "2016-08-12T15:23:28Z",
        "CI_JOB_ID": str(GITLAB_RECORDER_JOB),
        "CI_JOB_NAME": "shipscope-record",
        "CI_JOB_STAGE": ".post",
        "CI_JOB_STARTED_AT": "2016-08-12T15:26:40Z",
        "CI_JOB_STATUS": "running",
        "CI_API_V4_URL": f"{api_url}/api/v4",
    }
    env.update(overrides)
    return env


def junit_paths(*names: str) -> tuple[Path, ...]:
    return tuple(FIXTURES / "junit" / name for name in names)


def sarif_paths(*names: str) -> tuple[Path, ...]:
    return tuple(FIXTURES / "sarif" / name for name in names)


def by_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == kind]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def assert_all_stored(server: FakeServer, outcome: RecordOutcome) -> None:
    assert server.problems == []
    assert outcome.sent is True
    assert outcome.spooled_to is None
    assert len(server.events) == outcome.events


# ── GitHub Actions ──────────────────────────────────────────────────────────────────────────────────────────────


def test_github_with_token_records_run_jobs_steps_tests_and_findings(server: FakeServer, tmp_path: Path) -> None:
    failed = github_job("workflow_job.completed.failure.json")
    current = github_job("workflow_job.in_progress.with-queued-steps.json")
    queued = github_job("workflow_job.queued.json")
    serve_github(server, [failed, current, queued])
    options = RecordOptions(
        server_url=server.url,
        token=INGEST_TOKEN,
        status="success",
        junit=junit_paths(*JUNIT_CASES),
        sarif=sarif_paths(*SARIF_FINDINGS),
        spool=tmp_path / "spool.ndjson",
        vendor_token=VENDOR_TOKEN,
    )

    outcome = record(options, github_env(server.url), now=NOW, sleep=Sleeps())

    assert outcome.warnings == []
    assert_all_stored(server, outcome)
    events = server.events
    run = by_type(events, "pipeline_run")
    assert run == [
        {
            "type": "pipeline_run",
            "source": "github",
            "id": GITHUB_RUN_ID,
            "attempt": 1,
            "repo": GITHUB_REPO,
            "workflow": "CI",
            "trigger": "push",
            "branch": "master",
            "sha": GITHUB_SHA,
            "actor": "octocat",
            # job.status said success, but another job of the run failed
            "status": "failure",
            "created_at": "2020-10-05T16:33:24Z",
            "started_at": "2020-10-05T16:33:49Z",
            "finished_at": "2026-03-01T12:00:00Z",
            "url": github_run_object()["html_url"],
        }
    ]

    jobs = {job["id"]: job for job in by_type(events, "job")}
    assert set(jobs) == {str(failed["id"]), str(current["id"])}  # the queued job is left to a later record
    assert jobs[str(failed["id"])]["status"] == "failure"
    assert at(jobs[str(failed["id"])]["started_at"]) == at(failed["started_at"])
    assert at(jobs[str(failed["id"])]["finished_at"]) == at(failed["completed_at"])
    mine = jobs[str(current["id"])]
    assert (mine["status"], mine["finished_at"]) == ("success", "2026-03-01T12:00:00Z")
    assert at(mine["started_at"]) == at(current["started_at"])

    steps = by_type(events, "step")
    expected_steps = [(str(job["id"]), step) for job in (failed, current) for step in completed_steps(job)]
    assert len(steps) == len(expected_steps) == len(completed_steps(failed)) + 2
    timings = {(step["job_id"], step["number"]): (at(step["started_at"]), at(step["finished_at"])) for step in steps}
    for job_id, step in expected_steps:
        assert timings[(job_id, step["number"])] == (at(step["started_at"]), at(step["completed_at"]))

    cases = by_type(events, "test_case")
    assert len(cases) == sum(JUNIT_CASES.values())
    assert {(case["source"], case["run_id"], case["job_id"]) for case in cases} == {
        ("github", GITHUB_RUN_ID, str(current["id"]))
    }
    findings = by_type(events, "finding")
    assert len(findings) == sum(SARIF_FINDINGS.values())
    assert {(f["repo"], f["run_id"], f["scanned_at"]) for f in findings} == {
        (GITHUB_REPO, GITHUB_RUN_ID, "2026-03-01T12:00:00Z")
    }

    # Each token goes only where it belongs.
    for seen in server.gets():
        assert seen.headers["authorization"] == f"Bearer {VENDOR_TOKEN}"
    for seen in server.posts():
        assert seen.path == "/api/v1/events"
        assert seen.headers["authorization"] == f"Bearer {INGEST_TOKEN}"
        assert seen.headers["content-type"] == "application/x-ndjson"


def test_github_without_status_derives_it_from_the_finished_steps_and_jobs(server: FakeServer) -> None:
    serve_github(
        server,
        [
            github_job("workflow_job.completed.success.json"),
            github_job("workflow_job.in_progress.with-queued-steps.json"),
        ],
    )
    options = RecordOptions(server_url=server.url, token=INGEST_TOKEN, vendor_token=VENDOR_TOKEN)

    events, warnings = collect_events(options, github_env(server.url), now=NOW)

    assert warnings == []
    assert by_type(events, "pipeline_run")[0]["status"] == "success"
    assert {job["status"] for job in by_type(events, "job")} == {"success"}


def test_github_without_token_records_the_run_from_the_environment(tmp_path: Path) -> None:
    env = github_env(
        "http://127.0.0.1:9",  # never asked: there is no token
        GITHUB_EVENT_PATH=str(FIXTURES / "github" / "push.new-branch.json"),
    )
    options = RecordOptions(server_url="http://unused", status="cancelled", junit=junit_paths("pytest.fail.xml"))

    events, warnings = collect_events(options, env, now=NOW)

    assert any("GITHUB_TOKEN" in warning and "timings" in warning for warning in warnings)
    [run] = by_type(events, "pipeline_run")
    pushed_at = _load(FIXTURES / "github" / "push.new-branch.json")["repository"]["pushed_at"]
    assert at(run["created_at"]) == datetime.fromtimestamp(pushed_at, UTC)  # when the push created the run
    assert (run["status"], run["finished_at"]) == ("cancelled", "2026-03-01T12:00:00Z")
    assert "started_at" not in run
    assert run["default_branch"] == "master"  # from the event payload
    assert by_type(events, "job") == by_type(events, "step") == []
    assert {case["job_id"] if "job_id" in case else None for case in by_type(events, "test_case")} == {None}


def test_github_pull_request_run_takes_the_head_branch_head_sha_and_pr_number() -> None:
    payload = FIXTURES / "github" / "pull_request.opened.json"
    env = github_env(
        "http://127.0.0.1:9",
        GITHUB_EVENT_NAME="pull_request",
        GITHUB_REF="refs/pull/2/merge",
        GITHUB_REF_NAME="2/merge",
        GITHUB_HEAD_REF="changes",
        GITHUB_BASE_REF="master",
        GITHUB_SHA="ffffffffffffffffffffffffffffffffffffffff",  # the merge commit GitHub made
        GITHUB_EVENT_PATH=str(payload),
    )

    events, _ = collect_events(RecordOptions(server_url="http://unused", status="success"), env, now=NOW)

    [run] = by_type(events, "pipeline_run")
    pull_request = _load(payload)["pull_request"]
    assert (run["trigger"], run["branch"], run["pr_number"]) == ("pull_request", "changes", 2)
    assert run["sha"] == pull_request["head"]["sha"]
    assert at(run["created_at"]) == at(pull_request["updated_at"])


def test_a_rerun_does_not_take_its_creation_time_from_the_original_trigger() -> None:
    env = github_env(
        "http://127.0.0.1:9",
        GITHUB_RUN_ATTEMPT="2",
        GITHUB_EVENT_PATH=str(FIXTURES / "github" / "push.new-branch.json"),
    )

    events, warnings = collect_events(RecordOptions(server_url="http://unused", status="success"), env, now=NOW)

    [run] = by_type(events, "pipeline_run")
    assert (run["attempt"], run["created_at"]) == (2, "2026-03-01T12:00:00Z")
    assert any("creation time is unknown" in warning for warning in warnings)


def test_without_any_status_the_run_is_in_progress_with_a_warning() -> None:
    events, warnings = collect_events(RecordOptions(server_url="http://unused"), github_env("http://x"), now=NOW)

    [run] = by_type(events, "pipeline_run")
    assert run["status"] == "in_progress" and "finished_at" not in run
    assert any("--status" in warning for warning in warnings)


def test_an_unreadable_vendor_api_is_a_warning_and_the_run_is_still_recorded(server: FakeServer) -> None:
    options = RecordOptions(server_url=server.url, token=INGEST_TOKEN, status="success", vendor_token="bad")

    events, warnings = collect_events(options, github_env(server.url), now=NOW)  # no routes: every GET is a 404

    assert len(by_type(events, "pipeline_run")) == 1
    assert any("404" in warning and "workflow run" in warning for warning in warnings)
    assert any("404" in warning and "jobs" in warning for warning in warnings)


# ── GitLab CI ───────────────────────────────────────────────────────────────────────────────────────────────────


def test_gitlab_post_stage_job_derives_the_status_from_the_jobs_api(server: FakeServer) -> None:
    builds = gitlab_builds()
    serve_gitlab(server, builds)
    options = RecordOptions(
        server_url=server.url,
        token=INGEST_TOKEN,
        junit=junit_paths("pytest.fail.xml"),
        sarif=sarif_paths("trivy.alpine-310.sarif"),
        vendor_token=VENDOR_TOKEN,
    )

    outcome = record(options, gitlab_env(server.url), now=NOW, sleep=Sleeps())

    assert outcome.warnings == []
    assert_all_stored(server, outcome)
    [run] = by_type(server.events, "pipeline_run")
    assert run == {
        "type": "pipeline_run",
        "source": "gitlab",
        "id": GITLAB_PIPELINE_ID,
        "attempt": 1,
        "repo": "gitlab-org/gitlab-test",
        "workflow": "pipeline",
        "trigger": "pull_request",
        "branch": "test",
        "default_branch": "master",
        "pr_number": 1,
        "sha": "bcbb5ec396a2c0f828686f14fac9b80b780504f2",
        "actor": "user1",
        "status": "success",
        "created_at": "2016-08-12T15:23:28Z",
        "started_at": "2016-08-12T15:24:56Z",  # the first job's start: the API's pipeline has none here
        "finished_at": "2026-03-01T12:00:00Z",
        "url": f"https://gitlab.example.com/gitlab-org/gitlab-test/-/pipelines/{GITLAB_PIPELINE_ID}",
    }
    jobs = {job["id"]: job for job in by_type(server.events, "job")}
    # Finished jobs only: "created" 379 never ran, and the recording job 381 is still running.
    assert set(jobs) == {"376", "377", "378", "380"}
    assert jobs["376"]["started_at"] == "2016-08-12T15:24:56Z"
    assert jobs["376"]["finished_at"] == "2016-08-12T15:25:26Z"
    assert (jobs["376"]["stage"], jobs["380"]["status"]) == ("build", "skipped")
    assert {job["run_id"] for job in jobs.values()} == {GITLAB_PIPELINE_ID}
    cases = by_type(server.events, "test_case")
    assert len(cases) == JUNIT_CASES["pytest.fail.xml"]
    # The reports came from other jobs as artifacts: tied to the pipeline, not to the recording job.
    assert {(case["source"], case["run_id"], case.get("job_id")) for case in cases} == {
        ("gitlab", GITLAB_PIPELINE_ID, None)
    }
    assert len(by_type(server.events, "finding")) == SARIF_FINDINGS["trivy.alpine-310.sarif"]
    pages = [seen.query.get("page") for seen in server.gets() if seen.path.endswith("/jobs")]
    assert pages == ["1", "2"]
    assert all(seen.headers["private-token"] == VENDOR_TOKEN for seen in server.gets())


def test_gitlab_failed_job_fails_the_pipeline_unless_it_may_fail(server: FakeServer) -> None:
    builds = gitlab_builds()
    builds[1]["status"] = "failed"  # test-image
    serve_gitlab(server, builds)
    options = RecordOptions(server_url=server.url, vendor_token=VENDOR_TOKEN)

    events, _ = collect_events(options, gitlab_env(server.url), now=NOW)
    assert by_type(events, "pipeline_run")[0]["status"] == "failure"

    builds[1]["allow_failure"] = True
    events, _ = collect_events(options, gitlab_env(server.url), now=NOW)
    assert by_type(events, "pipeline_run")[0]["status"] == "success"


def test_gitlab_without_token_uses_the_status_given_by_an_on_failure_job() -> None:
    env = gitlab_env("http://127.0.0.1:9")

    events, warnings = collect_events(RecordOptions(server_url="http://unused", status="failure"), env, now=NOW)

    [run] = by_type(events, "pipeline_run")
    assert (run["status"], run["created_at"], run["finished_at"]) == (
        "failure",
        "2016-08-12T15:23:28Z",
        "2026-03-01T12:00:00Z",
    )
    assert any("read_api" in warning for warning in warnings)


def test_gitlab_running_status_is_not_taken_for_the_pipeline_status() -> None:
    env = gitlab_env("http://127.0.0.1:9")

    events, warnings = collect_events(RecordOptions(server_url="http://unused", status="running"), env, now=NOW)

    assert by_type(events, "pipeline_run")[0]["status"] == "in_progress"
    assert any("not a final status" in warning for warning in warnings)


def test_gitlab_after_script_ties_reports_to_its_own_job() -> None:
    env = gitlab_env("http://127.0.0.1:9", CI_JOB_STATUS="failed", CI_JOB_ID="377")
    options = RecordOptions(server_url="http://unused", status="failed", junit=junit_paths("pytest.fail.xml"))

    events, _ = collect_events(options, env, now=NOW)

    assert by_type(events, "pipeline_run")[0]["status"] == "failure"
    assert {case["job_id"] for case in by_type(events, "test_case")} == {"377"}


# ── sending, retrying, spooling ─────────────────────────────────────────────────────────────────────────────────


def test_server_down_spools_every_event_for_a_later_import(closed_port_url: str, tmp_path: Path) -> None:
    spool = tmp_path / "nested" / "dir" / "spool.ndjson"
    options = RecordOptions(
        server_url=closed_port_url,
        token=INGEST_TOKEN,
        status="success",
        junit=junit_paths(*JUNIT_CASES),
        spool=spool,
        retries=2,
    )
    sleeps = Sleeps()

    outcome = record(options, github_env("http://127.0.0.1:9"), now=NOW, sleep=sleeps)

    assert outcome.sent is False
    assert outcome.spooled_to == spool
    assert outcome.events == 1 + sum(JUNIT_CASES.values())
    assert sleeps.delays == [1.0, 2.0]
    lines = spool.read_bytes().splitlines()
    assert len(lines) == outcome.events
    assert all(isinstance(read_record(number, line), Delivery) for number, line in enumerate(lines, start=1))
    assert any(
        "server unreachable" in warning and f"written to {spool}" in warning and f"shipscope import {spool}" in warning
        for warning in outcome.warnings
    )

    # A later failure appends; the file stays one event a line even if it was left without a final newline.
    spool.write_bytes(spool.read_bytes().rstrip(b"\n"))
    record(options, github_env("http://127.0.0.1:9"), now=NOW, sleep=sleeps)
    lines = spool.read_bytes().splitlines()
    assert len(lines) == 2 * outcome.events
    assert all(isinstance(read_record(number, line), Delivery) for number, line in enumerate(lines, start=1))


def test_503_twice_then_200_is_sent_after_backing_off(server: FakeServer, tmp_path: Path) -> None:
    server.scripted = [Answer(503, {"ok": False, "error": "busy"}), Answer(503, {"ok": False, "error": "busy"})]
    sleeps = Sleeps()
    options = RecordOptions(server_url=server.url, token=INGEST_TOKEN, status="success", spool=tmp_path / "spool")

    outcome = record(options, github_env("http://127.0.0.1:9"), now=NOW, sleep=sleeps)

    assert_all_stored(server, outcome)
    assert sleeps.delays == [1.0, 2.0]
    assert len(server.posts()) == 3
    assert not (tmp_path / "spool").exists()


def test_429_waits_as_long_as_retry_after_says(server: FakeServer) -> None:
    server.scripted = [Answer(429, {"ok": False}, {"Retry-After": "7"})]
    sleeps = Sleeps()
    options = RecordOptions(server_url=server.url, token=INGEST_TOKEN, status="success")

    outcome = record(options, github_env("http://127.0.0.1:9"), now=NOW, sleep=sleeps)

    assert_all_stored(server, outcome)
    assert sleeps.delays == [7.0]


def test_401_is_not_retried_and_spools_with_the_status_in_the_warning(server: FakeServer, tmp_path: Path) -> None:
    sleeps = Sleeps()
    spool = tmp_path / "spool.ndjson"
    options = RecordOptions(server_url=server.url, token="wrong", status="success", spool=spool)

    outcome = record(options, github_env("http://127.0.0.1:9"), now=NOW, sleep=sleeps)

    assert (outcome.sent, outcome.spooled_to) == (False, spool)
    assert sleeps.delays == []
    assert len(server.posts()) == 1
    assert any("401" in warning and "shipscope import" in warning for warning in outcome.warnings)
    assert len(spool.read_bytes().splitlines()) == outcome.events == 1


def test_207_rejections_become_warnings(server: FakeServer) -> None:
    rejected = {"stored": 0, "duplicates": 0, "rejected_count": 1, "rejected": [{"line": 1, "error": "boom"}]}
    server.scripted = [Answer(207, rejected)]
    options = RecordOptions(server_url=server.url, token=INGEST_TOKEN, status="success")

    outcome = record(options, github_env("http://127.0.0.1:9"), now=NOW, sleep=Sleeps())

    assert (outcome.sent, outcome.spooled_to) == (True, None)
    assert any("rejected event 1 (pipeline_run): boom" in warning for warning in outcome.warnings)


def test_a_413_halves_the_batch_until_it_fits(server: FakeServer) -> None:
    server.max_lines = 2
    options = RecordOptions(
        server_url=server.url, token=INGEST_TOKEN, status="success", junit=junit_paths("pytest.fail.xml")
    )

    outcome = record(options, github_env("http://127.0.0.1:9"), now=NOW, sleep=Sleeps())

    assert_all_stored(server, outcome)
    assert outcome.events == 6
    assert [event["type"] for event in server.events] == ["pipeline_run", *["test_case"] * 5]  # order kept


def test_a_corrupt_junit_file_is_a_warning_and_the_rest_is_sent(server: FakeServer, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.xml"
    corrupt.write_text("<testsuite><testcase name='cut off'")
    options = RecordOptions(
        server_url=server.url,
        token=INGEST_TOKEN,
        status="success",
        junit=(corrupt, *junit_paths("pytest.fail.xml")),
        sarif=sarif_paths("codeql.valid-sarif.sarif"),
    )

    outcome = record(options, github_env("http://127.0.0.1:9"), now=NOW, sleep=Sleeps())

    assert_all_stored(server, outcome)
    assert any(str(corrupt) in warning and "malformed XML" in warning for warning in outcome.warnings)
    assert len(by_type(server.events, "test_case")) == JUNIT_CASES["pytest.fail.xml"]
    assert len(by_type(server.events, "finding")) == SARIF_FINDINGS["codeql.valid-sarif.sarif"]


def test_missing_reports_and_a_directory_for_a_report_never_escape(server: FakeServer, tmp_path: Path) -> None:
    options = RecordOptions(
        server_url=server.url,
        token=INGEST_TOKEN,
        status="success",
        junit=(tmp_path, tmp_path / "missing.xml", tmp_path / "none" / "*.xml"),
        sarif=(tmp_path / "bad.sarif",),
    )
    (tmp_path / "bad.sarif").write_text('{"version": "9.9", "runs": []}')

    outcome = record(options, github_env("http://127.0.0.1:9"), now=NOW, sleep=Sleeps())

    assert_all_stored(server, outcome)
    assert outcome.events == 1  # the run
    assert any(f"JUnit report {tmp_path} skipped" in warning for warning in outcome.warnings)
    assert any("missing.xml" in warning for warning in outcome.warnings)
    assert any("no JUnit report matches" in warning for warning in outcome.warnings)
    assert any("bad.sarif" in warning and "unsupported SARIF version" in warning for warning in outcome.warnings)


def test_report_globs_are_expanded_recursively(tmp_path: Path) -> None:
    for number, name in enumerate(JUNIT_CASES):
        target = tmp_path / "reports" / f"part{number}" / name
        target.parent.mkdir(parents=True)
        shutil.copyfile(FIXTURES / "junit" / name, target)
    options = RecordOptions(
        server_url="http://unused", status="success", junit=(tmp_path / "reports" / "**" / "*.xml",)
    )

    events, warnings = collect_events(options, github_env("http://x"), now=NOW)

    assert len(by_type(events, "test_case")) == sum(JUNIT_CASES.values())


def test_an_unexpected_exception_never_escapes_and_the_events_are_spooled(server: FakeServer, tmp_path: Path) -> None:
    server.scripted = [Answer(503, {"ok": False})]
    spool = tmp_path / "spool.ndjson"
    options = RecordOptions(server_url=server.url, token=INGEST_TOKEN, status="success", spool=spool)

    def broken_sleep(seconds: float) -> None:
        raise RuntimeError("clock on fire")

    outcome = record(options, github_env("http://127.0.0.1:9"), now=NOW, sleep=broken_sleep)

    assert outcome.sent is False
    assert any("RuntimeError" in warning and "clock on fire" in warning for warning in outcome.warnings)
    assert outcome.spooled_to == spool
    assert len(spool.read_bytes().splitlines()) == outcome.events == 1


def test_no_ci_is_a_warning_and_nothing_is_sent(server: FakeServer, tmp_path: Path) -> None:
    options = RecordOptions(server_url=server.url, token=INGEST_TOKEN, spool=tmp_path / "spool.ndjson")

    outcome = record(options, {"PATH": "/usr/bin"}, now=NOW, sleep=Sleeps())

    assert (outcome.events, outcome.sent, outcome.spooled_to) == (0, False, None)
    assert any("no CI detected" in warning for warning in outcome.warnings)
    assert server.requests == []
    assert not (tmp_path / "spool.ndjson").exists()


@pytest.mark.parametrize("url", ["", "shipscope.example.com:8080"])
def test_a_missing_or_malformed_server_url_spools(url: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool.ndjson"
    options = RecordOptions(server_url=url, status="success", spool=spool)

    outcome = record(options, github_env("http://127.0.0.1:9"), now=NOW, sleep=Sleeps())

    assert (outcome.sent, outcome.spooled_to) == (False, spool)
    assert len(spool.read_bytes().splitlines()) == 1


# ── small parts ─────────────────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"GITHUB_ACTIONS": "true"}, "github"),
        ({"GITLAB_CI": "true"}, "gitlab"),
        ({"GITHUB_ACTIONS": "false", "CI": "true"}, None),
        ({}, None),
    ],
)
def test_detect_ci(environ: dict[str, str], expected: str | None) -> None:
    assert detect_ci(environ) == expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("success", "success"),
        ("failure", "failure"),
        ("cancelled", "cancelled"),
        ("failed", "failure"),
        ("canceled", "cancelled"),
        ("Success", "success"),
        ("running", "in_progress"),
        ("bogus", None),
        (None, None),
    ],
)
def test_map_status(word: str | None, expected: str | None) -> None:
    assert map_status(word) == expected


# ── the CI integrations ─────────────────────────────────────────────────────────────────────────────────────────


def test_action_yml_is_a_composite_action_that_never_fails_the_job() -> None:
    text = (ROOT / "action.yml").read_text()
    action = yaml.safe_load(text)

    inputs = action["inputs"]
    assert {"server-url", "token", "junit", "sarif", "spool-path", "python-version", "version"} <= set(inputs)
    assert inputs["server-url"]["required"] is True
    assert (inputs["python-version"]["default"], inputs["version"]["default"]) == ("3.11", "shipscope")
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    assert any(str(step.get("uses", "")).startswith("actions/setup-python@") for step in steps)
    assert any("pip install" in step.get("run", "") for step in steps)
    [recording] = [step for step in steps if 'shipscope" record' in step.get("run", "")]
    assert recording["continue-on-error"] is True
    for flag in ("--server", "--status", "--junit", "--sarif", "--spool"):
        assert flag in recording["run"]
    assert "job.status" in recording["env"]["SHIPSCOPE_STATUS"]
    assert recording["env"]["SHIPSCOPE_TOKEN"] == "${{ inputs.token }}"
    assert "github.token" in inputs["github-token"]["default"]
    assert recording["env"]["GITHUB_TOKEN"] == "${{ inputs.github-token }}"
    assert all(step.get("continue-on-error") is True for step in steps)
    assert "if: always()" in text


def test_gitlab_template_records_in_post_always_and_may_fail() -> None:
    text = (ROOT / "ci" / "shipscope.gitlab-ci.yml").read_text()
    template = yaml.safe_load(text)

    hidden = template[".shipscope-record"]
    assert hidden["stage"] == ".post"
    assert hidden["when"] == "always"
    assert hidden["allow_failure"] is True
    assert hidden["image"] == "python:3.11-slim"
    script = "\n".join(hidden["script"])
    assert "pip install" in script and "shipscope record" in script
    assert template["shipscope-record"]["extends"] == ".shipscope-record"
    assert template[".shipscope-record-on-success"]["when"] == "on_success"
    assert template[".shipscope-record-on-failure"]["when"] == "on_failure"
    assert "include:" in text and ("remote:" in text or "project:" in text)

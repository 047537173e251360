"""GitLab webhook deliveries and REST API objects → canonical events, checked against real payloads."""

from __future__ import annotations

import copy
import json
import re
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from shipscope.errors import InputError
from shipscope.events import Change, Deployment, Job, PipelineRun, PullRequest
from shipscope.ingest import gitlab
from tests.conftest import FIXTURES

T = TypeVar("T")

GITLAB_FIXTURES = FIXTURES / "gitlab"
COVERED = {
    "deployment_hook.failed.zulip.json",
    "deployment_hook.success.json",
    "job_hook.created.legacy-build.json",
    "job_hook.failed.minimal.otel.json",
    "job_hook.success.json",
    "merge_request_hook.merged.go-scm.json",
    "merge_request_hook.opened.json",
    "pipeline_hook.failed.minimal.otel.json",
    "pipeline_hook.subgroup.go-scm.json",
    "pipeline_hook.success.json",
    "push_hook.json",
    "tag_push_hook.json",
}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GITLAB_FIXTURES / name).read_text())
    return data


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def only(events: list[Any], kind: type[T]) -> T:
    assert len(events) == 1
    assert isinstance(events[0], kind)
    return events[0]


def raises_naming(field: str) -> AbstractContextManager[pytest.ExceptionInfo[InputError]]:
    """Expects an InputError whose message starts with the path of the field that is wrong."""
    return pytest.raises(InputError, match=rf"^{re.escape(field)}: ")


def test_every_gitlab_fixture_has_a_test() -> None:
    assert {path.name for path in GITLAB_FIXTURES.iterdir()} == COVERED


def test_handled_kinds_are_the_parsed_ones() -> None:
    assert gitlab.SOURCE == "gitlab"
    assert gitlab.HANDLED_KINDS == {"pipeline", "build", "deployment", "merge_request", "push", "tag_push"}


# ── kinds ────────────────────────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("Pipeline Hook", "pipeline"),
        ("Job Hook", "build"),
        ("Deployment Hook", "deployment"),
        ("Merge Request Hook", "merge_request"),
        ("Push Hook", "push"),
        ("Tag Push Hook", "tag_push"),
        ("Note Hook", None),
        (None, None),
    ],
)
def test_kind_from_header_when_payload_has_no_object_kind(header: str | None, kind: str | None) -> None:
    assert gitlab.kind_of(header, {}) == kind


def test_object_kind_wins_over_header() -> None:
    assert gitlab.kind_of("Push Hook", {"object_kind": "build"}) == "build"
    assert gitlab.kind_of(None, {"object_kind": "note"}) == "note"


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        ("Note Hook", {"object_kind": "note", "object_attributes": {"id": 1}}),
        (None, {"object_kind": "issue"}),
        ("Issue Hook", {}),
        (None, load("pipeline_hook.failed.minimal.otel.json")),  # no object_kind, no header: nothing says what it is
    ],
)
def test_unknown_kinds_yield_nothing(header: str | None, payload: dict[str, Any]) -> None:
    assert gitlab.parse_delivery(header, payload) == []


# ── timestamps ───────────────────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2016-08-12 15:23:28 UTC", utc(2016, 8, 12, 15, 23, 28)),
        ("2016-08-12 15:23:28 +0000", utc(2016, 8, 12, 15, 23, 28)),
        ("2016-08-12 15:23:28 +0200", utc(2016, 8, 12, 13, 23, 28)),
        ("2016-08-12 15:23:28 -0530", utc(2016, 8, 12, 20, 53, 28)),
        ("2016-08-12T15:23:28.000Z", utc(2016, 8, 12, 15, 23, 28)),
        ("2016-08-12T15:23:28.250Z", utc(2016, 8, 12, 15, 23, 28, 250000)),
        ("2016-08-12T15:23:28+02:00", utc(2016, 8, 12, 13, 23, 28)),
        ("2016-08-12T01:00:00+02:00", utc(2016, 8, 11, 23, 0, 0)),
    ],
)
def test_parse_timestamp_styles(text: str, instant: datetime) -> None:
    parsed = gitlab.parse_timestamp(text, "created_at")
    assert parsed == instant
    assert parsed.utcoffset() is not None


def test_parse_timestamp_keeps_the_given_offset() -> None:
    parsed = gitlab.parse_timestamp("2016-08-12 15:23:28 +0200", "created_at")
    assert parsed.utcoffset() == timedelta(hours=2)
    assert parsed.tzinfo == timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    "text",
    [
        "2016-08-12 15:23:28",  # no offset: a guess about the sender's clock
        "2016-08-12T15:23:28",
        "2016-08-12",
        "2016-08-12 15:23:28 CEST",
        "2016-13-12 15:23:28 UTC",
        "12/08/2016 15:23",
        "yesterday",
        "",
    ],
)
def test_parse_timestamp_refuses_and_names_the_field(text: str) -> None:
    with raises_naming("builds[3].started_at"):
        gitlab.parse_timestamp(text, "builds[3].started_at")


# ── pipeline hook ────────────────────────────────────────────────────────────────────────────────────────────────


def test_pipeline_hook_success() -> None:
    events = gitlab.parse_delivery("Pipeline Hook", load("pipeline_hook.success.json"))

    run, *jobs = events
    assert run == PipelineRun(
        source="gitlab",
        id="31",
        repo="gitlab-org/gitlab-test",
        workflow="pipeline",
        trigger="pull_request",
        branch="master",
        default_branch="master",
        pr_number=1,
        sha="bcbb5ec396a2c0f828686f14fac9b80b780504f2",
        actor="user1",
        status="success",
        created_at=utc(2016, 8, 12, 15, 23, 28),
        started_at=utc(2016, 8, 12, 15, 25, 26),  # finished_at − duration (63 s)
        finished_at=utc(2016, 8, 12, 15, 26, 29),
        url="http://192.168.64.1:3005/gitlab-org/gitlab-test/-/pipelines/31",
    )
    assert all(isinstance(job, Job) and job.run_id == "31" and job.source == "gitlab" for job in jobs)
    summary = {job.id: (job.name, job.stage, job.status) for job in jobs if isinstance(job, Job)}
    assert summary == {
        "380": ("production", "deploy", "skipped"),
        "377": ("test-image", "test", "success"),
        "378": ("test-build", "test", "success"),
        "376": ("build-image", "build", "success"),
        "379": ("staging", "deploy", "queued"),
    }


def test_pipeline_hook_success_builds_in_detail() -> None:
    jobs = {
        job.id: job for job in gitlab.parse_delivery(None, load("pipeline_hook.success.json")) if isinstance(job, Job)
    }

    production = jobs["380"]
    assert production.runner == ["docker", "gce"]  # the runner's tags, its labels
    assert production.failure_reason is None  # GitLab says script_failure on a skipped job
    assert production.started_at is None and production.finished_at is None

    build = jobs["376"]
    assert build.runner == "shared-runners-manager-6.gitlab.com"  # no tags: the runner's description
    assert build.created_at == utc(2016, 8, 12, 15, 23, 28)
    assert build.started_at == utc(2016, 8, 12, 15, 24, 56)
    assert build.finished_at == utc(2016, 8, 12, 15, 25, 26)

    assert jobs["377"].started_at == utc(2016, 8, 12, 15, 26, 12)
    assert jobs["377"].finished_at is None
    assert jobs["379"].runner is None  # "runner": null


def test_pipeline_hook_subgroup() -> None:
    events = gitlab.parse_delivery(None, load("pipeline_hook.subgroup.go-scm.json"))

    assert len(events) == 2
    run, job = events
    assert isinstance(run, PipelineRun)
    assert run.repo == "group1/group2/group3/grp2repo"
    assert run.workflow == "Pipeline for branch: master"
    assert run.trigger == "pull_request"
    assert run.pr_number == 15
    assert run.actor == "root"
    assert (run.created_at, run.started_at, run.finished_at) == (
        utc(2016, 8, 12, 15, 23, 28),
        utc(2016, 8, 12, 15, 25, 26),
        utc(2016, 8, 12, 15, 26, 29),
    )
    assert run.url == "http://192.168.64.1:3005/group1/group2/group3/grp2repo/-/pipelines/31"
    assert isinstance(job, Job)
    assert (job.id, job.run_id, job.name, job.stage, job.status, job.runner) == (
        "380",
        "31",
        "production",
        "deploy",
        "skipped",
        None,
    )


def test_pipeline_hook_without_object_kind_is_known_by_its_header() -> None:
    payload = load("pipeline_hook.failed.minimal.otel.json")
    assert "object_kind" not in payload

    run = only(gitlab.parse_delivery("Pipeline Hook", payload), PipelineRun)

    assert (run.id, run.repo, run.workflow, run.branch, run.sha) == (
        "1",
        "test/project",
        "Test Pipeline",
        "main",
        "abc123",
    )
    assert run.status == "failure"
    assert run.trigger == "unknown"  # the payload has no `source`
    assert run.created_at == utc(2022, 1, 1, 12)
    assert run.finished_at == utc(2022, 1, 1, 13)
    assert run.started_at is None  # no duration to derive it from
    assert (run.actor, run.default_branch, run.pr_number, run.url) == (None, None, None, None)


def test_pipeline_url_falls_back_to_the_payload_url() -> None:
    payload = load("pipeline_hook.subgroup.go-scm.json")
    del payload["project"]["web_url"]

    run = gitlab.parse_delivery(None, payload)[0]

    assert isinstance(run, PipelineRun)
    assert run.url == "http://example.com/gitlab-org/gitlab-test/-/pipelines/31"


@pytest.mark.parametrize(
    ("gitlab_status", "status", "finished"),
    [
        ("created", "queued", False),
        ("waiting_for_resource", "queued", False),
        ("preparing", "queued", False),
        ("pending", "queued", False),
        ("scheduled", "queued", False),
        ("manual", "queued", False),
        ("running", "in_progress", False),
        ("success", "success", True),
        ("failed", "failure", True),
        ("canceled", "cancelled", True),
        ("canceling", "cancelled", True),
        ("skipped", "skipped", True),
    ],
)
def test_pipeline_statuses(gitlab_status: str, status: str, finished: bool) -> None:
    payload = load("pipeline_hook.success.json")
    payload["object_attributes"]["status"] = gitlab_status

    run = gitlab.parse_delivery(None, payload)[0]

    assert isinstance(run, PipelineRun)
    assert run.status == status
    assert (run.finished_at is not None) == finished


@pytest.mark.parametrize(
    ("source", "trigger"),
    [("push", "push"), ("merge_request_event", "pull_request"), ("schedule", "schedule"), ("web", "manual")],
)
def test_pipeline_triggers(source: str, trigger: str) -> None:
    payload = load("pipeline_hook.subgroup.go-scm.json")
    payload["object_attributes"]["source"] = source

    run = gitlab.parse_delivery(None, payload)[0]

    assert isinstance(run, PipelineRun)
    assert run.trigger == trigger


def test_pipeline_on_a_merge_request_ref_names_its_pr() -> None:
    payload = load("pipeline_hook.failed.minimal.otel.json")
    payload["object_attributes"]["ref"] = "refs/merge-requests/42/head"

    run = gitlab.parse_delivery("Pipeline Hook", payload)[0]

    assert isinstance(run, PipelineRun)
    assert run.pr_number == 42


# ── job hook ─────────────────────────────────────────────────────────────────────────────────────────────────────


def test_job_hook_success() -> None:
    job = only(gitlab.parse_delivery("Job Hook", load("job_hook.success.json")), Job)

    assert job == Job(
        source="gitlab",
        id="3580121225",
        run_id="743121198",
        name="auto_deploy:start",
        stage="coordinated:tag",
        runner=["linux", "docker"],
        status="success",
        attempt=2,  # retries_count 1
        created_at=utc(2023, 1, 10, 13, 50, 2),
        started_at=utc(2023, 1, 10, 13, 50, 5),
        finished_at=utc(2023, 1, 10, 13, 50, 54),
        failure_reason=None,  # "unknown_failure" on a successful job is not a cause
    )
    assert job.started_at is not None and job.started_at - job.created_at == timedelta(seconds=3)  # queue time


def test_job_hook_failed_minimal() -> None:
    job = only(gitlab.parse_delivery(None, load("job_hook.failed.minimal.otel.json")), Job)

    assert (job.id, job.run_id, job.name, job.stage) == ("1978", "2367", "build-job", "build")
    assert job.status == "failure"
    assert job.failure_reason == "script_failure"
    assert job.runner == ["docker", "linux"]
    assert job.created_at == utc(2021, 2, 23, 3, 0)
    assert job.started_at == utc(2021, 2, 23, 3, 1)
    assert job.finished_at == utc(2021, 2, 23, 3, 5)
    assert job.attempt is None


def test_job_hook_legacy_build_shape() -> None:
    job = only(gitlab.parse_delivery(None, load("job_hook.created.legacy-build.json")), Job)

    assert (job.id, job.run_id, job.name, job.stage) == ("1977", "2366", "test", "test")
    assert job.status == "queued"
    assert job.created_at == utc(2021, 2, 23, 2, 41, 37, 886000)
    assert (job.started_at, job.finished_at) == (None, None)
    assert job.failure_reason is None  # script_failure on a job that has not run
    assert job.runner == ["linux", "docker"]


def test_job_runner_description_when_it_has_no_tags() -> None:
    payload = load("job_hook.success.json")
    payload["runner"]["tags"] = []

    job = only(gitlab.parse_delivery(None, payload), Job)

    assert job.runner == "4-blue.shared.runners-manager.gitlab.com/default"


# ── deployment hook ──────────────────────────────────────────────────────────────────────────────────────────────


def test_deployment_hook_success() -> None:
    deployment = only(gitlab.parse_delivery("Deployment Hook", load("deployment_hook.success.json")), Deployment)

    assert deployment == Deployment(
        source="gitlab",
        id="15",
        service="test-deployment-webhooks",
        environment="staging",
        sha="279484c09fbe69ededfced8c1bb6e6d24616b468",  # from commit_url, not the short_sha
        version="1.0.0",
        actor="user1",
        url="http://10.126.0.2:3000/root/test-deployment-webhooks/-/jobs/796",
        started_at=None,
        finished_at=utc(2021, 4, 28, 19, 50),  # 21:50 +0200
        status="success",
    )


def test_deployment_hook_failed() -> None:
    deployment = only(gitlab.parse_delivery(None, load("deployment_hook.failed.zulip.json")), Deployment)

    assert (deployment.id, deployment.service, deployment.environment) == ("988604916", "test", "production")
    assert deployment.sha == "846d8de0b7b3d694954249d2fd5d87fbe8c84e4c"
    assert deployment.status == "failure"
    assert deployment.finished_at == utc(2025, 5, 2, 12, 30, 19)
    assert deployment.started_at is None
    assert deployment.actor == "theofficialvedantjoshi"
    assert deployment.version == "master"  # the ref, which differs from the sha


@pytest.mark.parametrize(("gitlab_status", "status"), [("created", "in_progress"), ("running", "in_progress")])
def test_deployment_hook_running_has_a_start(gitlab_status: str, status: str) -> None:
    payload = load("deployment_hook.success.json")
    payload["status"] = gitlab_status

    deployment = only(gitlab.parse_delivery(None, payload), Deployment)

    assert deployment.status == status
    assert deployment.started_at == utc(2021, 4, 28, 19, 50)
    assert deployment.finished_at is None


def test_deployment_hook_canceled() -> None:
    payload = load("deployment_hook.success.json")
    payload["status"] = "canceled"

    deployment = only(gitlab.parse_delivery(None, payload), Deployment)

    assert deployment.status == "cancelled"
    assert deployment.finished_at == utc(2021, 4, 28, 19, 50)


def test_deployment_hook_short_sha_without_commit_url() -> None:
    payload = load("deployment_hook.success.json")
    del payload["commit_url"]

    deployment = only(gitlab.parse_delivery(None, payload), Deployment)

    assert deployment.sha == "279484c0"


def test_deployment_version_left_out_when_ref_is_the_sha() -> None:
    payload = load("deployment_hook.success.json")
    payload["ref"] = "279484c09fbe69ededfced8c1bb6e6d24616b468"

    deployment = only(gitlab.parse_delivery(None, payload), Deployment)

    assert deployment.version is None


# ── merge request hook ───────────────────────────────────────────────────────────────────────────────────────────


def test_merge_request_hook_opened() -> None:
    pull_request = only(gitlab.parse_delivery(None, load("merge_request_hook.opened.json")), PullRequest)

    assert pull_request == PullRequest(
        source="gitlab",
        repo="gitlabhq/gitlab-test",
        number=1,
        author="user1",  # the actor of an "open" is the author
        opened_at=utc(2013, 12, 3, 17, 23, 34),
        merged_at=None,
        closed_at=None,
        base_branch="master",
        head_sha="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        labels=["API"],
    )


def test_merge_request_hook_merged() -> None:
    pull_request = only(
        gitlab.parse_delivery("Merge Request Hook", load("merge_request_hook.merged.go-scm.json")), PullRequest
    )

    assert (pull_request.repo, pull_request.number) == ("gitlab-org/hello-world", 1)
    assert pull_request.opened_at == utc(2017, 12, 10, 17, 1, 11)
    assert pull_request.merged_at == utc(2017, 12, 10, 17, 8, 7)  # no merged_at: the update that merged it
    assert pull_request.closed_at is None
    assert pull_request.base_branch == "master"
    assert pull_request.head_sha == "c4c79227ed610f1151f05bbc5be33b4f340d39c8"
    assert pull_request.labels == []
    # The merger (sytses) is not known to be the author (author_id 51764): the author stays an id.
    assert pull_request.author == "user-id:51764"


def test_merge_request_actor_is_the_author_when_ids_match() -> None:
    payload = load("merge_request_hook.merged.go-scm.json")
    payload["user"]["id"] = 51764

    pull_request = only(gitlab.parse_delivery(None, payload), PullRequest)

    assert pull_request.author == "sytses"


@pytest.mark.parametrize("path", [("labels",), ("object_attributes", "labels")])
def test_merge_request_labels_from_either_place(path: tuple[str, ...]) -> None:
    payload = _without(load("merge_request_hook.opened.json"), *path)

    pull_request = only(gitlab.parse_delivery(None, payload), PullRequest)

    assert pull_request.labels == ["API"]


def test_merge_request_closed_uses_closed_at_or_last_update() -> None:
    payload = load("merge_request_hook.merged.go-scm.json")
    payload["object_attributes"]["state"] = "closed"

    pull_request = only(gitlab.parse_delivery(None, payload), PullRequest)

    assert pull_request.merged_at is None
    assert pull_request.closed_at == utc(2017, 12, 10, 17, 8, 7)

    payload["object_attributes"]["closed_at"] = "2017-12-10 18:00:00 +0100"
    pull_request = only(gitlab.parse_delivery(None, payload), PullRequest)
    assert pull_request.closed_at == utc(2017, 12, 10, 17, 0, 0)


# ── push and tag push hooks ──────────────────────────────────────────────────────────────────────────────────────


def test_push_hook_one_change_per_commit() -> None:
    changes = gitlab.parse_delivery("Push Hook", load("push_hook.json"))

    assert len(changes) == 2  # total_commits_count says 4; GitLab lists only some
    first, second = changes
    assert first == Change(
        source="gitlab",
        sha="b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
        repo="mike/diaspora",
        authored_at=utc(2011, 12, 12, 12, 27, 31),  # 14:27:31 +02:00
        author="Jordi Mallach",
        message="Merge branch 'some-feature' into 'master'\n\nRelease v1.0.0\n\nSee merge request jsmith/example!1",
    )
    assert isinstance(second, Change)
    assert (second.sha, second.author, second.message) == (
        "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        "GitLab dev user",
        "fixed readme\n",
    )
    assert second.authored_at == utc(2012, 1, 3, 21, 36, 29)


def test_tag_push_hook() -> None:
    change = only(gitlab.parse_delivery(None, load("tag_push_hook.json")), Change)

    assert (change.sha, change.repo, change.author) == (
        "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
        "jsmith/example",
        "John Smith",
    )
    assert change.authored_at == utc(2012, 1, 3, 21, 36, 29)


def test_push_without_commits_yields_nothing() -> None:
    payload = load("tag_push_hook.json")
    payload["commits"] = []
    assert gitlab.parse_delivery(None, payload) == []


# ── broken payloads ──────────────────────────────────────────────────────────────────────────────────────────────


def _without(payload: dict[str, Any], *path: str | int) -> dict[str, Any]:
    broken = copy.deepcopy(payload)
    parent: Any = broken
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    return broken


@pytest.mark.parametrize(
    ("fixture", "path", "field"),
    [
        ("pipeline_hook.success.json", ("object_attributes", "id"), "object_attributes.id"),
        ("pipeline_hook.success.json", ("object_attributes",), "object_attributes"),
        ("pipeline_hook.success.json", ("object_attributes", "created_at"), "object_attributes.created_at"),
        ("pipeline_hook.success.json", ("project", "path_with_namespace"), "project.path_with_namespace"),
        ("pipeline_hook.success.json", ("builds", 1, "created_at"), "builds[1].created_at"),
        ("pipeline_hook.success.json", ("builds", 4, "name"), "builds[4].name"),
        ("job_hook.success.json", ("build_id",), "build_id"),
        ("job_hook.success.json", ("pipeline_id",), "pipeline_id"),
        ("deployment_hook.success.json", ("environment",), "environment"),
        ("deployment_hook.success.json", ("status_changed_at",), "status_changed_at"),
        ("merge_request_hook.opened.json", ("object_attributes", "iid"), "object_attributes.iid"),
        ("merge_request_hook.opened.json", ("object_attributes", "target_branch"), "object_attributes.target_branch"),
        ("push_hook.json", ("commits", 1, "timestamp"), "commits[1].timestamp"),
    ],
)
def test_missing_field_is_named(fixture: str, path: tuple[str | int, ...], field: str) -> None:
    with raises_naming(field):
        gitlab.parse_delivery(None, _without(load(fixture), *path))


def test_missing_pipeline_id_in_header_only_payload() -> None:
    payload = _without(load("pipeline_hook.failed.minimal.otel.json"), "object_attributes", "id")
    with pytest.raises(InputError, match=r"^object_attributes\.id: required field is missing$"):
        gitlab.parse_delivery("Pipeline Hook", payload)


@pytest.mark.parametrize(
    ("fixture", "mutate", "field"),
    [
        (
            "pipeline_hook.success.json",
            lambda p: p["object_attributes"].update(finished_at="soon"),
            "object_attributes.finished_at",
        ),
        (
            "pipeline_hook.success.json",
            lambda p: p["builds"][2].update(started_at="2016-08-12 15:26:12"),
            "builds[2].started_at",
        ),
        (
            "pipeline_hook.success.json",
            lambda p: p["object_attributes"].update(status="exploded"),
            "object_attributes.status",
        ),
        ("job_hook.success.json", lambda p: p.update(build_created_at=1673358602), "build_created_at"),
        (
            "deployment_hook.success.json",
            lambda p: p.update(status_changed_at="2021-04-28 21:50:00 CEST"),
            "status_changed_at",
        ),
        ("deployment_hook.success.json", lambda p: p.update(status="rolled_back"), "status"),
        ("merge_request_hook.opened.json", lambda p: p["object_attributes"].update(iid="one"), "object_attributes.iid"),
        ("push_hook.json", lambda p: p["commits"][0].update(timestamp="2011-12-12"), "commits[0].timestamp"),
    ],
)
def test_bad_value_is_named(fixture: str, mutate: Any, field: str) -> None:
    payload = load(fixture)
    mutate(payload)
    with raises_naming(field):
        gitlab.parse_delivery(None, payload)


def test_value_the_model_refuses_is_an_input_error() -> None:
    payload = load("merge_request_hook.opened.json")
    payload["object_attributes"]["iid"] = 2**40
    with pytest.raises(InputError, match="number"):
        gitlab.parse_delivery(None, payload)


# ── REST API objects ─────────────────────────────────────────────────────────────────────────────────────────────

API_PIPELINE: dict[str, Any] = {
    "id": 46,
    "iid": 11,
    "project_id": 1,
    "status": "success",
    "source": "push",
    "ref": "main",
    "sha": "a91957a858320c0e17f3a0eca7cfacbff50ea29a",
    "user": {"id": 1, "name": "Administrator", "username": "root"},
    "created_at": "2016-08-11T11:28:34.085Z",
    "updated_at": "2016-08-11T11:32:35.169Z",
    "started_at": "2016-08-11T11:29:00.000+02:00",
    "finished_at": "2016-08-11T11:32:35.145Z",
    "duration": 123.65,
    "web_url": "https://example.com/foo/bar/pipelines/46",
}


def test_run_from_api_pipeline() -> None:
    run = gitlab.run_from_api_pipeline(API_PIPELINE, "foo/bar", "main")

    assert run == PipelineRun(
        source="gitlab",
        id="46",
        repo="foo/bar",
        workflow="pipeline",
        trigger="push",
        branch="main",
        default_branch="main",
        sha="a91957a858320c0e17f3a0eca7cfacbff50ea29a",
        actor="root",
        status="success",
        created_at=utc(2016, 8, 11, 11, 28, 34, 85000),
        started_at=utc(2016, 8, 11, 9, 29),  # given, so not derived from duration
        finished_at=utc(2016, 8, 11, 11, 32, 35, 145000),
        url="https://example.com/foo/bar/pipelines/46",
    )


def test_run_from_api_pipeline_on_a_merge_request_ref() -> None:
    pipeline = {**API_PIPELINE, "ref": "refs/merge-requests/7/head", "source": "merge_request_event"}

    run = gitlab.run_from_api_pipeline(pipeline, "foo/bar", "main")

    assert (run.pr_number, run.trigger) == (7, "pull_request")


def test_run_from_api_pipeline_names_missing_field() -> None:
    with raises_naming("sha"):
        gitlab.run_from_api_pipeline(_without(API_PIPELINE, "sha"), "foo/bar", None)


API_JOB: dict[str, Any] = {
    "id": 7,
    "name": "rspec:other",
    "stage": "test",
    "status": "failed",
    "failure_reason": "runner_system_failure",
    "created_at": "2015-12-24T15:51:21.727Z",
    "started_at": "2015-12-24T17:54:24.729Z",
    "finished_at": "2015-12-24T17:54:24.921Z",
    "duration": 0.192,
    "pipeline": {"id": 6, "project_id": 1, "ref": "main", "status": "pending"},
    "runner": {"id": 32, "description": "shared-runners-manager-1", "is_shared": True},
    "tag_list": ["docker runner", "linux"],
}


def test_job_from_api_job() -> None:
    job = gitlab.job_from_api_job(API_JOB)

    assert job == Job(
        source="gitlab",
        id="7",
        run_id="6",
        name="rspec:other",
        stage="test",
        runner=["docker runner", "linux"],
        status="failure",
        created_at=utc(2015, 12, 24, 15, 51, 21, 727000),
        started_at=utc(2015, 12, 24, 17, 54, 24, 729000),
        finished_at=utc(2015, 12, 24, 17, 54, 24, 921000),
        failure_reason="runner_system_failure",
    )


def test_job_from_api_job_without_tags_or_runner() -> None:
    job = gitlab.job_from_api_job({**API_JOB, "tag_list": [], "status": "pending", "runner": None})

    assert (job.runner, job.status, job.finished_at, job.failure_reason) == (None, "queued", None, None)
    with raises_naming("pipeline"):
        gitlab.job_from_api_job(_without(API_JOB, "pipeline"))


API_DEPLOYMENT: dict[str, Any] = {
    "id": 42,
    "iid": 2,
    "ref": "v2.1.0",
    "sha": "a91957a858320c0e17f3a0eca7cfacbff50ea29a",
    "status": "success",
    "created_at": "2016-08-11T07:36:40.222Z",
    "updated_at": "2016-08-11T07:38:12.414Z",
    "user": {"id": 1, "username": "root"},
    "environment": {"id": 9, "name": "production"},
    "deployable": {
        "id": 14,
        "status": "success",
        "started_at": "2016-08-11T09:36:50.000+02:00",
        "finished_at": "2016-08-11T07:38:10.000Z",
        "web_url": "https://example.com/foo/bar/-/jobs/14",
    },
}


def test_deployment_from_api() -> None:
    deployment = gitlab.deployment_from_api(API_DEPLOYMENT, "checkout")

    assert deployment == Deployment(
        source="gitlab",
        id="42",
        service="checkout",
        environment="production",
        sha="a91957a858320c0e17f3a0eca7cfacbff50ea29a",
        version="v2.1.0",
        actor="root",
        url="https://example.com/foo/bar/-/jobs/14",
        started_at=utc(2016, 8, 11, 7, 36, 50),
        finished_at=utc(2016, 8, 11, 7, 38, 10),
        status="success",
    )


def test_deployment_from_api_prefers_its_own_finished_at_then_its_update() -> None:
    with_own = {**API_DEPLOYMENT, "finished_at": "2016-08-11T07:39:00Z"}
    assert gitlab.deployment_from_api(with_own, "checkout").finished_at == utc(2016, 8, 11, 7, 39)

    no_job = {**API_DEPLOYMENT, "status": "failed", "deployable": None}
    deployment = gitlab.deployment_from_api(no_job, "checkout")
    assert (deployment.status, deployment.finished_at, deployment.url) == (
        "failure",
        utc(2016, 8, 11, 7, 38, 12, 414000),
        None,
    )


API_MERGE_REQUEST: dict[str, Any] = {
    "id": 1,
    "iid": 12,
    "state": "merged",
    "created_at": "2017-04-29T08:46:00Z",
    "updated_at": "2017-04-29T10:00:00Z",
    "merged_at": "2017-04-29T09:58:00.000+02:00",
    "closed_at": None,
    "target_branch": "main",
    "source_branch": "feature",
    "author": {"id": 5, "username": "ada"},
    "sha": "8888888888888888888888888888888888888888",
    "labels": ["bug", "backend"],
}


def test_pull_request_from_api_merge_request() -> None:
    pull_request = gitlab.pull_request_from_api_merge_request(API_MERGE_REQUEST, "foo/bar")

    assert pull_request == PullRequest(
        source="gitlab",
        repo="foo/bar",
        number=12,
        author="ada",
        opened_at=utc(2017, 4, 29, 8, 46),
        merged_at=utc(2017, 4, 29, 7, 58),
        base_branch="main",
        head_sha="8888888888888888888888888888888888888888",
        labels=["bug", "backend"],
    )


def test_pull_request_from_api_with_label_details_and_no_author() -> None:
    detailed = {**API_MERGE_REQUEST, "labels": [{"id": 1, "title": "bug"}]}
    assert gitlab.pull_request_from_api_merge_request(detailed, "foo/bar").labels == ["bug"]

    with raises_naming("author"):
        gitlab.pull_request_from_api_merge_request(_without(API_MERGE_REQUEST, "author"), "foo/bar")

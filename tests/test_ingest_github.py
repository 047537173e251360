"""GitHub webhook deliveries → canonical events, checked against real payloads from /work/shared/fixtures/github.

Every fixture file is parsed by a test below that asserts values read from that file; a guard test fails when a
fixture is added without a test naming it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from shipscope.errors import InputError
from shipscope.events import Change, Deployment, Event, Job, PipelineRun, PullRequest, Step
from shipscope.ingest.github import (
    HANDLED_EVENTS,
    SOURCE,
    change_from_api_commit,
    deployment_event,
    job_events,
    parse_delivery,
    pull_request_event,
    run_from_workflow_run,
)
from tests.conftest import FIXTURES

GITHUB_FIXTURES = FIXTURES / "github"
_E = TypeVar("_E")


def load(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((GITHUB_FIXTURES / name).read_text())
    return payload


def event_name(fixture: str) -> str:
    """The X-GitHub-Event header a fixture was delivered with: its file name up to the first dot."""
    return fixture.split(".", 1)[0]


def deliver(name: str) -> list[Event]:
    return parse_delivery(event_name(name), load(name))


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def only(events: list[Event], kind: type[_E]) -> _E:
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, kind)
    return event


# --- workflow_run ---------------------------------------------------------------------------------------------


def test_completed_workflow_run() -> None:
    run = only(deliver("workflow_run.completed.success.json"), PipelineRun)
    assert run.source == SOURCE == "github"
    assert (run.id, run.attempt) == ("289782451", 1)
    assert run.repo == "octo-org/octo-repo"
    assert run.workflow == ".github/workflows/test.yml"  # the run's name is "", so its path names it
    assert run.trigger == "repository_dispatch"
    assert (run.branch, run.default_branch) == ("master", "master")
    assert run.sha == "3484a3fb816e0859fd6e1cea078d76385ff50625"
    assert run.actor == "Codertocat"
    assert run.status == "success"
    assert run.pr_number is None
    assert run.created_at == utc(2020, 10, 5, 16, 33, 24)
    assert run.started_at == utc(2020, 10, 5, 16, 33, 49)
    assert run.finished_at == utc(2020, 10, 5, 16, 33, 49)
    assert run.finished_at - run.created_at == timedelta(seconds=25)
    assert run.url == "https://github.com/octo-org/octo-repo/actions/runs/289782451"


def test_workflow_run_with_pull_requests_takes_the_first_pr_number() -> None:
    run = only(deliver("workflow_run.completed.with-pull-requests.json"), PipelineRun)
    assert run.pr_number == 2
    assert run.status == "success"


def test_requested_workflow_run_is_queued_without_start_or_finish() -> None:
    run = only(deliver("workflow_run.requested.json"), PipelineRun)
    assert run.status == "queued"
    assert run.created_at == utc(2020, 10, 5, 16, 33, 24)
    # run_started_at is filled while queued, but nothing has started yet
    assert run.started_at is None
    assert run.finished_at is None


def test_run_awaiting_approval_is_queued_not_failed() -> None:
    payload = load("workflow_run.requested.with-conclusion-action_required.json")
    assert (payload["workflow_run"]["status"], payload["workflow_run"]["conclusion"]) == (
        "completed",
        "action_required",
    )
    run = only(parse_delivery("workflow_run", payload), PipelineRun)
    assert run.status == "queued"
    assert run.finished_at is None


def test_workflow_run_converter_is_the_webhook_mapping() -> None:
    payload = load("workflow_run.completed.success.json")
    run = run_from_workflow_run(payload["workflow_run"], payload["repository"])
    assert run == only(parse_delivery("workflow_run", payload), PipelineRun)


def test_workflow_run_names_itself_by_name_when_it_has_one() -> None:
    payload = load("workflow_run.completed.success.json")
    payload["workflow_run"]["name"] = payload["workflow"]["name"]
    assert run_from_workflow_run(payload["workflow_run"], payload["repository"]).workflow == "test"


@pytest.mark.parametrize(
    ("conclusion", "status"),
    [
        ("failure", "failure"),
        ("timed_out", "failure"),
        ("startup_failure", "failure"),
        ("neutral", "success"),
        ("cancelled", "cancelled"),
        ("stale", "cancelled"),
        ("skipped", "skipped"),
    ],
)
def test_completed_run_status_follows_its_conclusion(conclusion: str, status: str) -> None:
    payload = load("workflow_run.completed.success.json")
    payload["workflow_run"]["conclusion"] = conclusion
    assert only(parse_delivery("workflow_run", payload), PipelineRun).status == status


def test_in_progress_run_ignores_a_conclusion() -> None:
    payload = load("workflow_run.completed.success.json")
    payload["workflow_run"]["status"] = "in_progress"
    run = only(parse_delivery("workflow_run", payload), PipelineRun)
    assert run.status == "in_progress"
    assert run.started_at == utc(2020, 10, 5, 16, 33, 49)
    assert run.finished_at is None


# --- workflow_job ---------------------------------------------------------------------------------------------


def split(events: Sequence[Event]) -> tuple[Job, list[Step]]:
    job, *steps = events
    assert isinstance(job, Job)
    assert all(isinstance(step, Step) for step in steps)
    return job, [step for step in steps if isinstance(step, Step)]


def test_failed_job_with_its_steps() -> None:
    job, steps = split(deliver("workflow_job.completed.failure.json"))
    assert (job.id, job.run_id, job.name, job.attempt) == ("289782451", "2202229078", "linters", 1)
    assert job.runner == ["ubuntu-latest"]
    assert job.status == "failure"
    assert job.failure_reason == "failure"
    assert job.created_at == utc(2021, 8, 5, 10, 33, 58)
    assert job.started_at is not None and job.finished_at is not None
    assert job.started_at - job.created_at == timedelta(minutes=1)  # queue time
    assert job.finished_at - job.started_at == timedelta(minutes=3, seconds=18)
    assert len(steps) == 12
    assert [step.number for step in steps] == [1, 2, 3, 4, 5, 6, 7, 8, 14, 15, 16, 17]
    assert {step.job_id for step in steps} == {"289782451"}
    failed = [step for step in steps if step.status == "failure"]
    assert [step.name for step in failed] == ["Run yarn run format-check"]
    skipped = [step.name for step in steps if step.status == "skipped"]
    assert skipped == ["Post Run actions/cache@v2", "Post Run actions/setup-node@v2"]
    install = next(step for step in steps if step.name == "Run yarn install")
    assert install.finished_at - install.started_at == timedelta(seconds=10)
    assert install.started_at == utc(2021, 8, 5, 10, 26, 15)


def test_successful_job_with_its_steps() -> None:
    job, steps = split(deliver("workflow_job.completed.success.json"))
    assert job.status == "success"
    assert job.failure_reason is None
    assert job.finished_at == utc(2021, 8, 5, 10, 38, 16)
    assert [step.name for step in steps] == [
        "Set up job",
        "Checkout Repo",
        "Install Ruby",
        "Run Rubocop",
        "Run Brakeman",
        "Run Bundle Audit",
        "Post Checkout Repo",
        "Complete job",
    ]
    assert {step.status for step in steps} == {"success"}
    rubocop = steps[3]
    assert rubocop.finished_at - rubocop.started_at == timedelta(seconds=6)


def test_running_job_keeps_no_unfinished_step() -> None:
    job, steps = split(deliver("workflow_job.in_progress.json"))
    assert (job.name, job.status) == ("Analyze (javascript)", "in_progress")
    assert job.started_at == utc(2021, 9, 13, 2, 21, 13)
    assert job.finished_at is None
    assert job.failure_reason is None
    assert steps == []  # "Set up job" has started but not completed


def test_running_job_keeps_only_its_completed_steps() -> None:
    job, steps = split(deliver("workflow_job.in_progress.with-queued-steps.json"))
    assert (job.id, job.run_id) == ("14541957942", "5373506832")
    assert job.created_at == utc(2023, 6, 26, 3, 31, 29)
    assert job.started_at is not None
    assert job.started_at - job.created_at == timedelta(seconds=7)
    assert [(step.number, step.name) for step in steps] == [
        (1, "Set up job"),
        (2, "Run actions/checkout@2541b1294d2704b0964813337f33b291d3f8596b"),
    ]
    assert steps[0].started_at == utc(2023, 6, 26, 3, 31, 35)  # "…35.000Z" with milliseconds
    assert steps[0].finished_at - steps[0].started_at == timedelta(seconds=1)


def test_queued_job_has_not_started() -> None:
    job, steps = split(deliver("workflow_job.queued.json"))
    assert (job.name, job.status) == ("update", "queued")
    assert job.created_at == utc(2021, 9, 13, 2, 21, 13)
    assert job.started_at is None  # GitHub fills it with the creation time while queued
    assert steps == []


def test_job_waiting_for_an_environment_is_queued_on_its_labels() -> None:
    job, steps = split(deliver("workflow_job.waiting.json"))
    assert (job.id, job.run_id, job.name) == ("12877621891", "4747967848", "test")
    assert job.status == "queued"
    assert job.runner == ["self-hosted", "k8s"]
    assert job.created_at == utc(2023, 4, 19, 21, 12, 12)
    assert steps == []


def test_job_without_labels_runs_on_its_runner_group() -> None:
    payload = load("workflow_job.completed.success.json")
    payload["workflow_job"]["labels"] = []
    job, _ = split(job_events(payload["workflow_job"]))
    assert job.runner == "GitHub Actions"


def test_job_converter_is_the_webhook_mapping() -> None:
    payload = load("workflow_job.completed.failure.json")
    assert job_events(payload["workflow_job"]) == parse_delivery("workflow_job", payload)


def test_job_timestamps_keep_their_offset() -> None:
    payload = load("workflow_job.completed.success.json")
    payload["workflow_job"]["started_at"] = "2021-08-05T12:34:58+02:00"
    job, _ = split(parse_delivery("workflow_job", payload))
    assert job.started_at is not None and job.finished_at is not None
    assert job.started_at.utcoffset() == timedelta(hours=2)
    assert job.started_at == utc(2021, 8, 5, 10, 34, 58)
    assert job.finished_at - job.started_at == timedelta(minutes=3, seconds=18)


@pytest.mark.parametrize("conclusion", ["timed_out", "cancelled"])
def test_job_failure_reason_is_its_conclusion(conclusion: str) -> None:
    payload = load("workflow_job.completed.failure.json")
    payload["workflow_job"]["conclusion"] = conclusion
    job, _ = split(parse_delivery("workflow_job", payload))
    assert job.failure_reason == conclusion


# --- deployment and deployment_status -------------------------------------------------------------------------


def test_created_deployment_is_in_progress() -> None:
    deployment = only(deliver("deployment.created.json"), Deployment)
    assert deployment.id == "145988746"
    assert deployment.service == "Hello-World"
    assert deployment.environment == "production"
    assert deployment.sha == "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
    assert deployment.version is None  # ref "master" is a branch, not a release
    assert deployment.actor == "Codertocat"
    assert deployment.url == "https://api.github.com/repos/Codertocat/Hello-World/deployments/145988746"
    assert deployment.status == "in_progress"
    assert deployment.started_at == utc(2019, 5, 15, 15, 20, 53)
    assert deployment.finished_at is None


def test_created_pages_deployment() -> None:
    deployment = only(deliver("deployment.created.gh-pages.json"), Deployment)
    assert (deployment.id, deployment.environment) == ("145988746", "github-pages")
    assert deployment.actor == "github-pages[bot]"
    assert deployment.version is None  # ref "gh-pages"
    assert deployment.started_at == utc(2022, 1, 3, 1, 28, 30)
    assert deployment.status == "in_progress"


def test_successful_deployment_status() -> None:
    deployment = only(deliver("deployment_status.success.json"), Deployment)
    assert (deployment.id, deployment.environment) == ("145988746", "production")
    assert deployment.status == "success"
    assert deployment.started_at == utc(2019, 5, 15, 15, 20, 53)
    assert deployment.finished_at == utc(2019, 5, 15, 15, 20, 55)
    assert deployment.finished_at - deployment.started_at == timedelta(seconds=2)


def test_failed_deployment_status_without_action_field() -> None:
    payload = load("deployment_status.failure.no-action.zulip.json")
    assert "action" not in payload
    deployment = only(parse_delivery("deployment_status", payload), Deployment)
    assert deployment.id == "710692"
    assert deployment.service == "public-repo"
    assert deployment.environment == "production"
    assert deployment.sha == "9049f1265b7d61be4a8904a9a27120d2064dab3b"
    assert deployment.actor == "baxterthehacker"
    assert deployment.status == "failure"
    assert deployment.started_at is not None and deployment.finished_at is not None
    assert deployment.finished_at - deployment.started_at == timedelta(seconds=1)
    assert deployment.finished_at == utc(2015, 5, 5, 23, 40, 39)


def test_in_progress_deployment_status() -> None:
    deployment = only(deliver("deployment_status.in_progress.gh-pages.json"), Deployment)
    assert (deployment.id, deployment.environment) == ("145988746", "github-pages")
    assert deployment.status == "in_progress"
    assert deployment.finished_at is None


def test_error_state_is_a_failed_deployment() -> None:
    payload = load("deployment_status.success.json")
    payload["deployment_status"]["state"] = "error"
    deployment = only(parse_delivery("deployment_status", payload), Deployment)
    assert deployment.status == "failure"
    assert deployment.finished_at == utc(2019, 5, 15, 15, 20, 55)


def test_inactive_deployment_status_changes_nothing() -> None:
    payload = load("deployment_status.success.json")
    payload["deployment_status"]["state"] = "inactive"
    assert parse_delivery("deployment_status", payload) == []
    with pytest.raises(InputError, match=r"deployment_status\.state"):
        deployment_event(payload["deployment"], payload["repository"], payload["deployment_status"])


def test_deployment_names_its_service_in_its_payload() -> None:
    payload = load("deployment.created.json")
    payload["deployment"]["payload"] = {"service": "billing"}
    assert only(parse_delivery("deployment", payload), Deployment).service == "billing"


@pytest.mark.parametrize(("ref", "version"), [("refs/tags/v1.4.0", "v1.4.0"), ("2.0.1", "2.0.1"), ("main", None)])
def test_deployment_version_is_a_release_ref(ref: str, version: str | None) -> None:
    payload = load("deployment.created.json")
    payload["deployment"]["ref"] = ref
    assert only(parse_delivery("deployment", payload), Deployment).version == version


def test_deployment_converter_is_the_webhook_mapping() -> None:
    payload = load("deployment_status.success.json")
    converted = deployment_event(payload["deployment"], payload["repository"], payload["deployment_status"])
    assert converted == only(parse_delivery("deployment_status", payload), Deployment)
    assert deployment_event(payload["deployment"], payload["repository"]).status == "in_progress"


# --- pull_request ---------------------------------------------------------------------------------------------


def test_opened_pull_request() -> None:
    pull_request = only(deliver("pull_request.opened.json"), PullRequest)
    assert (pull_request.repo, pull_request.number) == ("Codertocat/Hello-World", 2)
    assert pull_request.author == "Codertocat"
    assert pull_request.opened_at == utc(2019, 5, 15, 15, 20, 33)
    assert pull_request.merged_at is None
    assert pull_request.closed_at is None
    assert pull_request.base_branch == "master"
    assert pull_request.head_sha == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    assert pull_request.labels == ["bug"]


def test_synchronized_pull_request() -> None:
    pull_request = only(deliver("pull_request.synchronize.json"), PullRequest)
    assert pull_request.number == 2
    assert pull_request.head_sha == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    assert pull_request.closed_at is None


def test_closed_unmerged_pull_request() -> None:
    pull_request = only(deliver("pull_request.closed.not-merged.json"), PullRequest)
    assert pull_request.merged_at is None
    assert pull_request.closed_at == utc(2019, 5, 15, 15, 21, 18)
    assert pull_request.closed_at - pull_request.opened_at == timedelta(seconds=45)
    assert pull_request.labels == ["bug"]


def test_closed_unmerged_pull_request_without_labels() -> None:
    pull_request = only(deliver("pull_request.closed.not-merged.go-scm.json"), PullRequest)
    assert (pull_request.repo, pull_request.number) == ("bradrydzewski/drone-test-go", 1)
    assert pull_request.author == "bradrydzewski"
    assert pull_request.base_branch == "bradrydzewski-patch-1"
    assert pull_request.head_sha == "d2b75aa7797ec26b088fa2dd527e9d2c052fcedd"
    assert pull_request.labels == []
    assert pull_request.merged_at is None
    assert pull_request.opened_at == utc(2018, 6, 22, 23, 54, 9)
    assert pull_request.closed_at == utc(2018, 6, 25, 19, 12, 58)


def test_pull_request_without_labels_key_has_unknown_labels() -> None:
    payload = load("pull_request.opened.json")
    del payload["pull_request"]["labels"]
    assert pull_request_event(payload["pull_request"], payload["repository"]).labels is None


def test_merged_pull_request() -> None:
    payload = load("pull_request.closed.not-merged.json")
    payload["pull_request"]["merged_at"] = payload["pull_request"]["closed_at"]
    pull_request = pull_request_event(payload["pull_request"], payload["repository"])
    assert pull_request.merged_at == utc(2019, 5, 15, 15, 21, 18)


# --- push -----------------------------------------------------------------------------------------------------


def test_push_of_a_new_branch_records_its_commit() -> None:
    change = only(deliver("push.new-branch.json"), Change)
    assert change.sha == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    assert change.repo == "Codertocat/Hello-World"
    assert change.authored_at == utc(2019, 5, 15, 15, 19, 25)
    assert change.author == "Codertocat"
    assert change.message == "Initial commit"


def test_deleted_tag_push_has_no_changes() -> None:
    payload = load("push.tag.json")
    assert (payload["deleted"], payload["commits"]) == (True, [])
    assert parse_delivery("push", payload) == []


def test_push_keeps_commit_offsets_and_authors() -> None:
    payload = load("push.new-branch.json")
    first = payload["commits"][0]
    second = copy.deepcopy(first)
    second["id"] = "0" * 39 + "1"
    second["timestamp"] = "2019-05-15T08:19:25-07:00"
    del second["author"]["username"]  # a commit author without a GitHub account
    second["author"]["name"] = "Mona Lisa"
    payload["commits"].append(second)
    first_change, second_change = parse_delivery("push", payload)
    assert isinstance(first_change, Change) and isinstance(second_change, Change)
    assert second_change.authored_at.utcoffset() == timedelta(hours=-7)
    assert second_change.authored_at == first_change.authored_at  # the same instant, 15:19:25Z
    assert [first_change.author, second_change.author] == ["Codertocat", "Mona Lisa"]


def test_api_commit_becomes_a_change() -> None:
    # The REST commits item shape (GET /repos/{owner}/{repo}/commits), filled with push.new-branch.json's commit.
    pushed = load("push.new-branch.json")["commits"][0]
    commit: dict[str, Any] = {
        "sha": pushed["id"],
        "commit": {
            "author": {"name": "Codertocat", "email": pushed["author"]["email"], "date": "2019-05-15T17:19:25+02:00"},
            "committer": {"name": "Codertocat", "email": pushed["author"]["email"], "date": pushed["timestamp"]},
            "message": pushed["message"],
        },
        "author": {"login": "Codertocat"},
    }
    change = change_from_api_commit(commit, "Codertocat/Hello-World")
    assert change.sha == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    assert change.authored_at.utcoffset() == timedelta(hours=2)
    assert change.authored_at == change.committed_at == utc(2019, 5, 15, 15, 19, 25)
    assert (change.author, change.message, change.source) == ("Codertocat", "Initial commit", "github")
    commit["author"] = None  # the commit's email maps to no GitHub account
    assert change_from_api_commit(commit, "Codertocat/Hello-World").author == "Codertocat"
    del commit["commit"]["author"]["date"]
    with pytest.raises(InputError, match=r"commit\.commit\.author\.date: required field is missing"):
        change_from_api_commit(commit, "Codertocat/Hello-World")


# --- check_suite and check_run --------------------------------------------------------------------------------


def test_check_run_of_github_actions_is_left_to_workflow_job() -> None:
    payload = load("check_run.completed.failure.json")
    assert payload["check_run"]["app"]["slug"] == "github-actions"
    assert parse_delivery("check_run", payload) == []


def test_completed_check_run_of_another_app_is_a_job() -> None:
    job = only(deliver("check_run.completed.success.json"), Job)
    assert job.id == "check_run:128620228"
    assert job.run_id == "check_suite:118578147"
    assert job.name == "Octocoders-linter"
    assert job.status == "success"
    assert job.created_at == job.started_at == utc(2019, 5, 15, 15, 21, 12)
    assert job.finished_at == utc(2019, 5, 15, 15, 21, 12)
    assert job.failure_reason is None


def test_created_check_run_is_queued() -> None:
    job = only(deliver("check_run.created.json"), Job)
    assert (job.id, job.status) == ("check_run:128620228", "queued")
    assert job.created_at == utc(2019, 5, 15, 15, 21, 12)
    assert job.started_at is None
    assert job.finished_at is None


def test_completed_check_suite_is_a_pipeline_run() -> None:
    run = only(deliver("check_suite.completed.json"), PipelineRun)
    assert run.id == "check_suite:118578147"
    assert run.workflow == "octocoders-linter"
    assert run.trigger == "check_suite"
    assert run.repo == "Codertocat/Hello-World"
    assert (run.branch, run.default_branch) == ("changes", "master")
    assert run.sha == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
    assert run.pr_number == 2
    assert run.status == "success"
    assert run.created_at == utc(2019, 5, 15, 15, 20, 31)
    assert run.finished_at is not None
    assert run.finished_at - run.created_at == timedelta(seconds=43)


def test_requested_check_suite_is_queued() -> None:
    run = only(deliver("check_suite.requested.json"), PipelineRun)
    assert run.id == "check_suite:118578174"
    assert (run.branch, run.sha) == ("master", "f95f852bd8fca8fcc58a9a2d6c842781e32a215e")
    assert run.status == "queued"
    assert run.pr_number is None
    assert run.finished_at is None


def test_check_suite_of_github_actions_is_left_to_workflow_run() -> None:
    payload = load("check_suite.completed.json")
    payload["check_suite"]["app"]["slug"] = "github-actions"
    assert parse_delivery("check_suite", payload) == []


# --- refusals and ignored events ------------------------------------------------------------------------------


def test_ping_and_unknown_events_give_nothing() -> None:
    assert "ping" in HANDLED_EVENTS
    assert parse_delivery("ping", {"zen": "Keep it logically awesome.", "hook_id": 1}) == []
    assert "issues" not in HANDLED_EVENTS
    assert parse_delivery("issues", {"action": "opened"}) == []


def test_handled_events() -> None:
    assert HANDLED_EVENTS == {
        "workflow_run",
        "workflow_job",
        "deployment",
        "deployment_status",
        "pull_request",
        "push",
        "check_run",
        "check_suite",
        "ping",
    }


def broken(name: str, edit: str, value: object = None) -> dict[str, Any]:
    """The fixture with the field at dotted path ``edit`` set to ``value`` (deleted when value is None)."""
    payload = load(name)
    *parents, last = edit.split(".")
    target: Any = payload
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return payload


@pytest.mark.parametrize(
    ("name", "edit", "value", "message"),
    [
        ("workflow_job.completed.success.json", "workflow_job.id", None, r"^workflow_job\.id: required field"),
        (
            "workflow_job.completed.success.json",
            "workflow_job.started_at",
            "2021-08-05T10:34:58",
            r"^workflow_job\.started_at: expected an ISO 8601 timestamp with a UTC offset, got '2021-08-05T10:34:58'",
        ),
        (
            "workflow_job.completed.success.json",
            "workflow_job.completed_at",
            "yesterday",
            r"^workflow_job\.completed_at: expected an ISO 8601 timestamp",
        ),
        (
            "workflow_job.completed.success.json",
            "workflow_job.steps.2.completed_at",
            "2021-08-05 10:26:15",
            r"^workflow_job\.steps\[2\]\.completed_at: expected an ISO 8601 timestamp",
        ),
        ("workflow_job.completed.success.json", "workflow_job.conclusion", "exploded", r"^workflow_job\.conclusion"),
        ("workflow_job.completed.success.json", "workflow_job.status", "sleeping", r"^workflow_job\.status"),
        ("workflow_job.queued.json", "workflow_job", [], r"^workflow_job: expected an object, got an array"),
        ("workflow_run.completed.success.json", "workflow_run.head_sha", None, r"^workflow_run\.head_sha"),
        ("workflow_run.completed.success.json", "workflow_run.run_attempt", 0, r"^workflow_run\.run_attempt"),
        ("workflow_run.completed.success.json", "workflow_run.id", True, r"^workflow_run\.id: expected a numeric"),
        ("workflow_run.completed.success.json", "repository.full_name", None, r"^repository\.full_name"),
        ("workflow_run.completed.success.json", "repository", None, r"^repository: required field is missing"),
        ("deployment.created.json", "deployment.sha", None, r"^deployment\.sha: required field"),
        ("deployment_status.success.json", "deployment_status.state", "exploded", r"^deployment_status\.state"),
        ("pull_request.opened.json", "pull_request.user", None, r"^pull_request\.user: required field"),
        ("pull_request.opened.json", "pull_request.number", "2", r"^pull_request\.number: expected an integer"),
        ("push.new-branch.json", "commits.0.timestamp", None, r"^commits\[0\]\.timestamp: required field"),
        ("push.new-branch.json", "commits", {"id": "x"}, r"^commits: expected an array, got an object"),
        ("check_suite.completed.json", "check_suite.head_branch", None, r"^check_suite\.head_branch"),
        ("check_run.completed.success.json", "check_run.check_suite", None, r"^check_run\.check_suite: required"),
    ],
)
def test_broken_payload_names_the_field(name: str, edit: str, value: object, message: str) -> None:
    payload = broken(name, edit, value)
    with pytest.raises(InputError, match=message):
        parse_delivery(event_name(name), payload)


def test_payload_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InputError, match=r"^payload: expected an object, got an array"):
        parse_delivery("workflow_run", [])  # type: ignore[arg-type]


def test_every_fixture_parses_into_github_events() -> None:
    for path in sorted(GITHUB_FIXTURES.glob("*.json")):
        events = parse_delivery(event_name(path.name), json.loads(path.read_text()))
        assert all(event.source == "github" for event in events), path.name
        for event in events:
            for value in event.__dict__.values():
                if isinstance(value, datetime):
                    assert value.utcoffset() is not None


def test_every_fixture_has_a_test_of_its_values() -> None:
    on_disk = {path.name for path in GITHUB_FIXTURES.glob("*.json")}
    assert on_disk, f"no GitHub fixtures in {GITHUB_FIXTURES}"
    this_file = Path(__file__).read_text()
    assert {name for name in on_disk if f'"{name}"' not in this_file} == set()

"""Webhooks and report uploads over HTTP, on both backends: verification, idempotency, order, and bad input that
leaves nothing in the database but a record of the rejection."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from shipscope.config import Settings
from shipscope.ingest.registry import decode
from shipscope.store import Store, schema
from shipscope.web.app import create_app
from tests.conftest import FIXTURES

SECRET = "it's a secret to everybody"
OLD_SECRET = "rotated-out-next-week"
GITLAB_TOKEN = "gl-hook-token"


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    settings = Settings(
        db=db_url,
        github_webhook_secrets=f"{SECRET},{OLD_SECRET}",
        gitlab_webhook_tokens=GITLAB_TOKEN,
        max_body_bytes=10 * 1024 * 1024,
        # The threshold loop's first round writes its state cursor at a moment of its own; these tests count rows.
        alert_interval_seconds=0,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def store_of(client: TestClient) -> Store:
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    return store


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github(client: TestClient, event: str, body: bytes, delivery: str = "d-1", **headers: str) -> Any:
    return client.post(
        "/webhooks/github",
        content=body,
        headers={
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sign(body),
            "Content-Type": "application/json",
            **headers,
        },
    )


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def counts(client: TestClient) -> dict[str, int]:
    return {name: count for name, count in store_of(client).counts().items() if count}


def test_a_signed_workflow_job_is_stored_with_its_steps(client: TestClient) -> None:
    response = github(client, "workflow_job", fixture("github/workflow_job.completed.success.json"))
    assert response.status_code == 200, response.text
    assert response.json()["event"] == "workflow_job"
    assert counts(client) == {"raw_events": 1, "jobs": 1, "steps": 8}
    (journal,) = store_of(client).rows(schema.raw_events)
    assert journal["delivery_id"] == "d-1" and journal["source"] == "github"
    assert bytes(journal["body"]) == fixture("github/workflow_job.completed.success.json")


def test_the_rotated_secret_is_accepted_too(client: TestClient) -> None:
    body = fixture("github/push.new-branch.json")
    response = client.post(
        "/webhooks/github",
        content=body,
        headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": "p1", "X-Hub-Signature-256": sign(body, OLD_SECRET)},
    )
    assert response.status_code == 200
    assert counts(client)["changes"] == 1


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        (None, "missing X-Hub-Signature-256 header"),
        ("sha256=" + "0" * 64, "does not match the body under any configured secret"),
        ("sha1=abc", "must be sha256=<hex digest>"),
    ],
)
def test_a_wrong_or_missing_signature_is_401_and_stores_only_the_rejection(
    client: TestClient, signature: str | None, message: str
) -> None:
    body = fixture("github/workflow_run.completed.success.json")
    headers = {"X-GitHub-Event": "workflow_run", "X-GitHub-Delivery": "x"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    response = client.post("/webhooks/github", content=body, headers=headers)
    assert response.status_code == 401
    assert message in response.json()["error"]
    assert counts(client) == {"ingest_rejections": 1}
    (rejection,) = store_of(client).rows(schema.ingest_rejections)
    assert rejection["source"] == "github" and message in rejection["reason"]


def test_truncated_json_is_400_naming_the_position(client: TestClient) -> None:
    body = fixture("github/workflow_run.completed.success.json")[:500]
    response = github(client, "workflow_run", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("GitHub workflow_run payload: invalid JSON:")
    assert "(char 500)" in error
    assert counts(client) == {"ingest_rejections": 1}


def test_a_payload_missing_a_field_is_400_naming_it(client: TestClient) -> None:
    payload = orjson.loads(fixture("github/workflow_job.completed.success.json"))
    del payload["workflow_job"]["id"]
    response = github(client, "workflow_job", orjson.dumps(payload))
    assert response.status_code == 400
    assert "workflow_job.id" in response.json()["error"]
    assert counts(client) == {"ingest_rejections": 1}


def test_unknown_events_are_journaled_and_answered_202(client: TestClient) -> None:
    response = github(client, "star", b'{"action": "created", "starred_at": "2026-03-01T10:00:00Z"}')
    assert response.status_code == 202
    assert response.json()["message"] == "ignored: star"
    assert counts(client) == {"raw_events": 1}


def test_ping_is_answered(client: TestClient) -> None:
    response = github(client, "ping", b'{"zen": "Keep it logically awesome.", "hook_id": 1}')
    assert response.status_code == 200
    assert response.json()["stored"] == 0


def test_the_same_delivery_twice_gives_the_same_rows(client: TestClient) -> None:
    body = fixture("github/workflow_job.completed.failure.json")
    assert github(client, "workflow_job", body, "same").json()["stored"] == 13
    before = {table.name: store_of(client).rows(table) for table in schema.NORMALIZED_TABLES}
    again = github(client, "workflow_job", body, "same").json()
    assert (again["stored"], again["duplicates"]) == (0, 13)
    assert {table.name: store_of(client).rows(table) for table in schema.NORMALIZED_TABLES} == before
    assert counts(client)["raw_events"] == 1


def _job_rows(client: TestClient) -> list[dict[str, Any]]:
    return store_of(client).rows(schema.jobs)


def test_a_completed_job_before_its_queued_twin_gives_the_ordered_rows(db_url: str) -> None:
    """The same job's queued and completed deliveries, in either order, leave the same row."""
    queued = orjson.loads(fixture("github/workflow_job.queued.json"))
    completed = orjson.loads(fixture("github/workflow_job.completed.success.json"))
    queued["workflow_job"]["id"] = completed["workflow_job"]["id"]
    queued["workflow_job"]["run_id"] = completed["workflow_job"]["run_id"]
    results = []
    for order in ((queued, completed), (completed, queued)):
        with TestClient(create_app(Settings(db=db_url))) as client:
            for table in reversed(schema.metadata.sorted_tables):
                with store_of(client).engine.begin() as conn:
                    conn.execute(table.delete())
            for index, payload in enumerate(order):
                assert github(client, "workflow_job", orjson.dumps(payload), f"o{index}").status_code == 200
            results.append({table.name: store_of(client).rows(table) for table in schema.NORMALIZED_TABLES})
    assert results[0] == results[1]
    (job,) = results[0]["jobs"]
    assert job["status"] == "success" and job["finished_at"] is not None


def test_bodies_of_50_mb_are_413_and_store_only_the_rejection(client: TestClient) -> None:
    body = b'{"padding": "' + b"x" * (50 * 1024 * 1024) + b'"}'
    response = github(client, "workflow_run", body)
    assert response.status_code == 413
    assert counts(client) == {"ingest_rejections": 1}


def test_gitlab_token_is_checked(client: TestClient) -> None:
    body = fixture("gitlab/pipeline_hook.success.json")
    missing = client.post("/webhooks/gitlab", content=body, headers={"X-Gitlab-Event": "Pipeline Hook"})
    assert missing.status_code == 401
    wrong = client.post(
        "/webhooks/gitlab", content=body, headers={"X-Gitlab-Event": "Pipeline Hook", "X-Gitlab-Token": "nope"}
    )
    assert wrong.status_code == 401
    assert counts(client) == {"ingest_rejections": 2}


def gitlab(client: TestClient, event: str, body: bytes, uuid: str | None = None) -> Any:
    headers = {"X-Gitlab-Event": event, "X-Gitlab-Token": GITLAB_TOKEN}
    if uuid:
        headers["X-Gitlab-Event-UUID"] = uuid
    return client.post("/webhooks/gitlab", content=body, headers=headers)


def test_gitlab_pipeline_hook_with_builds(client: TestClient) -> None:
    response = gitlab(client, "Pipeline Hook", fixture("gitlab/pipeline_hook.success.json"), "u-1")
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 6
    (run,) = store_of(client).rows(schema.pipeline_runs)
    assert (run["source"], run["id"], run["status"]) == ("gitlab", "31", "success")
    assert len(store_of(client).rows(schema.jobs)) == 5
    assert gitlab(client, "Pipeline Hook", fixture("gitlab/pipeline_hook.success.json"), "u-1").json()["stored"] == 0


def test_gitlab_pipeline_hook_without_object_kind_is_read_from_the_header(client: TestClient) -> None:
    response = gitlab(client, "Pipeline Hook", fixture("gitlab/pipeline_hook.failed.minimal.otel.json"))
    assert response.status_code == 200
    (run,) = store_of(client).rows(schema.pipeline_runs)
    assert run["status"] == "failure"


def test_gitlab_unknown_hook_is_202(client: TestClient) -> None:
    response = gitlab(client, "Wiki Page Hook", b'{"object_kind": "wiki_page"}')
    assert response.status_code == 202
    assert response.json()["message"] == "ignored: wiki_page"


def test_junit_report_upload(client: TestClient) -> None:
    response = client.post(
        "/api/v1/reports/junit", params={"run_id": "r1"}, content=fixture("junit/surefire.flakyFailure.xml")
    )
    assert response.status_code == 200, response.text
    cases = store_of(client).rows(schema.test_cases)
    assert sorted((case["attempt"], case["outcome"]) for case in cases if case["name"] == "createWebhook") == [
        (1, "failed"),
        (2, "passed"),
    ]
    assert {case["run_id"] for case in cases} == {"r1"}


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<testsuite name="s"><testcase name="&lol3;"/></testsuite>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<testsuite name="s"><testcase name="&xxe;"/></testsuite>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "external-entity"])
def test_hostile_xml_is_400_and_nothing_is_expanded(client: TestClient, body: bytes) -> None:
    response = client.post("/api/v1/reports/junit", content=body)
    assert response.status_code == 400
    assert "lollol" not in response.text and "root:" not in response.text
    assert counts(client) == {"ingest_rejections": 1}
    (rejection,) = store_of(client).rows(schema.ingest_rejections)
    assert "lollol" not in rejection["reason"] and "root:" not in rejection["reason"]


def test_sarif_report_upload(client: TestClient) -> None:
    response = client.post(
        "/api/v1/reports/sarif",
        params={"repo": "acme/shop", "scanned_at": "2026-03-02T09:00:00+01:00"},
        content=fixture("sarif/trivy.alpine-310.sarif"),
    )
    assert response.status_code == 200, response.text
    findings = store_of(client).rows(schema.findings)
    assert [finding["severity"] for finding in findings] == ["medium"] * 4
    assert {finding["repo"] for finding in findings} == {"acme/shop"}


def test_sarif_without_repo_is_400(client: TestClient) -> None:
    response = client.post("/api/v1/reports/sarif", content=fixture("sarif/gitleaks.sarif_simple.sarif"))
    assert response.status_code == 400


def _gitleaks_7_log(*leaks: tuple[str, str, int, str]) -> bytes:
    """The SARIF log gitleaks 7.5 writes: results with a message and properties, no ruleId, no rules."""
    results = [
        {
            "message": {"text": f"{rule} secret detected"},
            "properties": {
                "commit": "5f1e0c3b9a7d2e4f6a8b0c1d3e5f7a9b1c3d5e7f",
                "offender": offender,
                "date": "2021-06-01T10:00:00Z",
                "author": "Jane Doe",
                "email": "jane@example.com",
                "commitMessage": "add config",
                "operation": "addition",
                "repo": "shop",
                "tags": ["key", rule.split()[0]],
            },
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": file}, "region": {"startLine": line}}}],
        }
        for rule, file, line, offender in leaks
    ]
    return orjson.dumps(
        {
            "$schema": "https://schemastore.azurewebsites.net/schemas/json/sarif-2.1.0-rtm.5.json",
            "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": "Gitleaks", "semanticVersion": "v7.5.0"}}, "results": results}],
        }
    )


AWS_LEAK = ("AWS Access Key", "config/prod.env", 3, "AKIAIOSFODNN7EXAMPLE")
SLACK_LEAK = ("Slack Webhook", "deploy/notify.sh", 12, "https://hooks.slack.com/services/T000/B000/XXXX")


def test_sarif_without_rule_ids_is_stored_under_derived_rules_with_warnings(client: TestClient) -> None:
    first = client.post(
        "/api/v1/reports/sarif",
        params={"repo": "acme/shop", "scanned_at": "2026-03-03T10:00:00Z"},
        content=_gitleaks_7_log(AWS_LEAK, SLACK_LEAK),
    )
    assert first.status_code == 200, first.text
    assert first.json()["stored"] == 2
    assert first.json()["warnings"] == [
        "runs[0].results[0]: no ruleId, rule.id or indexed rule id; counted under 'aws-access-key-secret-detected', "
        "derived from its message",
        "runs[0].results[1]: no ruleId, rule.id or indexed rule id; counted under 'slack-webhook-secret-detected', "
        "derived from its message",
    ]
    findings = store_of(client).rows(schema.findings)
    assert sorted((f["tool"], f["rule_id"], f["severity"], f["location"]) for f in findings) == [
        ("Gitleaks", "aws-access-key-secret-detected", "medium", "config/prod.env:3"),
        ("Gitleaks", "slack-webhook-secret-detected", "medium", "deploy/notify.sh:12"),
    ]
    # The next week's scan no longer finds the Slack webhook: it counts as fixed, the AWS key as still open.
    second = client.post(
        "/api/v1/reports/sarif",
        params={"repo": "acme/shop", "scanned_at": "2026-03-10T10:00:00Z"},
        content=_gitleaks_7_log(AWS_LEAK),
    )
    assert second.status_code == 200 and second.json()["stored"] == 1
    report = client.get("/api/v1/metrics/security", params={"since": "2026-03-02", "until": "2026-03-16"}).json()
    (repo,) = report["repos"]
    weeks = {week["week"]: week for week in repo["weeks"]}
    assert (weeks["2026-03-09"]["new"], weeks["2026-03-09"]["fixed"]) == (0, 1)
    assert weeks["2026-03-09"]["open"]["total"] == 1


def test_a_log_that_is_not_sarif_is_still_400_with_the_position(client: TestClient) -> None:
    response = client.post(
        "/api/v1/reports/sarif", params={"repo": "acme/shop"}, content=b'{"version": "2.1.0",\n "runs": [}'
    )
    assert response.status_code == 400
    assert response.json()["error"].endswith("at line 2 column 11 (char 31)")
    assert counts(client) == {"ingest_rejections": 1}


def test_pushgateway_text_becomes_a_run(client: TestClient) -> None:
    body = b"""# TYPE ci_build_duration_seconds gauge
ci_build_duration_seconds 312.5
# TYPE ci_build_success gauge
ci_build_success 0
"""
    response = client.post("/metrics/job/ci/project/acme-shop/pipeline_id/981/branch/main", content=body)
    assert response.status_code == 200, response.text
    (run,) = store_of(client).rows(schema.pipeline_runs)
    assert (run["source"], run["id"], run["repo"], run["branch"], run["status"]) == (
        "pushgateway",
        "981",
        "acme-shop",
        "main",
        "failure",
    )
    assert (run["finished_at"] - run["started_at"]).total_seconds() == 312.5


def test_pushgateway_without_ci_metrics_is_400(client: TestClient) -> None:
    response = client.post("/metrics/job/ci", content=b"some_other_metric 1\n")
    assert response.status_code == 400
    assert "ci_build_duration_seconds" in response.json()["error"]


@pytest.mark.parametrize("value", ["bm90IHV0Zi04_w", "caf\u00e9", "%%%", "YQ=b"])
def test_pushgateway_grouping_label_that_is_not_base64_is_400(client: TestClient, value: str) -> None:
    response = client.post(f"/metrics/job/ci/branch@base64/{value}", content=b"ci_build_success 1\n")
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "grouping label branch: invalid base64 value"
    assert store_of(client).rows(schema.pipeline_runs) == []


def test_gitlab_pipeline_export(client: TestClient) -> None:
    body = orjson.dumps(
        {
            "pipeline_id": 4412,
            "duration_seconds": 95,
            "status": "success",
            "project": "acme/api",
            "deployment_frequency": 3,
        }
    )
    response = client.post("/api/v1/pipeline-export", content=body)
    assert response.status_code == 200, response.text
    (run,) = store_of(client).rows(schema.pipeline_runs)
    assert (run["id"], run["repo"], run["status"]) == ("4412", "acme/api", "success")
    assert (run["finished_at"] - run["started_at"]).total_seconds() == 95


def test_reprocess_rebuilds_what_sources_stored(client: TestClient) -> None:
    github(client, "workflow_job", fixture("github/workflow_job.completed.failure.json"), "a")
    github(client, "deployment_status", fixture("github/deployment_status.success.json"), "b")
    gitlab(client, "Merge Request Hook", fixture("gitlab/merge_request_hook.opened.json"), "c")
    client.post("/api/v1/reports/junit", params={"run_id": "r1"}, content=fixture("junit/pytest.fail.xml"))
    client.post(
        "/api/v1/reports/sarif", params={"repo": "acme/shop"}, content=fixture("sarif/gitleaks.sarif_simple.sarif")
    )
    client.post("/metrics/job/ci/pipeline_id/1", content=b"ci_build_success 1\n")
    store = store_of(client)
    before = {table.name: store.rows(table) for table in schema.NORMALIZED_TABLES}
    report = store.reprocess(decode)
    assert report.failed == []
    assert {table.name: store.rows(table) for table in schema.NORMALIZED_TABLES} == before


def test_uploaded_test_cases_join_their_run(client: TestClient) -> None:
    from shipscope.metrics.common import Window
    from shipscope.metrics.tests import tests_report
    from tests.factories import ndjson, run

    client.post("/api/v1/events", content=ndjson(run("r1", sha="feed1")))
    client.post("/api/v1/reports/junit", params={"run_id": "r1"}, content=fixture("junit/surefire.flakyFailure.xml"))
    client.post(
        "/api/v1/reports/junit",
        params={"run_id": "9", "source": "github"},
        content=fixture("junit/pytest.report.xml"),
    )
    report = tests_report(store_of(client), Window.parse("2026-02-01", "2026-04-01")).to_json()
    assert report["unattributed"] == 3  # run 9 of source github was never seen
    assert [test["name"] for test in report["quarantine"]] == ["createWebhook"]

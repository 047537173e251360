"""`shipscope deploy mark|notify`: every vendor call is received by a local server and checked against the vendor's
documented API (method, path, auth header, body), with a 429 and Retry-After, a timeout, a refusal, and dry runs
that mask secrets.

Vendor contracts:
- Datadog Events API: https://docs.datadoghq.com/api/latest/events/#post-an-event (POST /api/v1/events,
  DD-API-KEY header; title and text required; tags as key:value)
- Grafana annotations: https://grafana.com/docs/grafana/latest/developers/http_api/annotations/#create-annotation
  (POST /api/annotations, Authorization: Bearer <service-account token>; time in epoch ms, tags, text)
- Sentry releases: https://docs.sentry.io/api/releases/create-a-new-release-for-an-organization/ (POST
  /api/0/organizations/{org}/releases/ with version and projects), update (PUT …/releases/{version}/ with refs),
  deploys: https://docs.sentry.io/api/releases/create-a-new-deploy-for-an-organization/ (POST
  …/releases/{version}/deploys/ with environment); Authorization: Bearer <auth token>
- New Relic change tracking: https://docs.newrelic.com/docs/change-tracking/change-tracking-graphql/ (POST /graphql,
  API-Key header, mutation changeTrackingCreateDeployment with entityGuid and version)
- Slack incoming webhooks: https://api.slack.com/messaging/webhooks (POST of JSON with text and blocks)
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shipscope.cli.main import app
from shipscope.store import Store
from tests.vendors import Received, VendorServer

runner = CliRunner()
IDENTITY = ["--service", "checkout", "--env", "production", "--sha", "c" * 40, "--id", "deploy-9"]
IDENTITY += ["--version", "v2.3.0", "--actor", "octocat", "--image-digest", "sha256:" + "d" * 64]
SECRETS = {
    "dd": "dd-api-key-123",
    "grafana": "glsa_grafana_secret",
    "sentry": "sntrys_secret",
    "nr": "NRAK-SECRET",
    "pd": "pd-change-key-456",
}


def _environment(base: str) -> dict[str, str]:
    return {
        "DD_API_KEY": SECRETS["dd"],
        "SHIPSCOPE_DATADOG_URL": f"{base}/datadog",
        "GRAFANA_URL": f"{base}/grafana",
        "GRAFANA_TOKEN": SECRETS["grafana"],
        "GRAFANA_DASHBOARD_UID": "pipeline-health",
        "SENTRY_AUTH_TOKEN": SECRETS["sentry"],
        "SENTRY_ORG": "acme",
        "SENTRY_PROJECT": "checkout",
        "SENTRY_URL": f"{base}/sentry",
        "SENTRY_REPOSITORY": "acme/checkout",
        "NEW_RELIC_API_KEY": SECRETS["nr"],
        "NEW_RELIC_ENTITY_GUID": "MXxBUE18QVBQTElDQVRJT058MTIz",
        "NEW_RELIC_API_URL": f"{base}/newrelic/graphql",
        "PAGERDUTY_CHANGE_ROUTING_KEY": SECRETS["pd"],
        "PAGERDUTY_EVENTS_URL": f"{base}/pagerduty",
        "SHIPSCOPE_MARKER_WEBHOOK_URL": f"{base}/hooks/deploys/s3cr3t-token",
    }


def _mark(env: dict[str, str], db: str, *extra: str) -> tuple[int, dict[str, Any] | None, str]:
    result = runner.invoke(app, ["deploy", "mark", *IDENTITY, "--db", db, "--json", *extra], env=env)
    assert "Traceback" not in result.output, result.output
    document = json.loads(result.stdout.splitlines()[-1]) if result.stdout.strip() else None
    return result.exit_code, document, result.stderr


def test_one_marker_reaches_every_configured_vendor_by_its_documented_api(
    vendors: VendorServer, tmp_path: Path
) -> None:
    vendors.plan("POST", "/newrelic/graphql", (200, {}, {"data": {"changeTrackingCreateDeployment": {}}}, 0.0))
    vendors.plan("POST", "/sentry/api/0/organizations/acme/releases/", (208, {}, {"version": "v2.3.0"}, 0.0))
    db = f"duckdb:///{tmp_path / 'mark.duckdb'}"
    code, document, _ = _mark(_environment(vendors.base), db)
    assert code == 0 and document is not None and document["failed"] == []
    assert [vendor["vendor"] for vendor in document["vendors"]] == [
        "datadog",
        "grafana",
        "sentry",
        "newrelic",
        "pagerduty",
        "webhook",
    ]

    (event,) = vendors.at("/datadog/api/v1/events")
    assert event.method == "POST" and event.headers["DD-API-KEY"] == SECRETS["dd"]
    assert event.body["title"] == "Deployment of checkout v2.3.0 to production"
    assert {"service:checkout", "env:production", "version:v2.3.0"} <= set(event.body["tags"])
    assert event.body["alert_type"] == "success" and isinstance(event.body["date_happened"], int)

    (annotation,) = vendors.at("/grafana/api/annotations")
    assert annotation.headers["Authorization"] == f"Bearer {SECRETS['grafana']}"
    assert annotation.body["dashboardUID"] == "pipeline-health"
    assert annotation.body["time"] > 1_700_000_000_000  # epoch milliseconds
    assert {"deploy", "service:checkout", "env:production", "version:v2.3.0"} <= set(annotation.body["tags"])

    sentry = [request for request in vendors.received if request.path.startswith("/sentry/")]
    assert [(request.method, request.path) for request in sentry] == [
        ("POST", "/sentry/api/0/organizations/acme/releases/"),
        ("PUT", "/sentry/api/0/organizations/acme/releases/v2.3.0/"),
        ("POST", "/sentry/api/0/organizations/acme/releases/v2.3.0/deploys/"),
    ]
    assert all(request.headers["Authorization"] == f"Bearer {SECRETS['sentry']}" for request in sentry)
    assert sentry[0].body == {"version": "v2.3.0", "projects": ["checkout"]}
    assert sentry[1].body == {"refs": [{"repository": "acme/checkout", "commit": "c" * 40}]}
    assert sentry[2].body["environment"] == "production" and sentry[2].body["name"] == "deploy-9"

    (graphql,) = vendors.at("/newrelic/graphql")
    assert graphql.headers["API-Key"] == SECRETS["nr"]
    assert "changeTrackingCreateDeployment" in graphql.body["query"]
    deployment = graphql.body["variables"]["deployment"]
    assert deployment["entityGuid"] == "MXxBUE18QVBQTElDQVRJT058MTIz" and deployment["version"] == "v2.3.0"
    assert deployment["commit"] == "c" * 40 and deployment["user"] == "octocat"

    # https://developer.pagerduty.com/docs/events-api-v2/send-change-events/: POST /v2/change/enqueue, the routing
    # key in the body, payload.summary/timestamp/source, custom_details and links.
    (change,) = vendors.at("/pagerduty/v2/change/enqueue")
    assert change.method == "POST" and change.body["routing_key"] == SECRETS["pd"]
    assert change.body["payload"]["summary"].startswith("Deployed checkout v2.3.0 to production")
    assert datetime.fromisoformat(change.body["payload"]["timestamp"]).tzinfo is not None
    assert change.body["payload"]["custom_details"]["sha"] == "c" * 40

    (hook,) = vendors.at("/hooks/deploys/s3cr3t-token")
    assert hook.body["event"] == "deployment" and hook.body["deployment"]["image_digest"] == "sha256:" + "d" * 64

    store = Store(db)
    try:
        (marker,) = [e for e in store.list_events("timeline_event", service="checkout").events if e["kind"] == "marker"]
    finally:
        store.close()
    assert (
        marker["title"]
        == "Marked checkout v2.3.0 to production in datadog, grafana, sentry, newrelic, pagerduty, webhook"
    )


def test_a_429_is_retried_after_its_retry_after_and_a_slow_vendor_times_out_alone(
    vendors: VendorServer, tmp_path: Path
) -> None:
    vendors.plan(
        "POST",
        "/datadog/api/v1/events",
        (429, {"Retry-After": "1"}, {"errors": ["rate limited"]}, 0.0),
        (202, {}, {}, 0.0),
    )
    vendors.plan("POST", "/grafana/api/annotations", (200, {}, {"id": 1}, 3.0))
    env = {key: value for key, value in _environment(vendors.base).items() if not key.startswith(("SENTRY", "NEW_"))}
    db = f"duckdb:///{tmp_path / 'retry.duckdb'}"
    started = time.monotonic()
    code, document, text = _mark(env, db, "--timeout", "0.5", "--retries", "1")
    assert code == 0, text  # one vendor failing does not fail the deploy
    assert document is not None and document["failed"] == ["grafana"]
    datadog = next(vendor for vendor in document["vendors"] if vendor["vendor"] == "datadog")
    assert datadog["ok"] and datadog["steps"][0]["attempts"] == 2 and datadog["steps"][0]["status"] == 202
    times = [request for request in vendors.at("/datadog/api/v1/events")]
    assert len(times) == 2
    grafana = next(vendor for vendor in document["vendors"] if vendor["vendor"] == "grafana")
    assert "no answer within 0.5 s (after 2 attempts)" in grafana["steps"][0]["detail"]
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    strict, _, _ = _mark(env, db, "--timeout", "0.5", "--retries", "0", "--strict")
    assert strict == 3


def test_a_refusal_stops_that_vendor_and_graphql_errors_are_failures(vendors: VendorServer, tmp_path: Path) -> None:
    vendors.plan("POST", "/sentry/api/0/organizations/acme/releases/", (400, {}, {"detail": "bad project"}, 0.0))
    vendors.plan("POST", "/newrelic/graphql", (200, {}, {"errors": [{"message": "entityGuid not found"}]}, 0.0))
    env = {key: value for key, value in _environment(vendors.base).items() if key.startswith(("SENTRY", "NEW_"))}
    code, document, _ = _mark(env, f"duckdb:///{tmp_path / 'refused.duckdb'}", "--retries", "3")
    assert code == 0 and document is not None and sorted(document["failed"]) == ["newrelic", "sentry"]
    assert len([r for r in vendors.received if r.path.startswith("/sentry/")]) == 1  # no deploy of a missing release
    newrelic = next(vendor for vendor in document["vendors"] if vendor["vendor"] == "newrelic")
    assert newrelic["steps"][0]["detail"] == "NerdGraph refused: entityGuid not found"
    sentry = next(vendor for vendor in document["vendors"] if vendor["vendor"] == "sentry")
    assert sentry["steps"][0]["attempts"] == 1 and sentry["steps"][0]["status"] == 400  # a 4xx is not retried


def test_dry_run_prints_every_request_with_secrets_masked_and_sends_nothing(
    vendors: VendorServer, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        ["deploy", "mark", *IDENTITY, "--db", f"duckdb:///{tmp_path / 'dry.duckdb'}", "--dry-run"],
        env=_environment(vendors.base),
    )
    assert result.exit_code == 0, result.output
    assert vendors.received == []
    for secret in [*SECRETS.values(), "s3cr3t-token"]:
        assert secret not in result.output
    assert f"POST {vendors.base}/datadog/api/v1/events" in result.stdout
    assert "DD-API-KEY: ****" in result.stdout and "Authorization: Bearer ****" in result.stdout
    assert f"PUT {vendors.base}/sentry/api/0/organizations/acme/releases/v2.3.0/" in result.stdout
    assert '"version": "v2.3.0"' in result.stdout


def _notify(vendors: VendorServer, tmp_path: Path, *extra: str) -> tuple[int, Received]:
    env = {"SLACK_WEBHOOK_URL": f"{vendors.base}/services/T000/B000/XXXX"}
    links = ["--dashboard-url", "https://shipscope.example/deployments/deploy-9"]
    links += ["--runbook-url", "https://wiki.example/runbooks/checkout-rollback"]
    result = runner.invoke(
        app, ["deploy", "notify", *IDENTITY, *links, "--db", f"duckdb:///{tmp_path / 'n.duckdb'}", *extra], env=env
    )
    assert "Traceback" not in result.output, result.output
    return result.exit_code, vendors.at("/services/T000/B000/XXXX")[-1]


def _texts(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks)


def test_the_slack_notice_carries_the_deploy_and_its_links(vendors: VendorServer, tmp_path: Path) -> None:
    code, message = _notify(vendors, tmp_path)
    assert code == 0
    assert message.method == "POST" and message.headers["Content-Type"].startswith("application/json")
    blocks = message.body["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": ":white_check_mark: Deployed checkout v2.3.0 to production",
            "emoji": True,
        },
    }
    fields = [field["text"] for field in blocks[1]["fields"]]
    assert fields == [
        "*Service*\ncheckout",
        "*Environment*\nproduction",
        "*Version*\nv2.3.0",
        "*Commit*\n`cccccccccccc`",
        "*Image digest*\n`sha256:" + "d" * 64 + "`",
        "*Deployed by*\noctocat",
    ]
    (actions,) = [block for block in blocks if block["type"] == "actions"]
    assert [(button["text"]["text"], button["url"]) for button in actions["elements"]] == [
        ("Dashboard", "https://shipscope.example/deployments/deploy-9"),
        ("Rollback runbook", "https://wiki.example/runbooks/checkout-rollback"),
    ]
    assert message.body["text"] == "Deployed checkout v2.3.0 to production"

    code, failed = _notify(vendors, tmp_path, "--status", "failed", "--reason", "smoke check /healthz: 503 <html>")
    assert code == 0
    assert failed.body["blocks"][0]["text"]["text"] == ":x: Deploy of checkout v2.3.0 to production failed"
    assert "smoke check /healthz: 503 &lt;html&gt;" in _texts(failed.body["blocks"])
    assert failed.body["text"] == "Deploy of checkout v2.3.0 to production failed: smoke check /healthz: 503 <html>"


def test_an_undeliverable_notice_warns_or_fails_under_strict(tmp_path: Path) -> None:
    env = {"SLACK_WEBHOOK_URL": "http://127.0.0.1:9/services/T/B/secret"}
    args = ["deploy", "notify", *IDENTITY, "--retries", "0", "--db", f"duckdb:///{tmp_path / 'u.duckdb'}"]
    warned = runner.invoke(app, args, env=env)
    assert warned.exit_code == 0 and "slack: post the notice: FAILED" in warned.stderr
    assert "secret" not in warned.output
    assert runner.invoke(app, [*args, "--strict"], env=env).exit_code == 3
    missing = runner.invoke(
        app, args[:-2] + ["--db", f"duckdb:///{tmp_path / 'u.duckdb'}"], env={"SLACK_WEBHOOK_URL": ""}
    )
    assert missing.exit_code == 4 and "no Slack webhook" in missing.stderr


def test_pagerduty_change_events_are_for_production_deploys_only(vendors: VendorServer, tmp_path: Path) -> None:
    env = {
        "PAGERDUTY_CHANGE_ROUTING_KEY": SECRETS["pd"],
        "PAGERDUTY_EVENTS_URL": f"{vendors.base}/pagerduty",
        "SHIPSCOPE_ENVIRONMENT": "staging",
    }
    staging = [part if part != "production" else "staging" for part in IDENTITY]
    result = runner.invoke(
        app, ["deploy", "mark", *staging, "--db", f"duckdb:///{tmp_path / 'pd.duckdb'}", "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[-1])["vendors"] == []
    assert vendors.received == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[fe80::1]:8080/hook",
        "http://[::ffff:169.254.169.254]/",
    ],
)
def test_a_marker_url_on_a_link_local_or_metadata_address_is_refused(url: str, tmp_path: Path) -> None:
    env = {"SHIPSCOPE_MARKER_WEBHOOK_URL": url}
    code, document, text = _mark(env, f"duckdb:///{tmp_path / 'ssrf.duckdb'}")
    assert code == 0 and document is not None and document["failed"] == ["webhook"]
    [step] = document["vendors"][0]["steps"]
    assert step["attempts"] == 0 and "refused" in step["detail"] and "OUTBOUND_ALLOW_LINK_LOCAL" in step["detail"]


def test_link_local_destinations_can_be_allowed() -> None:
    from shipscope.integrations.http import forbidden_destination

    assert forbidden_destination("http://169.254.169.254/", allow_link_local=True) is None
    assert forbidden_destination("http://127.0.0.1:9/", allow_link_local=False) is None  # loopback stays allowed
    assert forbidden_destination("http://10.0.0.5/", allow_link_local=False) is None  # so do private networks
    assert "only http and https" in (forbidden_destination("file:///etc/passwd", allow_link_local=False) or "")

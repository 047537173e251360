"""`shipscope deploy smoke`: HTTP checks against a local service, with expectations on status, body, JSON paths and
latency, retries, the time box, the test tenant's credentials never shown, the verdict on the timeline, and
`--on-fail rollback`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from shipscope.cli.main import app
from shipscope.deploy.smoke import json_path_steps, load_plan
from shipscope.errors import InputError
from shipscope.store import Store
from tests.factories import delivery, deployment, recorded_timeline
from tests.vendors import VendorServer

runner = CliRunner()
WHERE = ["--service", "checkout", "--env", "production", "--sha", "2" * 40, "--id", "deploy-2"]
TOKEN = "tenant-7f3a-s3cr3t-token"


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"duckdb:///{tmp_path / 'smoke.duckdb'}"
    store = Store(url)
    store.ensure_schema()
    store.ingest(
        [
            delivery(
                deployment(
                    "deploy-1",
                    sha="1" * 40,
                    version="v1.0.0",
                    started_at="2026-11-02T09:00:00Z",
                    finished_at="2026-11-02T09:05:00Z",
                )
            ),
            delivery(
                deployment(
                    "deploy-2",
                    sha="2" * 40,
                    version="v1.1.0",
                    started_at="2026-11-02T10:00:00Z",
                    finished_at="2026-11-02T10:05:00Z",
                )
            ),
        ]
    )
    store.close()
    return url


def _checks(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _smoke(
    checks: Path, vendors: VendorServer, *args: str, db: str | None = None
) -> tuple[int, dict[str, Any] | None, str]:
    env = {"BASE_URL": vendors.base, "SMOKE_TOKEN": TOKEN}
    where = [*WHERE, "--db", db] if db else []
    result = runner.invoke(app, ["deploy", "smoke", "--checks", str(checks), *where, "--json", *args], env=env)
    assert "Traceback" not in result.output, result.output
    lines = result.stdout.splitlines()
    return result.exit_code, json.loads(lines[-1]) if lines else None, result.stderr


def _plan(*checks: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"defaults": {"headers": {"Authorization": "Bearer ${SMOKE_TOKEN}"}}, "checks": list(checks), **top}


def test_passing_checks_send_the_tenant_credentials_and_record_the_verdict(
    vendors: VendorServer, tmp_path: Path, db: str
) -> None:
    vendors.plan("GET", "/healthz", (200, {}, {"status": "ok"}, 0.0))
    vendors.plan("POST", "/api/cart", (201, {}, {"cart": {"items": [{"sku": "smoke-1", "qty": 1}]}}, 0.0))
    checks = _checks(
        tmp_path,
        _plan(
            {"name": "health", "url": "${BASE_URL}/healthz", "expect": {"body_contains": "ok"}},
            {
                "name": "cart",
                "method": "post",
                "url": "${BASE_URL}/api/cart",
                "json": {"sku": "smoke-1"},
                "expect": {"status": [200, 201], "json": {"$.cart.items[0].sku": "smoke-1", "$.cart.items[0].qty": 1}},
            },
        ),
    )
    code, outcome, text = _smoke(checks, vendors, db=db)
    assert code == 0, text
    assert outcome is not None and outcome["ok"] is True
    assert [(check["name"], check["status"], check["attempts"]) for check in outcome["checks"]] == [
        ("health", 200, 1),
        ("cart", 201, 1),
    ]
    assert outcome["checks"][1]["url"] == "${BASE_URL}/api/cart"  # the file's text, not the tenant's address
    cart = vendors.at("/api/cart")[0]
    assert cart.method == "POST" and cart.body == {"sku": "smoke-1"}
    assert cart.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "2 of 2 checks passed" in text
    [verdict] = recorded_timeline(db, "smoke")
    assert verdict["details"]["ok"] is True and verdict["details"]["deployment_id"] == "deploy-2"
    assert verdict["title"] == f"Smoke checks passed: checkout {'2' * 12} to production"


@pytest.mark.parametrize(
    ("answer", "expect", "problem"),
    [
        ((503, {}, {"error": "warming up"}, 0.0), {}, "status 503, expected 2xx"),
        ((200, {}, {"status": "degraded"}, 0.0), {"body_contains": '"ok"'}, "the body does not contain '\"ok\"'"),
        ((200, {}, {"db": {"up": False}}, 0.0), {"json": {"$.db.up": True}}, "$.db.up is false, expected true"),
        ((200, {}, {"db": {}}, 0.0), {"json": {"$.db['up']": True}}, "$.db['up'] is not in the body"),
        ((200, {}, {}, 0.3), {"max_latency": "100ms"}, "over the 100 ms budget"),
    ],
    ids=["status", "body", "json-value", "json-missing", "latency"],
)
def test_a_failed_expectation_fails_the_run_after_its_retries(
    vendors: VendorServer,
    tmp_path: Path,
    answer: tuple[int, dict[str, str], Any, float],
    expect: dict[str, Any],
    problem: str,
) -> None:
    vendors.plan("GET", "/healthz", answer)
    checks = _checks(
        tmp_path,
        _plan({"name": "health", "url": "${BASE_URL}/healthz", "expect": expect, "retries": 1, "retry_delay": "10ms"}),
    )
    code, outcome, text = _smoke(checks, vendors)
    assert code == 1, text
    assert outcome is not None and outcome["ok"] is False
    [check] = outcome["checks"]
    assert check["attempts"] == 2 and len(vendors.at("/healthz")) == 2
    assert problem in check["problem"]
    assert "1 of 1 checks failed; health:" in text


def test_a_check_that_recovers_within_its_retries_passes(vendors: VendorServer, tmp_path: Path) -> None:
    vendors.plan("GET", "/healthz", (503, {}, {}, 0.0), (503, {}, {}, 0.0), (200, {}, {"status": "ok"}, 0.0))
    checks = _checks(tmp_path, _plan({"name": "health", "url": "${BASE_URL}/healthz", "retry_delay": "10ms"}))
    code, outcome, text = _smoke(checks, vendors)
    assert code == 0, text
    assert outcome is not None and outcome["checks"][0]["attempts"] == 3


def test_the_time_box_ends_the_run_and_names_itself(vendors: VendorServer, tmp_path: Path) -> None:
    vendors.plan("GET", "/slow", (503, {}, {}, 0.6))
    checks = _checks(
        tmp_path,
        _plan(
            {"name": "slow", "url": "${BASE_URL}/slow", "retries": 5, "retry_delay": "10ms"},
            {"name": "after", "url": "${BASE_URL}/healthz"},
        ),
    )
    code, outcome, text = _smoke(checks, vendors, "--timeout", "1s")
    assert code == 1, text
    assert outcome is not None and outcome["seconds"] < 3
    slow, after = outcome["checks"]
    assert slow["attempts"] == 2 and "the 1 s time box ran out" in slow["problem"]
    assert after["attempts"] == 0 and after["problem"] == "the 1 s time box ran out"
    assert vendors.at("/healthz") == []


def test_a_credential_the_service_echoes_back_is_never_shown(vendors: VendorServer, tmp_path: Path, db: str) -> None:
    vendors.plan("GET", "/api/me", (401, {}, {"error": f"token {TOKEN} is not valid for this tenant"}, 0.0))
    checks = _checks(tmp_path, _plan({"name": "me", "url": "${BASE_URL}/api/me", "retries": 0}))
    code, outcome, text = _smoke(checks, vendors, db=db)
    assert code == 1, text
    assert vendors.at("/api/me")[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert outcome is not None and "token **** is not valid" in outcome["checks"][0]["problem"]
    assert TOKEN not in text and TOKEN not in json.dumps(outcome)
    assert TOKEN not in json.dumps(recorded_timeline(db, "smoke"))


def test_a_missing_variable_stops_before_any_request(vendors: VendorServer, tmp_path: Path) -> None:
    checks = _checks(
        tmp_path, _plan({"name": "health", "url": "${BASE_URL}/healthz", "headers": {"X-Tenant": "${TENANT}"}})
    )
    code, outcome, text = _smoke(checks, vendors)
    assert code == 4 and outcome is None
    assert "$TENANT, which is not set" in text
    assert vendors.received == []


def test_on_fail_rollback_runs_the_files_rollback_and_records_it(
    vendors: VendorServer, tmp_path: Path, db: str
) -> None:
    vendors.plan("GET", "/healthz", (500, {}, {"error": "boom"}, 0.0))
    marker = tmp_path / "rolled-back"
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('yes')"]
    checks = _checks(
        tmp_path,
        _plan(
            {"name": "health", "url": "${BASE_URL}/healthz", "retries": 0},
            rollback={"strategy": "command", "command": command},
        ),
    )
    code, outcome, text = _smoke(checks, vendors, "--on-fail", "rollback", db=db)
    assert code == 1, text
    assert marker.read_text() == "yes"
    assert outcome is not None and outcome["rollback"]["rollback"]["rollback_of"] == "deploy-2"
    store = Store(db)
    try:
        deployments = {event["id"]: event for event in store.list_events("deployment", limit=100).events}
    finally:
        store.close()
    rollback = deployments[outcome["rollback"]["rollback"]["id"]]
    assert (rollback["kind"], rollback["rollback_of"], rollback["status"]) == ("rollback", "deploy-2", "success")
    assert rollback["version"] == "v1.0.0"
    [verdict] = recorded_timeline(db, "smoke")
    assert verdict["details"]["ok"] is False


def test_a_passing_run_does_not_roll_back(vendors: VendorServer, tmp_path: Path, db: str) -> None:
    checks = _checks(
        tmp_path,
        _plan({"name": "health", "url": "${BASE_URL}/healthz"}, rollback={"strategy": "command", "command": ["false"]}),
    )
    code, outcome, text = _smoke(checks, vendors, "--on-fail", "rollback", db=db)
    assert code == 0, text
    assert outcome is not None and "rollback" not in outcome
    store = Store(db)
    try:
        kinds = [event.get("kind") for event in store.list_events("deployment", limit=100).events]
    finally:
        store.close()
    assert "rollback" not in kinds


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"checks": []}, "checks must be a non-empty list"),
        ({"checks": [{"url": "ftp://x"}]}, "is not an http(s) URL"),
        ({"checks": [{"url": "http://x", "expect": {"stat": 200}}]}, "unknown settings stat"),
        ({"checks": [{"url": "http://x", "expect": {"status": 99}}]}, "expected an HTTP status"),
        ({"checks": [{"url": "http://x", "expect": {"json": {"db.up": True}}}]}, "is not a JSON path"),
        ({"checks": [{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}]}, "a repeats"),
        ({"checks": [{"url": "http://x", "json": {}, "body": "x"}]}, "give json or body, not both"),
        ({"checks": [{"url": "http://x"}], "rollback": {"strategy": "helm"}}, "the helm rollback needs --release"),
        ({"checks": [{"url": "http://x"}], "timeout": "soon"}, "timeout"),
    ],
)
def test_a_bad_checks_file_is_named(tmp_path: Path, document: dict[str, Any], problem: str) -> None:
    with pytest.raises(InputError) as raised:
        load_plan(_checks(tmp_path, document))
    assert problem in raised.value.message


def test_on_fail_rollback_without_a_rollback_section_is_bad_input(vendors: VendorServer, tmp_path: Path) -> None:
    checks = _checks(tmp_path, _plan({"name": "health", "url": "${BASE_URL}/healthz"}))
    code, _, text = _smoke(checks, vendors, "--on-fail", "rollback")
    assert code == 4 and "needs a rollback: section" in text
    assert vendors.received == []


def test_json_paths_read_names_indexes_and_quoted_keys() -> None:
    assert json_path_steps("$.a.b[2]['c d']", "x") == ["a", "b", 2, "c d"]
    assert json_path_steps("$", "x") == []
    with pytest.raises(InputError):
        json_path_steps("$.a..b", "x")


def test_the_example_checks_file_in_the_docs_loads(tmp_path: Path) -> None:
    docs = (Path(__file__).parent.parent / "docs" / "deploy.md").read_text()
    path = tmp_path / "smoke.yaml"
    path.write_text(docs.split("```yaml smoke.yaml\n", 1)[1].split("```", 1)[0])
    plan = load_plan(path)
    assert len(plan.checks) >= 2 and plan.rollback is not None
    assert "SMOKE_TOKEN" in plan.variables()

"""`shipscope deploy rollback`: GitOps on a real git repository with a bare remote; argocd, helm and kubectl as
executables on PATH that record their argv; a failing tool; the rollback deployment recorded with rollback_of;
Slack and a PagerDuty incident note (https://developer.pagerduty.com/api-reference/3c0ad6ec5b0ef-create-a-note-on-an-incident:
POST /incidents/{id}/notes, Authorization: Token token=…, From, Accept vnd.pagerduty+json;version=2)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shipscope.cli.main import app
from shipscope.deploy.context import DeployInfo
from shipscope.deploy.ledger import StoreLedger
from shipscope.deploy.rollback import RollbackOptions, roll_back
from shipscope.store import Store
from tests.factories import delivery
from tests.vendors import VendorServer

runner = CliRunner()
WHERE = ["--service", "checkout", "--env", "production"]


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=dev", "-c", "user.email=dev@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _deployment(identifier: str, version: str, sha: str, hour: int, status: str = "success") -> dict[str, Any]:
    return {
        "type": "deployment",
        "source": "shipscope",
        "id": identifier,
        "service": "checkout",
        "environment": "production",
        "sha": sha,
        "version": version,
        "status": status,
        "started_at": f"2026-11-02T{hour:02d}:00:00Z",
        "finished_at": f"2026-11-02T{hour:02d}:05:00Z",
    }


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"duckdb:///{tmp_path / 'rollback.duckdb'}"
    store = Store(url)
    store.ensure_schema()
    store.ingest(
        [
            delivery(_deployment("deploy-1", "v1.0.0", "1" * 40, 9)),
            delivery(_deployment("deploy-2", "v1.1.0", "2" * 40, 10)),
        ]
    )
    store.close()
    return url


def _deployments(db: str) -> dict[str, dict[str, Any]]:
    store = Store(db)
    try:
        return {event["id"]: event for event in store.list_events("deployment", limit=100).events}
    finally:
        store.close()


def _rollback(db: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    result = runner.invoke(app, ["deploy", "rollback", *WHERE, "--db", db, "--json", *args], env=env)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, json.loads(result.stdout.splitlines()[-1]), result.stderr


def test_gitops_reverts_the_deploy_commit_and_pushes_it(db: str, tmp_path: Path) -> None:
    remote = tmp_path / "gitops.git"
    _git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    work = tmp_path / "work"
    _git(tmp_path, "clone", "--quiet", str(remote), str(work))
    manifest = work / "apps" / "checkout" / "deployment.yaml"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("image: registry.example/checkout:v1.0.0\n")
    (work / "README.md").write_text("fleet\n")
    _git(work, "add", ".")
    _git(work, "commit", "--quiet", "-m", "checkout v1.0.0")
    manifest.write_text("image: registry.example/checkout:v1.1.0\n")
    _git(work, "commit", "--quiet", "-am", "checkout v1.1.0")
    deploy_commit = _git(work, "rev-parse", "HEAD")
    (work / "README.md").write_text("fleet of services\n")  # a later commit elsewhere: --path finds the deploy
    _git(work, "commit", "--quiet", "-am", "docs")
    _git(work, "push", "--quiet", "origin", "main")

    code, outcome, text = _rollback(db, "--strategy", "gitops", "--repo", str(remote), "--path", "apps/checkout")
    assert code == 0, text
    assert [step["name"] for step in outcome["steps"]] == [
        "git clone",
        "git log",
        "git revert",
        "git commit",
        "git push",
    ]
    assert outcome["rolled_back"]["id"] == "deploy-2" and outcome["target"]["id"] == "deploy-1"

    _git(work, "pull", "--quiet", "origin", "main")
    assert manifest.read_text() == "image: registry.example/checkout:v1.0.0\n"
    assert (work / "README.md").read_text() == "fleet of services\n"
    subject = _git(work, "log", "-1", "--format=%s")
    assert subject == "Roll back checkout in production: revert deploy-2"
    assert _git(work, "rev-parse", "HEAD~1") != deploy_commit  # a new commit on top, history kept

    rollback = _deployments(db)[outcome["rollback"]["id"]]
    assert rollback["kind"] == "rollback" and rollback["rollback_of"] == "deploy-2"
    assert (rollback["version"], rollback["sha"], rollback["status"]) == ("v1.0.0", "1" * 40, "success")
    assert "finished_at" in rollback


def _recording_tool(bin_dir: Path, name: str, log: Path, exit_code: int = 0, message: str = "") -> None:
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "{name} $*" >> "{log}"\n'
        + (f'echo "{message}" >&2\n' if message else "")
        + f"exit {exit_code}\n"
    )
    tool.chmod(0o755)


@pytest.mark.parametrize(
    ("strategy", "options", "expected"),
    [
        ("argocd", ["--app", "checkout-prod"], ["argocd app rollback checkout-prod"]),
        ("argocd", ["--app", "checkout-prod", "--history-id", "41"], ["argocd app rollback checkout-prod 41"]),
        (
            "helm",
            ["--release", "checkout", "--namespace", "shop", "--revision", "7"],
            ["helm rollback checkout 7 --namespace shop --wait"],
        ),
        (
            "kubectl",
            ["--resource", "deployment/checkout", "--namespace", "shop"],
            [
                "kubectl rollout undo deployment/checkout --namespace shop",
                "kubectl rollout status deployment/checkout --namespace shop --timeout=600s",
            ],
        ),
    ],
)
def test_tool_strategies_run_the_documented_commands(
    db: str, tmp_path: Path, strategy: str, options: list[str], expected: list[str]
) -> None:
    log = tmp_path / "argv.log"
    _recording_tool(tmp_path / "bin", strategy, log)
    env = {"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    code, outcome, _ = _rollback(db, "--strategy", strategy, *options, env=env)
    assert code == 0 and outcome["ok"]
    assert log.read_text().splitlines() == expected
    assert _deployments(db)[outcome["rollback"]["id"]]["rollback_of"] == "deploy-2"


def test_a_failing_tool_fails_the_rollback_and_says_which(db: str, tmp_path: Path) -> None:
    log = tmp_path / "argv.log"
    _recording_tool(tmp_path / "bin", "helm", log, exit_code=1, message="Error: release: not found")
    env = {"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    code, outcome, text = _rollback(db, "--strategy", "helm", "--release", "checkout", env=env)
    assert code == 1
    assert outcome["failure"] == "helm rollback failed: exit 1: Error: release: not found"
    assert "rollback of checkout in production FAILED: helm rollback failed" in text
    assert _deployments(db)[outcome["rollback"]["id"]]["status"] == "failure"
    missing, outcome, _ = _rollback(db, "--strategy", "kubectl", "--resource", "deployment/x", env={"PATH": "/nowhere"})
    assert missing == 1 and outcome["failure"] == "kubectl rollout undo failed: kubectl is not on PATH"


def test_the_rollback_tells_slack_and_the_pagerduty_incident(db: str, tmp_path: Path, vendors: VendorServer) -> None:
    env = {
        "SLACK_WEBHOOK_URL": f"{vendors.base}/services/T/B/X",
        "PAGERDUTY_API_TOKEN": "pd-token-1",
        "PAGERDUTY_FROM": "oncall@example.com",
        "PAGERDUTY_API_URL": vendors.base,
    }
    code, outcome, _ = _rollback(db, "--strategy", "command", "--incident", "PT4KHLK", "--", "true", env=env)
    assert code == 0 and outcome["warnings"] == []
    (note,) = vendors.at("/incidents/PT4KHLK/notes")
    assert note.method == "POST"
    assert note.headers["Authorization"] == "Token token=pd-token-1" and note.headers["From"] == "oncall@example.com"
    assert note.headers["Accept"] == "application/vnd.pagerduty+json;version=2"
    assert note.body["note"]["content"] == (
        "shipscope: checkout in production rolled back to v1.0.0 with the command strategy; rolled back: deploy-2"
    )
    (slack,) = vendors.at("/services/T/B/X")
    header = slack.body["blocks"][0]["text"]["text"]
    assert header == ":leftwards_arrow_with_hook: Rolled back checkout in production to v1.0.0"


def test_dry_run_and_bad_input(db: str) -> None:
    result = runner.invoke(
        app,
        ["deploy", "rollback", *WHERE, "--db", db, "--strategy", "kubectl", "--resource", "deployment/c", "--dry-run"],
    )
    assert result.exit_code == 0 and "kubectl rollout undo deployment/c" in result.stdout
    assert _deployments(db).keys() == {"deploy-1", "deploy-2"}  # nothing recorded
    unknown = runner.invoke(app, ["deploy", "rollback", *WHERE, "--db", db, "--strategy", "flux"])
    assert unknown.exit_code == 4 and "expected one of gitops, argocd" in unknown.stderr
    incomplete = runner.invoke(app, ["deploy", "rollback", *WHERE, "--db", db, "--strategy", "helm"])
    assert incomplete.exit_code == 4 and "the helm rollback needs --release" in incomplete.stderr


def test_two_rollbacks_in_one_second_are_both_recorded(db: str) -> None:
    info = DeployInfo(service="checkout", environment="production", id="deploy-2", sha="2" * 40)
    options = RollbackOptions(strategy="command", command=("false",))
    store = Store(db)
    try:
        ids = [
            roll_back(info, options, StoreLedger(store), of="deploy-2", at=at, clock=lambda at=at: at).rollback.id
            for at in (datetime(2026, 11, 2, 11, 0, 0, 100_000, UTC), datetime(2026, 11, 2, 11, 0, 0, 900_000, UTC))
        ]
    finally:
        store.close()
    assert ids == ["rollback-deploy-2-20261102T110000100000Z", "rollback-deploy-2-20261102T110000900000Z"]
    recorded = _deployments(db)
    assert [recorded[identifier]["status"] for identifier in ids] == ["failure", "failure"]

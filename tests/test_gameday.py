"""`shipscope gameday`: every experiment breaks its dependency for real and must fail cleanly; and a failure that is
not clean (a record half-written, a wrong exit code, a traceback) is reported as such."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from shipscope.deploy.ledger import StoreLedger
from shipscope.events import Deployment
from shipscope.gameday import EXPERIMENTS, Completed, Experiment, Staging, Trial, run_gameday
from shipscope.store import Store, schema

pytestmark = pytest.mark.slow


def test_every_experiment_fails_cleanly(db_url: str) -> None:
    outcomes = run_gameday(db_url, service="gameday-test")
    assert [outcome.experiment.name for outcome in outcomes] == [experiment.name for experiment in EXPERIMENTS]
    assert {outcome.experiment.name: outcome.problems for outcome in outcomes} == {
        experiment.name: [] for experiment in EXPERIMENTS
    }
    store = Store(db_url)
    try:
        deployments = store.query(sa.select(schema.deployments).where(schema.deployments.c.service == "gameday-test"))
        verdicts = store.query(
            sa.select(schema.timeline_events).where(schema.timeline_events.c.service == "gameday-test")
        )
    finally:
        store.close()
    # The two seeded deploys, and one failed rollback per rollback experiment whose tool ran.
    assert sorted((row["kind"], row["status"]) for row in deployments) == [
        ("deploy", "success"),
        ("deploy", "success"),
        ("rollback", "failure"),
        ("rollback", "failure"),
    ]
    assert sorted(row["kind"] for row in verdicts) == ["analysis", "gate", "gate", "gate", "marker", "marker"]
    by_name = {outcome.experiment.name: outcome for outcome in outcomes}
    assert by_name["gate-prometheus-hangs"].completed.seconds < 10


def _half_written(staging: Staging, faults: object) -> Trial:
    """A command killed between its two writes: the rollback stays in progress."""
    with staging.opened() as store:
        moment = datetime.now(UTC)
        StoreLedger(store).write(
            [
                Deployment(
                    source="shipscope",
                    id="rollback-half",
                    service=staging.service,
                    environment=staging.environment,
                    sha="d4" * 20,
                    status="in_progress",
                    started_at=moment,
                    kind="rollback",
                )
            ]
        )
    return Completed(-9, "Traceback (most recent call last):\n  killed", 0.2), []


def test_a_failure_that_is_not_clean_is_reported() -> None:
    dirty = Experiment(
        "half-written", "the process is killed mid-rollback", "deploy rollback", 1, "cluster", {}, 0, _half_written
    )
    (outcome,) = run_gameday(None, experiments=[dirty])
    assert not outcome.clean
    assert outcome.problems == [
        "exit -9, expected 1",
        "printed a traceback",
        "its message does not say 'cluster'",
        "left deployment rollback in_progress ×1 in the database",
        "journalled 1 entries, expected 0",
        "left a deployment in progress",
    ]


def test_the_command_reports_each_experiment(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "shipscope", "gameday", "--json"]
    chosen = ["--only", "gate-prometheus-refuses", "--only", "rollback-tool-fails"]
    done = subprocess.run([*command, *chosen], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert [(item["experiment"], item["clean"], item["exit_code"]) for item in report] == [
        ("gate-prometheus-refuses", True, 3),
        ("rollback-tool-fails", True, 1),
    ]
    assert "rollback-tool-fails: failed cleanly" in done.stderr
    unknown = subprocess.run([*command, "--only", "nope"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert unknown.returncode == 2
    assert "no experiment nope; the experiments are gate-prometheus-refuses" in unknown.stderr

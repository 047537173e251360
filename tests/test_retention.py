"""Retention per table: what each table keeps no longer goes, dated by its own column or by its run; the journal
must outlive every table; reprocess does not bring back what was pruned; a server prunes by itself."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from shipscope.cli.main import app as cli
from shipscope.config import Settings
from shipscope.errors import ConfigError
from shipscope.store import Store, schema
from shipscope.store.retention import Retention
from shipscope.web.app import create_app
from tests.factories import delivery, deployment, run

NOW = datetime(2026, 12, 1, tzinfo=UTC)
POLICY = {"raw_events": "400d", "pipeline_runs": "13w", "test_cases": "90d", "deployments": "90d"}


def _case(run_id: str | None, name: str) -> dict[str, Any]:
    event = {"type": "test_case", "suite": "unit", "name": name, "duration_seconds": 1.5, "outcome": "passed"}
    return event if run_id is None else {**event, "run_id": run_id}


def _history(store: Store) -> None:
    """An old and a recent run, each with a test case, one test case of no known run, an old and a recent deploy;
    the old half journalled long ago."""
    old, recent = "2026-06-01T10:00:00Z", "2026-11-20T10:00:00Z"
    events = [
        run("old", created_at=old, started_at=old, finished_at=old),
        run("recent", created_at=recent, started_at=recent, finished_at=recent),
        _case("old", "test_old"),
        _case("recent", "test_recent"),
        _case(None, "test_of_no_run"),
        deployment("d-old", started_at=old, finished_at=old),
        deployment("d-recent", started_at=recent, finished_at=recent),
    ]
    with store.engine.begin() as conn:
        store.write(conn, [delivery(event) for event in events])
        journal = schema.raw_events
        first = conn.execute(sa.select(sa.func.min(journal.c.seq))).scalar_one()
        conn.execute(sa.update(journal).where(journal.c.seq < first + 3).values(received_at=NOW - timedelta(days=500)))


def _left(store: Store) -> dict[str, list[Any]]:
    return {
        "runs": sorted(row["id"] for row in store.rows(schema.pipeline_runs)),
        "cases": sorted(row["name"] for row in store.rows(schema.test_cases)),
        "deployments": sorted(row["id"] for row in store.rows(schema.deployments)),
        "journal": [len(store.rows(schema.raw_events))],
    }


def test_each_table_keeps_what_its_retention_says(store: Store) -> None:
    _history(store)
    retention = Retention.from_config(POLICY)
    counted = store.prune(retention, NOW, dry_run=True)
    assert _left(store)["runs"] == ["old", "recent"]
    pruned = store.prune(retention, NOW)
    assert pruned == counted
    # Tables not named go with the journal (400 days), which keeps all of them here.
    assert {table: rows for table, rows in pruned.items() if rows} == {
        "test_cases": 1,
        "raw_events": 3,
        "pipeline_runs": 1,
        "deployments": 1,
    }
    assert _left(store) == {
        "runs": ["recent"],
        "cases": ["test_of_no_run", "test_recent"],
        "deployments": ["d-recent"],
        "journal": [4],
    }
    again = store.prune(retention, NOW)
    assert again.keys() == pruned.keys() and not any(again.values())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"builds": "30d"}, "retention: no table 'builds'; the tables are caches, changes"),
        ({"jobs": "3 months"}, 'retention.jobs: expected a duration such as "90d" or "26w", got \'3 months\''),
        ({"jobs": "0d"}, "retention.jobs: expected a duration"),
        ({"raw_events": "30d", "jobs": "60d"}, "but jobs would outlive it"),
    ],
)
def test_a_retention_that_cannot_hold_is_refused(config: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Retention.from_config(config)
    assert message in refused.value.message


def test_tables_not_named_go_with_the_journal() -> None:
    keep = Retention.from_config({"raw_events": "730d", "steps": "30d"}).keep
    assert (keep["raw_events"], keep["steps"], keep["jobs"], keep["test_cases"]) == (
        timedelta(days=730),
        timedelta(days=30),
        timedelta(days=730),
        timedelta(days=730),
    )
    assert "ingest_rejections" not in keep


def test_reprocess_does_not_bring_back_what_was_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"duckdb:///{tmp_path / 'kept.duckdb'}"
    (tmp_path / "shipscope.toml").write_text('[retention]\npipeline_runs = "90d"\n')
    monkeypatch.chdir(tmp_path)
    store = Store(db)
    store.ensure_schema()
    try:
        _history(store)
    finally:
        store.close()
    runner = CliRunner()
    dry = runner.invoke(cli, ["db", "prune", "--dry-run", "--db", db])
    assert dry.exit_code == 0, dry.output
    assert "pipeline_runs: would delete 1 rows older than 90 days" in dry.stderr
    reprocessed = runner.invoke(cli, ["reprocess", "--db", db])
    assert reprocessed.exit_code == 0, reprocessed.output
    store = Store(db)
    try:
        assert _left(store)["runs"] == ["recent"]
    finally:
        store.close()
    (tmp_path / "shipscope.toml").write_text("")
    unset = runner.invoke(cli, ["db", "prune", "--db", db])
    assert unset.exit_code == 2 and "no table has a retention" in unset.stderr


def test_a_server_prunes_at_start(db_url: str) -> None:
    store = Store(db_url)
    try:
        store.ensure_schema()
        _history(store)
    finally:
        store.close()
    # "Old" is relative to the server's clock: keep what is newer than September, so November's run stays.
    days = (datetime.now(UTC) - datetime(2026, 9, 1, tzinfo=UTC)).days
    app = create_app(Settings(db=db_url, alert_interval_seconds=0, retention={"pipeline_runs": f"{days}d"}))
    with TestClient(app) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            runs = client.get("/api/v1/events", params={"type": "pipeline_run"}).json()["events"]
            if len(runs) == 1:
                break
            time.sleep(0.05)
        assert [event["id"] for event in runs] == ["recent"]

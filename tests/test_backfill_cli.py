"""`shipscope backfill` end to end: the local vendor stand-in of test_backfill, a real store on both backends."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from shipscope.cli.main import EXIT_STOPPED, app
from shipscope.store import Store, schema
from tests.test_backfill import REPO, TOKEN, FakeApi, github_data, gitlab_data, serve_github, serve_gitlab

runner = CliRunner()


@pytest.fixture
def github_api() -> Iterator[FakeApi]:
    api = FakeApi("github")
    serve_github(api, github_data())
    yield api
    api.close()


@pytest.fixture
def gitlab_api() -> Iterator[FakeApi]:
    api = FakeApi("gitlab")
    serve_gitlab(api, gitlab_data())
    yield api
    api.close()


def _counts(db_url: str) -> dict[str, int]:
    store = Store(db_url)
    try:
        return {name: count for name, count in store.counts().items() if count}
    finally:
        store.close()


def test_github_backfill_stores_history_and_a_rerun_adds_nothing(db_url: str, github_api: FakeApi) -> None:
    api = github_api
    arguments = ["backfill", "github", "--repo", REPO, "--since", "2019-01-01", "--base-url", api.base, "--db", db_url]
    first = runner.invoke(app, arguments, env={"GITHUB_TOKEN": TOKEN})
    assert first.exit_code == 0, first.stderr
    assert api.violations == []
    counts = _counts(db_url)
    assert counts["pipeline_runs"] == 5 and counts["jobs"] > 0 and counts["deployments"] > 0
    assert counts["source_cursors"] > 0
    assert TOKEN not in first.stderr and TOKEN not in first.stdout
    journal = counts["raw_events"]
    second = runner.invoke(app, arguments, env={"GITHUB_TOKEN": TOKEN})
    assert second.exit_code == 0, second.stderr
    assert "stored 0 events" in second.stderr
    assert _counts(db_url)["raw_events"] == journal


def test_a_spent_budget_stops_with_exit_3_and_the_next_run_resumes(db_url: str, github_api: FakeApi) -> None:
    api = github_api
    base = ["backfill", "github", "--repo", REPO, "--since", "2019-01-01", "--base-url", api.base, "--db", db_url]
    stopped = runner.invoke(app, [*base, "--budget", "6"], env={"GITHUB_TOKEN": TOKEN})
    assert stopped.exit_code == EXIT_STOPPED, stopped.stderr
    assert "request budget of 6 requests used up" in stopped.stderr
    partial = _counts(db_url)["raw_events"]
    finished = runner.invoke(app, base, env={"GITHUB_TOKEN": TOKEN})
    assert finished.exit_code == 0, finished.stderr
    store = Store(db_url)
    try:
        journal = store.rows(schema.raw_events)
    finally:
        store.close()
    assert len(journal) > partial
    assert len({row["delivery_id"] for row in journal}) == len(journal)


def test_gitlab_backfill(db_url: str, gitlab_api: FakeApi) -> None:
    api = gitlab_api
    result = runner.invoke(
        app,
        [
            "backfill",
            "gitlab",
            "--project",
            "1",
            "--since",
            "2013-01-01",
            "--base-url",
            f"{api.base}/api/v4",
            "--db",
            db_url,
        ],
        env={"GITLAB_TOKEN": TOKEN},
    )
    assert result.exit_code == 0, result.stderr
    assert api.violations == []
    counts = _counts(db_url)
    assert counts["pipeline_runs"] >= 3 and counts["pull_requests"] >= 1


def test_backfill_goes_through_the_server_that_holds_the_file(github_api: FakeApi, tmp_path: Path) -> None:
    """While `shipscope serve` owns the DuckDB file, the backfill journals through its API, cursors included."""
    from tests.test_cli import _shipscope, running_server

    with running_server(tmp_path) as (url, database):
        arguments = ["backfill", "github", "--repo", REPO, "--since", "2019-01-01", "--base-url", github_api.base]
        first = _shipscope(*arguments, "--db", f"duckdb:///{database}", env={**os.environ, "GITHUB_TOKEN": TOKEN})
        assert first.returncode == 0, first.stderr
        assert "sending through its API" in first.stderr
        runs = httpx.get(f"{url}/api/v1/events", params={"type": "pipeline_run"}).json()["events"]
        assert len(runs) == 5
        again = _shipscope(*arguments, "--db", f"duckdb:///{database}", env={**os.environ, "GITHUB_TOKEN": TOKEN})
        assert again.returncode == 0, again.stderr
        assert "stored 0 events" in again.stderr

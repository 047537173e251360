"""`shipscope git import`: a real git repository made in the test, read with git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipscope.cli.main import app
from shipscope.ingest.git_history import change_events, pr_number
from shipscope.store import Store, schema


def _commit(repo: Path, message: str, when: str, author: str) -> None:
    (repo / "file.txt").write_text(message)
    subprocess.run(["git", "-C", str(repo), "add", "file.txt"], check=True)
    environment = {
        "GIT_AUTHOR_NAME": author,
        "GIT_AUTHOR_EMAIL": f"{author}@example.com",
        "GIT_AUTHOR_DATE": when,
        "GIT_COMMITTER_NAME": "ci",
        "GIT_COMMITTER_EMAIL": "ci@example.com",
        "GIT_COMMITTER_DATE": when,
        "PATH": "/usr/bin:/bin",
        "HOME": str(repo),
    }
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", message], check=True, env=environment)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    repo = tmp_path / "shop"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    _commit(repo, "Add cart", "2026-03-01T10:00:00+02:00", "ana")
    _commit(repo, "Fix totals (#42)", "2026-03-02T09:30:00-05:00", "bo")
    _commit(repo, "Merge pull request #43 from acme/feature\n\nBody text", "2026-03-03T12:00:00Z", "cy")
    return repo


def test_commits_become_changes_with_their_offsets_and_pr_numbers(clone: Path) -> None:
    events = list(change_events(clone, "acme/shop"))
    assert [event["message"].splitlines()[0] for event in events] == [
        "Merge pull request #43 from acme/feature",
        "Fix totals (#42)",
        "Add cart",
    ]
    assert [event.get("pr_number") for event in events] == [43, 42, None]
    assert events[1]["authored_at"] == "2026-03-02T09:30:00-05:00"
    assert events[2]["author"] == "ana"


@pytest.mark.parametrize(
    ("message", "number"),
    [
        ("Merge pull request #7 from a/b", 7),
        ("Squash (#19)\n\nmore", 19),
        ("Update\n\nSee merge request group/app!5", 5),
        ("No reference here #3 in text", None),
    ],
)
def test_pr_numbers(message: str, number: int | None) -> None:
    assert pr_number(message) == number


def test_git_import_command(db_url: str, clone: Path) -> None:
    result = CliRunner().invoke(app, ["git", "import", str(clone), "--repo", "acme/shop", "--db", db_url])
    assert result.exit_code == 0, result.stderr
    assert "stored 3" in result.stderr
    store = Store(db_url)
    try:
        rows = store.rows(schema.changes)
    finally:
        store.close()
    assert sorted(row.get("pr_number") or 0 for row in rows) == [0, 42, 43]


def test_not_a_clone_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["git", "import", str(tmp_path), "--repo", "a/b", "--db", f"duckdb:///{tmp_path}/x.duckdb"]
    )
    assert result.exit_code == 2
    assert "is not a git clone" in result.stderr

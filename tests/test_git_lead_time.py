"""Lead time from a real git history, on both backends: a generated repository with merges, a release branch and
tags (real git, several hundred commits), `shipscope git import`, and one production deployment per tag at the tag's
commit. DORA must count exactly the commits `git rev-list PREV..THIS` lists for each release, and its median lead
time must be the median of each release's deploy time less `git log --format=%at PREV..THIS`."""

from __future__ import annotations

import os
import statistics
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from shipscope.cli.main import app
from shipscope.metrics.common import Filters, Window
from shipscope.metrics.dora import DoraView, dora_report, dora_reports
from shipscope.store import Store
from tests.factories import delivery, deployment

runner = CliRunner()
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Repo:
    """A repository whose commits each happen an hour after the last (author and committer time alike)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = START
        self.count = 0
        path.mkdir(parents=True)
        self._git("init", "-q", "--initial-branch=main")

    def _git(self, *args: str) -> str:
        moment = self.clock.isoformat()
        environment = {
            **os.environ,
            "GIT_AUTHOR_NAME": "dev",
            "GIT_AUTHOR_EMAIL": "dev@example.com",
            "GIT_COMMITTER_NAME": "dev",
            "GIT_COMMITTER_EMAIL": "dev@example.com",
            "GIT_AUTHOR_DATE": moment,
            "GIT_COMMITTER_DATE": moment,
        }
        done = subprocess.run(
            ["git", "-C", str(self.path), *args], check=True, capture_output=True, text=True, env=environment
        )
        return done.stdout.strip()

    def commit(self, subject: str) -> None:
        self.clock += timedelta(hours=1)
        self.count += 1
        (self.path / f"file-{self.count % 7}.txt").write_text(f"{subject}\n{self.count}\n")
        self._git("add", "-A")
        self._git("commit", "-q", "-m", subject)

    def branch(self, name: str, start: str = "HEAD") -> None:
        self._git("checkout", "-q", "-b", name, start)

    def checkout(self, name: str) -> None:
        self._git("checkout", "-q", name)

    def merge(self, name: str) -> None:
        self.clock += timedelta(hours=1)
        self._git("merge", "-q", "--no-ff", "-m", f"Merge branch '{name}'", name)

    def tag(self, name: str) -> str:
        self._git("tag", name)
        return self._git("rev-parse", "HEAD")

    def rev_list(self, previous: str, this: str) -> list[str]:
        return self._git("rev-list", f"{previous}..{this}").split()

    def author_times(self, previous: str, this: str) -> list[int]:
        return [int(line) for line in self._git("log", "--format=%at", f"{previous}..{this}").split()]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Repo, list[tuple[str, str, datetime]]]:
    """The repository and its releases (tag, sha, deploy time), in the order they were deployed."""
    repo = Repo(tmp_path_factory.mktemp("lead-time") / "app")
    releases: list[tuple[str, str, datetime]] = []

    def release(name: str) -> None:
        releases.append((name, repo.tag(name), repo.clock + timedelta(hours=2)))

    for number in range(30):
        repo.commit(f"initial work {number}")
    release("v1.0.0")
    for minor in range(1, 10):
        for feature in range(4):  # feature branches merged with merge commits
            repo.branch(f"feature-{minor}-{feature}")
            for step in range(6):
                repo.commit(f"feature {minor}.{feature} step {step}")
            repo.checkout("main")
            repo.commit(f"main work {minor}.{feature}")
            repo.merge(f"feature-{minor}-{feature}")
        for step in range(8):
            repo.commit(f"main fix {minor}.{step}")
        release(f"v1.{minor}.0")
        if minor in (2, 5):  # a release branch with its own patch release, never merged back
            repo.branch(f"release-1.{minor}")
            for step in range(4):
                repo.commit(f"backport {minor}.{step}")
            release(f"v1.{minor}.1")
            repo.checkout("main")
    assert repo.count > 300
    return repo, releases


def test_lead_time_counts_exactly_what_git_rev_list_lists(
    db_url: str, history: tuple[Repo, list[tuple[str, str, datetime]]]
) -> None:
    repo, releases = history
    imported = runner.invoke(app, ["git", "import", str(repo.path), "--repo", "acme/app", "--db", db_url])
    assert imported.exit_code == 0, imported.output
    store = Store(db_url)
    try:
        store.ingest(
            [
                delivery(
                    deployment(
                        f"deploy-{tag}",
                        sha=sha,
                        version=tag,
                        service="app",
                        started_at=(at - timedelta(minutes=10)).isoformat(),
                        finished_at=at.isoformat(),
                    )
                )
                for tag, sha, at in releases
            ]
        )
        window = Window(START, releases[-1][2] + timedelta(days=1))
        report = dora_report(store, window, Filters(service="app"))
        # Windows starting mid-history read the earlier deploys from one load of the widest: the same reports.
        later = [Window(at - timedelta(hours=1), window.until) for _, _, at in releases[3::4]]
        views = [DoraView(window), *(DoraView(each, "week", per_service=False) for each in later)]
        shared = dora_reports(store, views, Filters(service="app"))
        alone = [
            dora_report(store, v.window, Filters(service="app"), trend=v.trend, per_service=v.per_service)
            for v in views
        ]
        assert [each.to_json(explain=True) for each in shared] == [each.to_json(explain=True) for each in alone]
    finally:
        store.close()
    measured: dict[str, list[float]] = {}
    for record in report.overall.changes:
        measured.setdefault(record.deployment_id, []).append(record.lead_time_seconds)
    expected_all: list[float] = []
    for (previous, _, _), (tag, _, deployed) in zip(releases, releases[1:], strict=False):
        listed = repo.rev_list(previous, tag)
        assert len(measured.get(f"deploy-{tag}", [])) == len(listed), tag
        expected = sorted(deployed.timestamp() - moment for moment in repo.author_times(previous, tag))
        assert sorted(measured[f"deploy-{tag}"]) == pytest.approx(expected), tag
        expected_all += expected
    assert len(report.overall.changes) == len(expected_all)
    median = orjson.loads(orjson.dumps(report.to_json()))["overall"]["lead_time"]["median_seconds"]
    assert median == pytest.approx(statistics.median(expected_all))

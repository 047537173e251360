"""`shipscope push` to a real Pushgateway, read back by a real Prometheus; and it never fails the pipeline."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipscope.exporters.pushgateway import PushOptions, push
from tests.services import prometheus, pushgateway
from tests.test_record import (
    GITHUB_REPO,
    NOW,
    VENDOR_TOKEN,
    FakeServer,
    Sleeps,
    completed_steps,
    github_env,
    github_job,
    serve_github,
)


@pytest.fixture
def github() -> Iterator[FakeServer]:
    fake = FakeServer()
    fake.start()
    try:
        serve_github(fake, [github_job("workflow_job.completed.success.json")])
        yield fake
    finally:
        fake.stop()


def _groups(gateway: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = httpx.get(f"{gateway}/api/v1/metrics", timeout=5).json()["data"]
    return data


def _stage_seconds(job: dict[str, Any]) -> dict[str, float]:
    """The fixture job's completed steps summed by the default stage patterns, computed here from the payload."""
    from shipscope.config import DEFAULT_STAGE_PATTERNS
    from shipscope.store.rows import StageMatcher

    stage_for = StageMatcher(DEFAULT_STAGE_PATTERNS)
    seconds: dict[str, float] = {}
    for step in completed_steps(job):
        if step["conclusion"] not in ("success", "failure"):
            continue
        took = (
            datetime.fromisoformat(step["completed_at"]) - datetime.fromisoformat(step["started_at"])
        ).total_seconds()
        seconds[stage_for(step["name"])] = seconds.get(stage_for(step["name"]), 0.0) + took
    return seconds


@pytest.mark.slow
def test_a_push_lands_in_the_pushgateway_and_prometheus_reads_it(github: FakeServer, tmp_path: Path) -> None:
    with pushgateway(tmp_path) as gateway:
        options = PushOptions(gateway_url=gateway, status="success", vendor_token=VENDOR_TOKEN)
        outcome = push(options, github_env(github.url), now=NOW, sleep=Sleeps())
        assert outcome.warnings == [] and outcome.pushed
        assert outcome.grouping_key == {"job": "ci", "repo": GITHUB_REPO, "workflow": "CI", "branch_kind": "default"}
        # A second run of the same pipeline replaces the first: the group is the pipeline, not the run.
        again = push(options, github_env(github.url, GITHUB_RUN_ATTEMPT="1", GITHUB_SHA="f" * 40), now=NOW)
        assert again.pushed
        [group] = [group for group in _groups(gateway) if group["labels"].get("repo") == GITHUB_REPO]
        assert group["labels"] == outcome.grouping_key
        with prometheus(tmp_path, {"pushgateway": gateway.removeprefix("http://")}, honor_labels=True) as prom:
            where = f'job="ci",repo="{GITHUB_REPO}",workflow="CI",branch_kind="default"'
            assert prom.value(f"ci_build_success{{{where}}}") == 1
            duration = prom.value(f"ci_build_duration_seconds{{{where}}}")
            job = github_job("workflow_job.completed.success.json")
            for stage, seconds in _stage_seconds(job).items():
                assert prom.value(f'ci_build_stage_duration_seconds{{{where},stage="{stage}"}}') == seconds
            assert prom.value(f'ci_build_job_duration_seconds{{{where},job_name="{job["name"]}"}}') > 0
    assert duration > 0


def test_an_unreachable_gateway_is_a_warning_after_the_retries(github: FakeServer, tmp_path: Path) -> None:
    sleeps = Sleeps()
    options = PushOptions(gateway_url="http://127.0.0.1:9", status="failure", vendor_token=VENDOR_TOKEN, retries=2)
    outcome = push(options, github_env(github.url), now=NOW, sleep=sleeps)
    assert not outcome.pushed
    assert sleeps.delays == [1.0, 2.0]
    [warning] = outcome.warnings
    assert warning.startswith("push to http://127.0.0.1:9/metrics/job@base64/") and "failed" in warning
    assert "ci_build_success 0.0" in outcome.exposition


def test_the_command_never_fails_the_pipeline(tmp_path: Path) -> None:
    env = {**os.environ, **github_env("http://127.0.0.1:9"), "SHIPSCOPE_PUSHGATEWAY_URL": "http://127.0.0.1:9"}
    env.pop("GITHUB_TOKEN", None)
    command = [sys.executable, "-m", "shipscope", "push", "--status", "success", "--retries", "0"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "failed" in result.stderr
    bad_flag = subprocess.run(
        [*command, "--grouping", "nonsense"], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path
    )
    assert bad_flag.returncode == 0 and "expected NAME=VALUE" in bad_flag.stderr


def test_dry_run_prints_the_request_without_pushing(tmp_path: Path) -> None:
    env = {**os.environ, **github_env("http://127.0.0.1:9")}
    env.pop("GITHUB_TOKEN", None)
    command = [sys.executable, "-m", "shipscope", "push", "--status", "failure", "--dry-run"]
    command += ["--gateway", "http://gateway.invalid:9091", "--grouping", "environment=staging"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first, *rest = result.stdout.splitlines()
    assert first.startswith("PUT http://gateway.invalid:9091/metrics/job@base64/Y2k=/repo@base64/")
    assert first.endswith("/environment@base64/c3RhZ2luZw==")
    assert "ci_build_success 0.0" in rest

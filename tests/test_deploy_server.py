"""Deploy commands against a served shipscope, as in a pipeline: `start` and `finish` with `--json`, and a rollback
step that a pipeline's timeout terminates (SIGTERM: recorded failed) or kills (SIGKILL: left in progress), never
missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipscope.store import Store
from tests.factories import delivery, deployment
from tests.services import shipscope_serve, wait_until

IDENTITY = ["--service", "checkout", "--env", "production"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    url = f"duckdb:///{tmp_path / 'served.duckdb'}"
    store = Store(url)
    store.ensure_schema()
    store.ingest([delivery(deployment("deploy-1", sha="1" * 40, version="v1.0.0"))])
    store.close()
    with shipscope_serve(url, tmp_path) as base:
        yield base


def _shipscope(*args: str, server: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipscope", *args, "--server", server, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SHIPSCOPE_TOKEN": ""},
    )


def _deployments(server: str) -> dict[str, dict[str, Any]]:
    page = httpx.get(f"{server}/api/v1/events", params={"type": "deployment", "limit": "100"}, timeout=10).json()
    return {event["id"]: event for event in page["events"]}


def test_start_then_finish_record_one_deployment_with_its_duration(server: str) -> None:
    where = [*IDENTITY, "--version", "v1.1.0", "--sha", "2" * 40, "--id", "deploy-2", "--actor", "ana"]
    started = _shipscope("deploy", "start", *where, server=server)
    assert started.returncode == 0, started.stderr
    document = json.loads(started.stdout)
    assert document["deployment"]["id"] == "deploy-2" and document["status"] == "in_progress"
    assert _deployments(server)["deploy-2"]["status"] == "in_progress"

    finished = _shipscope("deploy", "finish", *where, "--status", "failure", server=server)
    assert finished.returncode == 0, finished.stderr
    document = json.loads(finished.stdout)
    assert document["status"] == "failure" and document["duration_seconds"] >= 0
    stored = _deployments(server)["deploy-2"]
    assert (stored["status"], stored["version"], stored["actor"]) == ("failure", "v1.1.0", "ana")
    assert stored["started_at"] <= stored["finished_at"]
    assert sorted(_deployments(server)) == ["deploy-1", "deploy-2"]  # the start and the finish are one deployment


def test_finish_with_a_bad_status_is_refused_without_recording(server: str) -> None:
    done = _shipscope(
        "deploy", "finish", *IDENTITY, "--sha", "2" * 40, "--id", "deploy-2", "--status", "meh", server=server
    )
    assert done.returncode == 4 and "expected success, failure, cancelled" in done.stderr
    assert "Traceback" not in done.stderr
    assert "deploy-2" not in _deployments(server)


@pytest.mark.parametrize(("signum", "left"), [(signal.SIGTERM, "failure"), (signal.SIGKILL, "in_progress")])
def test_a_rollback_step_cut_off_by_the_pipeline_is_recorded(server: str, signum: int, left: str) -> None:
    command = [sys.executable, "-m", "shipscope", "deploy", "rollback", *IDENTITY, "--strategy", "command"]
    command += ["--server", server, "--no-notify", "--", "sleep", "30"]
    with subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env={**os.environ, "SHIPSCOPE_TOKEN": ""}
    ) as step:
        try:
            wait_until(
                lambda: any(event.get("kind") == "rollback" for event in _deployments(server).values()),
                "the rollback recorded in progress",
            )
            step.send_signal(signum)
            code = step.wait(timeout=20)
        finally:
            if step.poll() is None:
                step.kill()
        said = step.communicate()[1]
    assert "Traceback" not in said, said
    assert code == (128 + signum if signum == signal.SIGTERM else -signum)
    [rollback] = [event for event in _deployments(server).values() if event.get("kind") == "rollback"]
    assert rollback["status"] == left and rollback["rollback_of"] == "deploy-1"
    assert ("finished_at" in rollback) is (left == "failure")

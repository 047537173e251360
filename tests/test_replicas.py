"""Duplicates and disorder across two server processes on one PostgreSQL database (the team deployment): a stream of
lifecycles (runs queued → in progress → done, deployments, incidents opened then resolved) shuffled, replayed and
interleaved across both replicas gives exactly the tables the ordered stream gives a single store."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from shipscope.store import Store
from tests.factories import delivery
from tests.services import Server

pytestmark = [pytest.mark.slow, pytest.mark.backends("postgresql")]
TYPES = ("pipeline_run", "deployment", "incident")


def _stream() -> list[dict[str, Any]]:
    """Each lifecycle's events in order; later ones carry what earlier ones did, and more."""
    events: list[dict[str, Any]] = []
    for number in range(60):
        run = {
            "type": "pipeline_run",
            "source": "github",
            "id": f"run-{number}",
            "repo": "acme/shop",
            "workflow": "ci",
            "trigger": "push",
            "branch": "main",
            "sha": f"{number:040x}",
            "created_at": "2026-03-01T10:00:00Z",
        }
        running = {**run, "status": "in_progress", "started_at": "2026-03-01T10:01:00Z"}
        final = {
            **running,
            "status": "failure" if number % 5 == 0 else "success",
            "finished_at": "2026-03-01T10:09:00Z",
        }
        events += [{**run, "status": "queued"}, running, final]
    for number in range(30):
        started = {
            "type": "deployment",
            "id": f"deploy-{number}",
            "service": "checkout",
            "environment": "production",
            "sha": f"{number:040x}",
            "status": "in_progress",
            "started_at": f"2026-03-02T{number % 24:02}:00:00Z",
        }
        events += [started, {**started, "status": "success", "finished_at": f"2026-03-02T{number % 24:02}:05:00Z"}]
    for number in range(20):
        opened = {
            "type": "incident",
            "id": f"INC-{number}",
            "service": "checkout",
            "title": f"Incident {number}",
            "opened_at": "2026-03-03T10:00:00Z",
        }
        events += [opened, {**opened, "resolved_at": "2026-03-03T11:00:00Z", "severity": "SEV2"}]
    return events


def _tables(url: str) -> dict[str, list[dict[str, Any]]]:
    store = Store(url)
    try:
        return {
            kind: sorted(store.list_events(kind, limit=10_000).events, key=lambda event: (event["source"], event["id"]))
            for kind in TYPES
        }
    finally:
        store.close()


@pytest.fixture
def replicas(db_url: str, tmp_path: Path) -> Iterator[list[Server]]:
    servers = [Server(db_url, tmp_path), Server(db_url, tmp_path)]
    for server in servers:
        server.start()
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_two_replicas_given_a_shuffled_replayed_stream_give_the_ordered_tables(
    replicas: list[Server], db_url: str, tmp_path: Path
) -> None:
    events = _stream()
    reference = f"duckdb:///{tmp_path / 'ordered.duckdb'}"
    store = Store(reference)
    store.ensure_schema()
    store.ingest([delivery(event) for event in events])
    store.close()

    rng = random.Random(7)
    replayed = events + rng.sample(events, len(events) // 2)  # half of the stream a second time
    rng.shuffle(replayed)
    halves = [replayed[0::2], replayed[1::2]]
    problems: list[str] = []

    def send(server: Server, part: list[dict[str, Any]]) -> None:
        with httpx.Client(timeout=10.0) as client:
            for event in part:
                answer = client.post(f"{server.base}/api/v1/events", content=orjson.dumps(event))
                if answer.status_code != 200:
                    problems.append(f"{answer.status_code} {answer.text}")

    threads = [
        threading.Thread(target=send, args=(server, part)) for server, part in zip(replicas, halves, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert problems == []
    assert _tables(db_url) == _tables(reference)

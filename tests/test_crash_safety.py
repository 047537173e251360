"""Crash safety, on both backends: a sustained stream of single-event deliveries (events and webhooks) while the
server is killed with SIGKILL at random moments, at least five times, and restarted. Each delivery is retried until
it is acknowledged, as senders do; afterwards every acknowledged delivery is stored exactly once: one journal entry
and one row each, nothing lost to a kill and nothing doubled by a retry."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from shipscope.store import Store, schema
from tests.factories import deployment
from tests.services import Server

KILLS = 5
SENDERS = 4

pytestmark = pytest.mark.slow


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    running = Server(db_url, tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _delivery(number: int) -> tuple[str, bytes]:
    """Alternately a canonical event and a GitLab deployment hook, each naming a deployment of its own."""
    if number % 2:
        event = deployment(f"crash-{number}", sha=f"{number:040x}", started_at="2026-03-01T10:00:00Z")
        return "/api/v1/events", orjson.dumps(event)
    hook: dict[str, Any] = {
        "object_kind": "deployment",
        "status": "success",
        "status_changed_at": "2026-03-01 10:05:00 UTC",
        "deployment_id": number,
        "deployable_id": number,
        "environment": "production",
        "project": {"id": 1, "name": "shop", "path_with_namespace": "acme/shop"},
        "short_sha": f"{number:08x}",
        "commit_url": f"https://gitlab.example.com/acme/shop/-/commit/{number:040x}",
        "user": {"username": "dev"},
    }
    return "/webhooks/gitlab", orjson.dumps(hook)


def test_every_acknowledged_delivery_is_stored_exactly_once_across_kills(server: Server, db_url: str) -> None:
    acknowledged: set[int] = set()
    lock = threading.Lock()
    stop = threading.Event()
    numbers = iter(range(1, 10**9))

    def send() -> None:
        with httpx.Client(timeout=5.0) as client:
            while not stop.is_set():
                with lock:
                    number = next(numbers)
                path, body = _delivery(number)
                headers = {"X-Gitlab-Event": "Deployment Hook"} if path == "/webhooks/gitlab" else {}
                while True:  # at least once: a delivery is retried until the server acknowledges it
                    try:
                        answer = client.post(server.base + path, content=body, headers=headers)
                    except httpx.TransportError:
                        time.sleep(0.05)
                        continue
                    assert answer.status_code == 200, answer.text
                    with lock:
                        acknowledged.add(number)
                    break

    senders = [threading.Thread(target=send, daemon=True) for _ in range(SENDERS)]
    for thread in senders:
        thread.start()
    rng = random.Random(20261206)
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.5, 1.5))
        server.kill()
        server.start()
    time.sleep(1.0)
    stop.set()
    for thread in senders:
        thread.join(timeout=60)
    server.stop()

    assert len(acknowledged) > 100, "too few deliveries to say anything"
    store = Store(db_url)
    try:
        journal = store.rows(schema.raw_events)
        deployments = store.list_events("deployment", limit=100_000).events
    finally:
        store.close()
    generic = sorted(int(event["id"].split("-")[1]) for event in deployments if event["id"].startswith("crash-"))
    from_hooks = sorted(int(event["id"].rsplit("-", 1)[-1]) for event in deployments if event["source"] == "gitlab")
    assert set(generic) | set(from_hooks) >= acknowledged  # nothing acknowledged is lost
    assert len(generic) == len(set(generic)) and len(from_hooks) == len(set(from_hooks))
    keys = [(row["source"], row["delivery_id"]) for row in journal]
    assert len(keys) == len(set(keys)) == len(deployments)  # one journal entry per stored delivery: no doubles

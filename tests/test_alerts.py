"""Threshold alerts end to end: `shipscope check` as a CI gate, and notices that start and clear once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from shipscope.alerts import alert_round, notifier_for
from shipscope.cli.main import app
from shipscope.config import Settings
from shipscope.store import Store
from tests.factories import delivery, run


def _runs(store: Store, statuses: list[str], prefix: str) -> None:
    now = datetime.now(UTC)
    events = []
    for index, status in enumerate(statuses):
        created = now - timedelta(hours=2, minutes=index)
        events.append(
            run(
                f"{prefix}{index}",
                status=status,
                repo="acme/shop",
                created_at=created.isoformat(),
                started_at=(created + timedelta(seconds=30)).isoformat(),
                finished_at=(created + timedelta(minutes=5)).isoformat(),
            )
        )
    store.ingest([delivery(event) for event in events])


def test_check_exits_1_naming_the_violation_and_0_when_all_hold(db_url: str) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["check", "--db", db_url]).exit_code == 0
    store = Store(db_url)
    try:
        _runs(store, ["success", "failure", "failure", "success", "success"], "r")  # 2 of 5 failed: 40%
    finally:
        store.close()
    result = runner.invoke(app, ["check", "--db", db_url, "--json"])
    assert result.exit_code == 1
    (violation,) = orjson.loads(result.stdout)
    assert (violation["threshold"], violation["subject"], violation["value"]) == ("main_failure_rate", "acme/shop", 0.4)


class _Hook:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                assert self.headers["Content-Type"].startswith("application/json")
                hook.received.append(orjson.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hook() -> Iterator[_Hook]:
    receiver = _Hook()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def test_a_violation_is_announced_once_and_its_end_once(db_url: str, hook: _Hook) -> None:
    settings = Settings(db=db_url, alert_webhook_urls=hook.url)
    store = Store(db_url)
    try:
        notifier = notifier_for(settings)
        _runs(store, ["failure", "failure", "success"], "a")
        first = alert_round(store, settings, notifier)
        assert [violation.threshold for violation in first.started] == ["main_failure_rate"]
        second = alert_round(store, settings, notifier)
        assert (second.started, second.cleared) == ([], [])
        _runs(store, ["success"] * 30, "b")  # 2 of 33 failed: 6%, under 10%
        third = alert_round(store, settings, notifier)
        assert [notice["threshold"] for notice in third.cleared] == ["main_failure_rate"]
    finally:
        store.close()
    assert [(len(body["started"]), len(body["cleared"])) for body in hook.received] == [(1, 0), (0, 1)]

"""`shipscope db backup` and `db restore` on DuckDB: a copy taken offline or from a running server while it takes
writes, put back in place and written to again; and the refusals (an existing target, a held database, a file that
is not a shipscope database, PostgreSQL)."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import httpx
import orjson
import pytest
from typer.testing import CliRunner

from shipscope.cli.main import app
from shipscope.store import Store, schema
from tests.factories import delivery, deployment
from tests.services import Server

runner = CliRunner()


def _seeded(path: Path, count: int) -> str:
    url = f"duckdb:///{path}"
    store = Store(url)
    store.ensure_schema()
    store.ingest([delivery(deployment(f"d{n}", sha=f"{n:040x}")) for n in range(count)])
    store.close()
    return url


def _counts(url: str) -> dict[str, int]:
    store = Store(url)
    try:
        return {name: count for name, count in store.counts().items() if count}
    finally:
        store.close()


def test_backup_then_restore_then_write_again(tmp_path: Path) -> None:
    url = _seeded(tmp_path / "live.duckdb", 50)
    copy = tmp_path / "copy.duckdb"
    made = runner.invoke(app, ["db", "backup", str(copy), "--db", url])
    assert made.exit_code == 0, made.output
    again = runner.invoke(app, ["db", "backup", str(copy), "--db", url])
    assert again.exit_code == 2 and "exists: a backup is written to a new file" in again.output

    restored = f"duckdb:///{tmp_path / 'restored.duckdb'}"
    put = runner.invoke(app, ["db", "restore", str(copy), "--db", restored])
    assert put.exit_code == 0, put.output
    assert _counts(restored) == _counts(url) == {"raw_events": 50, "deployments": 50}
    store = Store(restored)
    try:
        store.ingest([delivery(deployment("after-restore"))])  # the journal's sequence carried on
        seqs = [row["seq"] for row in store.rows(schema.raw_events)]
    finally:
        store.close()
    assert len(seqs) == len(set(seqs)) == 51
    refused = runner.invoke(app, ["db", "restore", str(copy), "--db", restored])
    assert refused.exit_code == 2 and "give --force" in refused.output
    assert runner.invoke(app, ["db", "restore", str(copy), "--db", restored, "--force"]).exit_code == 0
    assert _counts(restored)["deployments"] == 50

    not_ours = tmp_path / "plain.duckdb"
    duckdb.connect(str(not_ours)).execute("CREATE TABLE notes (body TEXT)").close()
    odd = runner.invoke(app, ["db", "restore", str(not_ours), "--db", restored, "--force"])
    assert odd.exit_code == 2 and "not a shipscope database" in odd.output


def test_a_running_server_backs_up_while_it_takes_writes(tmp_path: Path) -> None:
    url = _seeded(tmp_path / "served.duckdb", 20)
    server = Server(url, tmp_path)
    server.start()
    stop = threading.Event()
    sent: list[int] = []

    def write() -> None:
        with httpx.Client(timeout=10) as client:
            number = 1000
            while not stop.is_set():
                event = deployment(f"live-{number}", sha=f"{number:040x}")
                if client.post(f"{server.base}/api/v1/events", content=orjson.dumps(event)).status_code == 200:
                    sent.append(number)
                number += 1

    writer = threading.Thread(target=write)
    writer.start()
    copy = tmp_path / "online.duckdb"
    try:
        while len(sent) < 50:
            threading.Event().wait(0.05)
        made = runner.invoke(app, ["db", "backup", str(copy), "--db", url])
        assert made.exit_code == 0, made.output
        assert "asking it to back up" in made.output
        held = runner.invoke(app, ["db", "restore", str(copy), "--db", url, "--force"])
        assert held.exit_code == 2 and "held by the shipscope server" in held.output
    finally:
        stop.set()
        writer.join(timeout=30)
        server.stop()
    counts = _counts(f"duckdb:///{copy}")
    # One snapshot: every journaled delivery's deployment is in the copy, and nothing more.
    assert counts["raw_events"] == counts["deployments"] >= 20 + 50
    assert counts["deployments"] <= 20 + len(sent)


@pytest.mark.backends("postgresql")
def test_postgresql_is_backed_up_with_its_own_tools(db_url: str, tmp_path: Path) -> None:
    made = runner.invoke(app, ["db", "backup", str(tmp_path / "x.duckdb"), "--db", db_url])
    assert made.exit_code == 2 and "pg_dump" in made.output
    assert not (tmp_path / "x.duckdb").exists()


@pytest.mark.parametrize("body", [b"{}", b'{"path": "relative.duckdb"}'])
def test_the_backup_api_wants_an_absolute_path(body: bytes, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from shipscope.config import Settings
    from shipscope.web.app import create_app

    url = _seeded(tmp_path / "api.duckdb", 1)
    with TestClient(create_app(Settings(db=url, alert_interval_seconds=0))) as client:
        answer = client.post("/api/v1/admin/backup", content=body)
        assert answer.status_code == 400 and "absolute path" in answer.text

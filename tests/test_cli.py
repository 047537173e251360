"""The command line, in-process and as real processes (a server holding the DuckDB file)."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from shipscope.cli.main import app
from shipscope.runtime import GC_YOUNG_THRESHOLD
from shipscope.server_state import state_path
from shipscope.store import Store, schema
from shipscope.store.migrate import head_revision
from tests.factories import deployment, ndjson, run

runner = CliRunner()


def _file_with_bad_lines(path: Path) -> Path:
    lines = [
        orjson.dumps(run("r1")),
        orjson.dumps(run("r2")),
        b'{"type": "pipeline_run", "id": "r3", "repo": "acme/sh',
        orjson.dumps(deployment("d1")),
        orjson.dumps(run("r5", created_at="2026-03-01T10:00:00")),
        b"",
        orjson.dumps(run("r7")),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_import_stores_good_lines_reports_bad_ones_and_exits_1(db_url: str, tmp_path: Path) -> None:
    source = _file_with_bad_lines(tmp_path / "events.ndjson")
    result = runner.invoke(app, ["import", str(source), "--db", db_url])
    assert result.exit_code == 1
    assert f"{source}:3: invalid JSON: unexpected end of data" in result.stderr
    assert f"{source}:5: created_at: expected an RFC 3339 timestamp with a UTC offset" in result.stderr
    assert "stored 4, duplicates 0, rejected 2" in result.stderr
    store = Store(db_url)
    try:
        assert [row["id"] for row in store.rows(schema.pipeline_runs)] == ["r1", "r2", "r7"]
        assert [row["id"] for row in store.rows(schema.deployments)] == ["d1"]
    finally:
        store.close()
    again = runner.invoke(app, ["import", str(source), "--db", db_url, "--json"])
    assert again.exit_code == 1
    report = orjson.loads(again.stdout)
    assert (report["stored"], report["duplicates"], report["rejected_count"]) == (0, 4, 2)
    assert [entry["line"] for entry in report["rejected"]] == [3, 5]


def test_import_json_array_file_and_stdin(db_url: str, tmp_path: Path) -> None:
    array_file = tmp_path / "events.json"
    array_file.write_bytes(orjson.dumps([run("r1"), deployment("d1")]))
    assert runner.invoke(app, ["import", str(array_file), "--db", db_url]).exit_code == 0
    piped = runner.invoke(app, ["import", "-", "--db", db_url, "--json"], input=ndjson(run("r2"), run("r1")))
    assert piped.exit_code == 0
    assert orjson.loads(piped.stdout)["duplicates"] == 1


def test_import_truncated_json_array_reports_where_it_broke(db_url: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_bytes(orjson.dumps([run("r1"), run("r2")])[:-30])
    result = runner.invoke(app, ["import", str(broken), "--db", db_url])
    assert result.exit_code == 1
    assert f"{broken}:2: invalid JSON after item 1" in result.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["import", str(tmp_path / "nope.ndjson"), "--db", f"duckdb:///{tmp_path}/x.duckdb"])
    assert result.exit_code == 2
    assert f"cannot read {tmp_path / 'nope.ndjson'}: no such file" in result.stderr
    assert not (tmp_path / "x.duckdb").exists()


def test_unsupported_database_url_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["db", "upgrade", "--db", "mysql://localhost/x"])
    assert result.exit_code == 2
    assert "unsupported database" in result.stderr


def test_db_upgrade_then_current(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path}/fresh.duckdb"
    head = head_revision()
    assert f"schema at revision {head} (was None)" in runner.invoke(app, ["db", "upgrade", "--db", url]).stderr
    assert "already current" in runner.invoke(app, ["db", "upgrade", "--db", url]).stderr
    assert runner.invoke(app, ["db", "current", "--db", url]).stdout.strip() == head


def test_reprocess_command(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "e.ndjson").write_bytes(ndjson(run("r1", status="queued"), run("r1")))
    runner.invoke(app, ["import", str(tmp_path / "e.ndjson"), "--db", db_url])
    result = runner.invoke(app, ["reprocess", "--db", db_url])
    assert result.exit_code == 0, result.stderr
    assert "reprocessed 2 payloads into 2 events; 0 failed" in result.stderr


def test_serve_refuses_a_public_address_without_tokens(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["serve", "--db", f"duckdb:///{tmp_path}/x.duckdb", "--host", "0.0.0.0"],
        env={"SHIPSCOPE_API_TOKENS": ""},
    )
    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0 without API tokens" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _shipscope(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipscope", *args], capture_output=True, text=True, timeout=120, **kwargs
    )  # type: ignore[call-overload, no-any-return]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with running_server(tmp_path) as served:
        yield served


@contextmanager
def running_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real `shipscope serve` owning a DuckDB file in tmp_path; yields its URL and the file."""
    database = tmp_path / "served.duckdb"
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "shipscope", "serve", "--db", f"duckdb:///{database}", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"server did not start: {process.communicate()[0]}")
        time.sleep(0.2)
    try:
        yield url, database
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert not state_path(str(database)).exists()


def test_import_goes_through_the_server_that_holds_the_file(server: tuple[str, Path], tmp_path: Path) -> None:
    url, database = server
    source = _file_with_bad_lines(tmp_path / "events.ndjson")
    result = _shipscope("import", str(source), "--db", f"duckdb:///{database}")
    assert result.returncode == 1, result.stderr
    assert f"{database} is held by the shipscope server at {url}; sending through its API" in result.stderr
    assert f"{source}:3: invalid JSON" in result.stderr
    assert f"{source}:5: created_at: expected an RFC 3339 timestamp" in result.stderr
    assert "stored 4, duplicates 0, rejected 2" in result.stderr
    runs = httpx.get(f"{url}/api/v1/events", params={"type": "pipeline_run"}).json()["events"]
    assert [event["id"] for event in runs] == ["r1", "r2", "r7"]


def test_commands_that_need_the_file_say_who_holds_it(server: tuple[str, Path]) -> None:
    url, database = server
    result = _shipscope("reprocess", "--db", f"duckdb:///{database}")
    assert result.returncode == 2
    assert f"is held by the shipscope server at {url}" in result.stderr
    assert "hint: stop it, then run reprocess" in result.stderr


def test_a_file_locked_by_another_process_is_named(tmp_path: Path) -> None:
    database = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(database)!r}); print('ok', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        result = _shipscope("db", "current", "--db", f"duckdb:///{database}", env={**os.environ})
        assert result.returncode == 2
        assert f"{database} is held by another process" in result.stderr
        assert f"pid {holder.pid}" in result.stderr
    finally:
        holder.kill()
        holder.communicate()


def test_import_report_formats(db_url: str, tmp_path: Path) -> None:
    from tests.conftest import FIXTURES

    junit = runner.invoke(
        app, ["import", "--format", "junit", str(FIXTURES / "junit/pytest.fail.xml"), "--run-id", "r9", "--db", db_url]
    )
    assert junit.exit_code == 0, junit.stderr
    assert "stored 5, duplicates 0, rejected 0" in junit.stderr
    sarif = runner.invoke(
        app,
        [
            "import",
            "-f",
            "sarif",
            str(FIXTURES / "sarif/dockle.sarif"),
            "--repo",
            "acme/shop",
            "--db",
            db_url,
            "--json",
        ],
    )
    assert sarif.exit_code == 0, sarif.stderr
    assert orjson.loads(sarif.stdout)["stored"] == 4
    log = tmp_path / "build.log"
    log.write_text("Cache restored from key: npm-linux-abc123\n#5 [2/4] RUN npm ci\n#5 CACHED\n")
    caches = runner.invoke(app, ["import", "-f", "cache-log", str(log), "--job-id", "j1", "--db", db_url])
    assert caches.exit_code == 0, caches.stderr
    store = Store(db_url)
    try:
        assert {case["run_id"] for case in store.rows(schema.test_cases)} == {"r9"}
        assert sorted((row["kind"], row["hit"]) for row in store.rows(schema.caches)) == [
            ("dependency", True),
            ("docker-layer", True),
        ]
    finally:
        store.close()
    missing_repo = runner.invoke(app, ["import", "-f", "sarif", str(FIXTURES / "sarif/dockle.sarif"), "--db", db_url])
    assert missing_repo.exit_code == 1
    assert "missing parameter repo" in missing_repo.stderr


def test_import_report_through_the_server(server: tuple[str, Path]) -> None:
    from tests.conftest import FIXTURES

    url, database = server
    result = _shipscope(
        "import", "-f", "junit", str(FIXTURES / "junit/marathon.flakyFailure.xml"), "--db", f"duckdb:///{database}"
    )
    assert result.returncode == 0, result.stderr
    assert "sending through its API" in result.stderr
    cases = httpx.get(f"{url}/api/v1/events", params={"type": "test_case"}).json()["events"]
    assert sorted((case["attempt"], case["outcome"]) for case in cases) == [(1, "failed"), (2, "passed")]


def test_sarif_warnings_are_printed_whether_imported_directly_or_through_the_server(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    url, database = server
    log = tmp_path / "gitleaks.sarif"
    result = {"message": {"text": "AWS Access Key secret detected"}}
    run = {"tool": {"driver": {"name": "Gitleaks"}}, "results": [result]}
    log.write_bytes(orjson.dumps({"version": "2.1.0", "runs": [run]}))
    warning = "gitleaks.sarif: warning: runs[0].results[0]: no ruleId, rule.id or indexed rule id; counted under"
    through = _shipscope("import", "-f", "sarif", str(log), "--repo", "acme/shop", "--db", f"duckdb:///{database}")
    assert through.returncode == 0, through.stderr
    assert "sending through its API" in through.stderr
    assert f"{log.parent}/{warning} 'aws-access-key-secret-detected'" in through.stderr.replace("\n", " ")
    direct = runner.invoke(
        app, ["import", "-f", "sarif", str(log), "--repo", "acme/shop", "--db", f"duckdb:///{tmp_path}/direct.duckdb"]
    )
    assert direct.exit_code == 0, direct.stderr
    assert warning in direct.stderr.replace("\n", " ") and "stored 1, duplicates 0, rejected 0" in direct.stderr


def test_record_never_fails_the_pipeline_and_spools_what_it_cannot_send(tmp_path: Path) -> None:
    from tests.conftest import FIXTURES

    spool = tmp_path / "spool.ndjson"
    environment = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_RUN_ID": "77",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_REPOSITORY": "acme/shop",
        "GITHUB_WORKFLOW": "ci",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_REF_NAME": "main",
        "GITHUB_SHA": "abc123",
        "GITHUB_ACTOR": "ana",
        "GITHUB_TOKEN": "",
        "SHIPSCOPE_VENDOR_TOKEN": "",
    }
    result = runner.invoke(
        app,
        [
            "record",
            "--server",
            f"http://127.0.0.1:{_free_port()}",
            "--status",
            "failure",
            "--junit",
            str(FIXTURES / "junit/pytest.fail.xml"),
            "--spool",
            str(spool),
            "--retries",
            "0",
        ],
        env=environment,
    )
    assert result.exit_code == 0
    assert "server unreachable" in result.stderr
    lines = spool.read_bytes().splitlines()
    assert len(lines) == 6
    run = orjson.loads(lines[0])
    assert (run["type"], run["id"], run["status"]) == ("pipeline_run", "77", "failure")


def test_lint_workflows_reports_and_stores(db_url: str) -> None:
    from tests.conftest import FIXTURES

    workflow = FIXTURES / "workflows/github/flask.publish.yaml"
    result = runner.invoke(
        app, ["lint", "workflows", str(workflow), "--repo", "pallets/flask", "--json", "--db", db_url]
    )
    assert result.exit_code == 0, result.stderr
    (row,) = orjson.loads(result.stdout)
    assert (row["jobs"], row["steps"], row["verdict"]) == (3, 10, "thin")
    store = Store(db_url)
    try:
        (stored,) = store.rows(schema.timeline_events)
    finally:
        store.close()
    assert stored["kind"] == "workflow_complexity"
    assert orjson.loads(stored["details"])["jobs"] == 3


def test_every_command_collects_young_garbage_less_often(tmp_path: Path) -> None:
    """Reports and imports allocate hundreds of thousands of acyclic tuples; the command raises the threshold."""
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        result = runner.invoke(app, ["db", "upgrade", "--db", f"duckdb:///{tmp_path / 'gc.duckdb'}"])
        assert result.exit_code == 0, result.output
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)
    finally:
        gc.set_threshold(*before)

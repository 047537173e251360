"""The bulk import's two ways agree: lines checked and shaped by SQL (``store.columnar``, on DuckDB) end up exactly
as the same lines read one by one by the canonical model and written by ``Store.write``: the same rows, journal,
refusals (in the validator's words) and counts, for valid lines, near-misses and broken ones, in any mix."""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from shipscope.importer import StoreSink, import_records
from shipscope.ingest import Delivery, IngestReport, LineFormat, Rejection
from shipscope.ingest.generic import EVENT_LINES, read_records
from shipscope.store import Store, columnar, schema

T = "2026-03-01T10:00:00Z"
VALID: list[dict[str, Any]] = [
    {
        "type": "pipeline_run",
        "source": "github",
        "id": "r1",
        "repo": "acme/shop",
        "workflow": "ci",
        "trigger": "push",
        "branch": "main",
        "sha": "a1",
        "status": "queued",
        "created_at": T,
        "pr_number": 7,
        "url": "https://ci.example/r1",
    },
    {
        "type": "pipeline_run",
        "id": "r1",
        "repo": "acme/shop",
        "workflow": "ci",
        "trigger": "push",
        "branch": "main",
        "sha": "a1",
        "status": "success",
        "attempt": 2,
        "created_at": T,
        "started_at": "2026-03-01T10:01:00.25+02:00",
        "finished_at": "2026-03-01T10:09:00Z",
    },
    {
        "type": "job",
        "source": "github",
        "id": "j1",
        "run_id": "r1",
        "name": "build",
        "runner": ["ubuntu-latest", "x64"],
        "status": "in_progress",
        "created_at": T,
        "attempt": None,
    },
    {
        "type": "job",
        "id": "j2",
        "run_id": "r1",
        "name": "lint",
        "runner": "group-a",
        "status": "failure",
        "created_at": T,
        "failure_reason": "exit 1",
        "stage": "test",
    },
    {
        "type": "step",
        "job_id": "j1",
        "name": "Run tests",
        "number": 1,
        "status": "success",
        "started_at": T,
        "finished_at": "2026-03-01T10:02:00Z",
    },
    {
        "type": "step",
        "job_id": "j1",
        "name": "Deploy to prod",
        "number": 2,
        "status": "failure",
        "started_at": T,
        "finished_at": "2026-03-01T10:03:00-05:30",
    },
    {
        "type": "deployment",
        "id": "d1",
        "service": "shop",
        "environment": "production",
        "sha": "a1",
        "status": "success",
        "started_at": T,
        "finished_at": "2026-03-01T10:05:00Z",
        "kind": "deploy",
    },
    {
        "type": "deployment",
        "id": "d2",
        "service": "shop",
        "environment": "production",
        "sha": "b2",
        "status": "in_progress",
    },
    {
        "type": "change",
        "repo": "acme/shop",
        "sha": "a1",
        "authored_at": T,
        "author": "dev",
        "parents": ["p0", "p1"],
        "message": 'Fix: a "quoted" word\nand a line',
    },
    {
        "type": "pull_request",
        "repo": "acme/shop",
        "number": 3,
        "author": "dev",
        "opened_at": T,
        "base_branch": "main",
        "labels": [],
        "merged_at": "2026-03-02T10:00:00Z",
    },
    {
        "type": "incident",
        "id": "i1",
        "service": "shop",
        "title": "Checkout down",
        "opened_at": T,
        "labels": ["sev1"],
        "severity": "critical",
    },
    {
        "type": "incident",
        "id": "i1",
        "service": "shop",
        "title": "Checkout down",
        "opened_at": T,
        "resolved_at": "2026-03-01T11:00:00Z",
    },
    {
        "type": "timeline_event",
        "id": "t1",
        "kind": "flag_toggle",
        "at": T,
        "title": "checkout-v2 on",
        "details": '{"flag": "checkout-v2"}',
    },
    {
        "type": "finding",
        "scan_id": "s1",
        "repo": "acme/shop",
        "tool": "trivy",
        "rule_id": "CVE-1",
        "severity": "high",
        "fingerprint": "f1",
        "scanned_at": T,
    },
    {"type": "cache", "run_id": "r1", "kind": "dependency", "key": "npm", "hit": True, "bytes": 10},
    {
        "type": "test_case",
        "run_id": "r1",
        "suite": "unit",
        "name": "test_a",
        "duration_seconds": 0.5,
        "outcome": "passed",
    },
]

ODD_VALUES: list[Any] = [
    None,
    "",
    "5",
    5,
    -1,
    5.0,
    2**31,
    2**63,
    True,
    [],
    ["a", ""],
    ["é", "b"],
    {"a": 1},
    'x"y',
    "é\u0301",
    "naïve ☕",
    "tab\there",
    "2026-03-01T10:00:00",
    "2026-03-01 10:00:00Z",
    "2026-03-01t10:00:00z",
    "2026-02-30T10:00:00Z",
    "2026-03-01T10:00:00.1234567Z",
    "2026-03-01T10:00:00+24:00",
    "2026-03-01T10:00:00+02:00",
    "0999-03-01T10:00:00Z",
    "queued",
    "success",
    "failure",
    "rollback",
    "critical",
    1772359200,
]
"""Values a field may be sent, right or wrong for it: each mutation puts one where another belonged."""


def _mutated(rng: random.Random, event: dict[str, Any]) -> dict[str, Any]:
    event = dict(event)
    choice = rng.random()
    field = rng.choice(sorted(event))
    if choice < 0.25:
        event.pop(field)
    elif choice < 0.85:
        event[field] = rng.choice(ODD_VALUES)
    elif choice < 0.95:
        event[rng.choice(["unknown", "stage", "version", "actor"])] = rng.choice(ODD_VALUES)
    else:
        event["type"] = rng.choice(["job", "step", "nope", 3])
    return event


def _line(rng: random.Random, event: dict[str, Any]) -> bytes:
    """The event as some client would write it: compact, spaced, keys in another order, or a key twice."""
    style = rng.random()
    if style < 0.6:
        return orjson.dumps(event)
    if style < 0.75:
        items = list(event.items())
        rng.shuffle(items)
        return (
            "{" + ", ".join(f"{orjson.dumps(k).decode()} : {orjson.dumps(v).decode()}" for k, v in items) + "}"
        ).encode()
    if style < 0.85 and event:
        key = rng.choice(sorted(event))
        first = orjson.dumps({key: rng.choice(ODD_VALUES)})[:-1]
        return first + b"," + orjson.dumps(event)[1:]
    if style < 0.9:
        return orjson.dumps(event, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).replace(b"\n", b" ")
    return rng.choice([b"[1, 2]", b'"text"', b"42", b"{broken", b'{"type": "job", "id": "\\u0000"}', b"null"])


def corpus(seed: int, size: int) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    lines: list[bytes] = []
    while len(lines) < size:
        event = rng.choice(VALID)
        roll = rng.random()
        if roll < 0.55:
            lines.append(orjson.dumps(event))
        elif roll < 0.9:
            lines.append(_line(rng, _mutated(rng, event)))
        elif lines:
            lines.append(rng.choice(lines))  # a line sent twice
    return list(enumerate(lines, start=1))


@contextmanager
def two_stores(template: Path) -> Iterator[tuple[Store, Store]]:
    with tempfile.TemporaryDirectory() as directory:
        stores = []
        for name in ("columnar", "one_by_one"):
            path = Path(directory) / f"{name}.duckdb"
            shutil.copyfile(template, path)
            stores.append(Store(f"duckdb:///{path}"))
        try:
            yield stores[0], stores[1]
        finally:
            for opened in stores:
                opened.close()


def one_by_one(store: Store, records: list[tuple[int, bytes]]) -> IngestReport:
    """The reference: each line read by the canonical model and written by ``Store.ingest``."""
    report = IngestReport()
    deliveries: list[Delivery] = []
    rejections: list[Rejection] = []
    for entry in read_records(records):
        (deliveries if isinstance(entry, Delivery) else rejections).append(entry)  # type: ignore[arg-type]
    report.count(deliveries, store.ingest(deliveries, rejections))
    for rejection in rejections:
        report.reject(rejection)
    return report


def contents(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    found: dict[str, list[tuple[Any, ...]]] = {}
    with store.engine.connect() as conn:
        for table in schema.NORMALIZED_TABLES:
            found[table.name] = sorted((tuple(row) for row in conn.execute(sa.select(table))), key=repr)
        journal = schema.raw_events
        columns = (journal.c.source, journal.c.delivery_id, journal.c.kind, journal.c.body)
        found["journal"] = [tuple(row) for row in conn.execute(sa.select(*columns).order_by(journal.c.seq))]
        refusals = schema.ingest_rejections
        refused = sa.select(refusals.c.position, refusals.c.reason, refusals.c.excerpt)
        found["refusals"] = sorted((tuple(row) for row in conn.execute(refused)), key=repr)
    return found


def summary(report: IngestReport) -> tuple[int, int, list[tuple[int | None, str]]]:
    return report.stored, report.duplicates, sorted((r.position, r.reason) for r in report.rejected)


@pytest.mark.parametrize(("seed", "batch"), [(seed, (7, 50, 1000)[seed % 3]) for seed in range(12)])
def test_columnar_and_one_by_one_store_the_same(_duckdb_template: Path, seed: int, batch: int) -> None:
    records = corpus(seed, 300)
    with two_stores(_duckdb_template) as (bulk, reference):
        got = import_records(records, StoreSink(bulk), batch_size=batch)
        expected = IngestReport()
        for start in range(0, len(records), batch):
            expected.add(one_by_one(reference, records[start : start + batch]))
        assert summary(got) == summary(expected)
        assert contents(bulk) == contents(reference)


def test_the_bulk_check_takes_every_valid_line_it_can(_duckdb_template: Path) -> None:
    """Valid lines of the types the SQL knows are taken by it, not left to the one-by-one reader (which would be
    right, only slow): the check must not be so strict that it proves nothing."""
    read: list[int] = []

    def reading(position: int, data: bytes) -> Delivery | Rejection:
        read.append(position)
        return EVENT_LINES.read(position, data)

    counting = LineFormat(EVENT_LINES.source, EVENT_LINES.kind, EVENT_LINES.identify, reading)
    records = [(position, orjson.dumps(event)) for position, event in enumerate(VALID, start=1)]
    with two_stores(_duckdb_template) as (bulk, _):
        outcome = bulk.ingest_lines(records, counting)
    assert (outcome.stored, outcome.duplicates, outcome.rejections) == (len(VALID), 0, [])
    left_to_the_reader = {VALID[position - 1]["type"] for position in read}
    assert left_to_the_reader == {"cache", "test_case"}  # their keys are digests made in Python
    assert set(columnar.TYPE_RULES) == {event["type"] for event in VALID} - left_to_the_reader


def test_a_number_sent_as_text_is_read_as_the_model_reads_it(_duckdb_template: Path) -> None:
    """The model coerces "2" to 2; the SQL does not try, and leaves the line to the model."""
    line = orjson.dumps({**VALID[2], "attempt": "2"})
    with two_stores(_duckdb_template) as (bulk, reference):
        got = import_records([(1, line)], StoreSink(bulk))
        assert summary(got) == summary(one_by_one(reference, [(1, line)])) == (1, 0, [])
        assert contents(bulk) == contents(reference)


def test_every_backend_counts_lines_alike(store: Store, _duckdb_template: Path) -> None:
    records = corpus(7, 200)
    with two_stores(_duckdb_template) as (_, reference):
        expected = summary(one_by_one(reference, records))
    assert summary(import_records(records, StoreSink(store), batch_size=64)) == expected
    stored, duplicates, refused = expected
    assert summary(import_records(records, StoreSink(store))) == (0, stored + duplicates, refused)


def test_a_bulk_load_checkpoints_at_its_end_and_restores_the_threshold(_duckdb_template: Path) -> None:
    with two_stores(_duckdb_template) as (bulk, _):
        path = Path(str(bulk.engine.url.database))
        with bulk.engine.connect() as conn:
            usual = conn.exec_driver_sql("SELECT current_setting('checkpoint_threshold')").scalar()
        with bulk.bulk_load():
            with bulk.engine.connect() as conn:
                during = conn.exec_driver_sql("SELECT current_setting('checkpoint_threshold')").scalar()
            import_records(corpus(3, 2000), StoreSink(bulk))
            assert path.with_name(path.name + ".wal").stat().st_size > 0
        with bulk.engine.connect() as conn:
            after = conn.exec_driver_sql("SELECT current_setting('checkpoint_threshold')").scalar()
        assert (during, after) == ("256.0 MiB", usual)
        wal = path.with_name(path.name + ".wal")
        assert not wal.exists() or wal.stat().st_size == 0


def test_a_line_nested_deeper_than_json_is_written_is_refused_as_the_model_refuses_it(_duckdb_template: Path) -> None:
    records = [(1, orjson.dumps(VALID[2])), (2, b'{"type":"job","id":' + b"[" * 300 + b"]" * 300 + b"}")]
    with two_stores(_duckdb_template) as (bulk, reference):
        got = summary(import_records(records, StoreSink(bulk)))
        assert got == summary(one_by_one(reference, records))
        assert got[:2] == (1, 0) and got[2][0][0] == 2
        assert contents(bulk) == contents(reference)

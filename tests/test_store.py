"""The store on both backends: journal, merge rules, reprocess, listing, migrations."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from shipscope.errors import InputError, StoreError
from shipscope.ingest import Delivery
from shipscope.ingest.registry import decode
from shipscope.metrics.common import Window
from shipscope.metrics.pipelines import pipeline_report
from shipscope.store import Store, schema
from shipscope.store.migrate import downgrade, head_revision
from tests.factories import delivery, deployment, run


def write(store: Store, *events: dict[str, Any]) -> list[bool]:
    with store.engine.begin() as conn:
        return store.write(conn, [delivery(event) for event in events])


def runs(store: Store) -> list[dict[str, Any]]:
    return store.rows(schema.pipeline_runs)


def test_schema_matches_the_models(store: Store) -> None:
    """The migrations create exactly the tables, columns and nullability that the code's schema declares."""
    with store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()
        found = {
            (row.table_name, row.column_name, row.is_nullable == "YES")
            for row in conn.execute(
                sa.text(
                    "SELECT table_name, column_name, is_nullable FROM information_schema.columns "
                    "WHERE table_schema IN ('main', 'public') AND table_name <> 'alembic_version'"
                )
            )
        }
        if store.dialect == "postgresql":
            # DuckDB's catalog cannot be reflected by SQLAlchemy's PostgreSQL inspector; PostgreSQL's can.
            assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
    declared = {
        (table.name, column.name, bool(column.nullable))
        for table in schema.metadata.tables.values()
        for column in table.columns
    }
    assert found == declared


def test_downgrade_then_upgrade_round_trips(store: Store) -> None:
    downgrade(store.engine, "base")
    assert store.revision() is None
    store.upgrade()
    assert store.revision() == head_revision()
    assert write(store, run()) == [True]


def test_journal_keeps_the_payload_verbatim_and_once(store: Store) -> None:
    body = b'{"type": "pipeline_run",  "id": "r1", "repo": "acme/shop", "workflow": "ci", "trigger": "push", '
    body += b'"branch": "main", "sha": "abc", "status": "queued", "created_at": "2026-03-01T12:00:00+02:00"}'
    from shipscope.ingest.generic import read_record

    first = read_record(1, body)
    with store.engine.begin() as conn:
        assert store.write(conn, [first, first]) == [True, False]  # type: ignore[list-item]
    with store.engine.begin() as conn:
        assert store.write(conn, [first]) == [False]  # type: ignore[list-item]
    journal = store.rows(schema.raw_events)
    assert len(journal) == 1
    assert bytes(journal[0]["body"]) == body
    assert journal[0]["source"] == "events"
    assert runs(store)[0]["created_at"] == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def test_journal_order_is_arrival_order(store: Store) -> None:
    events = [run(f"r{index}") for index in range(50)]
    write(store, *events)
    journal = store.rows(schema.raw_events)
    assert [orjson.loads(row["body"])["id"] for row in journal] == [event["id"] for event in events]


def test_a_late_queued_changes_nothing(store: Store) -> None:
    write(store, run(status="success"))
    before = runs(store)
    write(store, run(status="queued", actor="someone-else"))
    after = runs(store)
    assert after[0]["status"] == "success"
    # A lower-ranked event only fills what is still empty.
    assert after[0]["actor"] == "someone-else"
    assert {k: v for k, v in after[0].items() if k != "actor"} == {k: v for k, v in before[0].items() if k != "actor"}


def test_carried_fields_win_and_missing_fields_keep_their_values(store: Store) -> None:
    write(store, run(status="in_progress", actor="ana", url="https://ci/1"))
    write(store, run(status="success", url="https://ci/1?attempt=1"))
    (row,) = runs(store)
    assert row["status"] == "success"
    assert row["actor"] == "ana"
    assert row["url"] == "https://ci/1?attempt=1"
    assert row["finished_at"] == datetime(2026, 3, 1, 10, 9, tzinfo=UTC)


def test_any_rfc3339_offset_is_stored_as_its_instant(store: Store) -> None:
    """RFC 3339 allows offsets to ±23:59; PostgreSQL reads only ±15:59 of them."""
    write(store, run(created_at="2026-03-01T23:30:00+16:30", started_at="2026-03-01T06:00:00-23:59"))
    (row,) = runs(store)
    assert row["created_at"] == datetime(2026, 3, 1, 7, 0, tzinfo=UTC)
    assert row["started_at"] == datetime(2026, 3, 2, 5, 59, tzinfo=UTC)


def test_same_rank_repeat_updates_the_row(store: Store) -> None:
    write(store, deployment(status="failure", version="1.0"))
    write(store, deployment(status="success", version="1.0.1"))
    (row,) = store.rows(schema.deployments)
    assert (row["status"], row["version"]) == ("success", "1.0.1")


def test_repeats_within_one_batch_apply_in_arrival_order(store: Store) -> None:
    write(store, run(status="queued"), run(status="in_progress"), run(status="success"), run(status="queued"))
    (row,) = runs(store)
    assert row["status"] == "success"
    assert row["started_at"] is not None


def test_each_attempt_is_its_own_run(store: Store) -> None:
    write(store, run(status="failure"), run(status="queued", attempt=2))
    rows = runs(store)
    assert [(row["attempt"], row["status"]) for row in rows] == [(1, "failure"), (2, "queued")]


def test_steps_are_mapped_to_stages(db_url: str) -> None:
    patterns = {"test": ["pytest"], "build": ["docker build"]}
    store = Store(db_url, stage_patterns=patterns)
    try:
        step = {
            "type": "step",
            "job_id": "j1",
            "status": "success",
            "started_at": "2026-03-01T10:00:00Z",
            "finished_at": "2026-03-01T10:01:00Z",
        }
        write(store, {**step, "name": "Run PyTest", "number": 1}, {**step, "name": "Upload", "number": 2})
        assert [row["stage"] for row in store.rows(schema.steps)] == ["test", "other"]
    finally:
        store.close()


def test_reprocess_rebuilds_the_same_tables(store: Store) -> None:
    write(
        store,
        run(status="queued"),
        run(status="success"),
        run("r2", status="failure"),
        deployment(),
        {"type": "cache", "run_id": "r1", "kind": "dependency", "key": "k", "hit": True},
        {
            "type": "test_case",
            "run_id": "r1",
            "suite": "unit",
            "name": "test_a",
            "duration_seconds": 1.5,
            "outcome": "failed",
        },
    )
    before = {table.name: store.rows(table) for table in schema.NORMALIZED_TABLES}
    report = store.reprocess(decode)
    assert (report.deliveries, report.events, report.failed) == (6, 6, [])
    assert {table.name: store.rows(table) for table in schema.NORMALIZED_TABLES} == before


def test_reprocess_reports_entries_no_parser_accepts(store: Store) -> None:
    write(store, run())
    with store.engine.begin() as conn:
        conn.execute(sa.update(schema.raw_events).values(kind="retired-source"))
    report = store.reprocess(decode)
    assert report.failed == [(1, "no parser for journal entries of kind 'retired-source'")]
    assert runs(store) == []


def test_list_events_pages_through_a_type_in_canonical_shape(store: Store) -> None:
    write(store, *(run(f"r{index:02}") for index in range(25)))
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list_events("pipeline_run", limit=10, cursor=cursor)
        seen.extend(event["id"] for event in page.events)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"r{index:02}" for index in range(25)]
    first = store.list_events("pipeline_run", limit=1).events[0]
    assert first == {
        **run("r00"),
        "source": "generic",
        "attempt": 1,
        "created_at": "2026-03-01T10:00:00Z",
        "started_at": "2026-03-01T10:01:00Z",
        "finished_at": "2026-03-01T10:09:00Z",
    }


def test_list_events_filters(store: Store) -> None:
    write(
        store,
        deployment("d1", service="checkout", environment="production"),
        deployment("d2", service="checkout", environment="staging"),
        deployment("d3", service="search", environment="production", finished_at="2026-03-05T00:00:00Z"),
    )

    def ids(**filters: Any) -> list[str]:
        return [event["id"] for event in store.list_events("deployment", **filters).events]

    assert ids(service="checkout") == ["d1", "d2"]
    assert ids(environment="production") == ["d1", "d3"]
    assert ids(since=datetime(2026, 3, 2, tzinfo=UTC)) == ["d3"]
    assert ids(until=datetime(2026, 3, 1, 11, 5, tzinfo=UTC)) == []
    assert ids(until=datetime(2026, 3, 1, 11, 5, 1, tzinfo=UTC)) == ["d1", "d2"]


@pytest.mark.parametrize(
    ("event_type", "filters", "message"),
    [
        ("nope", {}, "unknown event type 'nope'"),
        ("pipeline_run", {"service": "x"}, "events of type pipeline_run have no service to filter on"),
        ("cache", {"since": datetime(2026, 1, 1, tzinfo=UTC)}, "events of type cache carry no time"),
        ("pipeline_run", {"cursor": "not-a-cursor"}, "invalid cursor"),
    ],
)
def test_list_events_refuses_what_it_cannot_do(
    store: Store, event_type: str, filters: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        store.list_events(event_type, **filters)


def test_an_outdated_schema_is_refused(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0000'"))
    with pytest.raises(StoreError, match="run `shipscope db upgrade`|revision 0000") as raised:
        store.ensure_schema()
    assert raised.value.hint == "run `shipscope db upgrade`"


def test_upgrade_from_the_first_revision_keeps_the_data(store: Store) -> None:
    write(store, run())
    downgrade(store.engine, "0001")
    assert store.revision() == "0001"
    store.upgrade()
    assert [row["id"] for row in runs(store)] == ["r1"]
    store.set_cursor("github:acme/shop:workflow_runs", "page=3")
    store.set_cursor("github:acme/shop:workflow_runs", "page=4")
    assert store.cursor("github:acme/shop:workflow_runs") == "page=4"
    assert store.cursor("nothing") is None


def test_upgrade_keys_the_journal_and_keeps_its_order_and_duplicates(store: Store) -> None:
    """Revision 0006 gives every journaled delivery its single-column key; what was journaled stays a duplicate."""
    events = [run(f"r{index}") for index in range(5)]
    downgrade(store.engine, "0005")
    with store.engine.begin() as conn:
        for seq, event in enumerate(events, start=1):
            conn.execute(
                sa.text(
                    "INSERT INTO raw_events (seq, source, delivery_id, kind, received_at, body) "
                    "VALUES (:seq, :source, :id, 'events', :at, :body)"
                ),
                {
                    "seq": seq * 10,
                    "source": "events",
                    "id": delivery(event).delivery_id,
                    "at": datetime.now(UTC),
                    "body": orjson.dumps(event),
                },
            )
    store.upgrade()
    journal = store.rows(schema.raw_events)
    assert [row["seq"] for row in journal] == [10, 20, 30, 40, 50]
    assert [row["delivery_key"] for row in journal] == [f"6:events:{row['delivery_id']}" for row in journal]
    assert write(store, *events, run("r5")) == [False] * 5 + [True]
    downgrade(store.engine, "0005")
    store.upgrade()
    assert len(store.rows(schema.raw_events)) == 6


def test_a_source_and_id_that_read_alike_are_two_deliveries(store: Store) -> None:
    """The key holds the source's length: ("a:b", "c") and ("a", "b:c") stay apart."""
    with store.engine.begin() as conn:
        assert store.write(
            conn, [Delivery("a:b", "c", "events", b"{}", ()), Delivery("a", "b:c", "events", b"{}", ())]
        ) == [
            True,
            True,
        ]
    assert sorted(row["delivery_key"] for row in store.rows(schema.raw_events)) == ["1:a:b:c", "3:a:b:c"]


def test_upgrade_keys_every_table_by_its_natural_key_in_one_column(store: Store) -> None:
    """Revision 0007 gives every stored row its ``merge_key``; later events merge into those rows, not beside them."""
    write(store, run("r2", "in_progress"))
    write(store, run("r1", "in_progress", attempt=2), deployment("d1", "in_progress"))
    before = {table.name: store.rows(table) for table in schema.NORMALIZED_TABLES}
    downgrade(store.engine, "0006")
    with store.connect() as conn:
        assert "merge_key" not in conn.execute(sa.text("SELECT * FROM pipeline_runs")).keys()
    store.upgrade()
    assert {table.name: store.rows(table) for table in schema.NORMALIZED_TABLES} == before
    assert [row["merge_key"] for row in before["pipeline_runs"]] == ["7:generic:2:r1:2", "7:generic:2:r2:1"]
    if store.dialect == "duckdb":
        # Rebuilt in stored (here, arrival) order: DuckDB skips a report's window by its row groups' time ranges.
        with store.connect() as conn:
            assert conn.execute(sa.text("SELECT id FROM pipeline_runs")).scalars().all() == ["r2", "r1"]
    write(store, run("r2"), run("r1", attempt=2), deployment("d1"))
    assert [(row["id"], row["status"]) for row in runs(store)] == [("r1", "success"), ("r2", "success")]
    assert [row["status"] for row in store.rows(schema.deployments)] == ["success"]


def test_natural_keys_that_read_alike_are_two_rows(store: Store) -> None:
    """The joined key holds each part's length: ("a:b", "c") and ("a", "b:c") stay two deployments."""
    write(store, deployment("c", source="a:b"), deployment("b:c", source="a"))
    assert sorted(row["merge_key"] for row in store.rows(schema.deployments)) == ["1:a:b:c", "3:a:b:c"]


def test_analyze_gives_postgresql_statistics_after_a_bulk_load(store: Store) -> None:
    store.ingest([delivery(run(f"r{number}")) for number in range(50)])
    store.analyze()
    if store.dialect != "postgresql":
        return  # DuckDB keeps its own statistics: nothing to do, and nothing fails
    with store.connect() as conn:
        analyzed = conn.execute(
            sa.text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'pipeline_runs'")
        ).scalar_one()
        estimate = conn.execute(sa.text("SELECT reltuples FROM pg_class WHERE relname = 'pipeline_runs'")).scalar_one()
    assert analyzed is not None
    assert estimate == 50


def test_test_cases_of_matrix_jobs_without_a_job_id_do_not_collide(store: Store) -> None:
    # `shipscope record` in a GitHub matrix without an API token knows the run but not the job: each matrix job's
    # report names the same tests under the same run.
    def case(duration: float, outcome: str) -> dict[str, Any]:
        return {
            "type": "test_case",
            "source": "github",
            "run_id": "run-9",
            "suite": "tests",
            "classname": "tests.test_cart",
            "name": "test_totals",
            "duration_seconds": duration,
            "outcome": outcome,
        }

    linux, macos = case(0.41, "passed"), case(1.93, "failed")
    store.ingest([delivery(linux), delivery(macos), delivery(linux)])  # the linux report sent twice
    rows = store.rows(schema.test_cases)
    assert sorted((row["duration_seconds"], row["outcome"]) for row in rows) == [(0.41, "passed"), (1.93, "failed")]


@pytest.mark.parametrize("url", ["duckdb:///:memory:", "duckdb://"])
def test_an_in_memory_duckdb_is_one_database_for_every_thread(url: str) -> None:
    """Reports read in several threads, each on a pooled connection; in memory they must all see the one database,
    and two stores in memory are two databases."""
    store, other = Store(url), Store(url)
    try:
        store.upgrade()
        store.ingest([delivery(run("r1"))])
        with ThreadPoolExecutor(max_workers=2) as pool:
            counts = [
                pool.submit(store.query, sa.select(sa.func.count()).select_from(schema.pipeline_runs)) for _ in range(4)
            ]
            assert [done.result()[0]["count_1"] for done in counts] == [1, 1, 1, 1]
        report = pipeline_report(store, Window(datetime(2020, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)))
        assert [(rate.repo, rate.succeeded) for rate in report.failure_rate] == [("acme/shop", 1)]
        with pytest.raises(sa.exc.ProgrammingError, match="pipeline_runs does not exist"):
            other.query(sa.select(sa.func.count()).select_from(schema.pipeline_runs))
    finally:
        store.close()
        other.close()

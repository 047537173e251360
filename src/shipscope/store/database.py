"""The store: the only code that speaks SQL, on DuckDB (embedded) and PostgreSQL with one query text."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import sqlalchemy as sa
from duckdb_engine import Dialect as DuckDBDialect
from sqlalchemy.dialects import postgresql

from shipscope.config import DEFAULT_STAGE_PATTERNS
from shipscope.errors import DatabaseBusy, InputError, StoreError
from shipscope.events import Event
from shipscope.ingest import Delivery, LineFormat, Rejection
from shipscope.store import columnar, migrate, schema
from shipscope.store.bulk import BinaryColumn, stage_relation, staged, staged_columns
from shipscope.store.retention import Retention
from shipscope.store.rows import MAPPINGS, StageMatcher, event_to_row, row_to_json

_JOURNAL_COLUMNS = [
    schema.raw_events.c[name] for name in ("seq", "source", "delivery_id", "kind", "received_at", "headers", "body")
]
_WAVE = sa.Column("wave", sa.Integer)
_MAX_SLOW_RUNS = 8
_BULK_CHECKPOINT = "256MiB"
_DUCKDB_LOCK = re.compile(r"Conflicting lock is held in (?P<holder>.+?)(?: \(PID (?P<pid>\d+)\))?(?:\. |\.?$)")

Decoder = Callable[[str, bytes, Mapping[str, str]], Sequence[Event]]
"""(kind, body, headers) → events: turns a journaled payload back into events, for reprocess."""


class CachingDuckDBDialect(DuckDBDialect):
    """duckdb_engine's dialect with SQLAlchemy's compiled-statement cache on. It turns the cache off only to silence
    SQLAlchemy's warning for dialects not yet tested with it; the dialect is PostgreSQL's, which caches, and shipscope
    defines no SQL constructs of its own. Without it each statement is compiled anew (≈ 3.5 ms each; the overview
    ran ≈ 25 ms slower, bench/README.md)."""

    supports_statement_cache = True


sa.dialects.registry.register("duckdb.shipscope", __name__, CachingDuckDBDialect.__name__)


def create_engine(url: str, *, duckdb_memory_limit: str | None = None) -> sa.Engine:
    """An engine for a ``duckdb:///…`` or ``postgresql+psycopg://…`` URL, sessions in UTC."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as error:
        raise StoreError(f"invalid database URL {url!r}: {error}") from error
    if parsed.get_backend_name() == "duckdb":
        if parsed.database in (None, "", ":memory:"):
            # Each connection to ":memory:" opens a database of its own; a named one is shared by the pool's
            # connections, as a file is (reports read in several threads).
            parsed = parsed.set(database=f":memory:shipscope-{uuid.uuid4().hex}")
        engine = sa.create_engine(parsed.set(drivername="duckdb+shipscope"))

        @sa.event.listens_for(engine, "connect")
        def configure(dbapi_connection: Any, connection_record: Any) -> None:
            dbapi_connection.execute("SET TimeZone = 'UTC'")
            if duckdb_memory_limit:
                dbapi_connection.execute("SET memory_limit = $1", [duckdb_memory_limit])

        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        # No JIT: the reports' queries run for well under a few seconds, and compiling them (with the planner's
        # cost estimates of correlated subqueries, often in the billions) took longer than running them.
        return sa.create_engine(parsed, connect_args={"options": "-c timezone=UTC -c jit=off"}, pool_pre_ping=True)
    raise StoreError(f"unsupported database {url!r}: use duckdb:///PATH or postgresql+psycopg://…")


def duckdb_path(url: str) -> str | None:
    """The file behind a DuckDB URL, or None for PostgreSQL and in-memory DuckDB."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "duckdb" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


@dataclass
class ReprocessReport:
    deliveries: int = 0
    events: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    """(journal seq, reason) of payloads the current parsers no longer accept."""


@dataclass
class LinesOutcome:
    stored: int
    duplicates: int
    rejections: list[Rejection]
    """In the order of their positions."""


def _runs(flags: Sequence[bool]) -> list[tuple[bool, int, int]]:
    """(flag, start, end) of each stretch of equal flags, in order."""
    runs: list[tuple[bool, int, int]] = []
    start = 0
    for index in range(1, len(flags) + 1):
        if index == len(flags) or flags[index] != flags[start]:
            runs.append((flags[start], start, index))
            start = index
    return runs


@dataclass(frozen=True)
class EventPage:
    events: list[dict[str, Any]]
    next_cursor: str | None


def _merge_statement(event_type: str) -> sa.Insert:
    """Upsert from ``stage_<table>``, one wave at a time, by the DESIGN.md §1 rules.

    The incoming row's fields win when its rank is at least the stored one (a later status, or the same one
    again); fields it lacks keep their stored values; a lower-ranked row only fills fields still empty.
    """
    mapping = MAPPINGS[event_type]
    table = mapping.table
    columns = list(table.columns)
    stage = stage_relation(f"stage_{table.name}", [*mapping.staged_columns, _WAVE])
    incoming_values: dict[str, sa.ColumnElement[Any]] = {
        column.name: stage.c[column.name] for column in mapping.staged_columns
    }
    incoming_values["merge_rank"] = mapping.rank(stage.c)
    incoming_values["merge_key"] = schema.joined_key(*(stage.c[name] for name in mapping.key_columns))
    insert = postgresql.insert(table).from_select(
        [column.name for column in columns],
        sa.select(*(incoming_values[column.name] for column in columns)).where(stage.c.wave == sa.bindparam("wave")),
    )
    incoming = insert.excluded
    newer = incoming.merge_rank >= table.c.merge_rank
    updates: dict[str, Any] = {
        column.name: sa.case(
            (newer, sa.func.coalesce(incoming[column.name], column)),
            else_=sa.func.coalesce(column, incoming[column.name]),
        )
        for column in mapping.staged_columns
        if column.name not in mapping.key_columns
    }
    updates["merge_rank"] = sa.func.greatest(table.c.merge_rank, incoming.merge_rank)
    return insert.on_conflict_do_update(index_elements=[table.c.merge_key], set_=updates)


_merge_statements = cache(_merge_statement)


def _journal_statement() -> sa.Insert:
    stage = stage_relation("stage_raw_events", _JOURNAL_COLUMNS)
    table = schema.raw_events
    return (
        postgresql.insert(table)
        .from_select(
            [*(column.name for column in _JOURNAL_COLUMNS), table.c.delivery_key.name],
            sa.select(
                *(stage.c[column.name] for column in _JOURNAL_COLUMNS),
                schema.joined_key(stage.c.source, stage.c.delivery_id),
            ),
        )
        .on_conflict_do_nothing(index_elements=[table.c.delivery_key])
        .returning(table.c.seq)
    )


_JOURNAL_INSERT = _journal_statement()


def _take_sequence(conn: sa.Connection, sequence: sa.Sequence, count: int) -> list[int]:
    """``count`` fresh values of a sequence, ascending: journal order is arrival order, which neither backend
    promises for values drawn inside an INSERT … SELECT."""
    numbers = sa.func.generate_series(1, count).table_valued("n")
    values = conn.execute(sa.select(sequence.next_value()).select_from(numbers)).scalars().all()
    return sorted(values)


def _without_nul(text: str) -> str:
    """A rejected payload's text as PostgreSQL can keep it: NUL written out as ``\\u0000``, as JSON would."""
    return text.replace("\x00", "\\u0000")


class Store:
    """The database behind shipscope. Writes take a connection in a transaction (see ``writer``)."""

    def __init__(
        self,
        url: str,
        *,
        stage_patterns: Mapping[str, list[str]] = DEFAULT_STAGE_PATTERNS,
        duckdb_memory_limit: str | None = None,
    ) -> None:
        self.url = url
        self.engine = create_engine(url, duckdb_memory_limit=duckdb_memory_limit)
        self.stage_for = StageMatcher(stage_patterns)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    # ----- schema -------------------------------------------------------------------------------------

    def connect(self) -> sa.Connection:
        try:
            return self.engine.connect()
        except sa.exc.DBAPIError as error:
            message = str(error.orig)
            lock = _DUCKDB_LOCK.search(message)
            if lock is not None:
                raise DatabaseBusy(
                    f"{duckdb_path(self.url)} is held by another process ({lock.group('holder')}"
                    + (f", pid {lock.group('pid')})" if lock.group("pid") else ")"),
                    hint="stop that process, or let the shipscope server that holds it take the request",
                ) from error
            shown = sa.make_url(self.url).render_as_string(hide_password=True)
            raise StoreError(f"cannot open the database {shown}: {_first_line(error)}") from error

    def revision(self) -> str | None:
        with self.connect() as connection:
            return migrate.current_revision(connection)

    def upgrade(self) -> tuple[str | None, str]:
        """Runs pending migrations; returns (revision before, revision after)."""
        before = self.revision()
        migrate.upgrade(self.engine)
        return before, migrate.head_revision()

    def ensure_schema(self) -> None:
        """Creates the schema in an empty database; refuses one left at an older revision."""
        revision = self.revision()
        if revision is None:
            with self.connect() as connection:
                existing = sa.inspect(connection).get_table_names()
            if existing and "raw_events" in existing:
                raise StoreError("the database has shipscope tables but no schema revision")
            migrate.upgrade(self.engine)
        elif revision != migrate.head_revision():
            raise StoreError(
                f"the database schema is at revision {revision}, this shipscope needs {migrate.head_revision()}",
                hint="run `shipscope db upgrade`",
            )

    def health(self) -> None:
        with self.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    def backup(self, target: Path) -> None:
        """A consistent copy of a DuckDB database into the new file ``target``, taken while the database is in use
        (one snapshot: ``COPY FROM DATABASE``). PostgreSQL is backed up with its own tools (docs/operations.md)."""
        if self.dialect != "duckdb":
            raise StoreError("shipscope backup copies DuckDB databases; back PostgreSQL up with pg_dump or a replica")
        if target.exists():
            raise InputError(f"{target} exists: a backup is written to a new file")
        if not target.parent.is_dir():
            raise InputError(f"{target.parent} is not a directory")
        import duckdb  # this is a DuckDB store

        quoted = str(target).replace("'", "''")
        try:
            with self.connect() as connection:
                # Outside SQLAlchemy's transaction: ATTACH and DETACH cannot run inside one, and the copy commits.
                raw = connection.connection.dbapi_connection
                assert raw is not None
                cursor = raw.cursor()
                try:
                    cursor.execute("SELECT current_database()")
                    (source,) = cursor.fetchone() or ("memory",)
                    cursor.execute(f"ATTACH '{quoted}' AS shipscope_backup")
                    try:
                        cursor.execute(f'COPY FROM DATABASE "{source}" TO shipscope_backup')
                    finally:
                        cursor.execute("DETACH shipscope_backup")
                finally:
                    cursor.close()
        except duckdb.Error as error:
            target.unlink(missing_ok=True)
            raise StoreError(f"the backup to {target} failed: {error}") from None

    # ----- writes --------------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """A transaction of its own; a database failure becomes a StoreError, nothing half-written."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.DBAPIError as error:
            message = _first_line(error)
            hint = "raise SHIPSCOPE_DUCKDB_MEMORY_LIMIT" if "Out of Memory" in message else None
            raise StoreError(f"the database refused the write: {message}", hint=hint) from error

    def ingest(self, deliveries: Sequence[Delivery], rejections: Sequence[Rejection] = ()) -> list[bool]:
        """``write`` in a transaction of its own."""
        with self._transaction() as conn:
            return self.write(conn, deliveries, rejections)

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Around a bulk import by a process that holds the database alone.

        DuckDB checkpoints (writes its write-ahead log into the database file, indexes included) whenever the log
        passes 16 MiB: with import-sized commits that is after every one, and each rewrites more as the tables grow
        (at 1,000,000 events the commits took 8 s of 30). During the load it waits for 256 MiB of log (more
        saved little and cost memory, bench/README.md), and checkpoints at the end.
        """
        if self.engine.dialect.name != "duckdb":
            yield
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f"SET GLOBAL checkpoint_threshold = '{_BULK_CHECKPOINT}'")
        try:
            yield
        finally:
            # Best effort: what was committed is in the log already, and DuckDB checkpoints when it closes; a
            # failure here must not hide the one that ended the load.
            with suppress(sa.exc.DBAPIError), self.engine.connect() as conn:
                conn.exec_driver_sql("RESET GLOBAL checkpoint_threshold")
                conn.exec_driver_sql("CHECKPOINT")

    @property
    def lines_batch_size(self) -> int:
        """How many lines ``ingest_lines`` is best given at a time. On DuckDB each batch is checked by statements
        whose fixed cost is ≈ 100 ms, so batches are large; one by one, a large batch only costs memory."""
        return 50_000 if self.engine.dialect.name == "duckdb" else 5000

    def ingest_lines(self, records: Sequence[tuple[int, bytes]], lines: LineFormat) -> LinesOutcome:
        """Stores a batch of one-event lines (position, bytes) in a transaction of its own, as ``write`` would
        store each line's delivery. On DuckDB the lines are checked and shaped in bulk by SQL (``columnar``), and
        only those it cannot prove valid are read one by one; the outcome is the same either way."""
        received_at = datetime.now(UTC)
        with self._transaction() as conn:
            if conn.dialect.name != "duckdb":
                return self._write_lines(conn, records, lines, received_at)
            return self._write_lines_columnar(conn, records, lines, received_at)

    def _write_lines(
        self, conn: sa.Connection, records: Sequence[tuple[int, bytes]], lines: LineFormat, received_at: datetime
    ) -> LinesOutcome:
        deliveries: list[Delivery] = []
        rejections: list[Rejection] = []
        for record in records:
            entry = lines.read(*record)
            (deliveries if isinstance(entry, Delivery) else rejections).append(entry)  # type: ignore[arg-type]
        is_new = self.write(conn, deliveries, rejections, received_at)
        stored = sum(len(delivery.events) for delivery, new in zip(deliveries, is_new, strict=True) if new)
        total = sum(len(delivery.events) for delivery in deliveries)
        return LinesOutcome(stored, total - stored, rejections)

    def _write_lines_columnar(
        self, conn: sa.Connection, records: Sequence[tuple[int, bytes]], lines: LineFormat, received_at: datetime
    ) -> LinesOutcome:
        refused: list[Rejection] = []
        kept: list[tuple[int, bytes]] = []
        delivery_ids: list[str] = []
        bodies, canonicals = BinaryColumn(), BinaryColumn()
        fitting: list[bool] = []
        for position, data in records:
            identity = lines.identify(position, data)
            if isinstance(identity, Rejection):
                refused.append(identity)
                continue
            delivery_id, value, canonical = identity
            kept.append((position, data))
            delivery_ids.append(delivery_id)
            bodies.append(data)
            canonicals.append(canonical)
            fitting.append(columnar.fits(value))
        outcome = LinesOutcome(0, 0, [])
        raw = conn.connection.dbapi_connection
        assert raw is not None
        body_array = bodies.array()
        stage = {
            "idx": pa.array(range(len(kept)), pa.int64()),
            "canonical": canonicals.array().cast(pa.string()),
            "fits": pa.array(fitting, pa.bool_()),
        }
        raw.register("stage_lines", pa.table(stage))
        try:
            conn.exec_driver_sql(columnar.CHECK_LINES)
            flags = [True] * len(kept)
            for (index,) in conn.exec_driver_sql("SELECT idx FROM lines_checked WHERE NOT columnar"):
                flags[index] = False
            runs = _runs(flags)
            if sum(1 for taken, _, _ in runs if not taken) > _MAX_SLOW_RUNS:
                # Lines the SQL leaves to the validator, scattered through the batch: each run costs statements of
                # its own, so past a few the batch goes the per-line way whole.
                runs = [(False, 0, len(kept))]
            for taken, start, end in runs:
                if taken:
                    stored = self._write_columnar_run(
                        conn, range(start, end), delivery_ids, body_array, lines, received_at
                    )
                    outcome.stored += stored
                    outcome.duplicates += end - start - stored
                else:
                    part = self._write_lines(conn, kept[start:end], lines, received_at)
                    outcome.stored += part.stored
                    outcome.duplicates += part.duplicates
                    outcome.rejections.extend(part.rejections)
            conn.exec_driver_sql("DROP TABLE lines_checked")
        finally:
            with suppress(duckdb.Error):  # an aborted transaction refuses it; the registration dies with it
                raw.unregister("stage_lines")
        if refused:
            self.write(conn, [], refused, received_at)
            outcome.rejections.extend(refused)
        outcome.rejections.sort(key=lambda rejection: rejection.position or 0)
        return outcome

    def _write_columnar_run(
        self,
        conn: sa.Connection,
        indices: range,
        delivery_ids: Sequence[str],
        bodies: pa.Array,
        lines: LineFormat,
        received_at: datetime,
    ) -> int:
        """Journals and merges lines ``indices`` of ``lines_checked``, all of them valid; returns how many were new."""
        firsts: dict[str, int] = {}
        for index in indices:
            firsts.setdefault(delivery_ids[index], index)
        count = len(firsts)
        sequence_numbers = _take_sequence(conn, schema.raw_events_seq, count)
        journal: dict[str, Sequence[Any]] = {
            "seq": sequence_numbers,
            "source": [lines.source] * count,
            "delivery_id": list(firsts),
            "kind": [lines.kind] * count,
            "received_at": [received_at] * count,
            "headers": [None] * count,
            "body": bodies.take(pa.array(list(firsts.values()), pa.int64())),
        }
        inserted = self._journal(conn, journal)
        new = [index for index, seq in zip(firsts.values(), sequence_numbers, strict=True) if seq in inserted]
        if not new:
            return 0
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.register("lines_new", pa.table({"idx": pa.array(new, pa.int64())}))
        try:
            present = conn.exec_driver_sql(
                "SELECT DISTINCT type FROM lines_checked SEMI JOIN lines_new USING (idx) WHERE columnar"
            )
            for (event_type,) in present.all():
                self._merge_columnar(conn, raw, event_type)
        finally:
            with suppress(duckdb.Error):
                raw.unregister("lines_new")
        return len(new)

    def _merge_columnar(self, conn: sa.Connection, raw: Any, event_type: str) -> None:
        table = MAPPINGS[event_type].table
        if event_type in columnar.DERIVED:
            names = [name for (name,) in conn.exec_driver_sql(columnar.distinct_names(event_type))]
            stages = [self.stage_for(name) for name in names]
            raw.register("line_stages", pa.table({"name": pa.array(names, pa.string()), "stage": stages}))
        try:
            conn.exec_driver_sql(f"CREATE TEMPORARY TABLE stage_{table.name} AS {columnar.row_select(event_type)}")
        finally:
            with suppress(duckdb.Error):
                raw.unregister("line_stages")
        waves = conn.exec_driver_sql(f"SELECT max(wave) + 1 FROM stage_{table.name}").scalar() or 0
        statement = _merge_statements(event_type)
        for wave in range(waves):
            conn.execute(statement, {"wave": wave})
        conn.exec_driver_sql(f"DROP TABLE stage_{table.name}")

    def write(
        self,
        conn: sa.Connection,
        deliveries: Sequence[Delivery],
        rejections: Sequence[Rejection] = (),
        received_at: datetime | None = None,
    ) -> list[bool]:
        """Journals and normalizes ``deliveries`` in the caller's transaction.

        Returns, per delivery, whether it was new; a delivery already journaled (or repeated earlier in the same
        batch) changes nothing.
        """
        received_at = received_at or datetime.now(UTC)
        first: dict[tuple[str, str], int] = {}
        for index, delivery in enumerate(deliveries):
            first.setdefault((delivery.source, delivery.delivery_id), index)
        firsts = [deliveries[index] for index in first.values()]
        sequence_numbers = _take_sequence(conn, schema.raw_events_seq, len(firsts)) if firsts else []
        inserted_seqs: set[int] = set()
        if firsts:
            journal: dict[str, Sequence[Any]] = {
                "seq": sequence_numbers,
                "source": [delivery.source for delivery in firsts],
                "delivery_id": [delivery.delivery_id for delivery in firsts],
                "kind": [delivery.kind for delivery in firsts],
                "received_at": [received_at] * len(firsts),
                "headers": [orjson.dumps(d.headers).decode() if d.headers else None for d in firsts],
                "body": [delivery.body for delivery in firsts],
            }
            inserted_seqs = self._journal(conn, journal)
        new_keys = {key for key, seq in zip(first, sequence_numbers, strict=True) if seq in inserted_seqs}
        is_new = [
            first.get(key := (delivery.source, delivery.delivery_id)) == index and key in new_keys
            for index, delivery in enumerate(deliveries)
        ]
        self._upsert(
            conn, [event for delivery, new in zip(deliveries, is_new, strict=True) if new for event in delivery.events]
        )
        if rejections:
            conn.execute(
                schema.ingest_rejections.insert(),
                [
                    {
                        "received_at": received_at,
                        "source": rejection.source,
                        "position": rejection.position,
                        "reason": _without_nul(rejection.reason),
                        "excerpt": _without_nul(rejection.excerpt) or None,
                    }
                    for rejection in rejections
                ],
            )
        return is_new

    @staticmethod
    def _journal(conn: sa.Connection, journal: Mapping[str, Sequence[Any]]) -> set[int]:
        """Journals the deliveries given column by column; returns the seqs of those not journaled before."""
        with staged_columns(conn, "stage_raw_events", _JOURNAL_COLUMNS, journal):
            # Straight from the driver's cursor: a row object per journaled payload is measurable at import rates.
            return {seq for (seq,) in conn.execute(_JOURNAL_INSERT).cursor.fetchall()}

    def _upsert(self, conn: sa.Connection, events: Sequence[Event]) -> None:
        by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in events:
            by_type[event.type].append(event_to_row(event, self.stage_for))
        for event_type, rows in by_type.items():
            mapping = MAPPINGS[event_type]
            key_columns = mapping.key_columns
            # Rows repeating a key go to later waves: one statement may not touch a row twice, and waves keep
            # the arrival order between repeats.
            seen: dict[tuple[Any, ...], int] = defaultdict(int)
            for row in rows:
                key = tuple(row[name] for name in key_columns)
                row["wave"] = seen[key]
                seen[key] += 1
            waves = max(seen.values())
            with staged(conn, f"stage_{mapping.table.name}", [*mapping.staged_columns, _WAVE], rows):
                statement = _merge_statements(event_type)
                for wave in range(waves):
                    conn.execute(statement, {"wave": wave})

    def reprocess(self, decode: Decoder, chunk_size: int = 5000) -> ReprocessReport:
        """Rebuilds every normalized table from the journal, in arrival order, in one transaction."""
        report = ReprocessReport()
        journal = schema.raw_events
        with self.engine.begin() as conn:
            for table in schema.NORMALIZED_TABLES:
                conn.execute(table.delete())
            last_seq = -1
            while True:
                entries = conn.execute(
                    sa.select(journal.c.seq, journal.c.kind, journal.c.headers, journal.c.body)
                    .where(journal.c.seq > last_seq)
                    .order_by(journal.c.seq)
                    .limit(chunk_size)
                ).all()
                if not entries:
                    break
                last_seq = entries[-1].seq
                events: list[Event] = []
                for entry in entries:
                    headers = orjson.loads(entry.headers) if entry.headers else {}
                    try:
                        decoded = decode(entry.kind, bytes(entry.body), headers)
                    except ValueError as error:
                        report.failed.append((entry.seq, str(error)))
                        continue
                    report.deliveries += 1
                    events.extend(decoded)
                report.events += len(events)
                self._upsert(conn, events)
        return report

    def prune(self, retention: Retention, now: datetime, *, dry_run: bool = False) -> dict[str, int]:
        """Deletes, in one transaction, what ``retention`` keeps no longer (counts it only, with ``dry_run``)."""
        with self.engine.begin() as conn:
            return retention.prune(conn, now, dry_run=dry_run)

    def set_cursor(self, key: str, value: str) -> None:
        """Remembers where a backfill got to (committed at once, so an interrupted run resumes from here)."""
        if "\x00" in key or "\x00" in value:
            # PostgreSQL text cannot hold NUL; refused on both backends, as in events.
            raise InputError("a cursor's key and value may not contain NUL characters (\\u0000)")
        cursors = schema.source_cursors
        insert = postgresql.insert(cursors).values(key=key, value=value, updated_at=datetime.now(UTC))
        with self.engine.begin() as conn:
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[cursors.c.key],
                    set_={"value": insert.excluded.value, "updated_at": insert.excluded.updated_at},
                )
            )

    @property
    def cursors(self) -> Cursors:
        """The cursor table as a get/set mapping (what an API backfill keeps between runs)."""
        return Cursors(self)

    def cursor(self, key: str) -> str | None:
        cursors = schema.source_cursors
        with self.connect() as conn:
            value: str | None = conn.execute(sa.select(cursors.c.value).where(cursors.c.key == key)).scalar()
            return value

    # ----- reads ---------------------------------------------------------------------------------------

    def analyze(self) -> None:
        """Refreshes PostgreSQL's planner statistics after a bulk load.

        Autovacuum gets there within minutes, but until it does PostgreSQL plans the metric queries over freshly
        loaded tables as if they were empty: nested loops that take seconds on the demo data instead of
        milliseconds. DuckDB keeps its statistics up to date itself.
        """
        if self.dialect != "postgresql":
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in schema.NORMALIZED_TABLES:
                conn.exec_driver_sql(f"ANALYZE {table.name}")

    def has_data(self) -> bool:
        with self.connect() as conn:
            return conn.execute(sa.select(schema.raw_events.c.seq).limit(1)).first() is not None

    def counts(self) -> dict[str, int]:
        """Rows per table, journal included."""
        with self.connect() as conn:
            return {
                table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for table in (
                    schema.raw_events,
                    schema.ingest_rejections,
                    schema.source_cursors,
                    *schema.NORMALIZED_TABLES,
                )
            }

    def rows(self, table: sa.Table) -> list[dict[str, Any]]:
        """Every row of a table in key order (for checks and exports of small tables)."""
        with self.connect() as conn:
            result = conn.execute(sa.select(table).order_by(*schema.natural_key(table)))
            return [dict(row._mapping) for row in result]

    def list_events(
        self,
        event_type: str,
        *,
        repo: str | None = None,
        service: str | None = None,
        environment: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> EventPage:
        """Stored events of one type in key order, ``limit`` at a time, filtered; time range is [since, until)."""
        mapping = MAPPINGS.get(event_type)
        if mapping is None:
            raise InputError(f"unknown event type {event_type!r}; expected one of {', '.join(MAPPINGS)}")
        table = mapping.table
        query = sa.select(table)
        for name, value in (("repo", repo), ("service", service), ("environment", environment)):
            if value is None:
                continue
            if name not in table.c:
                raise InputError(f"events of type {event_type} have no {name} to filter on")
            query = query.where(table.c[name] == value)
        if since is not None or until is not None:
            if mapping.time_column is None:
                raise InputError(f"events of type {event_type} carry no time to filter on")
            time_column = table.c[mapping.time_column]
            if since is not None:
                query = query.where(time_column >= since)
            if until is not None:
                query = query.where(time_column < until)
        key = [table.c[name] for name in mapping.key_columns]
        if cursor is not None:
            query = query.where(sa.tuple_(*key) > sa.tuple_(*_decode_cursor(cursor, len(key))))
        rows = self._fetch(query.order_by(*key).limit(limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor([rows[-1][name] for name in mapping.key_columns]) if more else None
        return EventPage([row_to_json(event_type, row) for row in rows], next_cursor)

    def query(self, query: sa.Select[Any]) -> list[dict[str, Any]]:
        """Runs a read (a SQLAlchemy Core select, the same text on both backends); rows as dicts."""
        return self._fetch(query)

    def query_rows(self, query: sa.Select[Any]) -> Sequence[sa.Row[*tuple[Any, ...]]]:
        """Runs a read like ``query``; rows as named tuples, for reads of many rows (a dict per row costs twice as
        much to build)."""
        with self.connect() as conn:
            return conn.execute(query).fetchall()

    def _fetch(self, query: sa.Select[Any]) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]


class Cursors:
    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, key: str) -> str | None:
        return self._store.cursor(key)

    def set(self, key: str, value: str) -> None:
        self._store.set_cursor(key, value)


def _first_line(error: sa.exc.DBAPIError) -> str:
    message = str(error.orig).strip()
    return message.splitlines()[0] if message else type(error.orig).__name__


def _encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def _decode_cursor(cursor: str, width: int) -> list[Any]:
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        values = None
    if not isinstance(values, list) or len(values) != width:
        raise InputError("invalid cursor: pass back the next_cursor of an earlier page unchanged")
    return values

"""Bulk staging: the one place where the two backends load rows differently.

Rows go into a staging relation named ``stage_<table>``: on DuckDB an Arrow table registered on the connection, on
PostgreSQL a temporary table filled by COPY. Everything after staging (journal insert, merge upserts) is one query
text for both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
import sqlalchemy as sa

_ARROW_TYPES: dict[type[sa.types.TypeEngine[Any]], pa.DataType] = {
    sa.String: pa.string(),
    sa.Integer: pa.int64(),
    sa.BigInteger: pa.int64(),
    sa.Double: pa.float64(),
    sa.Boolean: pa.bool_(),
    sa.LargeBinary: pa.binary(),
}


def _arrow_type(column: sa.ColumnElement[Any]) -> pa.DataType:
    if isinstance(column.type, sa.DateTime):
        return pa.timestamp("us", tz="UTC")
    for sa_type, arrow_type in _ARROW_TYPES.items():
        if type(column.type) is sa_type:
            return arrow_type
    raise TypeError(f"no staging type for {column.name}: {column.type!r}")


def _in_utc(moments: Sequence[datetime | None]) -> list[datetime | None]:
    return [moment.astimezone(UTC) if moment is not None and moment.tzinfo else moment for moment in moments]


class BinaryColumn:
    """Values appended one by one into one buffer, then an Arrow binary array without a copy per value.

    It keeps the bytes, not the objects: orjson's ``dumps`` returns objects that hold ≈ 4 KiB each whatever their
    length, so 50,000 kept canonical texts held 200 MB."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._ends = [0]

    def append(self, value: bytes) -> None:
        self._data += value
        self._ends.append(len(self._data))

    def array(self) -> pa.Array:
        large = len(self._data) >= 2**31
        offsets = pa.array(self._ends, pa.int64() if large else pa.int32())
        kind = pa.large_binary() if large else pa.binary()
        return pa.Array.from_buffers(kind, len(self._ends) - 1, [None, offsets.buffers()[1], pa.py_buffer(self._data)])


def stage_relation(name: str, columns: Sequence[sa.Column[Any]]) -> sa.TableClause:
    return sa.table(name, *(sa.column(column.name) for column in columns))


def staged(
    conn: sa.Connection, name: str, columns: Sequence[sa.Column[Any]], rows: Sequence[Mapping[str, Any]]
) -> AbstractContextManager[None]:
    """Makes ``rows`` readable as relation ``name`` on ``conn`` for the duration of the block."""
    return staged_columns(conn, name, columns, {column.name: [row[column.name] for row in rows] for column in columns})


@contextmanager
def staged_columns(
    conn: sa.Connection, name: str, columns: Sequence[sa.Column[Any]], values: Mapping[str, Sequence[Any]]
) -> Iterator[None]:
    """As ``staged``, from one sequence of values per column (all of one length)."""
    raw = conn.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("connection is closed")
    if conn.dialect.name == "duckdb":
        arrays = [pa.array(values[column.name], type=_arrow_type(column)) for column in columns]
        raw.register(name, pa.Table.from_arrays(arrays, names=[column.name for column in columns]))
        try:
            yield
        finally:
            with suppress(duckdb.Error):  # an aborted transaction refuses it; the registration dies with it
                raw.unregister(name)
        return
    quote = conn.dialect.identifier_preparer.format_column
    definition = ", ".join(f"{quote(column)} {column.type.compile(dialect=conn.dialect)}" for column in columns)
    names = ", ".join(quote(column) for column in columns)
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} ({definition}) ON COMMIT DROP")
    # PostgreSQL reads offsets up to ±15:59 and RFC 3339 allows ±23:59: send instants in UTC, as DuckDB's Arrow
    # column does, rather than the offset they were written with.
    sent = [
        _in_utc(values[column.name]) if isinstance(column.type, sa.DateTime) else values[column.name]
        for column in columns
    ]
    cursor: Any = raw.cursor()  # psycopg's cursor: COPY is not in the DB-API
    try:
        with cursor.copy(f"COPY {name} ({names}) FROM STDIN") as copy:
            for row in zip(*sent, strict=True):
                copy.write_row(row)
    finally:
        cursor.close()
    yield  # ON COMMIT DROP removes it

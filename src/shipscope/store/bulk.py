"""Bulk staging: the one place where the two backends load rows differently.

Rows go into a staging relation named ``stage_<table>``: on DuckDB an Arrow table registered on the connection, on
PostgreSQL a temporary table filled by COPY. Everything after staging (journal insert, merge upserts) is one query
text for both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

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


def stage_relation(name: str, columns: Sequence[sa.Column[Any]]) -> sa.TableClause:
    return sa.table(name, *(sa.column(column.name) for column in columns))


@contextmanager
def staged(
    conn: sa.Connection, name: str, columns: Sequence[sa.Column[Any]], rows: Sequence[Mapping[str, Any]]
) -> Iterator[None]:
    """Makes ``rows`` readable as relation ``name`` on ``conn`` for the duration of the block."""
    raw = conn.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("connection is closed")
    if conn.dialect.name == "duckdb":
        arrays = [pa.array([row[column.name] for row in rows], type=_arrow_type(column)) for column in columns]
        raw.register(name, pa.Table.from_arrays(arrays, names=[column.name for column in columns]))
        try:
            yield
        finally:
            raw.unregister(name)
        return
    quote = conn.dialect.identifier_preparer.format_column
    definition = ", ".join(f"{quote(column)} {column.type.compile(dialect=conn.dialect)}" for column in columns)
    names = ", ".join(quote(column) for column in columns)
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} ({definition}) ON COMMIT DROP")
    cursor: Any = raw.cursor()  # psycopg's cursor: COPY is not in the DB-API
    try:
        with cursor.copy(f"COPY {name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[column.name] for column in columns])
    finally:
        cursor.close()
    try:
        yield
    finally:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")

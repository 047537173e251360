"""Each normalized table is keyed by one column, ``merge_key``, its natural key joined into one text.

DuckDB looks up a write's conflicts in its index only when the key is a single column; on a natural key of several
columns it hashed the whole table on every write. PostgreSQL keeps an index on the natural key beside the new
primary key. DuckDB cannot drop a constraint, so there each table is rebuilt under its old name, its rows copied in
their stored order (which keeps the row groups' time ranges that reports skip by).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "pipeline_runs": ("source", "id", "attempt"),
    "jobs": ("source", "id"),
    "steps": ("source", "job_id", "number"),
    "caches": ("source", "event_key"),
    "test_cases": ("source", "event_key"),
    "findings": ("source", "scan_id", "fingerprint"),
    "deployments": ("source", "id"),
    "changes": ("repo", "sha"),
    "pull_requests": ("repo", "number"),
    "incidents": ("source", "id"),
    "timeline_events": ("source", "id"),
}


def _joined(columns: tuple[str, ...]) -> str:
    """SQL for ``schema.joined_key`` over ``columns``: each but the last as ``<length>:<text>:``, then the last."""
    texts = [f"CAST({column} AS VARCHAR)" for column in columns]
    return " || ".join(
        [*(f"CAST(length({text}) AS VARCHAR) || ':' || {text} || ':'" for text in texts[:-1]), texts[-1]]
    )


def _rebuild(name: str, *, keyed: bool) -> None:
    """DuckDB: the table again with its columns as they are, keyed by ``merge_key`` or by the natural key."""
    natural = NATURAL_KEYS[name]
    # DuckDB's catalog is read through its own functions: SQLAlchemy's reflection expects PostgreSQL's.
    kept = [
        (column, f"{kind}{'' if nullable else ' NOT NULL'}")
        for column, kind, nullable in op.get_bind().execute(
            sa.text(
                "SELECT column_name, data_type, is_nullable FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = current_schema() "
                "AND table_name = :name AND column_name <> 'merge_key' ORDER BY column_index"
            ),
            {"name": name},
        )
    ]
    definitions = [f'"{column}" {kind}' for column, kind in kept]
    if keyed:
        definitions.append("merge_key VARCHAR NOT NULL")
    key = "merge_key" if keyed else ", ".join(natural)
    op.execute(f"CREATE TABLE {name}_rebuilt ({', '.join(definitions)}, PRIMARY KEY ({key}))")
    names = ", ".join(f'"{column}"' for column, _ in kept)
    op.execute(
        f"INSERT INTO {name}_rebuilt ({names}{', merge_key' if keyed else ''}) "
        f"SELECT {names}{', ' + _joined(natural) if keyed else ''} FROM {name}"
    )
    op.drop_table(name)
    op.rename_table(f"{name}_rebuilt", name)


def upgrade() -> None:
    duckdb = op.get_bind().dialect.name == "duckdb"
    for name, natural in NATURAL_KEYS.items():
        if duckdb:
            _rebuild(name, keyed=True)
            continue
        # Computed while the table is rewritten once, then kept as a plain column: an UPDATE of every row would
        # leave each table twice its size until vacuumed, and the reports' scans read all of it.
        op.execute(f"ALTER TABLE {name} ADD COLUMN merge_key VARCHAR GENERATED ALWAYS AS ({_joined(natural)}) STORED")
        op.execute(f"ALTER TABLE {name} ALTER COLUMN merge_key DROP EXPRESSION")
        op.alter_column(name, "merge_key", nullable=False)
        op.drop_constraint(f"{name}_pkey", name, type_="primary")
        op.create_primary_key(f"{name}_pkey", name, ["merge_key"])
        op.create_index(f"ix_{name}_natural_key", name, list(natural))


def downgrade() -> None:
    duckdb = op.get_bind().dialect.name == "duckdb"
    for name, natural in NATURAL_KEYS.items():
        if duckdb:
            _rebuild(name, keyed=False)
            continue
        op.drop_index(f"ix_{name}_natural_key", table_name=name)
        op.drop_constraint(f"{name}_pkey", name, type_="primary")
        op.create_primary_key(f"{name}_pkey", name, list(natural))
        op.drop_column(name, "merge_key")

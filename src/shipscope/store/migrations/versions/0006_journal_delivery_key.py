"""The journal is unique on one column, ``delivery_key``, instead of the pair (source, delivery_id).

DuckDB checks a write for duplicates in its index only when the key is a single column; on the pair it hashed the
whole journal on every write. PostgreSQL alters the table in place; DuckDB cannot drop a constraint, so there the
table is rebuilt under its old name.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_KEY = "CAST(length(source) AS VARCHAR) || ':' || source || ':' || delivery_id"
_COLUMNS = "seq, source, delivery_id, kind, received_at, headers, body"


def _journal(name: str, *, keyed: bool) -> None:
    op.create_table(
        name,
        sa.Column("seq", sa.BigInteger(), server_default=sa.text("nextval('raw_events_seq')"), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("delivery_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("headers", sa.String(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        *([sa.Column("delivery_key", sa.String(), nullable=False)] if keyed else []),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("delivery_key", name="uq_raw_events_delivery_key")
        if keyed
        else sa.UniqueConstraint("source", "delivery_id", name="uq_raw_events_delivery"),
    )


def _rebuild(*, keyed: bool) -> None:
    """DuckDB: a new table with the wanted constraints, the rows copied in order, then the old name."""
    _journal("raw_events_rebuilt", keyed=keyed)
    key = f", {_KEY}" if keyed else ""
    op.execute(
        f"INSERT INTO raw_events_rebuilt ({_COLUMNS}{', delivery_key' if keyed else ''}) "
        f"SELECT {_COLUMNS}{key} FROM raw_events ORDER BY seq"
    )
    op.drop_table("raw_events")
    op.rename_table("raw_events_rebuilt", "raw_events")


def upgrade() -> None:
    if op.get_bind().dialect.name == "duckdb":
        _rebuild(keyed=True)
        return
    op.add_column("raw_events", sa.Column("delivery_key", sa.String(), nullable=True))
    op.execute(f"UPDATE raw_events SET delivery_key = {_KEY}")
    op.alter_column("raw_events", "delivery_key", nullable=False)
    op.drop_constraint("uq_raw_events_delivery", "raw_events", type_="unique")
    op.create_unique_constraint("uq_raw_events_delivery_key", "raw_events", ["delivery_key"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "duckdb":
        _rebuild(keyed=False)
        return
    op.drop_constraint("uq_raw_events_delivery_key", "raw_events", type_="unique")
    op.create_unique_constraint("uq_raw_events_delivery", "raw_events", ["source", "delivery_id"])
    op.drop_column("raw_events", "delivery_key")

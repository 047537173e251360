"""Indexes for the metric reports' window queries and joins, on PostgreSQL only (``schema.REPORT_INDEXES``).

PostgreSQL otherwise reads whole tables for a 30-day window. DuckDB skips the row groups outside a window by their
min/max (rows arrive roughly in time order) and joins by hashing, so it would not use these, while each of its
(in-memory ART) indexes costs memory and import time.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INDEXES: tuple[tuple[str, str, list[str]], ...] = (
    ("ix_pipeline_runs_created_at", "pipeline_runs", ["created_at"]),
    ("ix_pipeline_runs_pr", "pipeline_runs", ["repo", "pr_number"]),
    ("ix_jobs_created_at", "jobs", ["created_at"]),
    ("ix_jobs_run", "jobs", ["source", "run_id"]),
    ("ix_steps_started_at", "steps", ["started_at"]),
    ("ix_caches_run", "caches", ["source", "run_id"]),
    ("ix_test_cases_run", "test_cases", ["source", "run_id"]),
    ("ix_changes_deployment_id", "changes", ["deployment_id"]),
    ("ix_changes_sha", "changes", ["sha"]),
    ("ix_changes_pr", "changes", ["repo", "pr_number"]),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)

"""Initial schema: the raw journal, rejections and the normalized event tables.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("raw_events_seq")))
    op.execute(sa.schema.CreateSequence(sa.Sequence("ingest_rejections_seq")))
    op.create_table(
        "caches",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("event_key", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("job_id", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=True),
        sa.Column("hit", sa.Boolean(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("seconds", sa.Double(), nullable=True),
        sa.Column("merge_rank", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", "event_key"),
    )
    op.create_table(
        "changes",
        sa.Column("repo", sa.String(), nullable=False),
        sa.Column("sha", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("authored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("author", sa.String(), nullable=True),
        sa.Column("pr_number", sa.Integer(), nullable=True),
        sa.Column("message", sa.String(), nullable=True),
        sa.Column("deployment_id", sa.String(), nullable=True),
        sa.Column("merge_rank", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("repo", "sha"),
    )
    op.create_table(
        "deployments",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("environment", sa.String(), nullable=False),
        sa.Column("sha", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=True),
        sa.Column("image_digest", sa.String(), nullable=True),
        sa.Column("actor", sa.String(), nullable=True),
        sa.Column("url", sa.String(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=True),
        sa.Column("rollback_of", sa.String(), nullable=True),
        sa.Column("merge_rank", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", "id"),
    )
    op.create_table(
        "findings",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("scan_id", sa.String(), nullable=False),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("repo", sa.String(), nullable=False),
        sa.Column("tool", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=True),
        sa.Column("rule_id", sa.String(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("location", sa.String(), nullable=True),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merge_rank", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", "scan_id", "fingerprint"),
    )
    op.create_table(
        "incidents",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("severity", sa.String(), nullable=True),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("labels", sa.String(), nullable=True),
        sa.Column("caused_by_deployment_id", sa.String(), nullable=True),
        sa.Column("resolved_by_deployment_id", sa.String(), nullable=True),
        sa.Column("merge_rank", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", "id"),
    )
    op.create_table(
        "ingest_rejections",
        sa.Column("seq", sa.BigInteger(), server_default=sa.text("nextval('ingest_rejections_seq')"), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("excerpt", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_table(
        "jobs",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("stage", sa.String(), nullable=True),
        sa.Column("runner", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_reason", sa.String(), nullable=True),
        sa.Column("merge_rank", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", "id"),
    )
    op.create_table(
        "pipeline_runs",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("repo", sa.String(), nullable=False),
        sa.Column("workflow", sa.String(), nullable=False),
        sa.Column("trigger", sa.String(), nullable=False),
        sa.Column("branch", sa.String(), nullable=False),
        sa.Column("default_branch", sa.String(), nullable=True),
        sa.Column("pr_number", sa.Integer(), nullable=True),
        sa.Column("sha", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("url", sa.String(), nullable=True),
        sa.Column("merge_rank", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", "id", "attempt"),
    )
    op.create_table(
        "pull_requests",
        sa.Column("repo", sa.String(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("author", sa.String(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_review_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("base_branch", sa.String(), nullable=False),
        sa.Column("head_sha", sa.String(), nullable=True),
        sa.Column("labels", sa.String(), nullable=True),
        sa.Column("merge_rank", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("repo", "number"),
    )
    op.create_table(
        "raw_events",
        sa.Column("seq", sa.BigInteger(), server_default=sa.text("nextval('raw_events_seq')"), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("delivery_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("headers", sa.String(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("source", "delivery_id", name="uq_raw_events_delivery"),
    )
    op.create_table(
        "steps",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merge_rank", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", "job_id", "number"),
    )
    op.create_table(
        "test_cases",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("event_key", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("job_id", sa.String(), nullable=True),
        sa.Column("suite", sa.String(), nullable=False),
        sa.Column("classname", sa.String(), nullable=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("file", sa.String(), nullable=True),
        sa.Column("duration_seconds", sa.Double(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("merge_rank", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", "event_key"),
    )
    op.create_table(
        "timeline_events",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("service", sa.String(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, quote=True),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("details", sa.String(), nullable=True),
        sa.Column("merge_rank", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", "id"),
    )


def downgrade() -> None:
    op.drop_table("timeline_events")
    op.drop_table("test_cases")
    op.drop_table("steps")
    op.drop_table("raw_events")
    op.drop_table("pull_requests")
    op.drop_table("pipeline_runs")
    op.drop_table("jobs")
    op.drop_table("ingest_rejections")
    op.drop_table("incidents")
    op.drop_table("findings")
    op.drop_table("deployments")
    op.drop_table("changes")
    op.drop_table("caches")
    op.execute(sa.schema.DropSequence(sa.Sequence("ingest_rejections_seq")))
    op.execute(sa.schema.DropSequence(sa.Sequence("raw_events_seq")))

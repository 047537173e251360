"""Tables of the store. The Alembic migrations create exactly these; a test checks that they agree.

``raw_events`` is the journal of every accepted payload, verbatim. The other tables are normalized from it and
can be rebuilt by ``shipscope reprocess``. Each normalized row carries ``merge_rank``, the precedence of the
event that last set it (its status's progress), so a late ``queued`` never overwrites a ``success``, and
``merge_key``, its natural key in one column (``joined_key``), which the merge finds it by.

A table's natural key (``NATURAL_KEYS``) is what tells its rows apart, such as (source, id). The tables are unique
on ``merge_key`` rather than on those columns because DuckDB looks a single-column key up in its index when a
write checks for conflicts, but matches a key of several columns by hashing the whole table: every webhook read
every row of the tables it wrote to, and an upsert of 32 rows into 1,000,000 took 35-180 ms instead of 7-22.
PostgreSQL looks either up in its index; there the natural key keeps an index of its own (``NATURAL_KEY_INDEXES``),
which its joins and the event listing's key order use.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

raw_events_seq = sa.Sequence("raw_events_seq", metadata=metadata)
rejections_seq = sa.Sequence("ingest_rejections_seq", metadata=metadata)


def _ts(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.String, nullable=nullable)


def _key(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.String, primary_key=True)


def _number(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.Integer, nullable=False)


NATURAL_KEYS: dict[str, tuple[str, ...]] = {}
"""The columns that tell a normalized table's rows apart, by table name."""


def _normalized(name: str, natural_key: tuple[str, ...], *columns: sa.Column[Any]) -> sa.Table:
    NATURAL_KEYS[name] = natural_key
    return sa.Table(
        name,
        metadata,
        *columns,
        sa.Column("merge_rank", sa.Integer, nullable=False),
        sa.Column("merge_key", sa.String, primary_key=True),
    )


def natural_key(table: sa.Table) -> tuple[sa.Column[Any], ...]:
    """The columns that tell ``table``'s rows apart: its natural key, or else its primary key."""
    names = NATURAL_KEYS.get(table.name)
    return tuple(table.c[name] for name in names) if names else tuple(table.primary_key.columns)


def joined_key(*parts: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    """``parts`` as one text, each but the last as ``<length>:<text>:``: the lengths keep two keys apart whatever
    their parts hold (``a:b`` + ``c`` against ``a`` + ``b:c``)."""
    texts = [part if isinstance(part.type, sa.String) else sa.cast(part, sa.String) for part in parts]
    joined = texts[-1]
    for text in reversed(texts[:-1]):
        joined = sa.cast(sa.func.length(text), sa.String) + ":" + text + ":" + joined
    return joined


raw_events = sa.Table(
    "raw_events",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, server_default=sa.text("nextval('raw_events_seq')")),
    _text("source", False),
    _text("delivery_id", False),
    _text("kind", False),
    _ts("received_at", False),
    _text("headers"),
    sa.Column("body", sa.LargeBinary, nullable=False),
    _text("delivery_key", False),
    sa.UniqueConstraint("delivery_key", name="uq_raw_events_delivery_key"),
)
"""``delivery_key`` is (source, delivery_id) in one column (``joined_key``), which the journal is unique on, for the
reason the normalized tables have ``merge_key``: checking a batch against the pair hashed the whole journal (57 ms a
batch at 1,000,000 deliveries, against 7)."""


ingest_rejections = sa.Table(
    "ingest_rejections",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, server_default=sa.text("nextval('ingest_rejections_seq')")),
    _ts("received_at", False),
    _text("source", False),
    sa.Column("position", sa.Integer),
    _text("reason", False),
    _text("excerpt"),
)

source_cursors = sa.Table(
    "source_cursors",
    metadata,
    _key("key"),
    sa.Column("value", sa.String, nullable=False),
    _ts("updated_at", False),
)
"""Where a backfill stopped, per source and resource, and the ETags of pages seen (``etag:<url>``)."""

pipeline_runs = _normalized(
    "pipeline_runs",
    ("source", "id", "attempt"),
    _text("source", False),
    _text("id", False),
    _number("attempt"),
    _text("repo", False),
    _text("workflow", False),
    _text("trigger", False),
    _text("branch", False),
    _text("default_branch"),
    sa.Column("pr_number", sa.Integer),
    _text("sha", False),
    _text("actor"),
    _text("status", False),
    _ts("created_at", False),
    _ts("started_at"),
    _ts("finished_at"),
    _text("url"),
)

jobs = _normalized(
    "jobs",
    ("source", "id"),
    _text("source", False),
    _text("id", False),
    _text("run_id", False),
    _text("name", False),
    _text("stage"),
    _text("runner"),  # JSON: a list of labels or a group name, as sent
    _text("status", False),
    sa.Column("attempt", sa.Integer),
    _ts("created_at", False),
    _ts("started_at"),
    _ts("finished_at"),
    _text("failure_reason"),
)

steps = _normalized(
    "steps",
    ("source", "job_id", "number"),
    _text("source", False),
    _text("job_id", False),
    _number("number"),
    _text("name", False),
    _text("status", False),
    _text("stage", False),
    _ts("started_at", False),
    _ts("finished_at", False),
)

caches = _normalized(
    "caches",
    ("source", "event_key"),
    _text("source", False),
    _text("event_key", False),
    _text("run_id"),
    _text("job_id"),
    _text("kind", False),
    _text("key"),
    sa.Column("hit", sa.Boolean, nullable=False),
    sa.Column("bytes", sa.BigInteger),
    sa.Column("seconds", sa.Double),
)

test_cases = _normalized(
    "test_cases",
    ("source", "event_key"),
    _text("source", False),
    _text("event_key", False),
    _text("run_id"),
    _text("job_id"),
    _text("suite", False),
    _text("classname"),
    _text("name", False),
    _text("file"),
    sa.Column("duration_seconds", sa.Double, nullable=False),
    _text("outcome", False),
    sa.Column("attempt", sa.Integer, nullable=False),
)

findings = _normalized(
    "findings",
    ("source", "scan_id", "fingerprint"),
    _text("source", False),
    _text("scan_id", False),
    _text("fingerprint", False),
    _text("run_id"),
    _text("repo", False),
    _text("tool", False),
    _text("target"),
    _text("rule_id", False),
    _text("severity", False),
    _text("location"),
    _ts("scanned_at", False),
)

deployments = _normalized(
    "deployments",
    ("source", "id"),
    _text("source", False),
    _text("id", False),
    _text("service", False),
    _text("environment", False),
    _text("sha", False),
    _text("version"),
    _text("image_digest"),
    _text("actor"),
    _text("url"),
    _ts("started_at"),
    _ts("finished_at"),
    _text("status", False),
    _text("kind"),
    _text("rollback_of"),
)

changes = _normalized(
    "changes",
    ("repo", "sha"),
    _text("repo", False),
    _text("sha", False),
    _text("source", False),
    _ts("authored_at", False),
    _ts("committed_at"),
    _text("author"),
    sa.Column("pr_number", sa.Integer),
    _text("message"),
    _text("deployment_id"),
    _text("parents"),
)

pull_requests = _normalized(
    "pull_requests",
    ("repo", "number"),
    _text("repo", False),
    _number("number"),
    _text("source", False),
    _text("author", False),
    _ts("opened_at", False),
    _ts("first_review_at"),
    _ts("merged_at"),
    _ts("closed_at"),
    _text("base_branch", False),
    _text("head_sha"),
    _text("labels"),
)

incidents = _normalized(
    "incidents",
    ("source", "id"),
    _text("source", False),
    _text("id", False),
    _text("service", False),
    _text("severity"),
    _text("title", False),
    _ts("opened_at", False),
    _ts("acknowledged_at"),
    _ts("resolved_at"),
    _text("labels"),
    _text("caused_by_deployment_id"),
    _text("resolved_by_deployment_id"),
)

timeline_events = _normalized(
    "timeline_events",
    ("source", "id"),
    _text("source", False),
    _text("id", False),
    _text("kind", False),
    _text("service"),
    # "at" is a reserved word in DuckDB's grammar: always quoted.
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, quote=True),
    _text("title", False),
    _text("details"),
)

# ----- incident response: state people edit, not events (reprocess leaves it alone) --------------------------------

postmortems = sa.Table(
    "postmortems",
    metadata,
    _key("incident_source"),
    _key("incident_id"),
    _text("title", False),
    _text("summary"),
    _text("status", False),
    _ts("created_at", False),
    _ts("closed_at"),
    _text("timeline_markdown"),
)
"""One per incident: draft until closed, and closed only with a prevent-recurrence action item."""

action_items = sa.Table(
    "action_items",
    metadata,
    _key("id"),
    _text("incident_source", False),
    _text("incident_id", False),
    _text("title", False),
    _text("owner", False),
    sa.Column("due", sa.Date, nullable=False),
    _text("kind", False),
    _text("status", False),
    _text("link"),
    _ts("created_at", False),
    _ts("done_at"),
)
"""A postmortem's action items: prevent-recurrence, mitigate or detect; open until done, ``link`` naming the CI
gate or test that closes it."""

runbook_ticks = sa.Table(
    "runbook_ticks",
    metadata,
    _key("incident_source"),
    _key("incident_id"),
    _key("step"),
    _ts("ticked_at", False),
    _text("ticked_by"),
)
"""When each step of the on-call runbook was ticked on an incident."""

REPORT_INDEXES: tuple[sa.Index, ...] = (
    sa.Index("ix_pipeline_runs_created_at", pipeline_runs.c.created_at),
    sa.Index("ix_pipeline_runs_pr", pipeline_runs.c.repo, pipeline_runs.c.pr_number),
    sa.Index("ix_jobs_created_at", jobs.c.created_at),
    sa.Index("ix_jobs_run", jobs.c.source, jobs.c.run_id),
    sa.Index("ix_steps_started_at", steps.c.started_at),
    sa.Index("ix_caches_run", caches.c.source, caches.c.run_id),
    sa.Index("ix_test_cases_run", test_cases.c.source, test_cases.c.run_id),
    sa.Index("ix_changes_deployment_id", changes.c.deployment_id),
    sa.Index("ix_changes_sha", changes.c.sha),
    sa.Index("ix_changes_pr", changes.c.repo, changes.c.pr_number),
)
"""Indexes for the metric reports' windows and joins. Migration 0003 creates them on PostgreSQL only: DuckDB prunes
a window by its row groups' min/max and joins by hashing, and each of its indexes costs memory and import time."""

NORMALIZED_TABLES: tuple[sa.Table, ...] = (
    pipeline_runs,
    jobs,
    steps,
    caches,
    test_cases,
    findings,
    deployments,
    changes,
    pull_requests,
    incidents,
    timeline_events,
)

NATURAL_KEY_INDEXES: tuple[sa.Index, ...] = tuple(
    sa.Index(f"ix_{table.name}_natural_key", *natural_key(table)) for table in NORMALIZED_TABLES
)
"""The natural keys' indexes, which migration 0007 creates on PostgreSQL only: its joins and key-ordered listings
use them, while on DuckDB each would be a second in-memory index to build at every import. Not unique, though the
natural key is (``merge_key`` is unique and joins it without loss): PostgreSQL resolves a write's conflict only on
the index it names, so two servers inserting the same new row at once would fail on a second unique index instead
of merging."""

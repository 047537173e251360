"""Retention: how long each table keeps its rows (shipscope.toml ``[retention]``, docs/operations.md).

A table's rows are dated by their own time column. Test cases and cache records carry none; they take the date of
their pipeline run and are kept while it cannot be found. Nothing is pruned unless configured. The journal
(``raw_events``) must be kept at least as long as every table it feeds: it is what ``reprocess`` rebuilds them from,
and a row that outlived its journal entry could not be rebuilt. So when the journal has a retention, a table not
named takes the journal's.

Postmortems, action items and runbook ticks are records people keep; retention never touches them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from shipscope.errors import ConfigError
from shipscope.store import schema

JOURNAL = "raw_events"
_DATED: dict[str, tuple[sa.Table, sa.ColumnElement[Any]]] = {
    "raw_events": (schema.raw_events, schema.raw_events.c.received_at),
    "ingest_rejections": (schema.ingest_rejections, schema.ingest_rejections.c.received_at),
    "pipeline_runs": (schema.pipeline_runs, schema.pipeline_runs.c.created_at),
    "jobs": (schema.jobs, schema.jobs.c.created_at),
    "steps": (schema.steps, schema.steps.c.started_at),
    "findings": (schema.findings, schema.findings.c.scanned_at),
    "deployments": (
        schema.deployments,
        sa.func.coalesce(schema.deployments.c.finished_at, schema.deployments.c.started_at),
    ),
    "changes": (schema.changes, schema.changes.c.authored_at),
    "pull_requests": (schema.pull_requests, schema.pull_requests.c.opened_at),
    "incidents": (schema.incidents, schema.incidents.c.opened_at),
    "timeline_events": (schema.timeline_events, schema.timeline_events.c.at),
}
_BY_RUN = {"test_cases": schema.test_cases, "caches": schema.caches}
TABLES = (*_BY_RUN, *_DATED)
"""Pruned in this order: what is dated by its run goes before the runs."""
_REBUILT = tuple(table for table in TABLES if table not in (JOURNAL, "ingest_rejections"))
"""What ``reprocess`` rebuilds from the journal (rejections are kept beside it, not in it)."""
_DURATION = re.compile(r"^(\d+)([dw])$")


@dataclass(frozen=True)
class Retention:
    keep: Mapping[str, timedelta]
    """How long each configured table keeps rows; a table not named keeps them for ever."""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Retention:
        keep: dict[str, timedelta] = {}
        for table, value in config.items():
            if table not in TABLES:
                raise ConfigError(f"retention: no table {table!r}; the tables are {', '.join(sorted(TABLES))}")
            match = _DURATION.match(str(value).strip())
            if match is None or int(match.group(1)) == 0:
                raise ConfigError(f'retention.{table}: expected a duration such as "90d" or "26w", got {value!r}')
            count, unit = int(match.group(1)), match.group(2)
            keep[table] = timedelta(days=count * (7 if unit == "w" else 1))
        journal = keep.get(JOURNAL)
        if journal is not None:
            outliving = sorted(table for table in _REBUILT if keep.get(table, timedelta(0)) > journal)
            if outliving:
                raise ConfigError(
                    f"retention: the journal ({JOURNAL}, {journal.days}d) must be kept at least as long as every "
                    f"table it rebuilds, but {', '.join(outliving)} would outlive it",
                    hint="keep raw_events longest, or leave it out to keep it for ever",
                )
            # A row the journal no longer holds could not be rebuilt: unnamed tables go with the journal.
            keep = {table: keep.get(table, journal) for table in (*_REBUILT, JOURNAL)} | keep
        return cls(keep)

    def prune(self, conn: sa.Connection, now: datetime, *, dry_run: bool = False) -> dict[str, int]:
        """Deletes (or with ``dry_run`` counts) what each configured table keeps no longer; rows per table."""
        pruned: dict[str, int] = {}
        for name in TABLES:
            if name not in self.keep:
                continue
            cutoff = now - self.keep[name]
            old: sa.ColumnElement[bool]
            if name in _BY_RUN:
                table = _BY_RUN[name]
                runs = schema.pipeline_runs
                old = sa.exists().where(
                    runs.c.source == table.c.source, runs.c.id == table.c.run_id, runs.c.created_at < cutoff
                )
            else:
                table, dated = _DATED[name]
                old = dated < cutoff
            if dry_run:
                pruned[name] = int(conn.execute(sa.select(sa.func.count()).select_from(table).where(old)).scalar_one())
            else:
                pruned[name] = conn.execute(sa.delete(table).where(old)).rowcount
        return pruned

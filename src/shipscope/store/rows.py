"""How each canonical event type maps to its table row, and back to the canonical JSON shape."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson
import sqlalchemy as sa

from shipscope.events import EVENT_TYPES, Event, event_to_json
from shipscope.store import schema

_RUN_RANK = {"queued": 0, "in_progress": 1, "success": 2, "failure": 2, "cancelled": 2, "skipped": 2}
_DEPLOYMENT_RANK = {"in_progress": 0, "success": 1, "failure": 1, "cancelled": 1}
_JSON_COLUMNS = frozenset({"runner", "labels", "parents"})


class StageMatcher:
    """Step name → canonical stage: the first stage with a pattern found in the name, else ``other``.

    Pipelines repeat the same few step names, so each name is matched once.
    """

    def __init__(self, patterns: Mapping[str, list[str]]) -> None:
        self._patterns = [(stage, [needle.lower() for needle in needles]) for stage, needles in patterns.items()]
        self._known: dict[str, str] = {}

    def __call__(self, step_name: str) -> str:
        stage = self._known.get(step_name)
        if stage is None:
            lowered = step_name.lower()
            stage = next(
                (stage for stage, needles in self._patterns if any(needle in lowered for needle in needles)), "other"
            )
            if len(self._known) < 100_000:
                self._known[step_name] = stage
        return stage


def _digest(*parts: object) -> str:
    return hashlib.blake2b(orjson.dumps(parts), digest_size=16).hexdigest()


def _cache_key(row: dict[str, Any]) -> str:
    if row["run_id"] is None and row["job_id"] is None:
        # Without a run or job to scope it, only the whole content tells two cache events apart.
        return _digest(row["kind"], row["key"], row["hit"], row["bytes"], row["seconds"])
    return _digest(row["run_id"], row["job_id"], row["kind"], row["key"])


def _test_case_key(row: dict[str, Any]) -> str:
    natural = (row["suite"], row["classname"], row["name"], row["file"], row["attempt"])
    if row["run_id"] is None and row["job_id"] is None:
        return _digest(*natural, row["duration_seconds"], row["outcome"])
    if row["job_id"] is None:
        # No job to scope it: the matrix jobs of one run report the same test, so what it measured tells them
        # apart (a report sent twice is still one event).
        return _digest(row["run_id"], *natural, row["duration_seconds"], row["outcome"])
    return _digest(row["run_id"], row["job_id"], *natural)


Columns = sa.sql.ColumnCollection[str, sa.ColumnElement[Any]]
"""The columns of a staged relation, by name."""


@dataclass
class EventMapping:
    type: str
    table: sa.Table
    rank: Callable[[Columns], sa.ColumnElement[int]]
    """The precedence of an incoming row (DESIGN.md §1), as SQL over the staged columns: every way rows reach the
    merge computes it the same way."""
    time_column: str | None
    """The column a time-range filter applies to."""
    derive: Callable[[dict[str, Any], StageMatcher], None] | None = None
    """Fills columns computed at ingest (event keys, mapped stages)."""

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(column.name for column in schema.natural_key(self.table))

    @cached_property
    def staged_columns(self) -> tuple[sa.Column[Any], ...]:
        """The columns an incoming row carries: all but ``merge_rank`` and ``merge_key``, which the merge computes."""
        return tuple(column for column in self.table.columns if column.name not in {"merge_rank", "merge_key"})

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.staged_columns)


def _no_rank(columns: Columns) -> sa.ColumnElement[int]:
    return sa.literal(0)


def _status_rank(ranks: Mapping[str, int]) -> Callable[[Columns], sa.ColumnElement[int]]:
    def rank(columns: Columns) -> sa.ColumnElement[int]:
        return sa.case(ranks, value=columns["status"], else_=0)

    return rank


def _incident_rank(columns: Columns) -> sa.ColumnElement[int]:
    """The report that opened an incident (nothing acknowledged or resolved yet) is the authority on when it opened
    and what it is; later reports (an acknowledgement, a resolution, perhaps without the open time) fill the rest."""
    return sa.case((sa.and_(columns["acknowledged_at"].is_(None), columns["resolved_at"].is_(None)), 1), else_=0)


def _derive_step(row: dict[str, Any], stage_for: StageMatcher) -> None:
    row["stage"] = stage_for(row["name"])


def _derive_cache(row: dict[str, Any], stage_for: StageMatcher) -> None:
    row["event_key"] = _cache_key(row)


def _derive_test_case(row: dict[str, Any], stage_for: StageMatcher) -> None:
    row["event_key"] = _test_case_key(row)


MAPPINGS: dict[str, EventMapping] = {
    mapping.type: mapping
    for mapping in (
        EventMapping("pipeline_run", schema.pipeline_runs, _status_rank(_RUN_RANK), "created_at"),
        EventMapping("job", schema.jobs, _status_rank(_RUN_RANK), "created_at"),
        EventMapping("step", schema.steps, _status_rank(_RUN_RANK), "started_at", _derive_step),
        EventMapping("cache", schema.caches, _no_rank, None, _derive_cache),
        EventMapping("test_case", schema.test_cases, _no_rank, None, _derive_test_case),
        EventMapping("finding", schema.findings, _no_rank, "scanned_at"),
        EventMapping("deployment", schema.deployments, _status_rank(_DEPLOYMENT_RANK), "finished_at"),
        EventMapping("change", schema.changes, _no_rank, "authored_at"),
        EventMapping("pull_request", schema.pull_requests, _no_rank, "opened_at"),
        EventMapping("incident", schema.incidents, _incident_rank, "opened_at"),
        EventMapping("timeline_event", schema.timeline_events, _no_rank, "at"),
    )
}
assert set(MAPPINGS) == set(EVENT_TYPES), "every canonical event type needs a table"


def event_to_row(event: Event, stage_for: StageMatcher) -> dict[str, Any]:
    """The row an event upserts: every column of its table, None where the event does not carry a value."""
    mapping = MAPPINGS[event.type]
    values = event.__dict__
    row: dict[str, Any] = {name: values.get(name) for name in mapping.column_names}
    for name in _JSON_COLUMNS.intersection(row):
        if row[name] is not None:
            row[name] = orjson.dumps(row[name]).decode()
    if mapping.derive is not None:
        mapping.derive(row, stage_for)
    return row


def row_to_json(event_type: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row in the canonical JSON shape of its event type."""
    model = EVENT_TYPES[event_type]
    fields = model.model_fields
    values: dict[str, Any] = {"type": event_type}
    for name, value in row.items():
        if name not in fields or value is None:
            continue
        values[name] = orjson.loads(value) if name in _JSON_COLUMNS else value
    return event_to_json(model.model_validate(values))

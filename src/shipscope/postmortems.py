"""After the page: the on-call runbook ticked step by step, the postmortem written from the incident's timeline, and
its action items tracked to completion.

A postmortem cannot be closed without at least one prevent-recurrence item: mitigating and detecting are not
enough to say it will not happen again. Items are open until done, carry an owner and a due date (overdue ones are
shown on the incident page and by ``shipscope check``), and may link the CI gate or test that closes them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from shipscope.errors import InputError, NotFound, Refused
from shipscope.metrics.common import as_aware, iso_utc
from shipscope.metrics.incidents import IncidentTimeline
from shipscope.metrics.listings import IncidentRow
from shipscope.store import Store, schema

ITEM_KINDS: Final = ("prevent-recurrence", "mitigate", "detect")
ITEM_STATUSES: Final = ("open", "done")


@dataclass(frozen=True)
class RunbookStep:
    key: str
    title: str
    box: timedelta
    """How long the step should take, from the previous step's tick (the first: from the page)."""


RUNBOOK: Final = (
    RunbookStep("ack", "Acknowledge the page", timedelta(minutes=5)),
    RunbookStep("identify", "Identify the last deploy of the service (the deploys before it)", timedelta(minutes=5)),
    RunbookStep("compare", "Compare by version: did the alert start with the new version?", timedelta(minutes=10)),
    RunbookStep("decide", "Decide: roll back, roll forward, or flag off", timedelta(minutes=5)),
    RunbookStep("execute", "Execute (shipscope deploy rollback, or the fix)", timedelta(minutes=15)),
    RunbookStep("verify", "Verify: the SLI recovered and the alert resolved", timedelta(minutes=15)),
    RunbookStep("postmortem", "Open the postmortem from the timeline", timedelta(days=2)),
)
_STEPS: Final = {step.key: step for step in RUNBOOK}


@dataclass(frozen=True)
class RunbookState:
    step: RunbookStep
    due_at: datetime
    ticked_at: datetime | None
    ticked_by: str | None

    @property
    def late(self) -> bool:
        return self.ticked_at is not None and self.ticked_at > self.due_at

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.step.key,
            "title": self.step.title,
            "box_minutes": self.step.box.total_seconds() / 60,
            "due_at": iso_utc(self.due_at),
            "ticked_at": iso_utc(self.ticked_at),
            "ticked_by": self.ticked_by,
            "late": self.late,
        }


@dataclass(frozen=True)
class ActionItem:
    id: str
    incident_source: str
    incident_id: str
    title: str
    owner: str
    due: date
    kind: str
    status: str
    link: str | None
    created_at: datetime
    done_at: datetime | None

    def overdue(self, today: date) -> bool:
        return self.status == "open" and self.due < today

    def to_json(self, today: date | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "incident_source": self.incident_source,
            "incident_id": self.incident_id,
            "title": self.title,
            "owner": self.owner,
            "due": self.due.isoformat(),
            "kind": self.kind,
            "status": self.status,
            "link": self.link,
            "created_at": iso_utc(self.created_at),
            "done_at": iso_utc(self.done_at),
            "overdue": self.overdue(today or datetime.now(UTC).date()),
        }


@dataclass(frozen=True)
class Postmortem:
    incident_source: str
    incident_id: str
    title: str
    summary: str | None
    status: str
    created_at: datetime
    closed_at: datetime | None
    timeline_markdown: str | None
    items: tuple[ActionItem, ...]

    @property
    def closable(self) -> str | None:
        """Why it cannot be closed, or None."""
        if self.status == "closed":
            return "it is closed already"
        if not any(item.kind == "prevent-recurrence" for item in self.items):
            return "a postmortem needs at least one prevent-recurrence action item before it is closed"
        return None

    def to_json(self, today: date | None = None) -> dict[str, Any]:
        return {
            "incident_source": self.incident_source,
            "incident_id": self.incident_id,
            "title": self.title,
            "summary": self.summary,
            "status": self.status,
            "created_at": iso_utc(self.created_at),
            "closed_at": iso_utc(self.closed_at),
            "closable": self.closable is None,
            "why_not_closable": self.closable,
            "timeline_markdown": self.timeline_markdown,
            "items": [item.to_json(today) for item in self.items],
        }


# ----- runbook ------------------------------------------------------------------------------------------------------


def runbook(store: Store, incident: IncidentRow) -> list[RunbookState]:
    """Each step with the time it is due by (its box after the previous step's tick) and when it was ticked."""
    ticks = store.query(
        sa.select(schema.runbook_ticks).where(
            schema.runbook_ticks.c.incident_source == incident.source,
            schema.runbook_ticks.c.incident_id == incident.id,
        ),
    )
    ticked = {row["step"]: row for row in ticks}
    states: list[RunbookState] = []
    since = incident.opened_at
    for step in RUNBOOK:
        row = ticked.get(step.key)
        at = as_aware(row["ticked_at"]) if row else None
        states.append(RunbookState(step, since + step.box, at, row["ticked_by"] if row else None))
        since = at or since + step.box
    return states


def tick(store: Store, incident: IncidentRow, step: str, by: str | None, at: datetime) -> None:
    """Ticks a runbook step (again: the first tick stands)."""
    if step not in _STEPS:
        raise InputError(f"runbook step {step!r}: expected one of {', '.join(_STEPS)}")
    insert = postgresql.insert(schema.runbook_ticks).values(
        incident_source=incident.source, incident_id=incident.id, step=step, ticked_at=at, ticked_by=by
    )
    with store.engine.begin() as conn:
        conn.execute(insert.on_conflict_do_nothing())


# ----- postmortems --------------------------------------------------------------------------------------------------


def postmortem(store: Store, incident_source: str, incident_id: str) -> Postmortem | None:
    found = store.query(
        sa.select(schema.postmortems).where(
            schema.postmortems.c.incident_source == incident_source, schema.postmortems.c.incident_id == incident_id
        ),
    )
    if not found:
        return None
    row = found[0]
    items = _items(
        store,
        sa.and_(
            schema.action_items.c.incident_source == incident_source, schema.action_items.c.incident_id == incident_id
        ),
    )
    return Postmortem(
        row["incident_source"],
        row["incident_id"],
        row["title"],
        row["summary"],
        row["status"],
        as_aware(row["created_at"]) or datetime.now(UTC),
        as_aware(row["closed_at"]),
        row["timeline_markdown"],
        tuple(items),
    )


def open_postmortem(store: Store, timeline: IncidentTimeline, summary: str | None, at: datetime) -> Postmortem:
    """Creates the incident's postmortem from its timeline; an existing one is returned as it is."""
    incident = timeline.incident
    insert = postgresql.insert(schema.postmortems).values(
        incident_source=incident.source,
        incident_id=incident.id,
        title=f"Postmortem: {incident.title}",
        summary=summary,
        status="draft",
        created_at=at,
        timeline_markdown=timeline.to_markdown(),
    )
    with store.engine.begin() as conn:
        conn.execute(insert.on_conflict_do_nothing())
    found = postmortem(store, incident.source, incident.id)
    assert found is not None
    return found


def _required(store: Store, incident_source: str, incident_id: str) -> Postmortem:
    found = postmortem(store, incident_source, incident_id)
    if found is None:
        raise NotFound(f"incident {incident_id} has no postmortem yet: open one from its timeline first")
    return found


def add_item(
    store: Store, incident_source: str, incident_id: str, fields: Mapping[str, Any], at: datetime
) -> ActionItem:
    found = _required(store, incident_source, incident_id)
    if found.status == "closed":
        raise Refused(f"the postmortem of {incident_id} is closed: reopen it to add items")
    title, owner, kind = (fields.get(name) for name in ("title", "owner", "kind"))
    for name, value in (("title", title), ("owner", owner)):
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{name}: required text")
    if kind not in ITEM_KINDS:
        raise InputError(f"kind: expected one of {', '.join(ITEM_KINDS)}, got {kind!r}")
    due = _date(fields.get("due"))
    link = _link(fields.get("link"))
    item_id = uuid.uuid4().hex[:12]
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(schema.action_items).values(
                id=item_id,
                incident_source=incident_source,
                incident_id=incident_id,
                title=str(title).strip(),
                owner=str(owner).strip(),
                due=due,
                kind=kind,
                status="open",
                link=link,
                created_at=at,
            )
        )
    return next(item for item in _items(store, schema.action_items.c.id == item_id))


def update_item(store: Store, item_id: str, fields: Mapping[str, Any], at: datetime) -> ActionItem:
    """Marks an item done (or open again), and sets its link."""
    if not _items(store, schema.action_items.c.id == item_id):
        raise NotFound(f"no action item {item_id!r}")
    unknown = sorted(set(fields) - {"status", "link", "owner", "due"})
    if unknown:
        raise InputError(f"unknown fields {', '.join(unknown)}: status, link, owner and due can change")
    values: dict[str, Any] = {}
    if "status" in fields:
        if fields["status"] not in ITEM_STATUSES:
            raise InputError(f"status: expected open or done, got {fields['status']!r}")
        values["status"] = fields["status"]
        values["done_at"] = at if fields["status"] == "done" else None
    if "link" in fields:
        values["link"] = _link(fields["link"])
    if "owner" in fields:
        if not isinstance(fields["owner"], str) or not fields["owner"].strip():
            raise InputError("owner: required text")
        values["owner"] = fields["owner"].strip()
    if "due" in fields:
        values["due"] = _date(fields["due"])
    if values:
        with store.engine.begin() as conn:
            conn.execute(sa.update(schema.action_items).where(schema.action_items.c.id == item_id).values(**values))
    return next(iter(_items(store, schema.action_items.c.id == item_id)))


def close_postmortem(store: Store, incident_source: str, incident_id: str, at: datetime) -> Postmortem:
    found = _required(store, incident_source, incident_id)
    why_not = found.closable
    if why_not is not None:
        raise Refused(f"the postmortem of {incident_id} cannot be closed: {why_not}")
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(schema.postmortems)
            .where(
                schema.postmortems.c.incident_source == incident_source,
                schema.postmortems.c.incident_id == incident_id,
            )
            .values(status="closed", closed_at=at)
        )
    return _required(store, incident_source, incident_id)


def open_items(store: Store, today: date, *, overdue_only: bool = False) -> list[ActionItem]:
    """Open action items, soonest due first; with ``overdue_only``, those past their due date."""
    items = schema.action_items
    condition = sa.and_(items.c.status == "open", items.c.due < today) if overdue_only else items.c.status == "open"
    return _items(store, condition)


# ----- MTTR ---------------------------------------------------------------------------------------------------------


def mttr_by_month(store: Store, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Per month an incident opened in: the mean of resolved − opened over the incidents resolved, and the count."""
    incidents = schema.incidents
    rows = store.query(
        sa.select(incidents.c.opened_at, incidents.c.resolved_at).where(
            incidents.c.opened_at >= since, incidents.c.opened_at < until
        ),
    )
    months: dict[str, list[float]] = {}
    opened: dict[str, int] = {}
    for row in rows:
        start = as_aware(row["opened_at"])
        assert start is not None
        month = start.strftime("%Y-%m")
        opened[month] = opened.get(month, 0) + 1
        end = as_aware(row["resolved_at"])
        if end is not None:
            months.setdefault(month, []).append(max(0.0, (end - start).total_seconds()))
    return [
        {
            "month": month,
            "incidents": opened[month],
            "resolved": len(months.get(month, [])),
            "mttr_seconds": sum(months[month]) / len(months[month]) if months.get(month) else None,
        }
        for month in sorted(opened)
    ]


# ----- reading ------------------------------------------------------------------------------------------------------


def _items(store: Store, condition: sa.ColumnElement[bool]) -> list[ActionItem]:
    items = schema.action_items
    query = sa.select(items).where(condition).order_by(items.c.due, items.c.created_at, items.c.id)
    return [
        ActionItem(
            row["id"],
            row["incident_source"],
            row["incident_id"],
            row["title"],
            row["owner"],
            row["due"],
            row["kind"],
            row["status"],
            row["link"],
            as_aware(row["created_at"]) or datetime.now(UTC),
            as_aware(row["done_at"]),
        )
        for row in store.query(query)
    ]


def _date(value: object) -> date:
    if not isinstance(value, str):
        raise InputError("due: required, a date like 2026-12-31")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"due: {value!r} is not a date like 2026-12-31") from None


def _link(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise InputError("link: expected an http(s) URL of the CI gate or test that closes the item")
    return value

"""Incident response over HTTP: the runbook checklist, the postmortem and its action items, and MTTR per month
(shipscope.postmortems holds the rules)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from shipscope import postmortems
from shipscope.config import Settings
from shipscope.errors import NotFound
from shipscope.ingest.webhooks import json_object
from shipscope.metrics.common import MetricsConfig, Window
from shipscope.metrics.incidents import find_incident, incident_timeline
from shipscope.metrics.listings import IncidentRow
from shipscope.store import Store
from shipscope.web import openapi
from shipscope.web.bodies import read_body
from shipscope.web.responses import ORJSONResponse


def _now() -> datetime:
    return datetime.now(UTC)


def postmortem_router(
    store: Store, settings: Settings, config: MetricsConfig, require: Callable[[str], Callable[[Request], None]]
) -> APIRouter:
    router = APIRouter(tags=["incidents"])
    read, write = [Depends(require("read"))], [Depends(require("ingest"))]

    def incident(incident_id: str, source: str | None) -> IncidentRow:
        found = find_incident(store, incident_id, source, config)
        if found is None:
            raise NotFound(f"no incident with id {incident_id!r}" + (f" from {source!r}" if source else ""))
        return found

    async def body(request: Request, what: str) -> dict[str, Any]:
        raw = await read_body(request, settings.max_body_bytes)
        return json_object(raw, what) if raw.strip() else {}

    @router.get("/api/v1/incidents/{incident_id}/runbook", dependencies=read)
    def runbook(incident_id: str, source: str | None = None) -> dict[str, Any]:
        """The on-call runbook as a checklist: each step's time box, when it is due and when it was ticked."""
        found = incident(incident_id, source)
        return {"steps": [state.to_json() for state in postmortems.runbook(store, found)]}

    @router.post(
        "/api/v1/incidents/{incident_id}/runbook/{step}", dependencies=write, openapi_extra=openapi.RUNBOOK_TICK
    )
    async def tick(request: Request, incident_id: str, step: str, source: str | None = None) -> dict[str, Any]:
        """Tick a step (`{"by": "ana"}` optional); the first tick's time stands."""
        fields = await body(request, "runbook tick")

        def ticked() -> dict[str, Any]:
            found = incident(incident_id, source)
            postmortems.tick(store, found, step, str(fields["by"]) if fields.get("by") else None, _now())
            return {"steps": [state.to_json() for state in postmortems.runbook(store, found)]}

        return await run_in_threadpool(ticked)

    @router.get("/api/v1/incidents/{incident_id}/postmortem", dependencies=read)
    def get_postmortem(incident_id: str, source: str | None = None) -> dict[str, Any]:
        found = incident(incident_id, source)
        written = postmortems.postmortem(store, found.source, found.id)
        if written is None:
            raise NotFound(f"incident {incident_id} has no postmortem yet")
        return written.to_json()

    @router.post("/api/v1/incidents/{incident_id}/postmortem", dependencies=write, openapi_extra=openapi.POSTMORTEM)
    async def open_postmortem(request: Request, incident_id: str, source: str | None = None) -> Response:
        """Open the postmortem from the incident's timeline (its Markdown is kept); `{"summary": …}` optional.
        201 when created, 200 when it existed."""
        fields = await body(request, "postmortem")

        def opened() -> tuple[int, dict[str, Any]]:
            timeline = incident_timeline(store, incident_id, source, config)
            if timeline is None:
                raise NotFound(f"no incident with id {incident_id!r}")
            existed = postmortems.postmortem(store, timeline.incident.source, timeline.incident.id) is not None
            summary = fields.get("summary")
            written = postmortems.open_postmortem(store, timeline, str(summary) if summary else None, _now())
            return (200 if existed else 201), written.to_json()

        status, document = await run_in_threadpool(opened)
        return ORJSONResponse(document, status_code=status)

    @router.post(
        "/api/v1/incidents/{incident_id}/postmortem/items", dependencies=write, openapi_extra=openapi.ACTION_ITEM
    )
    async def add_item(request: Request, incident_id: str, source: str | None = None) -> Response:
        """An action item: `{"title", "owner", "due": "YYYY-MM-DD", "kind": prevent-recurrence|mitigate|detect,
        "link"?}`; 201."""
        fields = await body(request, "action item")

        def added() -> dict[str, Any]:
            found = incident(incident_id, source)
            return postmortems.add_item(store, found.source, found.id, fields, _now()).to_json()

        return ORJSONResponse(await run_in_threadpool(added), status_code=201)

    @router.patch("/api/v1/action-items/{item_id}", dependencies=write, openapi_extra=openapi.ACTION_ITEM_CHANGE)
    async def update_item(request: Request, item_id: str) -> dict[str, Any]:
        """Mark an item done or open (`{"status": "done"}`), or change its link, owner or due date."""
        fields = await body(request, "action item")
        item = await run_in_threadpool(postmortems.update_item, store, item_id, fields, _now())
        return item.to_json()

    @router.post("/api/v1/incidents/{incident_id}/postmortem/close", dependencies=write)
    async def close(incident_id: str, source: str | None = None) -> dict[str, Any]:
        """Close the postmortem: 422 with the reason while it has no prevent-recurrence item."""

        def closed() -> dict[str, Any]:
            found = incident(incident_id, source)
            return postmortems.close_postmortem(store, found.source, found.id, _now()).to_json()

        return await run_in_threadpool(closed)

    @router.get("/api/v1/action-items", dependencies=read)
    def items(overdue: bool = False) -> dict[str, Any]:
        """Open action items past their due date (`overdue=true`), or every open one."""
        today = _now().date()
        found = postmortems.open_items(store, today, overdue_only=overdue)
        return {"items": [item.to_json(today) for item in found]}

    @router.get("/api/v1/mttr", dependencies=read)
    def mttr(
        since: Annotated[str, Query(description="30d, 12w, a date or an RFC 3339 time.")] = "180d",
        until: str | None = None,
    ) -> dict[str, Any]:
        """MTTR per month: the mean of resolved − opened over the incidents of each month that were resolved."""
        window = Window.parse(since, until)
        return {"window": window.to_json(), "months": postmortems.mttr_by_month(store, window.since, window.until)}

    return router

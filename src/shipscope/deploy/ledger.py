"""Where deploy commands record what happened and read it back: a shipscope server's API (``SHIPSCOPE_URL``, the
usual case inside a pipeline) or a database this process opens (``--db``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from shipscope.errors import RemoteError, StoreError
from shipscope.events import Event, event_to_json
from shipscope.ingest import Delivery
from shipscope.ingest.generic import read_record
from shipscope.store import Store

PAGE = 1000


class Ledger(Protocol):
    def write(self, events: Sequence[Event]) -> None:
        """Stores the events durably, or raises a StoreError or RemoteError saying why it could not."""

    def read(self, event_type: str, **filters: str) -> list[dict[str, Any]]:
        """Every stored event of one type matching ``filters`` (service, environment, repo), canonical JSON."""


def _lines(events: Sequence[Event]) -> list[bytes]:
    return [orjson.dumps(event_to_json(event)) for event in events]


def _deliveries(events: Sequence[Event]) -> list[Delivery]:
    deliveries = []
    for position, line in enumerate(_lines(events), start=1):
        delivery = read_record(position, line)
        if not isinstance(delivery, Delivery):
            raise StoreError(f"an event shipscope made was refused: {delivery.reason}")
        deliveries.append(delivery)
    return deliveries


class StoreLedger:
    def __init__(self, store: Store) -> None:
        self._store = store

    def write(self, events: Sequence[Event]) -> None:
        self._store.ingest(_deliveries(events))

    def read(self, event_type: str, **filters: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = self._store.list_events(
                event_type,
                service=filters.get("service"),
                environment=filters.get("environment"),
                repo=filters.get("repo"),
                limit=PAGE,
                cursor=cursor,
            )
            found.extend(page.events)
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor


class ServerLedger:
    def __init__(self, client: Any) -> None:
        """``client`` is a ``shipscope.client.ServerClient``."""
        self._client = client

    def write(self, events: Sequence[Event]) -> None:
        lines = _lines(events)
        answer = self._client.post_records(list(enumerate(lines, start=1)))
        if answer.get("rejected_count"):
            rejected = answer.get("rejected")
            raise RemoteError(f"the shipscope server refused what this command recorded: {rejected}", status=400)

    def read(self, event_type: str, **filters: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        params = {"type": event_type, "limit": str(PAGE), **filters}
        while True:
            page = self._client.get_json("/api/v1/events", params)
            events = page.get("events")
            assert isinstance(events, list)
            found.extend(events)
            cursor = page.get("next_cursor")
            if not cursor:
                return found
            params["cursor"] = str(cursor)


class WriterLedger(StoreLedger):
    """Inside the server: writes go through its group-commit writer (the one writer of the database), reads through
    the store."""

    def __init__(self, store: Store, writer: Any) -> None:
        """``writer`` is the server's ``shipscope.store.writer.Writer``."""
        super().__init__(store)
        self._writer = writer

    def write(self, events: Sequence[Event]) -> None:
        self._writer.submit(_deliveries(events)).result(timeout=60)

"""Generic canonical events: NDJSON (one object a line) or a JSON array, from a request body or a file.

Each event is its own delivery, identified by a hash of its content, so the same event sent twice is a
duplicate however it was batched. Input is first split into *records* (position, bytes of one JSON value), so a
file can be streamed and a batch of records can be parsed here or sent to a server unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

import ijson
import orjson

from shipscope.events import Event, EventError, parse_event
from shipscope.ingest import Delivery, LineFormat, LineIdentity, Rejection
from shipscope.ingest.payload import NUL_REFUSED, holds_nul

SOURCE = "events"
KIND = "event"
_EXCERPT = 200

Record = tuple[int, bytes]
"""(1-based position of a line or array item, the JSON text of one event)."""


def _excerpt(data: bytes) -> str:
    return data[:_EXCERPT].decode(errors="replace")


def _decoded(position: int, data: bytes) -> object:
    """One record's JSON value, or the Rejection saying why its bytes are not JSON shipscope can keep."""
    if holds_nul(data):
        return Rejection(SOURCE, NUL_REFUSED, position, _excerpt(data))
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        reason = f"invalid JSON: {error.msg} at column {error.colno} (char {error.pos})"
        return Rejection(SOURCE, reason, position, _excerpt(data))


def _canonical(value: object) -> bytes:
    """The JSON text the delivery id hashes: sorted keys, no spacing, so neither makes a second event."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _digest(canonical: bytes) -> str:
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


def record_identity(position: int, data: bytes) -> LineIdentity | Rejection:
    """A record's delivery id, decoded value and canonical text, or why its bytes are refused before any field is
    looked at (for a store that checks the fields in bulk)."""
    value = _decoded(position, data)
    if isinstance(value, Rejection):
        return value
    try:
        canonical = _canonical(value)
    except orjson.JSONEncodeError:
        # orjson reads deeper nesting than it writes: such a line is refused by the model, in its words.
        refused = read_record(position, data)
        assert isinstance(refused, Rejection)
        return refused
    return _digest(canonical), value, canonical


def read_record(position: int, data: bytes) -> Delivery | Rejection:
    """One record as a one-event delivery, or the reason it is refused."""
    value = _decoded(position, data)
    if isinstance(value, Rejection):
        return value
    try:
        event = parse_event(value)
    except EventError as error:
        return Rejection(SOURCE, str(error), position, _excerpt(data))
    return Delivery(source=SOURCE, delivery_id=_digest(_canonical(value)), kind=KIND, body=data, events=(event,))


EVENT_LINES = LineFormat(SOURCE, KIND, record_identity, read_record)


def read_records(records: Iterable[Record | Rejection]) -> Iterator[Delivery | Rejection]:
    for record in records:
        yield record if isinstance(record, Rejection) else read_record(*record)


def decode(body: bytes) -> Sequence[Event]:
    """A journaled generic event back into its event (for reprocess)."""
    delivery = read_record(0, body)
    if isinstance(delivery, Rejection):
        raise ValueError(delivery.reason)
    return delivery.events


def _lines(lines: Iterable[bytes]) -> Iterator[Record]:
    for position, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped:
            yield position, stripped


def _array_items(stream: IO[bytes]) -> Iterator[Record | Rejection]:
    position = 0
    try:
        for value in ijson.items(stream, "item", use_float=True):
            position += 1
            yield position, orjson.dumps(value)
    except ijson.JSONError as error:
        yield Rejection(SOURCE, f"invalid JSON after item {position}: {error}", position + 1)


def _is_array(head: bytes) -> bool:
    return head.lstrip()[:1] == b"["


def body_records(body: bytes) -> tuple[str, list[Record | Rejection]]:
    """A whole request body as records; also says what a position counts ("line" or "item")."""
    if _is_array(body[:4096]):
        try:
            values = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            reason = f"invalid JSON array: {error.msg} at line {error.lineno} column {error.colno} (char {error.pos})"
            return "item", [Rejection(SOURCE, reason, None, _excerpt(body))]
        return "item", [(position, orjson.dumps(value)) for position, value in enumerate(values, start=1)]
    return "line", list(_lines(body.split(b"\n")))


def stream_records(stream: IO[bytes]) -> tuple[str, Iterator[Record | Rejection]]:
    """A file or stdin as records, read incrementally so memory stays flat whatever its size."""
    peek = getattr(stream, "peek", None)
    head = peek(4096) if peek is not None else b""
    if _is_array(head):
        return "item", _array_items(stream)
    return "line", _lines(stream)

"""Sources → canonical events. Each module here reads one source's bytes; none of them writes SQL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from shipscope.events import Event


@dataclass(frozen=True, slots=True)
class Delivery:
    """One accepted payload: journaled verbatim under (source, delivery_id), then normalized into its events."""

    source: str
    delivery_id: str
    kind: str
    """Names the parser that turns ``body`` back into events when the journal is reprocessed."""
    body: bytes
    events: tuple[Event, ...]
    headers: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    """Problems in the payload that did not refuse it (a SARIF result under a derived rule), for the answer."""


@dataclass(frozen=True)
class Rejection:
    """A payload, or one line of it, that was refused, and why."""

    source: str
    reason: str
    position: int | None = None
    """1-based line of an NDJSON body or file, or item of a JSON array."""
    excerpt: str = ""


LineIdentity = tuple[str, object, bytes]
"""A line's delivery id, its decoded JSON value, and that value as canonical JSON text (sorted keys, no spacing)."""


@dataclass(frozen=True)
class LineFormat:
    """A format of one event a line, as a store needs it to check a batch of lines in bulk (``Store.ingest_lines``)."""

    source: str
    kind: str
    """The journal's source and kind of every line."""
    identify: Callable[[int, bytes], LineIdentity | Rejection]
    """(position, line) → who it is, or why its bytes are refused before any field is read."""
    read: Callable[[int, bytes], Delivery | Rejection]
    """(position, line) → the line as a delivery, or why it is refused: the one validator of its fields."""


MAX_REPORTED_REJECTIONS = 1000


@dataclass
class IngestReport:
    stored: int = 0
    """Events from deliveries seen for the first time."""
    duplicates: int = 0
    """Events from deliveries already in the journal (or repeated within the same request)."""
    rejected: list[Rejection] = field(default_factory=list)
    """The first MAX_REPORTED_REJECTIONS rejections, in order."""
    rejected_count: int = 0
    warnings: list[str] = field(default_factory=list)
    """The first MAX_REPORTED_REJECTIONS warnings of accepted payloads."""

    def reject(self, rejection: Rejection) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_REPORTED_REJECTIONS:
            self.rejected.append(rejection)

    def add(self, other: IngestReport) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        for rejection in other.rejected:
            if len(self.rejected) < MAX_REPORTED_REJECTIONS:
                self.rejected.append(rejection)
        self.rejected_count += other.rejected_count
        self.warn(other.warnings)

    def warn(self, warnings: Sequence[str]) -> None:
        self.warnings.extend(warnings[: MAX_REPORTED_REJECTIONS - len(self.warnings)])

    def count(self, deliveries: Sequence[Delivery], is_new: Sequence[bool]) -> None:
        for delivery, new in zip(deliveries, is_new, strict=True):
            if new:
                self.stored += len(delivery.events)
            else:
                self.duplicates += len(delivery.events)
            self.warn(delivery.warnings)

    def to_json(self, position_name: str = "line") -> dict[str, object]:
        return {
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected_count": self.rejected_count,
            "rejected": [{position_name: rejection.position, "error": rejection.reason} for rejection in self.rejected],
            **({"warnings": self.warnings} if self.warnings else {}),
        }

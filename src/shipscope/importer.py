"""Bulk import of canonical-event records, into the store directly or through a server that owns it.

Both ways run the same parse (``ingest.generic``) and the same ``Store.write``; the remote way just lets the
server do them. Records are taken a batch at a time, so memory stays flat whatever the input size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Protocol

from shipscope.ingest import IngestReport, Rejection
from shipscope.ingest.generic import EVENT_LINES, Record
from shipscope.ingest.reports import report_delivery
from shipscope.store import Store

if TYPE_CHECKING:
    from shipscope.client import ServerClient


class RecordSink(Protocol):
    batch_size: int
    """Records sent at a time: memory stays flat whatever the input's size."""

    def send(self, records: list[Record], report: IngestReport) -> None:
        """Stores a batch of event records and adds the outcome to ``report``."""

    def send_report(self, fmt: str, body: bytes, params: dict[str, str], report: IngestReport) -> None:
        """Stores one report file (junit, sarif, cache-log), parsed where the store is."""


class StoreSink:
    """Writes straight into a store this process has opened, one transaction per batch."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.batch_size = store.lines_batch_size

    def send(self, records: list[Record], report: IngestReport) -> None:
        outcome = self._store.ingest_lines(records, EVENT_LINES)
        report.stored += outcome.stored
        report.duplicates += outcome.duplicates
        for rejection in outcome.rejections:
            report.reject(rejection)

    def send_report(self, fmt: str, body: bytes, params: dict[str, str], report: IngestReport) -> None:
        delivery = report_delivery(fmt, body, params)
        report.count([delivery], self._store.ingest([delivery]))


class ServerSink:
    """Posts records to the server that owns the database; maps its line numbers back to the input's."""

    batch_size = 5000

    def __init__(self, client: ServerClient) -> None:
        self._client = client

    def send(self, records: list[Record], report: IngestReport) -> None:
        answer = self._client.post_records(records)
        report.stored += int(answer["stored"])  # type: ignore[call-overload]
        report.duplicates += int(answer["duplicates"])  # type: ignore[call-overload]
        rejected = answer.get("rejected", [])
        assert isinstance(rejected, list)
        for entry in rejected:
            position = records[int(entry["line"]) - 1][0] if entry.get("line") else None
            report.reject(Rejection("events", str(entry["error"]), position))

    def send_report(self, fmt: str, body: bytes, params: dict[str, str], report: IngestReport) -> None:
        answer = self._client.post_report(fmt, body, params)
        report.stored += int(answer["stored"])  # type: ignore[call-overload]
        report.duplicates += int(answer["duplicates"])  # type: ignore[call-overload]
        warnings = answer.get("warnings", [])
        assert isinstance(warnings, list)
        report.warn([str(warning) for warning in warnings])


def _batches(records: Iterable[Record | Rejection], size: int) -> Iterator[list[Record | Rejection]]:
    iterator = iter(records)
    while batch := list(islice(iterator, size)):
        yield batch


def import_records(
    records: Iterable[Record | Rejection],
    sink: RecordSink,
    *,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Sends every record to ``sink``; rejections found while reading (a broken JSON array) are reported too."""
    report = IngestReport()
    for batch in _batches(records, batch_size or sink.batch_size):
        good = [entry for entry in batch if not isinstance(entry, Rejection)]
        for entry in batch:
            if isinstance(entry, Rejection):
                report.reject(entry)
        if good:
            sink.send(good, report)
        if progress is not None:
            progress(len(batch))
    report.rejected.sort(key=lambda rejection: rejection.position or 0)
    return report

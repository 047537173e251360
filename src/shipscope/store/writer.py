"""One writer thread with group commit.

DuckDB lets one process own a file, and commits are the costly part of a small write. So the server funnels every
write through one thread: it takes whatever requests are waiting, writes them in one transaction, commits, and
only then answers each of them. A request is acknowledged only once its batch is durable. Whatever follows a
commit (the live trace export) is handed the committed deliveries after the answers, and can neither delay nor fail
them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from shipscope.ingest import Delivery, Rejection
from shipscope.store.database import Store

log = logging.getLogger(__name__)


@dataclass
class _Request:
    deliveries: Sequence[Delivery]
    rejections: Sequence[Rejection]
    future: Future[list[bool]]


CommitHook = Callable[[Sequence[Delivery], Sequence[bool]], None]
"""Called on the writer thread with each committed batch's deliveries and whether each was new; it must be quick."""


class GroupCommitWriter:
    def __init__(
        self,
        store: Store,
        *,
        max_requests: int = 512,
        gather_seconds: float = 0.005,
        on_commit: CommitHook | None = None,
    ) -> None:
        self._store = store
        self._on_commit = on_commit
        self._max_requests = max_requests
        self._gather_seconds = gather_seconds
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="shipscope-writer", daemon=True)
        self._closed = False
        self._deliveries: Counter[tuple[str, str]] = Counter()
        self._events: Counter[tuple[str, str]] = Counter()
        self._thread.start()

    def tally(self) -> tuple[Mapping[tuple[str, str], int], Mapping[tuple[str, str], int]]:
        """Deliveries and events written since start, by (source, outcome): ``new``, ``duplicate`` or, for
        deliveries, ``rejected``. Only the writer thread counts; readers get a copy."""
        return dict(self._deliveries), dict(self._events)

    def submit(self, deliveries: Sequence[Delivery], rejections: Sequence[Rejection] = ()) -> Future[list[bool]]:
        """Queues a write; the future resolves to ``Store.write``'s answer once the batch has committed."""
        future: Future[list[bool]] = Future()
        if self._closed:
            future.set_exception(RuntimeError("the writer is closed"))
        else:
            self._queue.put(_Request(deliveries, rejections, future))
        return future

    def close(self) -> None:
        """Finishes what is queued, then stops the thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        stopping = False
        # The sizes of the last commits: about as many requesters as the largest answered are on their way back.
        recent: deque[int] = deque(maxlen=16)
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            # Requesters answered by the last commit are still coming back with their next write: a moment's
            # wait lets them join this batch instead of each paying for a commit of its own. Once as many have
            # come as recent commits answered, waiting longer would only delay them (a lone client would wait
            # out the whole window on every write); what is already queued joins all the same.
            expected = max(recent, default=self._max_requests)
            deadline = time.monotonic() + self._gather_seconds
            while len(batch) < self._max_requests:
                try:
                    if len(batch) >= expected:
                        request = self._queue.get_nowait()
                    else:
                        request = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if request is None:
                    stopping = True
                    break
                batch.append(request)
            recent.append(len(batch))
            self._commit(batch)

    def _commit(self, batch: list[_Request]) -> None:
        try:
            self._write(batch)
        except Exception as error:
            if len(batch) == 1:
                log.exception("write failed")
                batch[0].future.set_exception(error)
                return
            # One bad request must not fail the others: retry each in its own transaction.
            for request in batch:
                self._commit([request])

    def _write(self, batch: list[_Request]) -> None:
        deliveries = [delivery for request in batch for delivery in request.deliveries]
        rejections = [rejection for request in batch for rejection in request.rejections]
        is_new = self._store.ingest(deliveries, rejections)
        for delivery, new in zip(deliveries, is_new, strict=True):
            outcome = "new" if new else "duplicate"
            self._deliveries[(delivery.source, outcome)] += 1
            self._events[(delivery.source, outcome)] += len(delivery.events)
        for rejection in rejections:
            self._deliveries[(rejection.source, "rejected")] += 1
        offset = 0
        for request in batch:
            count = len(request.deliveries)
            request.future.set_result(is_new[offset : offset + count])
            offset += count
        if self._on_commit is not None:
            try:
                self._on_commit(deliveries, is_new)
            except Exception:
                log.exception("a commit hook failed; the batch itself is stored")

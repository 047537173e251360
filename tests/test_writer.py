"""The group-commit writer: requests that arrive together share a commit; each is answered once it is durable;
one failing request does not fail the others."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
import sqlalchemy as sa

from shipscope.errors import StoreError
from shipscope.ingest import Delivery, Rejection
from shipscope.store import Store, schema
from shipscope.store.writer import GroupCommitWriter
from tests.factories import delivery, run


def test_concurrent_requests_share_commits_and_see_their_rows(store: Store) -> None:
    commits = 0

    def count(conn: sa.Connection) -> None:
        nonlocal commits
        commits += 1

    sa.event.listen(store.engine, "commit", count)
    writer = GroupCommitWriter(store, gather_seconds=0.05)
    answers: list[list[bool]] = []
    start = threading.Barrier(20)

    def client(index: int) -> None:
        start.wait()
        answers.append(writer.submit([delivery(run(f"r{index}"))]).result(timeout=30))

    threads = [threading.Thread(target=client, args=(index,)) for index in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    assert answers == [[True]] * 20
    assert len(store.rows(schema.pipeline_runs)) == 20
    assert commits < 20


def test_a_lone_requester_does_not_wait_out_the_gather_window(store: Store) -> None:
    writer = GroupCommitWriter(store, gather_seconds=1.0)
    try:
        # Nothing is known of the load yet: the first write waits the window for others to join it.
        started = time.monotonic()
        writer.submit([delivery(run("r0"))]).result(timeout=30)
        assert time.monotonic() - started >= 0.9
        # Every commit since answered one request: the next lone write commits at once.
        for index in range(1, 4):
            started = time.monotonic()
            assert writer.submit([delivery(run(f"r{index}"))]).result(timeout=30) == [True]
            assert time.monotonic() - started < 0.5
    finally:
        writer.close()
    assert len(store.rows(schema.pipeline_runs)) == 4


class _PoisonedStore(Store):
    """Refuses any write that contains the run id "poison", as a database would refuse a bad row."""

    def ingest(self, deliveries: Sequence[Delivery], rejections: Sequence[Rejection] = ()) -> list[bool]:
        if any(event.id == "poison" for d in deliveries for event in d.events if event.type == "pipeline_run"):
            raise StoreError("the database refused the write: poisoned")
        return super().ingest(deliveries, rejections)


def test_a_failing_request_fails_alone(db_url: str) -> None:
    store = _PoisonedStore(db_url)
    try:
        writer = GroupCommitWriter(store, gather_seconds=0.2)
        good = writer.submit([delivery(run("r1"))])
        bad = writer.submit([delivery(run("poison"))])
        other = writer.submit([delivery(run("r2"))])
        assert good.result(timeout=30) == [True]
        assert other.result(timeout=30) == [True]
        with pytest.raises(StoreError, match="poisoned"):
            bad.result(timeout=30)
        writer.close()
        assert [row["id"] for row in store.rows(schema.pipeline_runs)] == ["r1", "r2"]
        assert writer.submit([]).exception() is not None
    finally:
        store.close()


def test_the_commit_hook_sees_each_committed_batch_and_cannot_fail_it(store: Store) -> None:
    seen: list[tuple[list[str], list[bool]]] = []

    def hook(deliveries: Sequence[Delivery], is_new: Sequence[bool]) -> None:
        seen.append(([d.delivery_id for d in deliveries], list(is_new)))
        raise RuntimeError("the hook broke")

    writer = GroupCommitWriter(store, on_commit=hook)
    first = delivery(run("r1"))
    assert writer.submit([first]).result(timeout=30) == [True]
    assert writer.submit([first, delivery(run("r2"))]).result(timeout=30) == [False, True]
    writer.close()
    assert [new for _, new in seen] == [[True], [False, True]]
    assert seen[0][0] == [first.delivery_id]
    assert len(store.rows(schema.pipeline_runs)) == 2

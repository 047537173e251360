"""Property: any shuffle, with duplicates and any batching, of a valid event stream yields the same normalized
tables as the ordered stream, on both backends (DESIGN.md §1)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipscope.store import Store, schema
from tests.factories import delivery

T0 = "2026-03-0{day}T{hour:02}:{minute:02}:00{offset}"
OFFSETS = ("Z", "+02:00", "-05:30")


def _time(day: int, hour: int, minute: int, offset: str) -> str:
    return T0.format(day=day, hour=hour, minute=minute, offset=offset)


@st.composite
def run_lifecycle(draw: st.DrawFn, run_id: str) -> list[dict[str, Any]]:
    """queued → in_progress → a final status; each later event carries what the earlier ones did, and more."""
    offset = draw(st.sampled_from(OFFSETS))
    base = {
        "type": "pipeline_run",
        "source": draw(st.sampled_from(["github", "gitlab"])),
        "id": run_id,
        "repo": draw(st.sampled_from(["acme/shop", "acme/api"])),
        "workflow": "ci",
        "trigger": "push",
        "branch": "main",
        "sha": draw(st.sampled_from(["a1", "b2", "c3"])),
        "attempt": draw(st.integers(1, 2)),
        "created_at": _time(1, 10, 0, offset),
    }
    queued = {**base, "status": "queued"}
    running = {**base, "status": "in_progress", "started_at": _time(1, 10, draw(st.integers(1, 9)), offset)}
    final = {
        **running,
        "status": draw(st.sampled_from(["success", "failure", "cancelled"])),
        "finished_at": _time(1, 11, draw(st.integers(0, 59)), offset),
        "url": f"https://ci.example/{run_id}",
    }
    stages = draw(st.sampled_from([[final], [queued, final], [queued, running, final], [running, final]]))
    return list(stages)


@st.composite
def deployment_lifecycle(draw: st.DrawFn, deployment_id: str) -> list[dict[str, Any]]:
    base = {
        "type": "deployment",
        "id": deployment_id,
        "service": draw(st.sampled_from(["checkout", "search"])),
        "environment": draw(st.sampled_from(["production", "staging"])),
        "sha": "a1",
        "started_at": _time(2, 9, 0, "Z"),
        "status": "in_progress",
    }
    final = {
        **base,
        "status": draw(st.sampled_from(["success", "failure"])),
        "finished_at": _time(2, 9, draw(st.integers(1, 59)), "Z"),
        "kind": draw(st.sampled_from(["deploy", "rollback", "hotfix"])),
        "version": "v1.2.3",
    }
    return [base, final] if draw(st.booleans()) else [final]


@st.composite
def pull_request_lifecycle(draw: st.DrawFn, number: int) -> list[dict[str, Any]]:
    opened = {
        "type": "pull_request",
        "repo": "acme/shop",
        "number": number,
        "author": "ana",
        "opened_at": _time(3, 8, 0, "+01:00"),
        "base_branch": "main",
    }
    reviewed = {**opened, "first_review_at": _time(3, 9, draw(st.integers(0, 59)), "+01:00")}
    merged = {**reviewed, "merged_at": _time(3, 12, 0, "+01:00"), "head_sha": "a1", "labels": ["hotfix"]}
    return draw(st.sampled_from([[opened], [opened, merged], [opened, reviewed, merged]]))


@st.composite
def event_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    stream: list[dict[str, Any]] = []
    for index in range(draw(st.integers(1, 5))):
        stream.extend(draw(run_lifecycle(f"run-{index}")))
    for index in range(draw(st.integers(0, 3))):
        stream.extend(draw(deployment_lifecycle(f"dep-{index}")))
    for number in range(draw(st.integers(0, 3))):
        stream.extend(draw(pull_request_lifecycle(number + 1)))
    for index in range(draw(st.integers(0, 3))):
        stream.append(
            {
                "type": "job",
                "id": f"job-{index}",
                "run_id": "run-0",
                "name": "build",
                "status": "success",
                "runner": ["ubuntu-latest"],
                "created_at": _time(1, 10, 0, "Z"),
                "finished_at": _time(1, 10, 5, "Z"),
            }
        )
    return stream


def _ingest(store: Store, events: list[dict[str, Any]], batch_sizes: list[int]) -> dict[str, Any]:
    with store.engine.begin() as conn:
        for table in reversed(schema.metadata.sorted_tables):
            conn.execute(table.delete())
    position = 0
    sizes = iter(batch_sizes)
    while position < len(events):
        size = next(sizes, len(events))
        with store.engine.begin() as conn:
            store.write(conn, [delivery(event) for event in events[position : position + size]])
        position += size
    return {table.name: store.rows(table) for table in schema.NORMALIZED_TABLES}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), stream=event_streams())
def test_shuffled_duplicated_stream_gives_the_ordered_tables(store: Store, data: st.DataObject, stream: Any) -> None:
    ordered = _ingest(store, stream, [len(stream)])
    duplicated = stream + data.draw(st.lists(st.sampled_from(stream), max_size=len(stream)))
    shuffled = data.draw(st.permutations(duplicated))
    batch_sizes = data.draw(st.lists(st.integers(1, 4), max_size=len(shuffled)))
    assert _ingest(store, shuffled, batch_sizes) == ordered

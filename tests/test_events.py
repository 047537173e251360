"""Canonical event validation: each error names the field and what was expected."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shipscope.events import EVENT_TYPES, EventError, parse_event
from shipscope.ingest import Delivery, Rejection
from shipscope.ingest.generic import body_records, read_record
from tests.factories import deployment, run


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (run(created_at="2026-03-01T10:00:00"), "created_at: expected an RFC 3339 timestamp with a UTC offset, got "),
        ({k: v for k, v in run().items() if k != "repo"}, "repo: required field is missing"),
        ({**run(), "colour": "blue"}, "colour: unknown field"),
        ({"id": "x"}, "type: required field is missing"),
        ({**run(), "type": "build"}, "type: unknown event type 'build'"),
        (run(status="done"), "status: Input should be 'queued', 'in_progress', 'success', 'failure', 'cancelled'"),
        (run(pr_number=2**31), "pr_number: Input should be less than or equal to 2147483647"),
        (run(attempt=0), "attempt: Input should be greater than or equal to 1"),
        (run(started_at="yesterday"), "started_at: Input should be a valid datetime"),
        (
            {k: v for k, v in deployment().items() if k != "finished_at"},
            "finished_at is required when status is success",
        ),
        (run(repo=""), "repo: String should have at least 1 character"),
    ],
)
def test_errors_name_the_field_and_the_expectation(event: dict[str, Any], message: str) -> None:
    with pytest.raises(EventError) as raised:
        parse_event(event)
    assert message in str(raised.value)


def test_several_problems_are_all_named() -> None:
    with pytest.raises(EventError) as raised:
        parse_event({**run(created_at="2026-03-01 10:00"), "sha": None, "extra": 1})
    message = str(raised.value)
    assert "sha:" in message and "created_at:" in message and "extra: unknown field" in message


def test_offsets_are_kept_as_instants() -> None:
    event = parse_event(run(created_at="2026-03-01T12:00:00+02:00"))
    assert event.created_at.isoformat() == "2026-03-01T12:00:00+02:00"  # type: ignore[union-attr]


def test_every_type_has_a_model() -> None:
    assert set(EVENT_TYPES) == {
        "pipeline_run", "job", "step", "cache", "test_case", "finding", "deployment", "change", "pull_request",
        "incident", "timeline_event",
    }  # fmt: skip


def test_nul_characters_are_refused() -> None:
    result = read_record(7, orjson.dumps(run(actor="a\u0000b")))
    assert isinstance(result, Rejection)
    assert (result.position, result.reason) == (7, "text may not contain NUL characters (\\u0000)")


def test_same_event_has_the_same_delivery_id_however_it_is_written() -> None:
    compact = read_record(1, orjson.dumps(run()))
    spaced = read_record(2, b"  " + orjson.dumps(run(), option=orjson.OPT_INDENT_2).replace(b"\n", b" "))
    reordered = read_record(3, orjson.dumps(dict(reversed(list(run().items())))))
    assert isinstance(compact, Delivery) and isinstance(spaced, Delivery) and isinstance(reordered, Delivery)
    assert compact.delivery_id == spaced.delivery_id == reordered.delivery_id


def test_blank_lines_are_skipped_and_positions_kept() -> None:
    kind, records = body_records(b"\n" + orjson.dumps(run()) + b"\n\n  \n" + orjson.dumps(run("r2")) + b"\n")
    assert kind == "line"
    assert [position for position, _ in records] == [2, 5]  # type: ignore[misc]

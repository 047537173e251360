"""Every operation of the OpenAPI document, fuzzed by schemathesis from the document itself: valid-looking requests
and requests that break the schema. None may answer 5xx, log a traceback or take 5 s."""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from shipscope.config import Settings
from shipscope.web.app import create_app

pytestmark = pytest.mark.slow
CASES_PER_MODE = {GenerationMode.POSITIVE: 170, GenerationMode.NEGATIVE: 110}
# Writes a file wherever the body says: tested on its own in test_backup.py, not pointed at random paths here.
NOT_FUZZED = {"POST /api/v1/admin/backup"}
SLOWEST_SECONDS = 5.0


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """The document says text; a case that breaks that sends the value as JSON."""
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


def test_no_operation_answers_5xx_logs_a_traceback_or_hangs(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(Settings(db=db_url, alert_interval_seconds=0, max_body_bytes=256 * 1024))
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    slowest = 0.0
    unbreakable: list[str] = []
    with TestClient(app), caplog.at_level(logging.WARNING):
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 40
        for operation in operations:
            if operation.label in NOT_FUZZED:
                continue
            for mode, examples in CASES_PER_MODE.items():

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(
                    max_examples=examples,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    suppress_health_check=list(HealthCheck),
                )
                def send(case: schemathesis.Case) -> None:
                    nonlocal slowest
                    response = case.call()
                    statuses[response.status_code] += 1
                    slowest = max(slowest, response.elapsed)
                    if response.status_code >= 500 or response.elapsed > SLOWEST_SECONDS:
                        answer = f"{response.status_code} in {response.elapsed:.2f}s"
                        failures.append(f"{case.as_curl_command()} -> {answer}")

                try:
                    send()
                except Unsatisfiable:
                    # Nothing of the operation can be made invalid (only free-text parameters, no body).
                    assert mode is GenerationMode.NEGATIVE, operation.label
                    unbreakable.append(operation.label)
    tracebacks = [record.getMessage() for record in caplog.records if record.exc_info]
    assert not failures, failures[:5]
    assert not tracebacks, tracebacks[:5]
    assert sum(statuses.values()) >= 10_000, statuses
    assert slowest < SLOWEST_SECONDS
    assert len(unbreakable) < 15, unbreakable
    assert statuses[200] > 500 and statuses[400] > 1000, statuses  # deep enough to be read and refused alike

"""The HTTP API in-process over a real database, on both backends."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from shipscope.config import Settings
from shipscope.store import Store, schema
from shipscope.web.app import create_app
from tests.conftest import FIXTURES
from tests.factories import deployment, ndjson, run


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(db=db_url, max_body_bytes=64 * 1024))) as test_client:
        yield test_client


def stored(client: TestClient) -> Store:
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    return store


def test_healthz_checks_the_database(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["ok"] is True


def test_openapi_describes_the_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/healthz", "/api/v1/events"} <= set(paths)
    assert {"200", "207", "400", "413"} <= set(paths["/api/v1/events"]["post"]["responses"])


def test_ndjson_events_are_stored_and_duplicates_counted(client: TestClient) -> None:
    body = ndjson(run("r1", status="queued"), run("r1"), deployment())
    first = client.post("/api/v1/events", content=body, headers={"Content-Type": "application/x-ndjson"})
    assert first.status_code == 200
    assert first.json() == {"ok": True, "stored": 3, "duplicates": 0, "rejected_count": 0, "rejected": []}
    again = client.post("/api/v1/events", content=body)
    assert again.json()["stored"] == 0 and again.json()["duplicates"] == 3
    assert [row["status"] for row in stored(client).rows(schema.pipeline_runs)] == ["success"]
    assert len(stored(client).rows(schema.raw_events)) == 3


def test_json_array_and_gzip_bodies(client: TestClient) -> None:
    body = gzip.compress(orjson.dumps([run("r1"), run("r2")]))
    response = client.post("/api/v1/events", content=body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.json()["stored"] == 2


def test_partly_invalid_body_is_a_207_with_each_rejected_line(client: TestClient) -> None:
    lines = [
        orjson.dumps(run("r1")),
        orjson.dumps(run("r2")),
        b'{"type": "pipeline_run", "id": "r3"',
        orjson.dumps(run("r4")),
        orjson.dumps(run("r5", created_at="2026-03-01T10:00:00")),
    ]
    response = client.post("/api/v1/events", content=b"\n".join(lines))
    assert response.status_code == 207
    answer = response.json()
    assert (answer["stored"], answer["rejected_count"]) == (3, 2)
    assert answer["rejected"][0] == {
        "line": 3,
        "error": "invalid JSON: unexpected end of data at column 36 (char 35)",
    }
    assert answer["rejected"][1]["line"] == 5
    assert "created_at: expected an RFC 3339 timestamp with a UTC offset" in answer["rejected"][1]["error"]
    store = stored(client)
    assert [row["id"] for row in store.rows(schema.pipeline_runs)] == ["r1", "r2", "r4"]
    assert [row["position"] for row in store.rows(schema.ingest_rejections)] == [3, 5]


def test_nothing_valid_is_a_400(client: TestClient) -> None:
    response = client.post("/api/v1/events", content=b'{"type": "nope"}\n')
    assert response.status_code == 400
    assert response.json()["rejected"] == [
        {
            "line": 1,
            "error": "type: unknown event type 'nope'; expected one of pipeline_run, job, step, cache, "
            "test_case, finding, deployment, change, pull_request, incident, timeline_event",
        }
    ]


def test_truncated_json_array_names_the_position(client: TestClient) -> None:
    response = client.post("/api/v1/events", content=b'[{"type": "pipeline_run"}, {"ty')
    assert response.status_code == 400
    (rejection,) = response.json()["rejected"]
    assert rejection["error"].startswith("invalid JSON array:")
    assert "char 31" in rejection["error"]


@pytest.mark.parametrize("body", [b"", b"\n\n  \n"])
def test_empty_body_is_a_400(client: TestClient, body: bytes) -> None:
    response = client.post("/api/v1/events", content=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith("empty body")


def test_bodies_over_the_limit_are_413_and_store_nothing(client: TestClient) -> None:
    big = ndjson(*(run(f"r{index}") for index in range(400)))
    assert len(big) > 64 * 1024
    response = client.post("/api/v1/events", content=big)
    assert response.status_code == 413
    assert "exceeds the limit of 65536 bytes" in response.json()["error"]
    bomb = gzip.compress(b"\n" * (1024 * 1024))
    response = client.post("/api/v1/events", content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert stored(client).rows(schema.raw_events) == []


def test_bad_gzip_is_a_400(client: TestClient) -> None:
    response = client.post("/api/v1/events", content=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("invalid gzip body")


def test_list_events_over_http(client: TestClient) -> None:
    client.post("/api/v1/events", content=ndjson(*(deployment(f"d{index}") for index in range(3))))
    page = client.get("/api/v1/events", params={"type": "deployment", "limit": 2}).json()
    assert [event["id"] for event in page["events"]] == ["d0", "d1"]
    rest = client.get("/api/v1/events", params={"type": "deployment", "cursor": page["next_cursor"]}).json()
    assert [event["id"] for event in rest["events"]] == ["d2"]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"type": "deployment", "since": "2026-03-01T00:00:00"}, "since: expected an RFC 3339 timestamp"),
        ({"type": "deployment", "limit": 0}, "limit"),
        ({"type": "bogus"}, "unknown event type 'bogus'"),
        ({}, "type"),
    ],
)
def test_list_events_bad_parameters_are_400(client: TestClient, params: dict[str, Any], message: str) -> None:
    response = client.get("/api/v1/events", params=params)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_tokens_are_checked_with_scopes(db_url: str) -> None:
    settings = Settings(db=db_url, api_tokens="writer-token:ingest reader-token:read boss:admin")
    with TestClient(create_app(settings)) as client:
        body = ndjson(run())
        missing = client.post("/api/v1/events", content=body)
        assert missing.status_code == 401
        assert "missing Authorization header" in missing.json()["error"]
        unknown = client.post("/api/v1/events", content=body, headers={"Authorization": "Bearer guess"})
        assert (unknown.status_code, unknown.json()["error"]) == (401, "unknown API token")
        wrong_scope = client.post("/api/v1/events", content=body, headers={"Authorization": "Bearer reader-token"})
        assert (wrong_scope.status_code, wrong_scope.json()["error"]) == (
            403,
            "this token lacks the 'ingest' scope",
        )
        assert client.post("/api/v1/events", content=body, headers={"Authorization": "Bearer writer-token"}).is_success
        listing = client.get("/api/v1/events?type=pipeline_run", headers={"Authorization": "Bearer boss"})
        assert len(listing.json()["events"]) == 1
        assert client.get("/api/v1/events?type=pipeline_run").status_code == 401
        assert client.get("/healthz").status_code == 200


def test_backfill_cursors_round_trip_and_refuse_nul(client: TestClient) -> None:
    assert client.get("/api/v1/cursors/github/acme").json() == {"key": "github/acme", "value": None}
    assert client.put("/api/v1/cursors/github/acme", json={"value": "2026-03-01T10:00:00Z"}).status_code == 200
    refused = client.put("/api/v1/cursors/github/acme", json={"value": "2026\u0000"})
    assert refused.status_code == 400, refused.text
    assert "NUL" in refused.json()["error"]
    assert client.get("/api/v1/cursors/github/acme").json()["value"] == "2026-03-01T10:00:00Z"


@pytest.mark.parametrize("url", ["/api/v1/events?type=deployment&service=%00", "/api/v1/incidents/a%00b/timeline"])
def test_nul_in_a_path_or_query_is_400(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 400, response.text
    assert "NUL" in response.json()["error"]


def _pagerduty_incident(title: str) -> bytes:
    payload = orjson.loads((FIXTURES / "incidents" / "pagerduty.v3.incident.triggered.json").read_bytes())
    payload["event"]["data"]["title"] = title
    return orjson.dumps(payload)


@pytest.mark.parametrize(
    ("url", "body", "what"),
    [
        ("/webhooks/pagerduty", _pagerduty_incident("disk \u0000 full"), "PagerDuty webhook"),
        # The delivery id itself, as the fuzzer sent it.
        ("/webhooks/pagerduty", b'{"event": {"event_type": "0", "data": {}, "id": "\\u0000"}}', "PagerDuty webhook"),
        ("/api/v1/rollbacks", b'{"client_payload": {"service": "api", "reason": "\\u0000"}}', "rollback request"),
        ("/v1/traces?encoding=json", b'{"resourceSpans": [{"name": "\\u0000"}]}', "OTLP JSON"),
    ],
)
def test_nul_in_a_json_body_is_400_and_nothing_stored(client: TestClient, url: str, body: bytes, what: str) -> None:
    response = client.post(url, content=body, headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()["error"]) == (
        400,
        f"{what}: text may not contain NUL characters (\\u0000)",
    )
    assert not stored(client).rows(schema.raw_events) and not stored(client).rows(schema.incidents)


def test_the_text_backslash_u0000_is_not_a_nul(client: TestClient) -> None:
    title = "parser chokes on \\u0000"
    response = client.post("/webhooks/pagerduty", content=_pagerduty_incident(title))
    assert response.status_code == 200, response.text
    (incident,) = stored(client).rows(schema.incidents)
    assert incident["title"] == title


def test_a_body_of_nul_bytes_is_rejected_and_the_rejection_kept(client: TestClient) -> None:
    response = client.post("/api/v1/events", content=b'\x00{"type": "deployment"}\x00')
    assert response.status_code == 400, response.text
    (rejection,) = stored(client).rows(schema.ingest_rejections)
    assert "\x00" not in rejection["excerpt"] and "\\u0000" in rejection["excerpt"]

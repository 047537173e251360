"""The metrics reports over HTTP and on the command line: the same functions, the same JSON."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from itertools import islice

import orjson
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from shipscope.cli.main import app as cli
from shipscope.config import Settings
from shipscope.demo import generate
from shipscope.ingest.generic import read_record
from shipscope.store import Store
from shipscope.web.app import create_app

WINDOW = {"since": "2026-10-18", "until": "2026-11-01"}
KINDS = ("pipelines", "tests", "security", "dora", "devex")


@pytest.fixture
def loaded(db_url: str) -> str:
    store = Store(db_url)
    try:
        events = iter(generate(days=14, seed=7, until=date(2026, 11, 1)))
        while batch := list(islice(events, 5000)):
            store.ingest([read_record(0, orjson.dumps(event)) for event in batch])  # type: ignore[misc]
    finally:
        store.close()
    return db_url


@pytest.fixture
def client(loaded: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(db=loaded))) as test_client:
        yield test_client


@pytest.mark.parametrize("kind", KINDS)
def test_cli_json_is_the_api_json(loaded: str, client: TestClient, kind: str) -> None:
    over_http = client.get(f"/api/v1/metrics/{kind}", params=WINDOW)
    assert over_http.status_code == 200, over_http.text
    result = CliRunner().invoke(
        cli, ["report", kind, "--since", WINDOW["since"], "--until", WINDOW["until"], "--json", "--db", loaded]
    )
    assert result.exit_code == 0, result.stderr
    assert orjson.loads(result.stdout) == over_http.json()
    assert over_http.json()["window"] == {"since": "2026-10-18T00:00:00Z", "until": "2026-11-01T00:00:00Z"}


def test_people_get_tables(loaded: str) -> None:
    result = CliRunner().invoke(
        cli, ["report", "dora", "--since", "2026-10-01", "--until", "2026-11-01", "--db", loaded]
    )
    assert result.exit_code == 0, result.stderr
    assert "api-gateway" in result.stdout and "(elite)" in result.stdout


def test_dora_explain_and_filters(client: TestClient) -> None:
    report = client.get("/api/v1/metrics/dora", params={**WINDOW, "service": "api-gateway", "explain": "true"}).json()
    assert set(report["services"]) == {"api-gateway"}
    explained = report["services"]["api-gateway"]["explain"]["deployments"]
    assert len(explained) == report["services"]["api-gateway"]["deployment_frequency"]["deployments"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "yesterday"}, "since: expected a duration like 30d"),
        ({"since": "2026-11-02", "until": "2026-11-01"}, "the window is empty"),
        ({"team": "nobody"}, "unknown team 'nobody'"),
        ({"definitions": "nope"}, "unknown DORA definitions 'nope'"),
    ],
)
def test_bad_parameters_are_400(client: TestClient, params: dict[str, str], message: str) -> None:
    kind = "dora" if "definitions" in params else "pipelines"
    response = client.get(f"/api/v1/metrics/{kind}", params=params)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_an_unknown_report_is_rejected(client: TestClient) -> None:
    assert client.get("/api/v1/metrics/velocity").status_code == 400

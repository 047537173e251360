"""The dashboard's pages over HTTP, on DuckDB and PostgreSQL: the numbers are the API's, empty stores and bad
filters get pages that say what is wrong, and the assets come from shipscope itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from itertools import islice

import orjson
import pytest
from fastapi.testclient import TestClient

from shipscope.config import Settings
from shipscope.demo import generate
from shipscope.ingest.generic import read_record
from shipscope.store import Store
from shipscope.web.app import create_app
from shipscope.web.format import duration
from tests.factories import delivery, deployment, run

WINDOW = {"since": "2026-10-18", "until": "2026-11-01"}
PAGES = ("/", "/pipelines", "/tests", "/security", "/deployments", "/incidents", "/devex")


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


def _client(db: str, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(db=db, alert_interval_seconds=0, **settings)))  # type: ignore[arg-type]


@pytest.fixture
def client(loaded: str) -> Iterator[TestClient]:
    with _client(loaded) as test_client:
        yield test_client


def metric(html: str, name: str) -> str:
    found = re.search(rf'data-metric="{re.escape(name)}">([^<]*)<', html)
    assert found, f"no {name} on the page"
    return found.group(1).strip()


def test_every_page_renders_the_window_it_was_asked_for(client: TestClient) -> None:
    for path in PAGES:
        page = client.get(path, params=WINDOW)
        assert page.status_code == 200, (path, page.text[:500])
        assert page.headers["content-type"].startswith("text/html")
        assert "window 2026-10-18 00:00 UTC to 2026-11-01 00:00 UTC" in page.text
        assert "Server-Timing" in page.headers


def test_overview_numbers_are_the_api_numbers(client: TestClient) -> None:
    html = client.get("/", params=WINDOW).text
    overall = client.get("/api/v1/metrics/dora", params=WINDOW).json()["overall"]
    failure = overall["change_failure_rate"]
    assert f"{failure['failed']} failed of {failure['deployments']} deployments" in html
    frequency = overall["deployment_frequency"]
    assert metric(html, "Deployment frequency") == f"{frequency['per_week']:.1f} / week"
    assert f"{frequency['deployments']} deployments on {frequency['deployment_days']} days" in html
    assert f"tier-{frequency['tier']}" in html
    # The same view for one service: fewer deployments.
    service = client.get("/", params={**WINDOW, "service": "payments-api"}).text
    narrowed = client.get("/api/v1/metrics/dora", params={**WINDOW, "service": "payments-api"}).json()["overall"]
    assert f"{narrowed['deployment_frequency']['deployments']} deployments on" in service
    assert narrowed["deployment_frequency"]["deployments"] < frequency["deployments"]


def test_definitions_come_from_the_url(client: TestClient) -> None:
    devlake = client.get("/", params={**WINDOW, "definitions": "devlake"}).text
    api = client.get("/api/v1/metrics/dora", params={**WINDOW, "definitions": "devlake"}).json()["overall"]
    assert metric(devlake, "Deployment frequency") == f"{api['deployment_frequency']['per_week']:.1f} / week"
    assert "<option selected>devlake</option>" in devlake
    assert "DORA definitions: devlake" in devlake


def test_pipelines_and_tests_pages_show_the_report_numbers(client: TestClient) -> None:
    tests = client.get("/api/v1/metrics/tests", params=WINDOW).json()
    html = client.get("/tests", params=WINDOW).text
    flaky = tests["flaky_rate"]
    assert metric(html, "flaky rate") == f"{flaky['rate'] * 100:.2f}%"
    assert f"({flaky['flaky_executions']} flaky of {flaky['executions']} executions" in html
    pipelines = client.get("/api/v1/metrics/pipelines", params=WINDOW).json()
    page = client.get("/pipelines", params=WINDOW).text
    figure = re.search(r'id="chart-duration">.*?data-figure="([^"]*)"', page, re.S)
    assert figure
    data = orjson.loads(figure.group(1).replace("&#34;", '"').replace("&quot;", '"'))["data"]
    pr_p95 = next(trace for trace in data if trace["name"] == "PR p95")
    expected = [round(row["p95"] / 60, 2) for row in pipelines["duration_weeks"] if row["branch_kind"] == "pr"]
    assert [value for value in pr_p95["y"] if value is not None] == expected


def test_deployments_page_lists_and_narrows(client: TestClient) -> None:
    everything = client.get("/deployments", params=WINDOW).text
    total = int(metric(everything, "deployments").split()[0])
    failed = client.get("/deployments", params={**WINDOW, "failure_signal": "any"}).text
    failed_total = int(metric(failed, "deployments").split()[0])
    dora = client.get("/api/v1/metrics/dora", params=WINDOW).json()["overall"]
    assert failed_total == dora["change_failure_rate"]["failed"]
    assert 0 < failed_total < total
    link = re.search(r'href="/deployments/([^"?]+)\?([^"]*)"', failed)
    assert link
    detail = client.get(f"/deployments/{link.group(1)}", params=WINDOW)
    assert detail.status_code == 200
    assert "Failure signals" in detail.text and 'class="signal"' in detail.text


def test_empty_store_pages_say_what_to_send(db_url: str) -> None:
    with _client(db_url) as client:
        expected = {
            "/": "No production deployments in this window",
            "/pipelines": "No pipeline runs in this window",
            "/tests": "No test results in this window",
            "/security": "No security scans in this window",
            "/deployments": "No deployments match",
            "/incidents": "No incidents in this window",
            "/devex": "No workflow measurements stored",
        }
        for path, text in expected.items():
            page = client.get(path)
            assert page.status_code == 200, path
            assert text in page.text, path


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("since=yesterday", "since: expected a duration like 30d"),
        ("definitions=dora2019", "definitions: expected one of shipscope, devlake"),
        ("team=ghosts", "unknown team &#39;ghosts&#39;"),
        ("since=2026-11-02&until=2026-11-01", "the window is empty"),
        ("since=999999999d", "since: 999999999d reaches back before 1970-01-01"),
        ("since=1d&until=9999-12-31", "the window must lie between 1970-01-01 and 9000-01-01"),
        ("since=0001-01-01", "the window must lie between"),
    ],
)
def test_bad_filters_get_a_page_saying_what_is_wrong(client: TestClient, query: str, message: str) -> None:
    page = client.get(f"/?{query}")
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    assert message in page.text


def test_bad_deployment_filter_and_unknown_deployment(client: TestClient) -> None:
    page = client.get("/deployments?failure_signal=meteor")
    assert page.status_code == 400 and "failure_signal: expected one of" in page.text
    missing = client.get("/deployments/no-such-deployment")
    assert missing.status_code == 404 and "no deployment with id" in missing.text


def test_pages_need_a_read_token_when_tokens_are_set(db_url: str) -> None:
    with _client(db_url, api_tokens="reader:read writer:ingest") as client:
        assert client.get("/").status_code == 401
        assert client.get("/", headers={"Authorization": "Bearer writer"}).status_code == 403
        assert client.get("/", headers={"Authorization": "Bearer reader"}).status_code == 200
        signed_out = client.get("/pipelines")
        assert signed_out.status_code == 401 and 'action="/login"' in signed_out.text
        wrong = client.post("/login", data={"token": "nope", "next": "/pipelines"}, follow_redirects=False)
        assert wrong.status_code == 401
        signed_in = client.post("/login", data={"token": "reader", "next": "/pipelines"}, follow_redirects=False)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/pipelines"
        cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Sign out" in client.get("/pipelines").text
        # Only a path on this server is followed after signing in.
        elsewhere = client.post(
            "/login", data={"token": "reader", "next": "https://evil.example/"}, follow_redirects=False
        )
        assert elsewhere.headers["location"] == "/"
        signed_out = client.get("/logout", follow_redirects=False)
        assert signed_out.status_code == 303 and signed_out.headers["location"] == "/login"
        assert client.get("/pipelines").status_code == 401
        # Assets hold no data.
        client.cookies.clear()
        assert client.get("/static/dashboard.css").status_code == 200


def test_assets_are_served_locally(db_url: str) -> None:
    with _client(db_url) as client:
        plotly = client.get("/static/plotly.min.js", headers={"Accept-Encoding": "gzip"})
        assert plotly.status_code == 200
        assert plotly.headers["content-encoding"] == "gzip" and plotly.num_bytes_downloaded < 2_000_000
        assert plotly.headers["content-type"].startswith("text/javascript")
        assert b"plotly.js" in plotly.content[:2000]
        assert client.get("/static/dashboard.js").status_code == 200
        assert client.get("/static/..%2Fdashboard.py").status_code == 404
        assert client.get("/static/missing.css").status_code == 404
        answer = client.get("/")
        sources = re.findall(r'(?:src|href)="([^"]+)"', answer.text)
        assert sources and all(re.match(r"(/[^/]|/$|#)", source) for source in sources), sources
        assert answer.headers["content-security-policy"].startswith("default-src 'self'; script-src 'self';")


def test_pipeline_health_against_thresholds(db_url: str) -> None:
    store = Store(db_url)
    try:
        runs = [
            # Two PR runs of acme/slow: 20 and 40 minutes, p95 39 minutes, over the 15-minute default limit.
            run(
                "s1",
                trigger="pull_request",
                branch="feature/a",
                pr_number=1,
                repo="acme/slow",
                created_at="2026-03-02T10:00:00Z",
                started_at="2026-03-02T10:00:00Z",
                finished_at="2026-03-02T10:20:00Z",
            ),
            run(
                "s2",
                trigger="pull_request",
                branch="feature/a",
                pr_number=1,
                repo="acme/slow",
                created_at="2026-03-02T11:00:00Z",
                started_at="2026-03-02T11:00:00Z",
                finished_at="2026-03-02T11:40:00Z",
            ),
            # acme/fast: 5 minutes, within; its default branch failed once in two runs.
            run(
                "f1",
                trigger="pull_request",
                branch="feature/b",
                pr_number=2,
                repo="acme/fast",
                created_at="2026-03-02T10:00:00Z",
                started_at="2026-03-02T10:00:00Z",
                finished_at="2026-03-02T10:05:00Z",
            ),
            run("m1", repo="acme/fast", created_at="2026-03-02T12:00:00Z"),
            run("m2", "failure", repo="acme/fast", created_at="2026-03-02T13:00:00Z"),
        ]
        store.ingest([delivery(event) for event in runs])
    finally:
        store.close()
    with _client(db_url, thresholds={"main_failure_rate": {"limit": 0.6}}) as client:
        html = client.get("/", params={"since": "2026-03-01", "until": "2026-03-08"}).text
    cards = re.findall(r'<article class="tile (violated|ok|)">(.*?)</article>', html, re.S)
    by_title = {re.sub(r"<[^>]+>", "", body).split("\n")[1].strip(): (state, body) for state, body in cards}
    state, body = by_title["PR build p95 (worst repository)"]
    assert state == "violated"
    assert "39m 00s" in body and "acme/slow · ci" in body and "limit 15m 00s" in body
    assert "✗ 1 of 2 repositories over their limit" in body
    state, body = by_title["Default-branch failure rate"]
    # 1 failed of 2 is 50%, under this server's limit of 60%.
    assert state == "ok" and "50.0%" in body and "1 failed of 2 runs" in body and "limit 60.0%" in body
    assert "✓ every one of 1 repositories within its limit" in body
    state, body = by_title["Queue time median (worst runner label)"]
    assert state == "" and "no threshold set" not in body and "no started jobs in the window" in body
    state, body = by_title["Cache hit rate (warm branches)"]
    assert state == "" and "no cache lookups on warm branches in the window" in body


def test_health_card_of_a_disabled_threshold_says_so(db_url: str) -> None:
    store = Store(db_url)
    try:
        store.ingest([delivery(run("m1", repo="acme/fast", created_at="2026-03-02T12:00:00Z"))])
    finally:
        store.close()
    with _client(db_url, thresholds={"main_failure_rate": {"enabled": False}}) as client:
        html = client.get("/", params={"since": "2026-03-01", "until": "2026-03-08"}).text
    card = re.search(
        r'<article class="tile ">((?:(?!</article>).)*Default-branch failure rate.*?)</article>', html, re.S
    )
    assert card and "0.0%" in card.group(1) and "no threshold set" in card.group(1)


def test_stored_text_cannot_become_script_or_a_link_elsewhere(db_url: str) -> None:
    store = Store(db_url)
    try:
        hostile = deployment(
            "rel/2026/<b>x</b>",
            url="javascript:alert(1)",
            version="<script>alert(1)</script>",
            started_at="2026-03-02T10:00:00Z",
            finished_at="2026-03-02T10:05:00Z",
        )
        store.ingest([delivery(hostile), delivery(deployment("plain", url="https://deploy.example/plain"))])
    finally:
        store.close()
    with _client(db_url) as client:
        window = {"since": "2026-02-25", "until": "2026-03-08"}
        listing = client.get("/deployments", params=window).text
        assert "<script>alert(1)</script>" not in listing and "&lt;script&gt;" in listing
        # An id with slashes is one path segment, and opens its page.
        assert 'href="/deployments/rel%2F2026%2F%3Cb%3Ex%3C%2Fb%3E?' in listing
        page = client.get("/deployments/rel%2F2026%2F%3Cb%3Ex%3C%2Fb%3E", params=window)
        assert page.status_code == 200
        assert "javascript:" not in page.text and "deploy log" not in page.text
        plain = client.get("/deployments/plain", params=window).text
        assert 'href="https://deploy.example/plain"' in plain


def test_a_filter_value_outside_the_options_survives_the_filter_bar(client: TestClient) -> None:
    page = client.get("/deployments", params={**WINDOW, "env": "prod*"}).text
    assert "<option selected>prod*</option>" in page
    assert (
        '<input name="until" value="2026-11-01T12:00:00+00:00">'
        in client.get("/", params={"until": "2026-11-01T12:00:00+00:00"}).text
    )


def test_lists_over_the_api_are_the_pages_lists(client: TestClient) -> None:
    api = client.get("/api/v1/deployments", params={**WINDOW, "failure_signal": "any"}).json()
    page = client.get("/deployments", params={**WINDOW, "failure_signal": "any"}).text
    assert api["total"] == int(metric(page, "deployments").split()[0])
    assert all(row["failed"] and row["failure_signals"] for row in api["deployments"])
    first = api["deployments"][0]
    detail = client.get(f"/api/v1/deployments/{first['id']}", params={"source": first["source"]}).json()
    assert detail["deployment"]["failure_signals"] == first["failure_signals"]
    assert client.get("/api/v1/deployments/nope").status_code == 404
    assert client.get("/api/v1/deployments", params={"failure_signal": "meteor"}).status_code == 400
    incidents = client.get("/api/v1/incidents", params=WINDOW).json()
    listed = client.get("/incidents", params=WINDOW).text
    assert incidents["total"] == int(metric(listed, "incidents").split()[0]) > 0
    linked = [row for row in incidents["incidents"] if row["deployment_id"]]
    assert linked and all(row["linked_by"] in ("explicit", "time") for row in linked)


def test_lead_time_tile_shows_the_statistic_the_definitions_tier_on(client: TestClient) -> None:
    middleware = client.get("/", params={**WINDOW, "definitions": "middleware"}).text
    lead = client.get("/api/v1/metrics/dora", params={**WINDOW, "definitions": "middleware"}).json()["overall"]
    assert f"mean of {lead['lead_time']['changes']} changes" in middleware
    assert metric(middleware, "Lead time for changes") == duration(lead["lead_time"]["mean_seconds"])
    assert "Lead time (mean)" in middleware
    shipscope = client.get("/", params=WINDOW).text
    assert "median of " in shipscope and "mean of " not in shipscope

"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a real ``shipscope serve`` over
the demo dataset. Every test saves a screenshot under ``test-artifacts/``.

Chromium is required, never skipped: ``make test`` installs it; without it the run stops saying how to install it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, Response, sync_playwright

CHROMIUM = os.environ.get("SHIPSCOPE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
PAGES = ("/", "/pipelines", "/tests", "/security", "/deployments", "/incidents", "/devex")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``shipscope serve`` over a fresh demo database; its base URL."""
    directory = tmp_path_factory.mktemp("dashboard")
    url = f"duckdb:///{directory / 'demo.duckdb'}"
    command = [sys.executable, "-m", "shipscope"]
    subprocess.run([*command, "demo", "--db", url], check=True, capture_output=True)
    port = _free_port()
    log = (directory / "serve.log").open("wb")
    process = subprocess.Popen(
        [*command, "serve", "--db", url, "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "SHIPSCOPE_ALERT_INTERVAL_SECONDS": "3600"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"shipscope serve did not start: {(directory / 'serve.log').read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        raise pytest.UsageError(
            f"the dashboard tests need Chromium at {CHROMIUM}: `apt-get update && apt-get install -y chromium` "
            "(`make test` does it)"
        )
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield launched
    finally:
        launched.close()


@dataclass
class Traffic:
    """What a page did: console errors, failed requests, error responses and every URL it asked for."""

    console_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    error_responses: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)


@dataclass
class Session:
    page: Page
    traffic: Traffic
    base: str


def _open(browser: Browser, base: str, width: int = 1280, height: int = 900) -> Session:
    page = browser.new_page(viewport={"width": width, "height": height})
    traffic = Traffic()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            traffic.console_errors.append(message.text)

    def failed(request: Request) -> None:
        traffic.failed.append(f"{request.url}: {request.failure}")

    def response(answer: Response) -> None:
        if answer.status >= 400:
            traffic.error_responses.append(f"{answer.status} {answer.url}")

    page.on("console", console)
    page.on("pageerror", lambda error: traffic.console_errors.append(str(error)))
    page.on("requestfailed", failed)
    page.on("response", response)
    page.on("request", lambda request: traffic.requested.append(request.url))
    return Session(page, traffic, base)


@pytest.fixture
def session(browser: Browser, server: str, request: pytest.FixtureRequest) -> Iterator[Session]:
    opened = _open(browser, server)
    try:
        yield opened
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        opened.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        opened.page.close()


def _visit(session: Session, path: str) -> None:
    answer = session.page.goto(session.base + path, wait_until="networkidle")
    assert answer is not None and answer.status == 200, path
    _wait_for_charts(session.page)


def _wait_for_charts(page: Page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-figure]')].every((el) => el.dataset.rendered === 'true')"
    )


def _chart_points(page: Page) -> list[dict[str, object]]:
    """Per chart: its caption and how many points and bars Plotly drew for it in the SVG."""
    result: list[dict[str, object]] = page.evaluate(
        """() => [...document.querySelectorAll('[data-figure]')].map((el) => ({
            label: el.getAttribute('aria-label'),
            traces: (el.data || []).length,
            drawn: el.querySelectorAll('.scatterlayer .point, .barlayer .point path, .barlayer .point').length,
        }))"""
    )
    return result


def _assert_clean(traffic: Traffic) -> None:
    assert traffic.console_errors == []
    assert traffic.failed == []
    assert traffic.error_responses == []


@pytest.mark.parametrize("path", PAGES)
def test_every_page_loads_cleanly_with_charts_drawn(session: Session, path: str) -> None:
    _visit(session, path)
    _assert_clean(session.traffic)
    assert session.page.locator("h1").count() == 1
    charts = _chart_points(session.page)
    assert charts, f"{path} shows no chart"
    for chart in charts:
        assert chart["traces"], chart
        assert chart["drawn"], f"{chart['label']} drew no data point on {path}"


def test_no_request_leaves_the_server(session: Session) -> None:
    for path in PAGES:
        _visit(session, path)
    origin = urlsplit(session.base).netloc
    hosts = {urlsplit(url).netloc for url in session.traffic.requested if not url.startswith("data:")}
    assert hosts == {origin}
    assert any(url.endswith("/static/plotly.min.js") for url in session.traffic.requested)


def _tile_text(page: Page, title: str) -> str:
    return page.locator(f'[data-metric="{title}"]').inner_text()


def test_changing_a_filter_changes_the_numbers(session: Session) -> None:
    _visit(session, "/")
    page = session.page
    before = page.locator(".tile .counts").first.inner_text()
    services = page.locator('select[name="service"] option').all_inner_texts()
    assert "payments-api" in services
    page.select_option('select[name="service"]', "payments-api")
    with page.expect_navigation(wait_until="networkidle"):
        page.get_by_role("button", name="Apply").click()
    _wait_for_charts(page)
    assert "service=payments-api" in page.url
    after = page.locator(".tile .counts").first.inner_text()
    assert after != before
    assert int(after.split()[0]) < int(before.split()[0])
    # The filter is in the URL: opening the link again shows the same view.
    shared = _open(page.context.browser or pytest.fail("no browser"), session.base)
    try:
        shared.page.goto(page.url, wait_until="networkidle")
        assert shared.page.locator(".tile .counts").first.inner_text() == after
        assert shared.page.locator('select[name="service"]').input_value() == "payments-api"
    finally:
        shared.page.close()
    _assert_clean(session.traffic)


def test_definitions_preset_changes_the_frequency(session: Session) -> None:
    _visit(session, "/?since=84d")
    page = session.page
    shipscope = _tile_text(page, "Deployment frequency")
    page.select_option('select[name="definitions"]', "devlake")
    # From the keyboard: the next stop after the last filter is Apply.
    page.focus('select[name="definitions"]')
    page.keyboard.press("Tab")
    with page.expect_navigation(wait_until="networkidle"):
        page.keyboard.press("Enter")
    _wait_for_charts(page)
    assert "definitions=devlake" in page.url
    assert _tile_text(page, "Deployment frequency") != shipscope
    _assert_clean(session.traffic)


def test_deployment_link_opens_its_page(session: Session) -> None:
    _visit(session, "/deployments?since=84d&failure_signal=any")
    page = session.page
    rows = page.locator("#deployment-list tbody tr")
    assert rows.count() > 0
    assert page.locator("#deployment-list tbody tr .signal").count() >= rows.count()
    link = rows.first.locator("a").first
    with page.expect_navigation(wait_until="networkidle"):
        link.click()
    assert re.search(r"/deployments/dpl-\d+", page.url)
    assert page.locator("h1").inner_text()
    assert page.locator("dd .signal").count() > 0
    _assert_clean(session.traffic)


def test_a_deployment_page_lists_changes_with_lead_times(session: Session) -> None:
    _visit(session, "/deployments?since=84d&env=production")
    page = session.page
    # The newest production deployments were measured by DORA: their page lists lead times.
    for index in range(10):
        with page.expect_navigation(wait_until="networkidle"):
            page.locator("#deployment-list tbody tr a").nth(index).click()
        if page.locator("[data-lead-time]").count():
            break
        page.go_back(wait_until="networkidle")
    lead_times = page.locator("[data-lead-time]").all_inner_texts()
    assert lead_times and all(text != "—" for text in lead_times)
    _assert_clean(session.traffic)


def test_keyboard_reaches_the_content_and_the_filters(session: Session) -> None:
    _visit(session, "/pipelines")
    page = session.page
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # Backwards from the content: the filter bar's last control, reachable without a mouse.
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.closest('form.filters') !== null")
    _assert_clean(session.traffic)


def test_phone_width_has_no_horizontal_scroll(browser: Browser, server: str) -> None:
    phone = _open(browser, server, width=390, height=844)
    try:
        for path in ("/", "/pipelines", "/deployments"):
            _visit(phone, path)
            overflow = phone.page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at 390px"
        ARTIFACTS.mkdir(exist_ok=True)
        phone.page.goto(server + "/", wait_until="networkidle")
        _wait_for_charts(phone.page)
        phone.page.screenshot(path=str(ARTIFACTS / "test_phone_width_overview.png"), full_page=True)
        _assert_clean(phone.traffic)
    finally:
        phone.page.close()


def test_an_incident_page_shows_the_story_the_runbook_and_guards_the_postmortem(session: Session) -> None:
    listed = httpx.get(f"{session.base}/api/v1/incidents", params={"since": "180d"}, timeout=30).json()["incidents"]
    incident = next(row for row in listed if row["linked_by"] == "explicit" and row["resolved_at"])
    _visit(session, "/incidents?since=180d")
    page = session.page
    with page.expect_navigation(wait_until="networkidle"):
        page.locator(f'a[href^="/incidents/{incident["id"]}?"]').first.click()
    assert page.locator("h1").inner_text() == incident["title"]
    assert page.locator("#deploy-links tbody tr").first.locator("[data-confidence]").inner_text() == "certain"
    kinds = page.locator("#timeline tbody tr").evaluate_all("rows => rows.map((row) => row.dataset.kind)")
    assert kinds.index("deployment") < kinds.index("alert") < kinds.index("incident_opened")
    assert kinds.index("incident_opened") < kinds.index("incident_resolved")

    # The runbook: ticking a step stamps it, and the next step's box starts there.
    assert page.locator("#runbook li").count() == 7
    with page.expect_navigation(wait_until="networkidle"):
        page.locator('#runbook li[data-step="ack"] button').click()
    assert "ticked" in page.locator('#runbook li[data-step="ack"]').inner_text()

    # The postmortem: opened from the timeline; closing without a prevent-recurrence item is refused, and says why.
    with page.expect_navigation(wait_until="networkidle"):
        page.get_by_role("button", name="Open the postmortem from the timeline").click()
    with page.expect_navigation(wait_until="networkidle"):
        page.get_by_role("button", name="Close the postmortem").click()
    assert "prevent-recurrence" in page.locator("[data-refused]").inner_text()
    assert [entry.split()[0] for entry in session.traffic.error_responses] == ["422"]
    assert [error for error in session.traffic.console_errors if "422" not in error] == []
    session.traffic.error_responses.clear()
    session.traffic.console_errors.clear()

    form = page.locator("#add-item")
    form.locator('input[name="title"]').fill("Gate the deploy on the cache-key test")
    form.locator('input[name="owner"]').fill("ana")
    form.locator('input[name="due"]').fill("2026-01-05")  # past: overdue
    form.locator('select[name="kind"]').select_option("prevent-recurrence")
    with page.expect_navigation(wait_until="networkidle"):
        form.get_by_role("button", name="Add item").click()
    assert page.locator("[data-overdue-item]").count() == 1
    assert "overdue" in page.locator("[data-overdue]").inner_text()
    with page.expect_navigation(wait_until="networkidle"):
        page.get_by_role("button", name="Close the postmortem").click()
    assert page.locator("[data-postmortem-status]").inner_text().startswith("closed")
    _assert_clean(session.traffic)

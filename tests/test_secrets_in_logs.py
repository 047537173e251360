"""Secrets never reach a log line or an answer: a served shipscope holding planted secrets (API tokens, webhook
secrets, a PagerDuty routing key) is driven through its failure paths (wrong and missing tokens, bad
signatures, malformed bodies, a PagerDuty forward that fails, a rollback attempt) and every log line and response
body is searched for them."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.services import Server
from tests.vendors import VendorServer

pytestmark = pytest.mark.slow
SECRETS = {
    "admin token": "adm1n-t0ken-7f9c2e",
    "read token": "r3ad-t0ken-41aa0b",
    "github secret": "gh-hook-s3cret-99",
    "pagerduty secret": "pd-hook-s3cret-12",
    "flag secret": "ld-hook-s3cret-34",
    "routing key": "R0UT1NG0000SECRET000000000000000",
}


def test_no_planted_secret_in_any_log_line_or_answer(tmp_path: Path, vendors: VendorServer) -> None:
    vendors.plan("POST", "/v2/enqueue", (500, {}, {"status": "error", "echo": SECRETS["routing key"]}, 0.0))
    env = {
        "SHIPSCOPE_API_TOKENS": f"{SECRETS['admin token']}:admin,ingest,read {SECRETS['read token']}:read",
        "SHIPSCOPE_GITHUB_WEBHOOK_SECRETS": SECRETS["github secret"],
        "SHIPSCOPE_PAGERDUTY_WEBHOOK_SECRETS": SECRETS["pagerduty secret"],
        "SHIPSCOPE_FLAG_WEBHOOK_SECRETS": SECRETS["flag secret"],
        "SHIPSCOPE_PAGERDUTY_ROUTING_KEY": SECRETS["routing key"],
        "SHIPSCOPE_PAGERDUTY_EVENTS_URL": f"{vendors.base}/v2/enqueue",
    }
    db = f"duckdb:///{tmp_path / 'secrets.duckdb'}"
    server = Server(db, tmp_path, env=env)
    server.start()
    admin = {"Authorization": f"Bearer {SECRETS['admin token']}"}
    answers: list[str] = []
    try:
        with httpx.Client(base_url=server.base, timeout=30) as client:

            def call(method: str, path: str, **kwargs: object) -> httpx.Response:
                answer = client.request(method, path, **kwargs)  # type: ignore[arg-type]
                answers.append(f"{answer.status_code} {answer.headers} {answer.text}")
                return answer

            assert call("GET", "/api/v1/events?type=deployment").status_code == 401
            assert (
                call("GET", "/api/v1/events?type=deployment", headers={"Authorization": "Bearer nope"}).status_code
                == 401
            )
            read = {"Authorization": f"Bearer {SECRETS['read token']}"}
            assert call("POST", "/api/v1/events", content=b"{}", headers=read).status_code == 403
            assert call("POST", "/api/v1/events", content=b'{"type": "deployment"', headers=admin).status_code == 400
            body = (FIXTURES / "incidents/pagerduty.v3.incident.triggered.json").read_bytes()
            wrong = "v1=" + hmac.new(b"not-it", body, hashlib.sha256).hexdigest()
            assert (
                call("POST", "/webhooks/pagerduty", content=body, headers={"X-PagerDuty-Signature": wrong}).status_code
                == 401
            )
            assert (
                call("POST", "/webhooks/github", content=b"{}", headers={"X-GitHub-Event": "ping"}).status_code == 401
            )
            assert call("POST", "/webhooks/flags", content=b"{}", headers={"X-LD-Signature": "00"}).status_code == 401
            alert = (FIXTURES / "alertmanager/firing.simple.json").read_bytes()
            forwarded = call("POST", "/webhooks/alertmanager", content=alert, headers=admin)
            assert forwarded.status_code == 502 and "not forwarded to PagerDuty" in forwarded.text
            assert call("POST", "/api/v1/rollbacks", json={"service": "checkout"}, headers=admin).status_code == 200
            assert call("GET", "/login").status_code == 200
            form = {"token": SECRETS["admin token"], "next": "/"}
            call("POST", "/login", data=form, follow_redirects=False)
            assert call("GET", "/incidents/none", headers=admin).status_code == 404
    finally:
        server.stop()
    assert (
        len(_enqueued := vendors.at("/v2/enqueue")) >= 1 and _enqueued[0].body["routing_key"] == SECRETS["routing key"]
    )
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log
    for name, secret in SECRETS.items():
        assert secret not in log, f"the {name} is in the server log"
        for answer in answers:
            if answer.startswith("303"):
                continue  # the sign-in answer sets the token as the browser's HttpOnly cookie, by design
            assert secret not in answer, f"the {name} is in an answer: {answer[:300]}"

"""Webhook benchmark, run by hand: `.venv/bin/python bench/webhooks.py [--connections 8 32 128] [--seconds 10]`.

Sends GitHub deliveries to `POST /webhooks/github` on loopback with signature checking on, each with its own
X-GitHub-Delivery, and reports deliveries per second and p50/p99 latency. `--event workflow_job` (the default)
sends the completed-job fixture, one job and its eight steps, given a new job id for each of 2,000 distinct signed
bodies sent in turn; `--event push` sends the one-commit push fixture, given a new commit sha for each. Needs wrk
(Debian package `wrk`).

A server in use holds earlier data that every write is checked against. `--journal N` first journals N earlier
deliveries; `--rows N` first imports N earlier events of what the deliveries write (jobs whose ids ascend below
the bench's, as GitHub numbers them, or commits with their random shas), which journals them as well.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from common import lua_string, serving, wrk

from shipscope.store import Store, schema

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "github"
FIXTURE = {"workflow_job": "workflow_job.completed.success.json", "push": "push.new-branch.json"}
SECRET = "bench-secret"
FIRST_JOB_ID = 10_000_000


def _commit_sha(number: int) -> str:
    return hashlib.sha1(f"bench-commit-{number}".encode()).hexdigest()


def _vary(event: str, payload: dict[str, Any], index: int) -> None:
    """Gives the fixture's payload the ``index``th new job id or commit sha."""
    if event == "workflow_job":
        payload["workflow_job"]["id"] = FIRST_JOB_ID + index
        return
    sha = _commit_sha(-1 - index)
    payload["after"] = payload["head_commit"]["id"] = payload["commits"][0]["id"] = sha


def delivery_script(event: str, distinct: int = 2000) -> str:
    payload = orjson.loads((FIXTURES / FIXTURE[event]).read_bytes())
    bodies, signatures = [], []
    for index in range(distinct):
        _vary(event, payload, index)
        body = orjson.dumps(payload)
        bodies.append(lua_string(body))
        signatures.append('"sha256=' + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest() + '"')
    return f"""
counter = 0
bodies = {{{", ".join(bodies)}}}
signatures = {{{", ".join(signatures)}}}
request = function()
  counter = counter + 1
  local index = (counter % {distinct}) + 1
  return wrk.format("POST", "/webhooks/github", {{
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "{event}",
    ["X-GitHub-Delivery"] = "bench-" .. counter .. "-" .. math.random(1, 1e9),
    ["X-Hub-Signature-256"] = signatures[index],
  }}, bodies[index])
end
"""


def prefill_journal(db_url: str, deliveries: int) -> None:
    """Journals ``deliveries`` earlier deliveries (small bodies, distinct ids) in one statement, before serving."""
    store = Store(db_url)
    try:
        store.ensure_schema()
        journal = schema.raw_events
        number = sa.func.generate_series(1, deliveries).table_valued("n").render_derived()
        # Ids as GitHub sends them, in no order: sorted ones would let DuckDB skip the journal by its min/max.
        source, delivery_id = sa.literal("github"), sa.func.md5(sa.cast(number.c.n, sa.String))
        earlier = sa.select(
            source,
            delivery_id,
            sa.literal("github"),
            sa.func.now(),
            sa.literal(b"{}", sa.LargeBinary),
            schema.joined_key(source, delivery_id),
        )
        columns = ["source", "delivery_id", "kind", "received_at", "body", "delivery_key"]
        with store.engine.begin() as conn:
            conn.execute(sa.insert(journal).from_select(columns, earlier))
    finally:
        store.close()


def prefill_rows(db_url: str, event: str, rows: int) -> None:
    """Imports ``rows`` earlier events of what ``event`` deliveries write, through `shipscope import`."""
    with tempfile.NamedTemporaryFile("wb", suffix=".ndjson") as events:
        for number in range(rows):
            if event == "workflow_job":
                earlier = {
                    "type": "job",
                    "source": "github",
                    "id": str(FIRST_JOB_ID - rows + number),
                    "run_id": str(number // 8),
                    "name": "build",
                    "status": "success",
                    "created_at": "2026-03-01T10:00:00Z",
                }
            else:
                earlier = {
                    "type": "change",
                    "source": "github",
                    "repo": "Codertocat/Hello-World",
                    "sha": _commit_sha(number),
                    "authored_at": "2026-03-01T10:00:00Z",
                }
            events.write(orjson.dumps(earlier) + b"\n")
        events.flush()
        command = [sys.executable, "-m", "shipscope", "import", events.name, "--db", db_url]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--db", help="database URL; default a fresh DuckDB file")
    parser.add_argument("--event", choices=sorted(FIXTURE), default="workflow_job")
    parser.add_argument("--journal", type=int, default=0, help="earlier deliveries journaled before the run")
    parser.add_argument("--rows", type=int, default=0, help="earlier events imported before the run")
    args = parser.parse_args()
    script = delivery_script(args.event)
    with tempfile.TemporaryDirectory(prefix="shipscope-bench-") as scratch:
        db_url = args.db or f"duckdb:///{scratch}/webhooks.duckdb"
        if args.journal:
            prefill_journal(db_url, args.journal)
        if args.rows:
            prefill_rows(db_url, args.event, args.rows)
        with serving(db_url, env={"SHIPSCOPE_GITHUB_WEBHOOK_SECRETS": SECRET}) as url:
            print("| connections | deliveries/s | p50 | p99 | non-2xx |\n|---|---|---|---|---|")
            for connections in args.connections:
                result = wrk(url, script, connections=connections, seconds=args.seconds)
                print(
                    f"| {connections} | {result.requests_per_second:,.0f} | {result.p50_ms:.1f} ms "
                    f"| {result.p99_ms:.1f} ms | {result.non_2xx} |"
                )


if __name__ == "__main__":
    main()

"""Webhook benchmark, run by hand: `.venv/bin/python bench/webhooks.py [--connections 8 32 128] [--seconds 10]`.

Sends GitHub `workflow_job` deliveries (the completed-job fixture: one job and its eight steps, given a new job id
for each of 2,000 distinct signed bodies sent in turn) to `POST /webhooks/github` on loopback with signature
checking on, each with its own X-GitHub-Delivery, and reports deliveries per second and p50/p99 latency. Needs wrk
(Debian package `wrk`). `--journal N` first journals N earlier deliveries, since every write checks the journal for
duplicates and a server in use has a journal of that size.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import tempfile
from pathlib import Path

import orjson
import sqlalchemy as sa
from common import lua_string, serving, wrk

from shipscope.store import Store, schema

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "github" / "workflow_job.completed.success.json"
SECRET = "bench-secret"


def delivery_script(fixture: bytes, distinct: int = 2000) -> str:
    payload = orjson.loads(fixture)
    bodies, signatures = [], []
    for index in range(distinct):
        payload["workflow_job"]["id"] = 10_000_000 + index
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
    ["X-GitHub-Event"] = "workflow_job",
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
            schema.journal_key(source, delivery_id),
        )
        columns = ["source", "delivery_id", "kind", "received_at", "body", "delivery_key"]
        with store.engine.begin() as conn:
            conn.execute(sa.insert(journal).from_select(columns, earlier))
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--db", help="database URL; default a fresh DuckDB file")
    parser.add_argument("--journal", type=int, default=0, help="earlier deliveries journaled before the run")
    args = parser.parse_args()
    script = delivery_script(FIXTURE.read_bytes())
    with tempfile.TemporaryDirectory(prefix="shipscope-bench-") as scratch:
        db_url = args.db or f"duckdb:///{scratch}/webhooks.duckdb"
        if args.journal:
            prefill_journal(db_url, args.journal)
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

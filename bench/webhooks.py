"""Webhook benchmark, run by hand: `.venv/bin/python bench/webhooks.py [--connections 8 32 128] [--seconds 10]`.

Sends GitHub `workflow_job` deliveries (the completed-job fixture: one job and its eight steps, given a new job id
for each of 2,000 distinct signed bodies sent in turn) to `POST /webhooks/github` on loopback with signature
checking on, each with its own X-GitHub-Delivery, and reports deliveries per second and p50/p99 latency. Needs wrk
(Debian package `wrk`).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import tempfile
from pathlib import Path

import orjson
from common import lua_string, serving, wrk

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--db", help="database URL; default a fresh DuckDB file")
    args = parser.parse_args()
    script = delivery_script(FIXTURE.read_bytes())
    with tempfile.TemporaryDirectory(prefix="shipscope-bench-") as scratch:
        db_url = args.db or f"duckdb:///{scratch}/webhooks.duckdb"
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

"""Load knee, run by hand: `.venv/bin/python bench/load.py [--pg-url URL] [--seconds 5]`.

Drives signed GitHub `workflow_job` deliveries (bench/webhooks.py's) at increasing load on loopback, doubling
wrk's connections from 1 to 256, and reports for each step deliveries per second and p50/p99. The knee is the
highest rate whose p99 stays within 50 ms. Measured on DuckDB (a fresh file), and with `--pg-url` on PostgreSQL
with one server and with two replicas sharing the database (one wrk per replica, at the same time; rates add up,
and the p99 is the worse of the two). Needs wrk (Debian package `wrk`).
"""

from __future__ import annotations

import argparse
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from common import WrkResult, serving, wrk
from webhooks import FIXTURE, SECRET, delivery_script

P99_BUDGET_MS = 50.0
CONNECTIONS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _step(urls: list[str], script: str, connections: int, seconds: int) -> WrkResult:
    """One load step: ``connections`` split over the replicas, all driven at once."""
    each = max(1, connections // len(urls))
    with ThreadPoolExecutor(len(urls)) as pool:
        results = list(pool.map(lambda url: wrk(url, script, connections=each, seconds=seconds), urls))
    return WrkResult(
        requests_per_second=sum(result.requests_per_second for result in results),
        p50_ms=max(result.p50_ms for result in results),
        p99_ms=max(result.p99_ms for result in results),
        non_2xx=sum(result.non_2xx for result in results),
    )


def knee(label: str, db_url: str, replicas: int, script: str, seconds: int) -> None:
    env = {"SHIPSCOPE_GITHUB_WEBHOOK_SECRETS": SECRET, "SHIPSCOPE_ALERT_INTERVAL_SECONDS": "0"}
    with ExitStack() as stack:
        urls = [stack.enter_context(serving(db_url, env=env)) for _ in range(replicas)]
        print(f"\n{label}\n\n| connections | deliveries/s | p50 ms | p99 ms | non-2xx |\n|---|---|---|---|---|")
        best: WrkResult | None = None
        for connections in CONNECTIONS:
            result = _step(urls, script, connections, seconds)
            print(
                f"| {connections} | {result.requests_per_second:,.0f} | {result.p50_ms:.1f} | {result.p99_ms:.1f} "
                f"| {result.non_2xx} |",
                flush=True,
            )
            within = result.p99_ms <= P99_BUDGET_MS
            if within and (best is None or result.requests_per_second > best.requests_per_second):
                best = result
            if result.p99_ms > 4 * P99_BUDGET_MS:
                break  # well past the knee
        found = f"{best.requests_per_second:,.0f} deliveries/s" if best else f"none: p99 over {P99_BUDGET_MS:g} ms at 1"
        print(f"\nknee ({label}): {found}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--pg-url", help="an empty PostgreSQL database, to measure one server and two replicas")
    args = parser.parse_args()
    script = delivery_script(FIXTURE.read_bytes())
    with tempfile.TemporaryDirectory(prefix="shipscope-load-") as scratch:
        knee("DuckDB, one server", f"duckdb:///{scratch}/load.duckdb", 1, script, args.seconds)
    if args.pg_url:
        knee("PostgreSQL, one server", args.pg_url, 1, script, args.seconds)
        knee("PostgreSQL, two replicas", args.pg_url, 2, script, args.seconds)


if __name__ == "__main__":
    main()

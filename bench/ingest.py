"""Ingest benchmark, run by hand: `.venv/bin/python bench/ingest.py [--events N] [--pg URL]`.

Measures, on this machine:
- `shipscope import` of N generated canonical events (default 1,000,000) into a fresh DuckDB file and a fresh
  PostgreSQL database: events/s and the import process's peak RSS;
- `POST /api/v1/events` against `shipscope serve` on loopback: events/s in batches of 500, and single-event
  POSTs per second with their p50/p99 latency.
Results go to stdout as a Markdown table (bench/README.md keeps the latest).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from common import serving, wrk

START = datetime(2026, 1, 1, tzinfo=UTC)


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def generate(count: int, seed: int = 1) -> Iterator[dict[str, Any]]:
    """A realistic mix: each run brings its jobs and steps; deployments, changes and test cases in between."""
    rng = random.Random(seed)
    produced = 0
    run_number = 0
    while produced < count:
        run_number += 1
        created = START + timedelta(seconds=run_number * 37)
        started = created + timedelta(seconds=rng.randint(1, 300))
        finished = started + timedelta(seconds=rng.randint(60, 1800))
        run_id = f"run-{run_number}"
        batch: list[dict[str, Any]] = [
            {
                "type": "pipeline_run",
                "source": "bench",
                "id": run_id,
                "repo": f"acme/repo-{run_number % 20}",
                "workflow": rng.choice(["ci", "deploy", "nightly"]),
                "trigger": rng.choice(["push", "pull_request"]),
                "branch": rng.choice(["main", f"feature/{run_number % 300}"]),
                "sha": f"{run_number:040x}",
                "status": rng.choice(["success"] * 8 + ["failure"]),
                "created_at": _ts(created),
                "started_at": _ts(started),
                "finished_at": _ts(finished),
            }
        ]
        for job_number in range(4):
            job_id = f"{run_id}-job-{job_number}"
            batch.append(
                {
                    "type": "job",
                    "source": "bench",
                    "id": job_id,
                    "run_id": run_id,
                    "name": ["build", "test", "lint", "deploy"][job_number],
                    "runner": [rng.choice(["ubuntu-latest", "self-hosted"])],
                    "status": "success",
                    "created_at": _ts(created),
                    "started_at": _ts(started),
                    "finished_at": _ts(finished),
                }
            )
            batch.append(
                {
                    "type": "step",
                    "source": "bench",
                    "job_id": job_id,
                    "name": "Run tests",
                    "number": 1,
                    "status": "success",
                    "started_at": _ts(started),
                    "finished_at": _ts(finished),
                }
            )
        if run_number % 10 == 0:
            batch.append(
                {
                    "type": "deployment",
                    "source": "bench",
                    "id": f"deploy-{run_number}",
                    "service": f"svc-{run_number % 15}",
                    "environment": "production",
                    "sha": f"{run_number:040x}",
                    "status": "success",
                    "started_at": _ts(finished),
                    "finished_at": _ts(finished + timedelta(minutes=3)),
                }
            )
        batch.append(
            {
                "type": "change",
                "source": "bench",
                "repo": f"acme/repo-{run_number % 20}",
                "sha": f"{run_number:040x}",
                "authored_at": _ts(created - timedelta(hours=2)),
                "author": f"dev{run_number % 40}",
            }
        )
        yield from batch[: count - produced]
        produced += len(batch)


def write_events(path: Path, count: int) -> None:
    with path.open("wb") as out:
        for event in generate(count):
            out.write(orjson.dumps(event) + b"\n")


def timed_import(path: Path, db_url: str) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one `shipscope import` process."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "shipscope", "import", str(path), "--db", db_url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"import failed: {process.stderr.read().decode() if process.stderr else status}")
    return elapsed, usage.ru_maxrss / 1024


def _fresh_pg(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


SINGLE_EVENT_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local body = '{"type":"change","repo":"acme/bench","sha":"' .. counter .. '-' .. math.random(1, 1e9) ..
    '","authored_at":"2026-01-01T00:00:00Z"}'
  return wrk.format("POST", "/api/v1/events", {["Content-Type"] = "application/x-ndjson"}, body)
end
"""


async def _post_batches(url: str, bodies: list[bytes], concurrency: int) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                response = await client.post("/api/v1/events", content=queue.get_nowait())
                if response.status_code != 200:
                    raise SystemExit(f"POST answered {response.status_code}: {response.text[:200]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def bench_http(db_url: str, batch_events: int, connections: list[int], seconds: int) -> None:
    with serving(db_url) as url:
        events = [orjson.dumps(event) for event in generate(batch_events, seed=2)]
        batches = [b"\n".join(events[index : index + 500]) for index in range(0, len(events), 500)]
        started = time.perf_counter()
        asyncio.run(_post_batches(url, batches, concurrency=4))
        rate = len(events) / (time.perf_counter() - started)
        print(f"| POST /api/v1/events, batches of 500, 4 clients | {rate:,.0f} events/s |")
        for count in connections:
            result = wrk(url, SINGLE_EVENT_LUA, connections=count, seconds=seconds)
            print(
                f"| POST /api/v1/events, one event each, {count} connections | {result.requests_per_second:,.0f} "
                f"requests/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, non-2xx {result.non_2xx} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/shipscope_bench")
    parser.add_argument("--http-events", type=int, default=200_000)
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--skip", choices=["duckdb", "postgresql", "http"], action="append", default=[])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="shipscope-bench-") as scratch:
        events_file = Path(scratch) / "events.ndjson"
        write_events(events_file, args.events)
        size_mb = events_file.stat().st_size / 1e6
        print(f"{args.events:,} events, {size_mb:.0f} MB of NDJSON\n")
        print("| measure | value |\n|---|---|")
        if "duckdb" not in args.skip:
            seconds, rss = timed_import(events_file, f"duckdb:///{scratch}/bench.duckdb")
            print(
                f"| import, DuckDB | {args.events / seconds:,.0f} events/s ({seconds:.1f} s), peak RSS {rss:.0f} MB |"
            )
        if "postgresql" not in args.skip:
            _fresh_pg(args.pg)
            seconds, rss = timed_import(events_file, args.pg)
            rate = args.events / seconds
            print(f"| import, PostgreSQL | {rate:,.0f} events/s ({seconds:.1f} s), peak RSS {rss:.0f} MB |")
        if "http" not in args.skip:
            bench_http(f"duckdb:///{scratch}/http.duckdb", args.http_events, args.connections, args.seconds)


if __name__ == "__main__":
    main()

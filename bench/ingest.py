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
import socket
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

HERE = Path(__file__).resolve().parent
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve(db_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "shipscope", "serve", "--db", db_url, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("server did not start")


async def _post_all(url: str, bodies: list[bytes], concurrency: int) -> list[float]:
    latencies: list[float] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                started = time.perf_counter()
                response = await client.post("/api/v1/events", content=body)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise SystemExit(f"POST answered {response.status_code}: {response.text[:200]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def bench_http(db_url: str, batch_events: int, single_posts: int, concurrency: int) -> dict[str, float]:
    process, url = _serve(db_url)
    try:
        events = [orjson.dumps(event) for event in generate(batch_events, seed=2)]
        batches = [b"\n".join(events[index : index + 500]) for index in range(0, len(events), 500)]
        started = time.perf_counter()
        asyncio.run(_post_all(url, batches, concurrency=4))
        batch_rate = len(events) / (time.perf_counter() - started)
        singles = [orjson.dumps(event) for event in generate(single_posts, seed=3)]
        started = time.perf_counter()
        latencies = sorted(asyncio.run(_post_all(url, singles, concurrency=concurrency)))
        single_rate = len(singles) / (time.perf_counter() - started)
    finally:
        process.terminate()
        process.wait()
    return {
        "batch_events_per_s": batch_rate,
        "single_posts_per_s": single_rate,
        "single_p50_ms": latencies[len(latencies) // 2] * 1000,
        "single_p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/shipscope_bench")
    parser.add_argument("--http-events", type=int, default=200_000)
    parser.add_argument("--single-posts", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
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
            result = bench_http(
                f"duckdb:///{scratch}/http.duckdb", args.http_events, args.single_posts, args.concurrency
            )
            print(f"| POST /api/v1/events, batches of 500, DuckDB | {result['batch_events_per_s']:,.0f} events/s |")
            print(
                f"| POST /api/v1/events, one event each, {args.concurrency} clients, DuckDB | "
                f"{result['single_posts_per_s']:,.0f} requests/s, p50 {result['single_p50_ms']:.1f} ms, "
                f"p99 {result['single_p99_ms']:.1f} ms |"
            )


if __name__ == "__main__":
    main()

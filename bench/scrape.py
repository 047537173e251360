"""`/metrics` benchmark, run by hand: `.venv/bin/python bench/scrape.py [--days 90] [--repeat 7]`.

Loads the demo dataset into a fresh DuckDB file, serves it with ``shipscope serve`` with the exporter's cache off
(every scrape reads the store), and scrapes ``/metrics`` ``--repeat`` times after one warm-up. Prints the median
and slowest scrape and the number of series, as a Markdown row (bench/README.md keeps the latest).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import serving  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        db_url = f"duckdb:///{Path(directory) / 'scrape.duckdb'}"
        subprocess.run(
            [sys.executable, "-m", "shipscope", "demo", "--db", db_url, "--days", str(args.days)],
            check=True,
            capture_output=True,
        )
        config = Path(directory) / "shipscope.toml"
        config.write_text("[exporter]\ncache_seconds = 0\n")
        with serving(db_url, env={"SHIPSCOPE_CONFIG": str(config)}) as base, httpx.Client(timeout=60) as client:
            client.get(f"{base}/metrics").raise_for_status()
            seconds = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                text = client.get(f"{base}/metrics").raise_for_status().text
                seconds.append(time.perf_counter() - started)
    series = sum(len(family.samples) for family in text_string_to_metric_families(text))
    print("| `/metrics` scrape, demo data, DuckDB, cache off | median | slowest | series |")
    print("|---|---|---|---|")
    median, slowest = statistics.median(seconds) * 1000, max(seconds) * 1000
    print(f"| {args.repeat} scrapes | {median:.0f} ms | {slowest:.0f} ms | {series:,} |")


if __name__ == "__main__":
    main()

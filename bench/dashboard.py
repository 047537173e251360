"""Dashboard benchmark, run by hand: `.venv/bin/python bench/dashboard.py [--days 90] [--repeat 7] [--pg URL]`.

Loads the demo dataset (``shipscope demo``, 90 days by default) into a fresh DuckDB file and, unless ``--skip-pg``,
a fresh PostgreSQL database, serves it with ``shipscope serve``, and requests every dashboard page over HTTP. The
server time of a page is its ``Server-Timing`` header (parsing the URL, the metric functions, rendering the
template); the wall time is the whole request on loopback. Each page is asked for once to warm the server, then
``--repeat`` times; the median and the slowest server time (and the median wall time) are printed as a Markdown
table (bench/README.md keeps the latest). An aim holds "in every run" only if the slowest is under it.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import serving  # noqa: E402

PAGES = (
    "/",
    "/pipelines",
    "/tests",
    "/security",
    "/deployments",
    "/incidents",
    "/devex",
    "/?since=84d",
    "/?service=payments-api",
    "/deployments?failure_signal=any",
)
PG_DATABASE = "shipscope_bench_dashboard"


def _load(db_url: str, days: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "shipscope", "demo", "--db", db_url, "--days", str(days)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def _timings(base: str, repeat: int) -> dict[str, tuple[float, float, float]]:
    """Per page: the median and the slowest server time and the median wall time, in milliseconds."""
    results = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        deployment = re.search(r'href="(/deployments/[^"?]+)', client.get("/deployments").text)
        pages = [*PAGES, *([deployment.group(1)] if deployment else [])]
        for page in pages:
            client.get(page).raise_for_status()
            server, wall = [], []
            for _ in range(repeat):
                started = time.perf_counter()
                answer = client.get(page)
                wall.append((time.perf_counter() - started) * 1000)
                answer.raise_for_status()
                timing = re.search(r"dur=([\d.]+)", answer.headers["server-timing"])
                assert timing, page
                server.append(float(timing.group(1)))
            results[page] = (statistics.median(server), max(server), statistics.median(wall))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-pg", action="store_true")
    options = parser.parse_args()

    backends: dict[str, dict[str, tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as directory:
        duck = f"duckdb:///{Path(directory) / 'demo.duckdb'}"
        print(f"loading {options.days} demo days into DuckDB: {_load(duck, options.days):.1f} s", file=sys.stderr)
        with serving(duck, {"SHIPSCOPE_ALERT_INTERVAL_SECONDS": "0"}) as base:
            backends["DuckDB"] = _timings(base, options.repeat)
    if not options.skip_pg:
        admin = sa.create_engine(options.pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DATABASE}")
            conn.exec_driver_sql(f"CREATE DATABASE {PG_DATABASE}")
        pg = options.pg.rsplit("/", 1)[0] + f"/{PG_DATABASE}"
        try:
            print(f"loading into PostgreSQL: {_load(pg, options.days):.1f} s", file=sys.stderr)
            with serving(pg, {"SHIPSCOPE_ALERT_INTERVAL_SECONDS": "0"}) as base:
                backends["PostgreSQL"] = _timings(base, options.repeat)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DATABASE}")
            admin.dispose()

    names = list(backends)
    print("| page | " + " | ".join(f"{name} server median / slowest (wall) ms" for name in names) + " |")
    print("|---|" + "---|" * len(names))
    for page in backends["DuckDB"]:
        cells = [
            f"{median:.0f} / {slowest:.0f} ({wall:.0f})"
            for median, slowest, wall in (backends[name][page] for name in names)
        ]
        shown = re.sub(r"/deployments/.+", "/deployments/{id}", page)
        print(f"| `{shown}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

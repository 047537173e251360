"""What the benchmarks share: a shipscope server on a free loopback port, and wrk runs parsed."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(db_url: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`shipscope serve` on a free port for the duration of the block; yields its base URL."""
    import os

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "shipscope", "serve", "--db", db_url, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit("server did not start")
        yield url
    finally:
        process.terminate()
        process.wait()


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


def _milliseconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, lua: str, *, connections: int, seconds: int) -> WrkResult:
    """Runs wrk (Debian package `wrk`) with a Lua request script; one thread, `connections` connections."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for the HTTP benchmarks: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(lua)
        script.flush()
        output = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests_per_second=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        p50_ms=_milliseconds(percentiles["50"]),
        p99_ms=_milliseconds(percentiles["99"]),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def lua_string(data: bytes) -> str:
    """A Lua long-bracket string literal holding ``data``."""
    level = "=" * 4
    return f"[{level}[{data.decode()}]{level}]"


HERE = Path(__file__).resolve().parent

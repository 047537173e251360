"""Real servers for tests: `shipscope serve`, Prometheus and the Pushgateway, each on a free loopback port.

`make test` installs Debian's prometheus and prometheus-pushgateway (scripts/ensure-prometheus.sh). A missing
binary fails the test that needs it with the fix, never skips it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

PROMETHEUS = os.environ.get("SHIPSCOPE_TEST_PROMETHEUS", "prometheus")
PUSHGATEWAY = os.environ.get("SHIPSCOPE_TEST_PUSHGATEWAY", "prometheus-pushgateway")
PROMTOOL = os.environ.get("SHIPSCOPE_TEST_PROMTOOL", "promtool")
ALERTMANAGER = os.environ.get("SHIPSCOPE_TEST_ALERTMANAGER", "prometheus-alertmanager")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is needed by this test and is not installed: `make test` installs Debian's {package} "
            f"(apt-get install {package})",
            pytrace=False,
        )
    return found


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            detail = f"\n{log.read_text(errors='replace')[-4000:]}" if log is not None and log.exists() else ""
            raise AssertionError(f"{what} did not happen within {timeout} s{detail}")
        time.sleep(0.2)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def process(command: Sequence[str], ready_url: str, log: Path, env: Mapping[str, str] | None = None) -> Iterator[None]:
    """Runs ``command`` until the block ends; waits for ``ready_url`` to answer 200 first."""
    with log.open("wb") as output:
        running = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        try:
            wait_until(lambda: running.poll() is None and _answers(ready_url), f"{command[0]} answering", log=log)
            yield
        finally:
            running.terminate()
            try:
                running.wait(timeout=30)
            except subprocess.TimeoutExpired:
                running.kill()
                running.wait()


@contextmanager
def shipscope_serve(db_url: str, directory: Path, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """``shipscope serve`` over ``db_url``; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "shipscope", "serve", "--db", db_url, "--host", "127.0.0.1", "--port", str(port)]
    environment = {**os.environ, "SHIPSCOPE_ALERT_INTERVAL_SECONDS": "0", **(env or {})}
    with process(command, f"{base}/healthz", directory / f"serve-{port}.log", environment):
        yield base


class Prometheus:
    """A Prometheus server's HTTP API."""

    def __init__(self, base: str, config_path: Path) -> None:
        self.base = base
        self.config_path = config_path

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.base}/api/v1/query", params={"query": promql}, timeout=10).json()
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def value(self, promql: str, timeout: float = 30.0) -> float:
        """The value of a query returning one series, waiting for it to return one."""
        found: list[dict[str, Any]] = []

        def one() -> bool:
            found[:] = self.query(promql)
            return len(found) == 1

        wait_until(one, f"one series from {promql!r}", timeout)
        return float(found[0]["value"][1])

    def rules(self) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.base}/api/v1/rules", timeout=10).json()
        groups: list[dict[str, Any]] = answer["data"]["groups"]
        return groups


@contextmanager
def prometheus(
    directory: Path, targets: Mapping[str, str], rule_files: Sequence[Path] = (), honor_labels: bool = False
) -> Iterator[Prometheus]:
    """Prometheus scraping each ``job → host:port/path`` of ``targets`` every second, with ``rule_files`` loaded
    and evaluated every second."""
    executable = binary(PROMETHEUS, "prometheus")
    port = free_port()
    scrape_configs = []
    for job, target in targets.items():
        address, _, path = target.partition("/")
        scrape_configs.append(
            {
                "job_name": job,
                "scrape_interval": "1s",
                "metrics_path": f"/{path}" if path else "/metrics",
                "honor_labels": honor_labels,
                "static_configs": [{"targets": [address]}],
            }
        )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": scrape_configs,
    }
    config_path = directory / f"prometheus-{port}.yml"
    config_path.write_text(yaml.safe_dump(config))
    command = [
        executable,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={directory / f'tsdb-{port}'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]
    base = f"http://127.0.0.1:{port}"
    with process(command, f"{base}/-/ready", directory / f"prometheus-{port}.log"):
        yield Prometheus(base, config_path)


@contextmanager
def pushgateway(directory: Path) -> Iterator[str]:
    """A Pushgateway; yields its base URL."""
    executable = binary(PUSHGATEWAY, "prometheus-pushgateway")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [executable, f"--web.listen-address=127.0.0.1:{port}"]
    with process(command, f"{base}/-/ready", directory / f"pushgateway-{port}.log"):
        yield base


@contextmanager
def alertmanager(directory: Path, webhook_url: str, token: str | None = None) -> Iterator[str]:
    """An Alertmanager routing every alert to ``webhook_url`` (firing and resolved), grouped by alert and service
    and flushed within a second; clustering off. Yields its base URL."""
    executable = binary(ALERTMANAGER, "prometheus-alertmanager")
    port = free_port()
    webhook: dict[str, Any] = {"url": webhook_url, "send_resolved": True}
    if token:
        webhook["http_config"] = {"authorization": {"credentials": token}}
    config = {
        "route": {
            "receiver": "shipscope",
            "group_by": ["alertname", "service"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "shipscope", "webhook_configs": [webhook]}],
    }
    config_path = directory / f"alertmanager-{port}.yml"
    config_path.write_text(yaml.safe_dump(config))
    command = [
        executable,
        f"--config.file={config_path}",
        f"--storage.path={directory / f'alertmanager-{port}'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    base = f"http://127.0.0.1:{port}"
    with process(command, f"{base}/-/ready", directory / f"alertmanager-{port}.log"):
        yield base


class Server:
    """``shipscope serve`` that can be killed and started again on the same port and database (the crash and
    replica tests)."""

    def __init__(self, db_url: str, directory: Path, env: Mapping[str, str] | None = None) -> None:
        self.db_url = db_url
        self.env = dict(env or {})
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = directory / f"serve-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "shipscope", "serve", "--db", self.db_url, "--port", str(self.port)]
        environment = {**os.environ, "SHIPSCOPE_ALERT_INTERVAL_SECONDS": "0", **self.env}
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment)

        def answering() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                return httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answering, "shipscope serve answering", timeout=60, log=self.log)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

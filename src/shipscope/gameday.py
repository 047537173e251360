"""Game days for the delivery path (docs/operations.md, "Game days").

Each experiment breaks one thing a deploy command depends on (Prometheus, a marker vendor, the database, the
rollback tool) and runs the real command, as a pipeline would, against a staging database. It passes when the
command failed cleanly: the documented exit code, a message naming what failed and no traceback, within its time
bound, and in the database exactly what a failed attempt records, each record once, nothing half-written.

Faults are peers on loopback that shipscope starts itself (a port nobody listens on, a server answering 503, one
that accepts and never answers) and a rollback command that fails or hangs, so a game day never reaches a real
vendor or cluster. Everything an experiment writes belongs to one service made for the run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import orjson
import sqlalchemy as sa

from shipscope.deploy.ledger import StoreLedger
from shipscope.errors import InputError
from shipscope.events import Deployment
from shipscope.store import Store, schema

FaultMode = Literal["ok", "error", "hang"]
# What the commands inherit from the caller: nothing that names a vendor, a server or a CI run, so a game day can
# only reach the faults it starts.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "SYSTEMROOT")


class FaultServer:
    """An HTTP peer on loopback: ``ok`` answers 200 ``{}``, ``error`` answers 503, ``hang`` reads the request and
    never answers. It keeps the paths it was asked for."""

    def __init__(self, mode: FaultMode) -> None:
        self.mode = mode
        self.paths: list[str] = []
        self._release = threading.Event()
        fault = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                fault.paths.append(self.path)
                if fault.mode == "hang":
                    fault._release.wait()
                    self.close_connection = True
                    return
                status = 200 if fault.mode == "ok" else 503
                body = b"{}" if status == 200 else b'{"errors": ["unavailable (game day)"]}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="gameday-fault", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


def closed_port() -> int:
    """A loopback port that nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass(frozen=True)
class Completed:
    exit_code: int | None
    """None when the command had to be killed at its time bound."""
    stderr: str
    seconds: float


@dataclass(frozen=True)
class State:
    """What the database holds for the game day's service: deployments and timeline events as described rows, and
    the journal's length."""

    rows: frozenset[tuple[str, tuple[tuple[str, Any], ...]]]
    journal: int

    def added(self, before: State) -> Counter[str]:
        return Counter(_describe(table, dict(row)) for table, row in self.rows - before.rows)

    def removed(self, before: State) -> int:
        changed = {(table, dict(row)["id"]) for table, row in self.rows - before.rows}
        return sum(1 for table, row in before.rows - self.rows if (table, dict(row)["id"]) not in changed)


def _describe(table: str, row: Mapping[str, Any]) -> str:
    if table == "deployments":
        return f"deployment {row['kind'] or 'deploy'} {row['status']}"
    details = orjson.loads(row["details"]) if row["details"] else {}
    verdict = details.get("outcome") or details.get("phase")
    return f"{row['kind']} {verdict}" if verdict else str(row["kind"])


@dataclass
class Staging:
    """The staging database and the one service a game day deploys, rolls back and breaks."""

    db: str
    service: str
    environment: str
    workdir: Path
    current_id: str = "gameday-current"

    def seed(self) -> None:
        """A good deploy and the current one after it, so a rollback has something to return to."""
        now = datetime.now(UTC)
        common = {"source": "shipscope", "service": self.service, "environment": self.environment, "kind": "deploy"}
        deployments = [
            Deployment(
                **common,
                id=identifier,
                sha=sha,
                version=version,
                status="success",
                started_at=now - ago - timedelta(minutes=5),
                finished_at=now - ago,
            )
            for identifier, sha, version, ago in (
                ("gameday-previous", "a1" * 20, "1.0.0", timedelta(hours=2)),
                (self.current_id, "b2" * 20, "1.1.0", timedelta(minutes=10)),
            )
        ]
        with self.opened() as store:
            StoreLedger(store).write(deployments)

    @contextmanager
    def opened(self) -> Iterator[Store]:
        # Opened only between commands: a DuckDB file has one process at a time.
        store = Store(self.db)
        try:
            store.ensure_schema()
            yield store
        finally:
            store.close()

    def state(self) -> State:
        rows: set[tuple[str, tuple[tuple[str, Any], ...]]] = set()
        with self.opened() as store:
            for table in (schema.deployments, schema.timeline_events):
                for row in store.query(sa.select(table).where(table.c.service == self.service)):
                    rows.add((table.name, tuple(sorted(row.items()))))
            journal = store.query(sa.select(sa.func.count().label("n")).select_from(schema.raw_events))[0]["n"]
        return State(frozenset(rows), int(journal))

    def shipscope(self, *args: str, environ: Mapping[str, str] | None = None, bound: float = 60.0) -> Completed:
        """Runs ``shipscope args…`` as a pipeline step would, with only the game day's environment."""
        env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
        env |= {
            "SHIPSCOPE_SERVICE": self.service,
            "SHIPSCOPE_ENVIRONMENT": self.environment,
            "SHIPSCOPE_VERSION": "1.2.0",
            "SHIPSCOPE_SHA": "c3" * 20,
            "SHIPSCOPE_DEPLOYMENT_ID": self.current_id,
            "SHIPSCOPE_ACTOR": "gameday",
            "NO_COLOR": "1",
            "COLUMNS": "160",
            **(environ or {}),
        }
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "shipscope", *args],
                env=env,
                cwd=self.workdir,
                capture_output=True,
                text=True,
                timeout=bound,
            )
        except subprocess.TimeoutExpired as expired:
            stderr = expired.stderr.decode() if isinstance(expired.stderr, bytes) else expired.stderr or ""
            return Completed(None, stderr, time.monotonic() - started)
        return Completed(done.returncode, done.stderr, time.monotonic() - started)


Trial = tuple[Completed, list[str]]
"""How the command ended, and what the experiment's own checks found wrong."""


@dataclass(frozen=True)
class Experiment:
    name: str
    breaks: str
    """What fails, in words."""
    command: str
    exit_code: int
    says: str
    """A fragment of the message that must name what failed."""
    records: Mapping[str, int]
    """What the failed attempt leaves for the service, as described rows, each exactly once."""
    journal: int
    """The journal entries it adds: one per record written, nothing else."""
    run: Callable[[Staging, ExitStack], Trial]
    bound: float = 30.0
    """Seconds within which the command must have ended."""


@dataclass(frozen=True)
class Outcome:
    experiment: Experiment
    completed: Completed
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment.name,
            "breaks": self.experiment.breaks,
            "command": self.experiment.command,
            "exit_code": self.completed.exit_code,
            "expected_exit_code": self.experiment.exit_code,
            "seconds": round(self.completed.seconds, 2),
            "clean": self.clean,
            "problems": self.problems,
        }


def _db_down() -> str:
    return f"postgresql+psycopg://gameday@127.0.0.1:{closed_port()}/staging"


def _gate(prometheus: Callable[[ExitStack], str]) -> Callable[[Staging, ExitStack], Trial]:
    def run(staging: Staging, faults: ExitStack) -> Trial:
        url = prometheus(faults)
        return staging.shipscope("deploy", "gate", "--db", staging.db, "--prometheus-url", url, "--timeout", "1"), []

    return run


def _refusing(faults: ExitStack) -> str:
    return f"http://127.0.0.1:{closed_port()}"


def _serving(mode: FaultMode) -> Callable[[ExitStack], str]:
    def start(faults: ExitStack) -> str:
        return faults.enter_context(FaultServer(mode)).url

    return start


def _analyze(staging: Staging, faults: ExitStack) -> Trial:
    template = staging.workdir / "analysis.yaml"
    template.write_text(_TEMPLATE)
    url = _refusing(faults)
    command = ("deploy", "analyze", "--template", str(template), "--prometheus-url", url, "--db", staging.db)
    return staging.shipscope(*command), []


_TEMPLATE = """\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: gameday-error-rate
spec:
  metrics:
    - name: error-rate
      count: 1
      consecutiveErrorLimit: 0
      successCondition: result[0] < 0.05
      provider:
        prometheus:
          address: http://prometheus.invalid:9090
          query: sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))
"""


def _mark(datadog: FaultMode, *, db_down: bool = False) -> Callable[[Staging, ExitStack], Trial]:
    def run(staging: Staging, faults: ExitStack) -> Trial:
        vendor = faults.enter_context(FaultServer(datadog))
        webhook = faults.enter_context(FaultServer("ok"))
        environ = {
            "DD_API_KEY": "gameday",
            "SHIPSCOPE_DATADOG_URL": vendor.url,
            "SHIPSCOPE_MARKER_WEBHOOK_URL": webhook.url + "/deploys",
        }
        db = _db_down() if db_down else staging.db
        flags = ("--timeout", "1", "--retries", "1", *(() if db_down else ("--strict",)))
        completed = staging.shipscope("deploy", "mark", "--db", db, *flags, environ=environ)
        problems = []
        if len(webhook.paths) != 1:
            problems.append(f"the working vendor got {len(webhook.paths)} markers, not 1")
        if not vendor.paths:
            problems.append("the failing vendor was never tried")
        return completed, problems

    return run


def _rollback(tool: Sequence[str], *, db_down: bool = False) -> Callable[[Staging, ExitStack], Trial]:
    def run(staging: Staging, faults: ExitStack) -> Trial:
        ran = staging.workdir / "rollback-tool-ran"
        ran.unlink(missing_ok=True)
        argv = ["sh", "-c", f'touch "{ran}"; {" ".join(tool)}']
        db = _db_down() if db_down else staging.db
        command = ("deploy", "rollback", "--db", db, "--strategy", "command", "--step-timeout", "1", "--no-notify")
        completed = staging.shipscope(*command, "--", *argv)
        problems = []
        if db_down and ran.exists():
            problems.append("the rollback tool ran although its target could not be read")
        if not db_down and not ran.exists():
            problems.append("the rollback tool never ran")
        return completed, problems

    return run


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        "gate-prometheus-refuses",
        "Prometheus refuses connections",
        "deploy gate",
        3,
        "cannot be reached",
        {"gate unknown": 1},
        1,
        _gate(_refusing),
    ),
    Experiment(
        "gate-prometheus-errors",
        "Prometheus answers 503",
        "deploy gate",
        3,
        "503",
        {"gate unknown": 1},
        1,
        _gate(_serving("error")),
    ),
    Experiment(
        "gate-prometheus-hangs",
        "Prometheus accepts and never answers",
        "deploy gate",
        3,
        "failing closed",
        {"gate unknown": 1},
        1,
        _gate(_serving("hang")),
        bound=15.0,
    ),
    Experiment(
        "analyze-prometheus-refuses",
        "Prometheus refuses connections",
        "deploy analyze",
        3,
        "Error",
        {"analysis Error": 1},
        1,
        _analyze,
    ),
    Experiment(
        "mark-vendor-errors",
        "Datadog answers 503",
        "deploy mark --strict",
        3,
        "datadog",
        {"marker": 1},
        1,
        _mark("error"),
    ),
    Experiment(
        "mark-vendor-hangs",
        "Datadog accepts and never answers",
        "deploy mark --strict",
        3,
        "datadog",
        {"marker": 1},
        1,
        _mark("hang"),
        bound=15.0,
    ),
    Experiment(
        "gate-database-down",
        "the database refuses connections",
        "deploy gate",
        3,
        "cannot open the database",
        {},
        0,
        lambda staging, faults: (
            staging.shipscope("deploy", "gate", "--db", _db_down(), "--prometheus-url", _refusing(faults)),
            [],
        ),
    ),
    Experiment(
        "mark-database-down",
        "the database refuses connections (markers still go out)",
        "deploy mark",
        0,
        "not recorded in shipscope",
        {},
        0,
        _mark("ok", db_down=True),
    ),
    Experiment(
        "rollback-tool-fails",
        "the rollback command exits 7",
        "deploy rollback",
        1,
        "exit",
        {"deployment rollback failure": 1},
        2,
        _rollback(["echo 'cluster unreachable' >&2", ";", "exit", "7"]),
    ),
    Experiment(
        "rollback-tool-hangs",
        "the rollback command never ends",
        "deploy rollback",
        1,
        "FAILED",
        {"deployment rollback failure": 1},
        2,
        _rollback(["exec", "sleep", "60"]),
    ),
    Experiment(
        "rollback-database-down",
        "the database refuses connections",
        "deploy rollback",
        3,
        "cannot open the database",
        {},
        0,
        _rollback(["true"], db_down=True),
    ),
)


def _checked(experiment: Experiment, completed: Completed, before: State, after: State) -> list[str]:
    problems = []
    if completed.exit_code is None:
        problems.append(f"did not end within {experiment.bound:g} s")
    elif completed.exit_code != experiment.exit_code:
        problems.append(f"exit {completed.exit_code}, expected {experiment.exit_code}")
    if completed.seconds > experiment.bound:
        problems.append(f"took {completed.seconds:.1f} s, more than {experiment.bound:g} s")
    if "Traceback" in completed.stderr:
        problems.append("printed a traceback")
    if experiment.says.lower() not in completed.stderr.lower():
        problems.append(f"its message does not say {experiment.says!r}")
    added = after.added(before)
    if added != Counter(experiment.records):
        left = ", ".join(f"{what} ×{count}" for what, count in sorted(added.items())) or "nothing"
        problems.append(f"left {left} in the database")
    if after.journal - before.journal != experiment.journal:
        problems.append(f"journalled {after.journal - before.journal} entries, expected {experiment.journal}")
    if after.removed(before):
        problems.append(f"{after.removed(before)} stored rows disappeared")
    if any(what.endswith(" in_progress") for what in added):
        problems.append("left a deployment in progress")
    return problems


def run_gameday(
    db: str | None,
    *,
    service: str | None = None,
    environment: str = "staging",
    only: Sequence[str] = (),
    progress: Callable[[Outcome], None] = lambda outcome: None,
    experiments: Sequence[Experiment] = EXPERIMENTS,
) -> list[Outcome]:
    """Runs the experiments (all, or those named in ``only``) against ``db``, or a new DuckDB file when it is None."""
    unknown = sorted(set(only) - {experiment.name for experiment in experiments})
    if unknown:
        names = ", ".join(experiment.name for experiment in experiments)
        raise InputError(f"no experiment {', '.join(unknown)}; the experiments are {names}")
    chosen = [experiment for experiment in experiments if not only or experiment.name in only]
    with tempfile.TemporaryDirectory(prefix="shipscope-gameday-") as folder:
        workdir = Path(folder)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        staging = Staging(
            db or f"duckdb:///{workdir / 'staging.duckdb'}", service or f"gameday-{stamp}", environment, workdir
        )
        staging.seed()
        outcomes = []
        for experiment in chosen:
            before = staging.state()
            with ExitStack() as faults:
                completed, problems = experiment.run(staging, faults)
            outcome = Outcome(
                experiment, completed, [*problems, *_checked(experiment, completed, before, staging.state())]
            )
            progress(outcome)
            outcomes.append(outcome)
        return outcomes

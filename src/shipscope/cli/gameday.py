"""`shipscope gameday`: break what deploy commands depend on, one experiment at a time, and report whether each
failed cleanly (shipscope.gameday)."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer
from rich.table import Table

from shipscope.cli.common import reports_errors, stderr


@reports_errors
def gameday_command(
    db: Annotated[
        str | None,
        typer.Option("--db", help="The staging database (default: a new DuckDB file, dropped afterwards)."),
    ] = None,
    service: Annotated[
        str | None, typer.Option(help="The service the experiments deploy (default: gameday-<time>).")
    ] = None,
    env: Annotated[str, typer.Option("--env", help="Its environment.")] = "staging",
    only: Annotated[list[str] | None, typer.Option(help="Run this experiment only (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The outcomes as JSON on stdout.")] = False,
) -> None:
    """Game days for the delivery path: make Prometheus, a marker vendor, the database or the rollback tool fail
    during `deploy gate/analyze/mark/rollback`, and check each failed cleanly with nothing half-written. Exit 0 when
    every experiment did, 1 otherwise."""
    from shipscope.gameday import Outcome, run_gameday

    def said(outcome: Outcome) -> None:
        verdict = "failed cleanly" if outcome.clean else "NOT CLEAN: " + "; ".join(outcome.problems)
        stderr.print(f"{outcome.experiment.name}: {verdict}", highlight=False)

    outcomes = run_gameday(db, service=service, environment=env, only=only or (), progress=said)
    table = Table("experiment", "breaks", "command", "exit", "seconds", "verdict", title="game day")
    for outcome in outcomes:
        exit_code = "killed" if outcome.completed.exit_code is None else str(outcome.completed.exit_code)
        table.add_row(
            outcome.experiment.name,
            outcome.experiment.breaks,
            outcome.experiment.command,
            f"{exit_code} (expected {outcome.experiment.exit_code})",
            f"{outcome.completed.seconds:.1f}",
            "failed cleanly" if outcome.clean else "; ".join(outcome.problems),
        )
    stderr.print(table)
    if as_json:
        sys.stdout.write(orjson.dumps([outcome.to_json() for outcome in outcomes]).decode() + "\n")
    if not all(outcome.clean for outcome in outcomes):
        raise typer.Exit(1)

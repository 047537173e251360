"""What every command shares: the ``--db`` option, stderr, settings, the store, and turning errors into exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from shipscope.config import Settings, load_settings
from shipscope.errors import InputError, ShipscopeError
from shipscope.store import Store

stderr = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (duckdb:///PATH or postgresql+psycopg://…) [env: SHIPSCOPE_DB]."),
]

P = ParamSpec("P")
R = TypeVar("R")


def reports_errors_with(code: int) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turns a ShipscopeError into its message, hint and exit ``code``; no traceback reaches the user."""

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return command(*args, **kwargs)
            except ShipscopeError as error:
                stderr.print(f"[red]error:[/red] {error.message}", highlight=False)
                if error.hint:
                    stderr.print(f"hint: {error.hint}", highlight=False)
                raise typer.Exit(code) from None

        return run

    return decorate


reports_errors = reports_errors_with(2)


def name_value_pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """``NAME=VALUE`` options (repeatable) as a mapping; an InputError names the malformed one."""
    pairs: dict[str, str] = {}
    for value in values or []:
        name, equals, text = value.partition("=")
        if not equals or not name:
            raise InputError(f"{option} {value!r}: expected NAME=VALUE")
        pairs[name] = text
    return pairs


def settings_for(db: str | None) -> Settings:
    return load_settings().with_overrides(db=db)


def open_store(settings: Settings) -> Store:
    """The store, its schema created if the database is empty."""
    store = Store(
        settings.db, stage_patterns=settings.stage_patterns, duckdb_memory_limit=settings.duckdb_memory_limit or None
    )
    store.ensure_schema()
    return store

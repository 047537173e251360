"""What every command shares: the ``--db`` option, stderr, settings, the store, and turning errors into exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from shipscope.config import Settings, load_settings
from shipscope.errors import InputError, RemoteError, ShipscopeError, StoreError
from shipscope.server_state import running_server
from shipscope.store import Store, duckdb_path

if TYPE_CHECKING:
    from shipscope.client import ServerClient

stderr = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (duckdb:///PATH or postgresql+psycopg://…) [env: SHIPSCOPE_DB]."),
]

P = ParamSpec("P")
R = TypeVar("R")


def reports_errors_with(code: int, *, unavailable: int | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turns a ShipscopeError into its message, hint and exit ``code``; no traceback reaches the user. With
    ``unavailable``, a database or shipscope server that cannot be reached or fails exits with that code instead:
    a pipeline must tell "fix your flags" from "try again"."""

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return command(*args, **kwargs)
            except ShipscopeError as error:
                stderr.print(f"[red]error:[/red] {error.message}", highlight=False)
                if error.hint:
                    stderr.print(f"hint: {error.hint}", highlight=False)
                raise typer.Exit(unavailable if unavailable is not None and _unavailable(error) else code) from None

        return run

    return decorate


def _unavailable(error: ShipscopeError) -> bool:
    if isinstance(error, RemoteError):
        return error.status == 0 or error.status >= 500
    return isinstance(error, StoreError)


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


def held_by_server(settings: Settings) -> tuple[str, str] | None:
    """(the DuckDB file, the URL of the running server that holds it), or None: nobody holds it, or PostgreSQL."""
    path = duckdb_path(settings.db)
    url = running_server(path) if path else None
    return (path, url) if path and url else None


def server_holding(settings: Settings, doing: str) -> ServerClient | None:
    """A client of the server that holds the database (saying so, and what the command ``doing`` through it), or
    None when the command may open the database itself. The caller closes the client."""
    held = held_by_server(settings)
    if held is None:
        return None
    from shipscope.client import ServerClient  # httpx is only needed on this road

    path, url = held
    stderr.print(f"{path} is held by the shipscope server at {url}; {doing}", highlight=False)
    return ServerClient(url, token=settings.api_token)

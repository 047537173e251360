"""The small state file a server leaves beside the DuckDB file it owns, so the CLI can find it.

DuckDB lets one process hold a file. While ``shipscope serve`` holds it, a CLI command reads
``<database>.server.json`` and goes through that server's API instead of opening the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson


def state_path(database: str) -> Path:
    return Path(f"{database}.server.json")


def write_state(database: str, url: str) -> None:
    path = state_path(database)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(orjson.dumps({"pid": os.getpid(), "url": url}))
    temporary.replace(path)


def clear_state(database: str) -> None:
    path = state_path(database)
    try:
        if orjson.loads(path.read_bytes()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, orjson.JSONDecodeError):
        pass


def running_server(database: str) -> str | None:
    """The URL of the live server that owns ``database``, or None (a stale file from a dead server is ignored)."""
    try:
        state = orjson.loads(state_path(database).read_bytes())
        pid, url = int(state["pid"]), str(state["url"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return url

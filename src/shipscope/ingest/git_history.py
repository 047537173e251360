"""A local clone's history as `change` events: what lead time measures when no webhook or API sent the commits.

Read with ``git log`` itself, streamed, one commit at a time. A pull request number is taken from GitHub's merge
and squash messages ("Merge pull request #12 from …", "Subject (#12)") and GitLab's ("See merge request
group/project!12").
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from shipscope.errors import InputError

SOURCE = "git"
_FIELD = "\x1f"
_RECORD = "\x1e"
_FORMAT = _FIELD.join(("%H", "%P", "%an", "%aI", "%cI", "%B")) + _RECORD
_PR_PATTERNS = (
    re.compile(r"^Merge pull request #(\d+) from "),
    re.compile(r"\(#(\d+)\)\s*$", re.MULTILINE),
    re.compile(r"See merge request [\w./-]+!(\d+)"),
)


def pr_number(message: str) -> int | None:
    """The pull or merge request a commit message names, if any."""
    for pattern in _PR_PATTERNS:
        match = pattern.search(message)
        if match:
            return int(match.group(1))
    return None


def _git_log(path: Path, since: datetime | None) -> Iterator[str]:
    command = ["git", "-C", str(path), "log", "--branches", "--tags", "HEAD", f"--format={_FORMAT}", "--no-color"]
    if since is not None:
        command.append(f"--since={since.isoformat()}")
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    except FileNotFoundError:
        raise InputError("git is not installed (it reads the history)") from None
    with process:
        stdout, stderr = process.stdout, process.stderr
        assert stdout is not None and stderr is not None
        pending = ""
        while chunk := stdout.read(65536):
            pending += chunk
            *records, pending = pending.split(_RECORD)
            yield from records
        error = stderr.read().strip()
    if process.returncode != 0:
        raise InputError(f"git log failed in {path}: {error.splitlines()[0] if error else 'unknown error'}")


def change_events(path: Path, repo: str, *, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Canonical `change` events, newest first, for every commit reachable from any branch or tag of the clone at
    ``path`` (a release branch's commits ship too), each with its parents."""
    if not (path / ".git").exists() and not (path / "HEAD").exists():
        raise InputError(f"{path} is not a git clone")
    for record in _git_log(path, since):
        record = record.lstrip("\n")
        if not record:
            continue
        sha, parents, author, authored_at, committed_at, message = record.split(_FIELD, 5)
        event: dict[str, Any] = {
            "type": "change",
            "source": SOURCE,
            "repo": repo,
            "sha": sha,
            "author": author or None,
            "authored_at": authored_at,
            "committed_at": committed_at,
            "message": message.strip()[:4000] or None,
            # With the parents, lead time follows the history: a deploy ships every commit since the previous one.
            "parents": parents.split(),
        }
        number = pr_number(message)
        if number is not None:
            event["pr_number"] = number
        yield {key: value for key, value in event.items() if value is not None}

"""CI job logs → Cache events: GitHub's actions/cache restores and BuildKit layer-cache use.

actions/cache (and the setup-* actions built on its toolkit) logs a restore as::

    Cache Size: ~123 MB (128974848 B)
    Cache restored successfully
    Cache restored from key: Linux-pip-3f2a…

and a miss as ``Cache not found for input keys: <key>, <restore key>, …``. The size line comes before the key;
a size printed after a restore, before the next step starts, is taken as that restore's size too.

``docker buildx build --progress=plain`` numbers each step and reports how it ended on later lines, possibly
interleaved with other steps' output::

    #7 [3/6] RUN pip install -r requirements.txt
    #6 [2/6] COPY requirements.txt .
    #6 CACHED
    #7 0.512 Collecting flask
    #7 DONE 12.3s

Each numbered Dockerfile step (``[n/m]``) is one docker-layer Cache: CACHED is a hit, DONE is a miss with its time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from shipscope.events import Cache

SOURCE = "cache-log"
DEPENDENCY = "dependency"
DOCKER_LAYER = "docker-layer"

# "2024-05-01T10:00:00.1234567Z " as GitHub prefixes each line of a downloaded log.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})\s?")
# Workflow-command markers ("##[group]", "##[warning]", …) and terminal colour codes.
_MARKER = re.compile(r"##\[[a-z-]+\]", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

_RESTORED = re.compile(r"Cache restored from key: (?P<key>.+)")
_NOT_FOUND = re.compile(r"Cache not found for input keys: (?P<keys>.+)")
_SIZE = re.compile(r"Cache Size: ~\s*[\d.,]+ MB \((?P<bytes>\d+) B\)")
# Where one restore's output ends: the next step ("##[group]Run …"), the post-job steps, or a save whose size
# line must not be taken for the restore's.
_RESTORE_BOUNDARY = re.compile(r"Run |Post job cleanup|Cache saved|Cache hit occurred on the primary key")

# A step's first line: "#7 [3/6] RUN …", "#9 [builder 2/5] COPY …", "#12 [linux/arm64 stage-1 3/4] RUN …",
# "#1 [internal] load build definition from Dockerfile". Only Dockerfile steps (with n/m) are layers.
_BUILD_HEADER = re.compile(r"#(?P<number>\d+) \[(?P<label>[^\]]+)\] (?P<title>.+)")
_DOCKERFILE_STEP = re.compile(r"(?:.+ )?\d+/\d+")
# Every build starts by loading its Dockerfile, and numbers its steps afresh.
_BUILD_START = re.compile(r"#\d+ \[internal\] load build definition")
_BUILD_END = re.compile(r"#(?P<number>\d+) (?P<status>CACHED|DONE|ERROR|CANCELED)\b(?: (?P<seconds>\d+(?:\.\d+)?)s)?")


@dataclass
class _Found:
    """A cache use being assembled; a restore's size may still arrive after it."""

    kind: str
    key: str
    hit: bool
    bytes: int | None = None
    seconds: float | None = None


def parse_cache_log(
    lines: Iterable[str],
    *,
    run_id: str | None = None,
    job_id: str | None = None,
    source: str = SOURCE,
) -> list[Cache]:
    """Cache uses found in a job log, in the order each was decided: actions/cache restores (kind "dependency")
    and BuildKit Dockerfile steps (kind "docker-layer"). Lines that are neither are ignored."""
    found: list[_Found] = []
    # actions/cache: a size seen but not yet claimed by a restore, and the restore a later size may still fill.
    pending_bytes: int | None = None
    open_restore: _Found | None = None
    # BuildKit: the instruction of each Dockerfile step still running, by step number.
    build_steps: dict[str, str] = {}

    for raw_line in lines:
        line = _clean(raw_line)
        if not line:
            continue

        if line.startswith("#"):
            use = _build_step_line(line, build_steps)
            if use is not None:
                found.append(use)
            continue

        if match := _SIZE.match(line):
            size = int(match["bytes"])
            if open_restore is not None and open_restore.bytes is None:
                open_restore.bytes = size
                open_restore = None
            else:
                pending_bytes = size
        elif match := _RESTORED.match(line):
            open_restore = _Found(DEPENDENCY, match["key"].strip(), hit=True, bytes=pending_bytes)
            found.append(open_restore)
            pending_bytes = None
        elif match := _NOT_FOUND.match(line):
            first_key = match["keys"].split(", ")[0].strip()
            found.append(_Found(DEPENDENCY, first_key, hit=False))
            pending_bytes = open_restore = None
        elif _RESTORE_BOUNDARY.match(line):
            pending_bytes = open_restore = None

    return [
        Cache(
            source=source,
            run_id=run_id,
            job_id=job_id,
            kind=use.kind,
            key=use.key or None,
            hit=use.hit,
            bytes=use.bytes,
            seconds=use.seconds,
        )
        for use in found
    ]


def _clean(line: str) -> str:
    """A log line without its timestamp, workflow-command markers, colour codes and surrounding whitespace."""
    line = _ANSI.sub("", line).strip()
    if match := _TIMESTAMP.match(line):
        line = line[match.end() :]
    return _MARKER.sub("", line).strip()


def _build_step_line(line: str, running: dict[str, str]) -> _Found | None:
    """Follows one line of BuildKit plain progress; returns the cache use that a step's last line decides."""
    if _BUILD_START.match(line):
        running.clear()  # a new build: numbers of an earlier build's unfinished steps mean nothing now
        return None
    if header := _BUILD_HEADER.match(line):
        number, title = header["number"], header["title"].strip()
        # FROM resolves or pulls a base image: that is no layer of this build, cached or not.
        if _DOCKERFILE_STEP.fullmatch(header["label"]) and not title.upper().startswith("FROM "):
            running[number] = title  # a header repeats when interleaved output returns to its step
        else:
            running.pop(number, None)
        return None
    end = _BUILD_END.match(line)
    if end is None:
        return None
    instruction = running.pop(end["number"], None)
    if instruction is None or end["status"] == "CANCELED":
        return None  # not a Dockerfile layer, or stopped before it could show whether the cache had it
    if end["status"] == "CACHED":
        return _Found(DOCKER_LAYER, instruction, hit=True)
    # DONE or ERROR: the step ran, so the cache missed. A failed step reports no time.
    seconds = float(end["seconds"]) if end["seconds"] else None
    return _Found(DOCKER_LAYER, instruction, hit=False, seconds=seconds)

"""Journal kind → the parser that turns a journaled payload back into events (used by reprocess).

A new source registers its kinds here, next to its module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from shipscope.events import Event
from shipscope.ingest import generic

Parser = Callable[[bytes, Mapping[str, str]], Sequence[Event]]

PARSERS: dict[str, Parser] = {
    generic.KIND: lambda body, headers: generic.decode(body),
}


def decode(kind: str, body: bytes, headers: Mapping[str, str]) -> Sequence[Event]:
    parser = PARSERS.get(kind)
    if parser is None:
        raise ValueError(f"no parser for journal entries of kind {kind!r}")
    return parser(body, headers)

"""Reading a vendor's JSON payload field by field, so that each error names the path of the field that is wrong."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Self

from shipscope.errors import InputError

NUL_REFUSED = "text may not contain NUL characters (\\u0000)"
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
"""``\\u0000`` as JSON's escape for NUL, not as the text ``\\\\u0000`` (an escaped backslash, then ``u0000``)."""


def holds_nul(json_text: bytes) -> bool:
    """Whether a JSON text holds a NUL character. PostgreSQL text cannot, so shipscope refuses it on both backends
    alike, before anything of the payload is stored. (A raw NUL byte is not JSON at all; the parser refuses it.)"""
    return b"\\u0000" in json_text and _NUL_ESCAPE.search(json_text) is not None


def iso_timestamp(value: str, field: str) -> datetime:
    """An ISO 8601 timestamp with a UTC offset ('Z' included); a time without one is refused (DESIGN.md §2)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{field}: expected an ISO 8601 timestamp, got {value!r}") from None
    if parsed.tzinfo is None:
        raise InputError(f"{field}: timestamp {value!r} has no UTC offset")
    return parsed


class Node:
    """A JSON object and its path from the payload root, so each error can name the field that is wrong."""

    __slots__ = ("data", "path")
    parse_time: Callable[[str, str], datetime] = staticmethod(iso_timestamp)

    def __init__(self, data: Mapping[str, Any], path: str = "") -> None:
        self.data = data
        self.path = path

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _missing(self, key: str) -> InputError:
        return InputError(f"{self.where(key)}: required field is missing")

    def _wrong(self, key: str, expected: str) -> InputError:
        return InputError(f"{self.where(key)}: expected {expected}, got {self.data[key]!r}")

    def opt_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self._wrong(key, "a string")
        return value

    def text(self, key: str) -> str:
        value = self.opt_text(key)
        if value is None:
            raise self._missing(key)
        return value

    def opt_integer(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(key, "an integer")
        return value

    def integer(self, key: str) -> int:
        value = self.opt_integer(key)
        if value is None:
            raise self._missing(key)
        return value

    def ident(self, key: str) -> str:
        """An id: vendors send integers or strings, canonical ids are strings."""
        value = self.data.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return self.text(key)

    def opt_seconds(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self._wrong(key, "a non-negative number of seconds")
        return float(value)

    def opt_time(self, key: str) -> datetime | None:
        value = self.data.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self._wrong(key, "a timestamp")
        return self.parse_time(value, self.where(key))

    def time(self, key: str) -> datetime:
        value = self.opt_time(key)
        if value is None:
            raise self._missing(key)
        return value

    def opt_node(self, key: str) -> Self | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self._wrong(key, "an object")
        return type(self)(value, self.where(key))

    def node(self, key: str) -> Self:
        value = self.opt_node(key)
        if value is None:
            raise self._missing(key)
        return value

    def nodes(self, key: str) -> list[Self]:
        """The objects of a list field; an absent or null list is empty."""
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._wrong(key, "a list")
        nodes = []
        for index, item in enumerate(value):
            path = f"{self.where(key)}[{index}]"
            if not isinstance(item, Mapping):
                raise InputError(f"{path}: expected an object, got {item!r}")
            nodes.append(type(self)(item, path))
        return nodes

    def opt_texts(self, key: str) -> list[str] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._wrong(key, "a list of strings")
        return list(value)

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


MAX_INT32 = 2**31 - 1


def iso_timestamp(value: str, field: str) -> datetime:
    """An ISO 8601 timestamp with a UTC offset ('Z' included); a time without one is refused (DESIGN.md §2)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InputError(f"{field}: expected an ISO 8601 timestamp with a UTC offset, got {value!r}")
    return parsed


def described(value: object) -> str:
    """A value as a refusal shows it: a container by its JSON kind, anything else as sent (cut short)."""
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


class Node:
    """A JSON object and its path from the payload root, so each error can name the field that is wrong. The one
    reader of every vendor payload; a source whose timestamps differ overrides ``parse_time``."""

    __slots__ = ("data", "path")
    parse_time: Callable[[str, str], datetime] = staticmethod(iso_timestamp)

    def __init__(self, data: object, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise InputError(f"{path or 'payload'}: expected an object, got {described(data)}")
        self.data: Mapping[str, Any] = data
        self.path = path

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def _missing(self, key: str) -> InputError:
        return InputError(f"{self.where(key)}: required field is missing")

    def _required(self, key: str) -> Any:
        value = self.data.get(key)
        if value is None:
            raise self._missing(key)
        return value

    def _wrong(self, key: str, expected: str) -> InputError:
        return InputError(f"{self.where(key)}: expected {expected}, got {described(self.data.get(key))}")

    def opt_text(self, key: str) -> str | None:
        """A string, or None when it is missing, null or empty (vendors send all three for 'not set')."""
        value = self.data.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self._wrong(key, "a string")
        return value

    def text(self, key: str) -> str:
        value = self._required(key)
        if not isinstance(value, str):
            raise self._wrong(key, "a string")
        if not value:
            raise InputError(f"{self.where(key)}: expected a non-empty string")
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

    def int32(self, key: str, minimum: int = 0) -> int:
        """An integer the store keeps in 32 bits (numbers, attempts, counts), from ``minimum`` up."""
        value = self.integer(key)
        if not minimum <= value <= MAX_INT32:
            raise InputError(f"{self.where(key)}: expected an integer from {minimum} to {MAX_INT32}, got {value}")
        return value

    def opt_int32(self, key: str, minimum: int = 0) -> int | None:
        return self.int32(key, minimum) if self.has(key) else None

    def ident(self, key: str) -> str:
        """An id: vendors send numbers or strings, canonical ids are strings."""
        value = self._required(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and value:
            return value
        raise self._wrong(key, "a numeric or string id")

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
        return self.node(key) if self.has(key) else None

    def node(self, key: str) -> Self:
        return type(self)(self._required(key), self.where(key))

    def nodes(self, key: str) -> list[Self]:
        """The objects of an array field; an absent or null array is empty."""
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._wrong(key, "an array")
        return [type(self)(item, f"{self.where(key)}[{index}]") for index, item in enumerate(value)]

    def opt_texts(self, key: str) -> list[str] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._wrong(key, "an array of strings")
        return list(value)

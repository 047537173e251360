"""The one error hierarchy. Every error a person can act on is a ShipscopeError.

ShipscopeError
├── ConfigError        a setting or the config file is wrong
├── StoreError         the database cannot be reached or is in the wrong state
│   └── DatabaseBusy   a running server owns the DuckDB file
├── InputError         a payload, file or parameter is malformed (HTTP 400)
│   └── TooLarge       a body exceeds the configured limit (HTTP 413)
├── NotFound           what a URL names does not exist (HTTP 404)
├── AuthError          missing or unknown credentials (HTTP 401)
│   └── Forbidden      valid credentials without the needed scope (HTTP 403)
└── RemoteError        a shipscope server answered with an error

The web layer renders each as ``{"ok": false, "status": N, "error": message}``; the CLI prints the message and
its hint and exits non-zero.
"""

from __future__ import annotations


class ShipscopeError(Exception):
    status = 500
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint


class ConfigError(ShipscopeError):
    status = 500


class StoreError(ShipscopeError):
    status = 503


class DatabaseBusy(StoreError):
    def __init__(self, message: str, *, url: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.url = url


class InputError(ShipscopeError):
    status = 400


class TooLarge(InputError):
    status = 413


class UnsupportedMediaType(InputError):
    status = 415


class Refused(InputError):
    """Well-formed, but a rule forbids it now (a postmortem closed without a prevent-recurrence item)."""

    status = 422


class NotFound(ShipscopeError):
    status = 404


class AuthError(ShipscopeError):
    status = 401


class Forbidden(AuthError):
    status = 403


class RemoteError(ShipscopeError):
    def __init__(self, message: str, *, status: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status

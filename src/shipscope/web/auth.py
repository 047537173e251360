"""API tokens with scopes (ingest, read, admin), from SHIPSCOPE_API_TOKENS."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from shipscope.errors import AuthError, ConfigError, Forbidden

SCOPES = ("ingest", "read", "admin")


@dataclass(frozen=True)
class Token:
    secret: str
    scopes: frozenset[str]


def parse_tokens(spec: str) -> list[Token]:
    """``TOKEN:SCOPE[,SCOPE] …``, entries separated by whitespace; admin implies every scope."""
    tokens = []
    for entry in spec.split():
        secret, _, scopes = entry.partition(":")
        names = frozenset(scope for scope in scopes.split(",") if scope)
        unknown = names - set(SCOPES)
        if not secret or not names or unknown:
            raise ConfigError(
                "SHIPSCOPE_API_TOKENS entries are TOKEN:SCOPE[,SCOPE] with scopes "
                f"{', '.join(SCOPES)}" + (f"; unknown scope {', '.join(sorted(unknown))}" if unknown else "")
            )
        tokens.append(Token(secret, frozenset(SCOPES) if "admin" in names else names))
    return tokens


def authorize(tokens: list[Token], authorization: str | None, scope: str) -> None:
    """Raises AuthError (401) or Forbidden (403) unless the header carries a token with ``scope``."""
    if authorization is None:
        raise AuthError("missing Authorization header: send `Authorization: Bearer <token>`")
    kind, _, presented = authorization.partition(" ")
    if kind.lower() != "bearer" or not presented.strip():
        raise AuthError("the Authorization header must be `Bearer <token>`")
    presented = presented.strip()
    # Compare against every token so the time taken does not tell which prefix matched.
    matches = [token for token in tokens if hmac.compare_digest(token.secret.encode(), presented.encode())]
    if not matches:
        raise AuthError("unknown API token")
    if scope not in matches[0].scopes:
        raise Forbidden(f"this token lacks the {scope!r} scope")

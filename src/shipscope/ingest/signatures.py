"""Webhook signatures: the hex HMAC-SHA256 of the body, compared in constant time with each secret configured
(several while one is rotated)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence


def hmac_sha256_matches(body: bytes, presented: Iterable[str], secrets: Sequence[str]) -> bool:
    """Whether any presented hex digest is the body's HMAC-SHA256 under any of the secrets."""
    offered = [value.strip().lower() for value in presented]
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        for signature in offered:
            matched |= hmac.compare_digest(expected, signature)
    return matched

"""How the dashboard writes numbers, durations and moments: one place, so every page reads the same."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from markupsafe import Markup, escape


def duration(seconds: float | None) -> str:
    """``42s``, ``7m 05s``, ``3h 20m``, ``2d 4h``; an em dash for no value."""
    if seconds is None:
        return "—"
    total = round(seconds)
    if total < 60:
        return f"{seconds:.0f}s" if seconds >= 1 or seconds == 0 else f"{seconds:.1f}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def percent(fraction: float | None, digits: int = 1) -> str:
    if fraction is None:
        return "—"
    return f"{fraction * 100:.{digits}f}%"


def number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def moment(value: datetime | str | None) -> str:
    """``2026-11-26 20:47 UTC``."""
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def short_sha(sha: str | None) -> str:
    return (sha or "")[:10]


def safe_url(url: str | None) -> str | None:
    """``url`` when it is an http(s) address, else None: a stored URL must never become a ``javascript:`` link."""
    if not url:
        return None
    return url if urlsplit(url.strip()).scheme.lower() in ("http", "https") else None


def path_segment(value: str) -> str:
    """``value`` quoted as one URL path segment (ids may hold ``/``)."""
    return quote(value, safe="")


def code_spans(text: str) -> Markup:
    """Escapes ``text`` and shows its `backticked` parts as code."""
    parts = str(escape(text)).split("`")
    return Markup("".join(f"<code>{part}</code>" if index % 2 else part for index, part in enumerate(parts)))


FILTERS = {
    "duration": duration,
    "percent": percent,
    "number": number,
    "moment": moment,
    "short_sha": short_sha,
    "safe_url": safe_url,
    "segment": path_segment,
    "code_spans": code_spans,
}
"""The Jinja filters of the dashboard's templates."""

"""What every metric shares: the window, the filters, the configuration, and the shapes of numbers.

Every metric is a function of the store with an explicit window ``[since, until)`` and filters, returning a typed
result with ``to_json()``. Percentiles are exact (``percentile_cont``, linear interpolation, in SQL on both
backends); every ratio carries its numerator and denominator; a number with no data is None with the reason, never 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from fnmatch import fnmatchcase
from typing import Any

import sqlalchemy as sa

from shipscope.errors import ConfigError, InputError

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
"""Bounds of a window: the Unix epoch, and a year far enough out that week and month arithmetic cannot overflow."""
_RELATIVE = re.compile(r"^(?P<count>\d+)(?P<unit>[hdw])$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


@dataclass(frozen=True)
class Window:
    """The half-open interval ``[since, until)`` a metric covers, in UTC."""

    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise InputError("a window's bounds need a UTC offset")
        if self.since >= self.until:
            raise InputError(f"the window is empty: since {self.since.isoformat()} is not before until")
        if self.since < EARLIEST or self.until > LATEST:
            raise InputError(
                f"the window must lie between {EARLIEST.date().isoformat()} and {LATEST.date().isoformat()}"
            )

    @classmethod
    def parse(
        cls, since: str | None, until: str | None, *, now: datetime | None = None, default: str = "30d"
    ) -> Window:
        """``since``: ``30d``/``12h``/``8w`` back from ``until``, a date, or an RFC 3339 time; ``until``: a date or
        an RFC 3339 time, default now. A date means its midnight UTC."""
        end = _moment(until, "until") if until else (now or datetime.now(UTC))
        text = since or default
        relative = _RELATIVE.match(text)
        if relative:
            try:
                start = end - int(relative["count"]) * _UNITS[relative["unit"]]
            except OverflowError:
                raise InputError(f"since: {text} reaches back before {EARLIEST.date().isoformat()}") from None
        else:
            start = _moment(text, "since")
        return cls(start.astimezone(UTC), end.astimezone(UTC))

    def to_json(self) -> dict[str, str]:
        return {"since": _iso(self.since), "until": _iso(self.until)}


def _moment(text: str, name: str) -> datetime:
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"{name}: expected a duration like 30d, a date (YYYY-MM-DD) or an RFC 3339 time, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        raise InputError(f"{name}: an RFC 3339 time needs a UTC offset, got {text!r}")
    return moment


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def iso_utc(moment: datetime | None) -> str | None:
    """A moment as RFC 3339 in UTC with ``Z``, as every answer writes it; None stays None."""
    return None if moment is None else _iso(moment)


def as_aware(moment: datetime | None) -> datetime | None:
    """A stored moment as an aware datetime: DuckDB hands back naive UTC ones."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Filters:
    repo: str | None = None
    service: str | None = None
    environment: str | None = None
    team: str | None = None

    def to_json(self) -> dict[str, str]:
        return {name: value for name, value in self.__dict__.items() if value is not None}


@dataclass(frozen=True)
class MetricsConfig:
    """Choices behind the numbers; ``shipscope.toml`` ``[metrics]`` overrides them."""

    production_environments: tuple[str, ...] = ("prod*",)
    """Glob patterns (case-insensitive) naming production environments."""
    teams: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Team → the repositories and services it owns (for the ``team`` filter)."""
    platform_team: Sequence[str] = ()
    """Logins of the platform team (self-service rate)."""
    infra_failure_patterns: tuple[str, ...] = (
        "runner_system_failure",
        "stuck_or_timeout_failure",
        "scheduler_failure",
        "api_failure",
        "runner_unsupported",
        "runner lost",
        "lost communication",
        "shutdown signal",
        "system failure",
        "data_integrity_failure",
    )
    """Substrings (case-insensitive) of a failed job's failure reason that mean the infrastructure failed."""
    test_failure_patterns: tuple[str, ...] = ("test", "spec", "pytest", "jest")
    build_failure_patterns: tuple[str, ...] = ("build", "compile", "install", "docker")
    security_failure_patterns: tuple[str, ...] = ("scan", "trivy", "codeql", "semgrep", "security", "audit")
    hotfix_patterns: tuple[str, ...] = ("hotfix",)
    """Branch or label substrings that mark a hotfix."""
    slow_suite_seconds: float = 300.0
    flaky_quarantine_days: int = 14

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> MetricsConfig:
        """From the ``[metrics]`` table of shipscope.toml; unknown keys and wrong types are errors."""
        known = {name: spec for name, spec in cls.__dataclass_fields__.items()}
        values: dict[str, Any] = {}
        for name, value in table.items():
            if name not in known:
                raise ConfigError(f"[metrics] {name}: unknown setting; known: {', '.join(sorted(known))}")
            default = getattr(cls(), name)
            if isinstance(default, tuple):
                if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                    raise ConfigError(f"[metrics] {name}: expected a list of strings")
                value = tuple(value)
            elif isinstance(default, Mapping):
                if not isinstance(value, dict):
                    raise ConfigError(f"[metrics] {name}: expected a table")
            elif isinstance(default, int | float) and not isinstance(value, int | float):
                raise ConfigError(f"[metrics] {name}: expected a number")
            values[name] = value
        return cls(**values)


NO_FILTERS = Filters()
DEFAULT_CONFIG = MetricsConfig()
"""Defaults for the metric functions' arguments (a call in a default argument would be evaluated once anyway)."""


def monday(moment: datetime) -> date:
    """The Monday (UTC) of ``moment``'s ISO week."""
    day = moment.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())


def matches_any(value: str, patterns: Iterable[str]) -> bool:
    """Whether ``value`` matches one of the glob ``patterns``, case-insensitively (environment names, …)."""
    lowered = value.lower()
    return any(fnmatchcase(lowered, pattern.lower()) for pattern in patterns)


def teams_members(config: MetricsConfig, team: str | None) -> Sequence[str] | None:
    """The repositories and services of ``team``, or None for no team filter; an unknown team is an error."""
    if team is None:
        return None
    if team not in config.teams:
        known = ", ".join(sorted(config.teams)) or "none configured"
        raise InputError(f"unknown team {team!r} (teams: {known})")
    return config.teams[team]


@dataclass(frozen=True)
class Percentiles:
    p50: float | None
    p95: float | None
    samples: int

    @classmethod
    def of(cls, p50: Any, p95: Any, samples: Any) -> Percentiles:
        count = int(samples or 0)
        return cls(None if count == 0 else float(p50), None if count == 0 else float(p95), count)

    def to_json(self) -> dict[str, Any]:
        shape: dict[str, Any] = {"p50": self.p50, "p95": self.p95, "samples": self.samples}
        if self.samples == 0:
            shape["no_data"] = "no samples in the window"
        return shape


@dataclass(frozen=True)
class Ratio:
    numerator: int
    denominator: int

    @property
    def rate(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None

    def to_json(self, numerator: str, denominator: str) -> dict[str, Any]:
        shape: dict[str, Any] = {numerator: self.numerator, denominator: self.denominator, "rate": self.rate}
        if not self.denominator:
            shape["no_data"] = f"no {denominator} in the window"
        return shape


def percentile_columns(value: sa.ColumnElement[Any], prefix: str = "") -> list[sa.ColumnElement[Any]]:
    """p50, p95 and the sample count of ``value`` as exact percentiles (``percentile_cont``), labeled."""
    return [
        sa.func.percentile_cont(0.5).within_group(value).label(f"{prefix}p50"),
        sa.func.percentile_cont(0.95).within_group(value).label(f"{prefix}p95"),
        sa.func.count(value).label(f"{prefix}samples"),
    ]


def seconds_between(start: sa.ColumnElement[Any], end: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """``end − start`` in seconds, the same SQL on DuckDB and PostgreSQL."""
    return sa.extract("epoch", end - start)


def in_window(column: sa.ColumnElement[Any], window: Window) -> sa.ColumnElement[bool]:
    return sa.and_(column >= window.since, column < window.until)


def job_belongs_to(jobs: sa.FromClause, runs: sa.FromClause) -> sa.ColumnElement[bool]:
    """The job is one of this run attempt's: the attempt it names, clamped to the latest stored, or the latest when
    it names none. ``runs`` holds each attempt's source, id, attempt and its run's ``latest`` attempt."""
    return sa.and_(
        jobs.c.source == runs.c.source,
        jobs.c.run_id == runs.c.id,
        runs.c.attempt == sa.func.least(sa.func.coalesce(jobs.c.attempt, runs.c.latest), runs.c.latest),
    )

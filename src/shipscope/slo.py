"""Service level objectives: the spec file, and the multi-window multi-burn-rate pairs that page and open tickets.

An SLO spec is YAML, one SLO or a list of them (also under ``slos:``)::

    slos:
      - name: checkout-availability
        service: checkout
        objective: 99.9          # percent (or 0.999)
        window: 30d              # the SLO window; the error budget is (1 − objective) of it
        good: http_requests_total{job="checkout", code!~"5.."}
        total: http_requests_total{job="checkout"}
        labels: {team: payments}

``good`` (or ``bad``) and ``total`` are counter selectors, read as ``sum(rate(SELECTOR[W]))``, or whole PromQL
expressions with ``{{window}}`` (Sloth's ``{{.window}}`` too) where the range goes.

The burn rate over a window is the error ratio over it ÷ (1 − objective): 1 spends exactly the budget in the SLO
window. The pairs are the Google SRE workbook's (chapter 5, "Alerting on SLOs"), for a 30-day window: a long window
that makes an alert significant and a short one (1/12 of it) that lets it stop soon after the burn does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shipscope.errors import InputError
from shipscope.yamlfiles import load_yaml_file

Severity = Literal["page", "ticket"]


@dataclass(frozen=True)
class BurnRatePair:
    long: str
    short: str
    factor: float
    severity: Severity


BURN_RATE_PAIRS: tuple[BurnRatePair, ...] = (
    BurnRatePair("1h", "5m", 14.4, "page"),  # 2% of the budget in an hour
    BurnRatePair("6h", "30m", 6.0, "page"),  # 5% in six hours
    BurnRatePair("1d", "2h", 3.0, "ticket"),  # 10% in a day
    BurnRatePair("3d", "6h", 1.0, "ticket"),  # 10% in three days
)
BURN_WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
"""Every window a pair reads, shortest first."""

_DURATION = re.compile(r"^[1-9][0-9]*(ms|s|m|h|d|w|y)$")
_WINDOW_PLACEHOLDER = re.compile(r"\{\{\s*\.?window\s*\}\}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Slo:
    name: str
    service: str
    objective: float
    """A fraction: 0.999 for 99.9%."""
    window: str
    """A Prometheus duration, e.g. 30d."""
    total: str
    good: str | None = None
    bad: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def budget(self) -> float:
        """The error ratio the objective allows."""
        return 1.0 - self.objective

    def error_ratio(self, window: str) -> str:
        """PromQL for the share of bad events over ``window``."""
        total = _rate(self.total, window)
        if self.bad is not None:
            return f"({_rate(self.bad, window)}) / ({total})"
        assert self.good is not None
        return f"1 - ({_rate(self.good, window)}) / ({total})"


def _rate(query: str, window: str) -> str:
    if _WINDOW_PLACEHOLDER.search(query):
        return _WINDOW_PLACEHOLDER.sub(window, query)
    return f"sum(rate({query}[{window}]))"


def _objective(value: Any, where: str) -> float:
    text = value.strip().removesuffix("%") if isinstance(value, str) else value
    try:
        number = float(text)
    except (TypeError, ValueError):
        raise InputError(f"{where}objective: expected a percentage such as 99.9 or a fraction such as 0.999") from None
    fraction = number / 100 if number > 1 else number
    if not 0 < fraction < 1:
        raise InputError(f"{where}objective: {value!r} is not between 0 and 100%")
    return fraction


def _text(spec: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = spec.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}{key}: expected text")
    return value.strip()


def parse_slo(spec: Any, where: str = "") -> Slo:
    if not isinstance(spec, Mapping):
        raise InputError(f"{where}expected a mapping with name, objective, window, good (or bad) and total")
    known = {"name", "service", "objective", "window", "good", "bad", "total", "labels", "description"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise InputError(f"{where}unknown key(s) {', '.join(map(str, unknown))}; known: {', '.join(sorted(known))}")
    name = _text(spec, "name", where)
    if not _NAME.match(name):
        raise InputError(f"{where}name: {name!r} may hold letters, digits, '.', '_', ':' and '-'")
    window = _text(spec, "window", where, "30d")
    if not _DURATION.match(window):
        raise InputError(f"{where}window: expected a Prometheus duration such as 30d, got {window!r}")
    if ("good" in spec) == ("bad" in spec):
        raise InputError(f"{where}give exactly one of good and bad")
    labels = spec.get("labels") or {}
    if not isinstance(labels, Mapping) or not all(_LABEL.match(str(key)) for key in labels):
        raise InputError(f"{where}labels: expected a mapping of label names to values")
    return Slo(
        name=name,
        service=_text(spec, "service", where, name),
        objective=_objective(spec.get("objective"), where),
        window=window,
        total=_text(spec, "total", where),
        good=_text(spec, "good", where) if "good" in spec else None,
        bad=_text(spec, "bad", where) if "bad" in spec else None,
        labels={str(key): str(value) for key, value in labels.items()},
    )


def load_slos(path: Path) -> list[Slo]:
    """The SLOs of a spec file; errors name the file, the SLO's position and the key."""
    document = load_yaml_file(path)
    items: Sequence[Any]
    if isinstance(document, Mapping) and "slos" in document:
        items = document["slos"] or []
    elif isinstance(document, list):
        items = document
    else:
        items = [document]
    if not isinstance(items, list) or not items:
        raise InputError(f"{path}: expected one SLO, a list of them, or slos: [...]")
    slos = [parse_slo(item, f"{path}: SLO {number}: ") for number, item in enumerate(items, start=1)]
    names = [slo.name for slo in slos]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise InputError(f"{path}: SLO names must differ: {', '.join(duplicated)}")
    return slos

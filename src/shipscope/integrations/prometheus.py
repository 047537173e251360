"""Prometheus' HTTP API: an instant query (``GET /api/v1/query``), its vector or scalar as numbers.

https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from shipscope.errors import InputError, ShipscopeError


class PrometheusUnavailable(ShipscopeError):
    """Prometheus could not be reached, or answered with a server error: the answer is unknown, not negative."""

    status = 503


@dataclass(frozen=True)
class Sample:
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


def query(
    base_url: str,
    promql: str,
    *,
    timeout: float = 10.0,
    headers: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> list[Sample]:
    """The samples of an instant query: one per series of a vector, one for a scalar."""
    return instant_query(base_url, promql, timeout=timeout, headers=headers, transport=transport)[1]


def instant_query(
    base_url: str,
    promql: str,
    *,
    timeout: float = 10.0,
    headers: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> tuple[str, list[Sample]]:
    """The result type (``vector`` or ``scalar``) and samples of an instant query. A query Prometheus refuses is an
    InputError with its message; an unreachable or failing Prometheus is PrometheusUnavailable."""
    url = base_url.rstrip("/") + "/api/v1/query"
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            response = client.get(url, params={"query": promql}, headers=dict(headers or {}))
    except httpx.TimeoutException:
        raise PrometheusUnavailable(f"Prometheus at {base_url} did not answer within {timeout:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise PrometheusUnavailable(f"Prometheus at {base_url} cannot be reached: {error}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code in (400, 422) and isinstance(answer, dict):
        raise InputError(f"Prometheus refused the query {promql!r}: {answer.get('error', response.text[:200])}")
    if response.status_code != 200 or not isinstance(answer, dict) or answer.get("status") != "success":
        raise PrometheusUnavailable(f"Prometheus at {base_url} answered {response.status_code}: {response.text[:200]}")
    data = answer.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        return kind, [Sample(_number(result[1]))]
    if kind == "vector" and isinstance(result, list):
        return kind, [Sample(_number(item["value"][1]), dict(item.get("metric") or {})) for item in result]
    raise InputError(f"the query {promql!r} gives a {kind}; expected an instant vector or a scalar")


def _number(text: object) -> float:
    try:
        return float(str(text))
    except ValueError:
        return math.nan

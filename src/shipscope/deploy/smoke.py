"""Smoke checks after a deploy: HTTP requests with expectations, time-boxed as a whole, read from a YAML file.

```yaml
timeout: 5m                       # the whole run's time box (--timeout overrides)
defaults:                         # any check setting, for every check
  headers: {Authorization: "Bearer ${SMOKE_TOKEN}"}
checks:
  - name: health
    url: ${BASE_URL}/healthz
  - name: checkout
    method: POST
    url: ${BASE_URL}/api/cart
    json: {sku: "smoke-1"}        # or body: "raw text"
    expect:
      status: [200, 201]          # default: any 2xx
      body_contains: created      # a string or a list of them
      json: {"$.cart.items[0].sku": smoke-1}
      max_latency: 800ms
    retries: 3                    # default 2: a check still failing after them fails
    retry_delay: 2s               # default 1s
    timeout: 10s                  # per request (default 10s), never past the time box
rollback: {strategy: helm, release: checkout, namespace: shop}   # what --on-fail rollback runs
```

``${NAME}`` takes the environment variable NAME (the synthetic test tenant's credentials); a missing one is an error
before any request is sent. What is printed is the file's text (``${SMOKE_TOKEN}``), never a variable's value, and
every value taken from the environment is masked in what a failure quotes of an answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from shipscope.deploy.analysis import parse_duration
from shipscope.deploy.rollback import RollbackOptions
from shipscope.errors import InputError
from shipscope.integrations.http import masked
from shipscope.yamlfiles import load_yaml_file

DEFAULT_TIME_BOX = 300.0
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PATH_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[['\"]([^'\"]+)['\"]\]")
_CHECK_KEYS = {"name", "method", "url", "headers", "json", "body", "expect", "retries", "retry_delay", "timeout"}
_EXPECT_KEYS = {"status", "body_contains", "json", "max_latency"}
_QUOTED = 200


@dataclass(frozen=True)
class Check:
    name: str
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    body: str | None = None
    statuses: tuple[int, ...] = ()
    """Expected statuses; empty means any 2xx."""
    contains: tuple[str, ...] = ()
    json_values: tuple[tuple[str, Any], ...] = ()
    max_latency: float | None = None
    retries: int = 2
    retry_delay: float = 1.0
    timeout: float = 10.0


@dataclass(frozen=True)
class SmokePlan:
    checks: tuple[Check, ...]
    time_box: float = DEFAULT_TIME_BOX
    rollback: RollbackOptions | None = None

    def variables(self) -> list[str]:
        texts: list[str] = []
        for check in self.checks:
            texts += [check.url, *check.headers.values(), check.body or "", orjson.dumps(check.json).decode()]
        return sorted({name for text in texts for name in _VARIABLE.findall(text)})


@dataclass(frozen=True)
class CheckResult:
    name: str
    method: str
    url: str
    """As the file writes it: variables unexpanded."""
    ok: bool
    attempts: int
    status: int | None = None
    latency_ms: float | None = None
    problem: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "method": self.method,
            "url": self.url,
            "ok": self.ok,
            "attempts": self.attempts,
            "status": self.status,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "problem": self.problem,
        }


@dataclass(frozen=True)
class SmokeResult:
    checks: tuple[CheckResult, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def summary(self) -> str:
        failed = [check for check in self.checks if not check.ok]
        if not failed:
            return f"{len(self.checks)} of {len(self.checks)} checks passed in {self.seconds:.1f} s"
        first = failed[0]
        return f"{len(failed)} of {len(self.checks)} checks failed; {first.name}: {first.problem}"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "summary": self.summary,
            "checks": [check.to_json() for check in self.checks],
        }


# ----- the file -----------------------------------------------------------------------------------------------------


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: expected a mapping")
    return value


def _strings(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in items):
        raise InputError(f"{where}: expected a string or a list of strings")
    return tuple(items)


def _statuses(value: object, where: str) -> tuple[int, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599 for item in items):
        raise InputError(f"{where}: expected an HTTP status or a list of them")
    return tuple(items)


def _count(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
        raise InputError(f"{where}: expected a whole number from 0 to 100")
    return value


def json_path_steps(path: str, where: str) -> list[str | int]:
    """``$.a.b[0]['c d']`` as its steps; the subset of JSONPath that names one value."""
    if not path.startswith("$"):
        raise InputError(f"{where}: {path!r} is not a JSON path (it starts with $)")
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        step = _PATH_STEP.match(path, position)
        if step is None:
            raise InputError(f"{where}: {path!r} cannot be read at {path[position:]!r}")
        name, index, quoted = step.groups()
        steps.append(int(index) if index is not None else (name if name is not None else quoted))
        position = step.end()
    return steps


def _check(raw: object, defaults: Mapping[str, Any], number: int) -> Check:
    where = f"checks[{number}]"
    values = {**defaults, **_mapping(raw, where)}
    if isinstance(raw, Mapping) and "headers" in defaults and "headers" in raw:
        values["headers"] = {**_mapping(defaults["headers"], "defaults.headers"), **_mapping(raw["headers"], where)}
    unknown = sorted(set(values) - _CHECK_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown settings {', '.join(map(str, unknown))}")
    name = str(values.get("name") or f"check {number + 1}")
    where = f"checks[{number}] ({name})"
    url = values.get("url")
    if not isinstance(url, str) or not url.strip():
        raise InputError(f"{where}: a url is needed")
    if not re.match(r"(https?://|\$\{)", url):
        raise InputError(f"{where}: {url!r} is not an http(s) URL")
    if "json" in values and "body" in values:
        raise InputError(f"{where}: give json or body, not both")
    if "body" in values and not isinstance(values["body"], str):
        raise InputError(f"{where}.body: expected text (use json for a structured body)")
    headers = {str(key): str(value) for key, value in _mapping(values.get("headers"), f"{where}.headers").items()}
    expect = _mapping(values.get("expect"), f"{where}.expect")
    unknown = sorted(set(expect) - _EXPECT_KEYS)
    if unknown:
        raise InputError(f"{where}.expect: unknown settings {', '.join(map(str, unknown))}")
    json_values = tuple(
        (str(path), expected) for path, expected in _mapping(expect.get("json"), f"{where}.expect.json").items()
    )
    for path, _ in json_values:
        json_path_steps(path, f"{where}.expect.json")
    return Check(
        name=name,
        method=str(values.get("method", "GET")).upper(),
        url=url.strip(),
        headers=headers,
        json=values.get("json"),
        body=values.get("body"),
        statuses=_statuses(expect.get("status"), f"{where}.expect.status"),
        contains=_strings(expect.get("body_contains"), f"{where}.expect.body_contains"),
        json_values=json_values,
        max_latency=(
            parse_duration(expect["max_latency"], f"{where}.expect.max_latency") if "max_latency" in expect else None
        ),
        retries=_count(values.get("retries", 2), f"{where}.retries"),
        retry_delay=parse_duration(values.get("retry_delay", "1s"), f"{where}.retry_delay"),
        timeout=parse_duration(values.get("timeout", "10s"), f"{where}.timeout"),
    )


def load_plan(path: Path, *, time_box: float | None = None) -> SmokePlan:
    top = _mapping(load_yaml_file(path), str(path))
    unknown = sorted(set(top) - {"timeout", "defaults", "checks", "rollback"})
    if unknown:
        raise InputError(f"{path}: unknown settings {', '.join(map(str, unknown))}")
    raw_checks = top.get("checks")
    if not isinstance(raw_checks, list) or not raw_checks:
        raise InputError(f"{path}: checks must be a non-empty list")
    defaults = _mapping(top.get("defaults"), "defaults")
    checks = tuple(_check(raw, defaults, number) for number, raw in enumerate(raw_checks))
    names = [check.name for check in checks]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"{path}: check names must differ ({', '.join(repeated)} repeats)")
    rollback = (
        RollbackOptions.from_mapping(_mapping(top["rollback"], "rollback"), "rollback") if "rollback" in top else None
    )
    box = time_box if time_box is not None else parse_duration(top.get("timeout", DEFAULT_TIME_BOX), "timeout")
    if box <= 0:
        raise InputError("the time box must be longer than 0 s")
    return SmokePlan(checks=checks, time_box=box, rollback=rollback)


# ----- running ------------------------------------------------------------------------------------------------------


def _expand(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _VARIABLE.sub(lambda found: environ[found.group(1)], value)
    if isinstance(value, list):
        return [_expand(item, environ) for item in value]
    if isinstance(value, Mapping):
        return {key: _expand(item, environ) for key, item in value.items()}
    return value


def _located(document: Any, steps: Sequence[str | int]) -> tuple[bool, Any]:
    for step in steps:
        if isinstance(step, int) and isinstance(document, list) and step < len(document):
            document = document[step]
        elif isinstance(step, str) and isinstance(document, Mapping) and step in document:
            document = document[step]
        else:
            return False, None
    return True, document


def _problem(check: Check, response: httpx.Response, latency: float) -> str:
    """Why an answer does not meet the check's expectations, or ''."""
    allowed = check.statuses or tuple(range(200, 300))
    if response.status_code not in allowed:
        wanted = ", ".join(map(str, check.statuses)) if check.statuses else "2xx"
        return f"status {response.status_code}, expected {wanted}"
    text = response.text
    missing = [wanted for wanted in check.contains if wanted not in text]
    if missing:
        return f"the body does not contain {missing[0]!r}"
    if check.json_values:
        try:
            document = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return "the body is not JSON"
        for path, expected in check.json_values:
            found, value = _located(document, json_path_steps(path, check.name))
            if not found:
                return f"{path} is not in the body"
            if value != expected:
                return f"{path} is {orjson.dumps(value).decode()}, expected {orjson.dumps(expected).decode()}"
    if check.max_latency is not None and latency > check.max_latency:
        return f"took {latency * 1000:.0f} ms, over the {check.max_latency * 1000:.0f} ms budget"
    return ""


def run_smoke(
    plan: SmokePlan,
    environ: Mapping[str, str],
    *,
    client: httpx.Client | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SmokeResult:
    """Runs the checks in order, each retried until it passes or its retries are spent, all within the time box."""
    missing = [name for name in plan.variables() if name not in environ]
    if missing:
        raise InputError(f"the smoke checks use {', '.join('$' + name for name in missing)}, which is not set")
    secrets = [environ[name] for name in plan.variables()]
    started = clock()
    deadline = started + plan.time_box
    results: list[CheckResult] = []
    owned = client is None
    http = client or httpx.Client(follow_redirects=False)
    try:
        for check in plan.checks:
            results.append(_run_check(check, environ, secrets, http, clock, sleep, deadline, plan.time_box))
    finally:
        if owned:
            http.close()
    return SmokeResult(tuple(results), clock() - started)


def _run_check(
    check: Check,
    environ: Mapping[str, str],
    secrets: Sequence[str],
    http: httpx.Client,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    deadline: float,
    time_box: float,
) -> CheckResult:
    url, headers = _expand(check.url, environ), _expand(dict(check.headers), environ)
    body = _expand(check.json, environ) if check.json is not None else None
    content = _expand(check.body, environ) if check.body is not None else None
    out_of_time = f"the {time_box:g} s time box ran out"
    problem, status, latency_ms, attempts = out_of_time, None, None, 0
    for attempt in range(check.retries + 1):
        left = deadline - clock()
        if left <= 0:
            problem = out_of_time if attempts == 0 else f"{problem}; then {out_of_time}"
            break
        if attempt:
            sleep(min(check.retry_delay, left))
            left = deadline - clock()
            if left <= 0:
                problem = f"{problem}; then {out_of_time}"
                break
        attempts += 1
        begun = clock()
        try:
            response = http.request(
                check.method, url, headers=headers, json=body, content=content, timeout=min(check.timeout, left)
            )
        except httpx.TimeoutException:
            status, latency_ms = None, None
            problem = f"no answer within {min(check.timeout, left):g} s"
            continue
        except httpx.HTTPError as error:
            status, latency_ms = None, None
            problem = f"could not connect: {error}"
            continue
        latency = clock() - begun
        status, latency_ms = response.status_code, latency * 1000
        problem = _problem(check, response, latency)
        if not problem:
            return CheckResult(check.name, check.method, check.url, True, attempts, status, latency_ms)
        if response.status_code >= 400 and response.text:
            problem += f" ({response.text[:_QUOTED].strip()})"
    # What the service answered may echo a credential back: nothing taken from the environment is shown.
    problem = masked(problem, secrets)
    return CheckResult(check.name, check.method, check.url, False, attempts, status, latency_ms, problem)

"""Deterministic demo dataset: a fictional company's delivery history as canonical events.

``generate`` streams JSON-ready dicts that ``shipscope.events.parse_event`` accepts, so the dashboard, the
metrics and the alerts have something realistic to show before a real source is wired up. The data is shaped
on purpose: services span the DORA tiers (``DORA_TIERS``) and each default alert threshold of DESIGN.md §3 is
crossed somewhere (``THRESHOLD_CROSSINGS`` says where).

Everything is drawn from one ``random.Random(seed)`` in a fixed order; the wall clock is read only for the
default ``until``. The simulation runs repository by repository and yields a pipeline run's events as soon as
the run is decided, so only small per-repository summaries (commits, pull requests, deploys) stay in memory.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import random
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

__all__ = [
    "DORA_TIERS",
    "PRODUCTION_ENVIRONMENTS",
    "REPOS",
    "SERVICES",
    "TEAMS",
    "TEAM_MEMBERS",
    "THRESHOLD_CROSSINGS",
    "generate",
]

SOURCE = "demo"
MINUTE = 60
HOUR = 3_600
DAY = 86_400

Event = dict[str, Any]
Events = Generator[Event, None, None]

REPOS: tuple[str, ...] = (
    "acme/payments",
    "acme/storefront",
    "acme/platform",
    "acme/mobile-api",
    "acme/data-pipeline",
    "acme/identity",
)

SERVICES: dict[str, str] = {
    "payments-api": "acme/payments",
    "ledger": "acme/payments",
    "billing-worker": "acme/payments",
    "storefront-web": "acme/storefront",
    "catalog": "acme/storefront",
    "search": "acme/storefront",
    "api-gateway": "acme/platform",
    "notification-service": "acme/platform",
    "feature-flags": "acme/platform",
    "mobile-bff": "acme/mobile-api",
    "push-gateway": "acme/mobile-api",
    "ingest-worker": "acme/data-pipeline",
    "warehouse-loader": "acme/data-pipeline",
    "reporting": "acme/data-pipeline",
    "identity-api": "acme/identity",
    "sso-bridge": "acme/identity",
    "legacy-ldap-sync": "acme/identity",
}

TEAMS: dict[str, str] = {
    "payments-api": "payments",
    "ledger": "payments",
    "billing-worker": "payments",
    "storefront-web": "web",
    "catalog": "web",
    "search": "web",
    "api-gateway": "platform",
    "notification-service": "growth",
    "feature-flags": "platform",
    "mobile-bff": "mobile",
    "push-gateway": "mobile",
    "ingest-worker": "data",
    "warehouse-loader": "data",
    "reporting": "data",
    "identity-api": "identity",
    "sso-bridge": "identity",
    "legacy-ldap-sync": "identity",
}

TEAM_MEMBERS: dict[str, tuple[str, ...]] = {
    "payments": ("mchen", "apatel", "lgarcia", "okim"),
    "web": ("sjohnson", "tnguyen", "mrossi", "bwilliams", "hmueller"),
    "platform": ("dkowalski", "eokafor", "jlindqvist", "psingh"),
    "growth": ("cmartin", "yzhang"),
    "mobile": ("afernandez", "kito", "nbrown"),
    "data": ("vpetrov", "ghassan", "lwright"),
    "identity": ("fdubois", "mhernandez", "sali"),
}

Tier = Literal["elite", "high", "medium", "low"]

DORA_TIERS: dict[str, Tier] = {
    "api-gateway": "elite",
    "storefront-web": "elite",
    "payments-api": "high",
    "notification-service": "high",
    "catalog": "high",
    "mobile-bff": "high",
    "identity-api": "high",
    "ingest-worker": "high",
    "ledger": "medium",
    "billing-worker": "medium",
    "search": "medium",
    "feature-flags": "medium",
    "push-gateway": "medium",
    "reporting": "medium",
    "sso-bridge": "medium",
    "warehouse-loader": "low",
    "legacy-ldap-sync": "low",
}
"""The tier each service is simulated to land in."""

PRODUCTION_ENVIRONMENTS: dict[str, tuple[str, ...]] = {
    service: ("production", "production-eu") if service in ("payments-api", "identity-api") else ("production",)
    for service in SERVICES
}

THRESHOLD_CROSSINGS: dict[str, str] = {
    "pr_build_duration_p95": "acme/mobile-api (iOS SDK build on macos-14 runners)",
    "test_suite_duration": "acme/data-pipeline suite 'integration'",
    "default_branch_failure_rate": "acme/payments (PSP sandbox integration tests)",
    "queue_time_median": "runner macos-14",
    "cache_hit_rate": "acme/data-pipeline",
    "flaky_test_rate": "acme/storefront (e2e suite)",
    "critical_findings_up": "acme/payments (trivy, a new OpenSSL CVE a few weeks in)",
}
"""Where each default alert threshold is crossed, for the demo's narrative."""

UBUNTU: tuple[str, ...] = ("ubuntu-latest",)
SELF_HOSTED: tuple[str, ...] = ("self-hosted", "linux", "x64")
MACOS: tuple[str, ...] = ("macos-14",)

# Median queue seconds and log-normal spread per runner: hosted Linux is near-instant, the self-hosted pool
# saturates at peaks, macOS capacity is scarce.
_QUEUE: dict[tuple[str, ...], tuple[float, float]] = {
    UBUNTU: (9.0, 0.9),
    SELF_HOSTED: (45.0, 1.0),
    MACOS: (270.0, 0.55),
}

INFRA_FAILURES: dict[str, tuple[str, ...]] = {
    "github": ("The runner has received a shutdown signal",),
    "gitlab": ("runner_system_failure", "stuck_or_timeout_failure"),
}
SCRIPT_FAILURE: dict[str, str] = {"github": "Process completed with exit code 1", "gitlab": "script_failure"}

TEST_SAMPLE_RATE = 0.12
"""Share of CI runs whose test reports are emitted: every case of every run would dominate the volume."""


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    cases: int
    median_seconds: float
    flaky_cases: int = 2
    flaky_probability: float = 0.03


@dataclass(frozen=True)
class JobSpec:
    name: str
    stage: str
    runner: tuple[str, ...]
    work_step: str
    work_minutes: float = 1.0
    """Median duration of the work step; test jobs take the sum of their cases instead."""
    cache: str | None = None
    suites: tuple[str, ...] = ()
    main_only: bool = False
    extra_steps: tuple[str, ...] = ()


@dataclass(frozen=True)
class RepoProfile:
    name: str
    language: Literal["python", "typescript", "go", "kotlin"]
    ci: Literal["github", "gitlab"]
    prs_per_weekday: float
    review_hours: float
    """Median hours from a pull request's opening to its first review."""
    lead_in_hours: float
    """Median hours the first commit of a pull request precedes its opening."""
    jobs: tuple[JobSpec, ...]
    suites: tuple[SuiteSpec, ...]
    pr_failure_rate: float
    main_failure_rate: float
    infra_failure_rate: float
    dependency_hit_rate: float
    docker_hit_rate: float
    areas: tuple[str, ...]
    nightly: bool = False
    findings_trend: float = 1.0
    """Above 1 the security backlog grows week over week, below 1 it shrinks."""


def _lint(runner: tuple[str, ...] = UBUNTU) -> JobSpec:
    return JobSpec("lint", "build", runner, "Run linters", 1.0, cache="dependency")


def _build(runner: tuple[str, ...], minutes: float, name: str = "build") -> JobSpec:
    return JobSpec(name, "build", runner, "Build", minutes, cache="dependency")


def _tests(name: str, suites: tuple[str, ...], runner: tuple[str, ...] = UBUNTU) -> JobSpec:
    return JobSpec(name, "test", runner, "Run tests", cache="dependency", suites=suites)


_SCAN = JobSpec("security-scan", "scan", UBUNTU, "Trivy scan", 1.2)


def _image(runner: tuple[str, ...] = SELF_HOSTED) -> JobSpec:
    return JobSpec(
        "docker-image",
        "publish",
        runner,
        "Build image",
        2.5,
        "docker-layer",
        main_only=True,
        extra_steps=("Push image",),
    )


PROFILES: dict[str, RepoProfile] = {
    profile.name: profile
    for profile in (
        RepoProfile(
            name="acme/payments",
            language="python",
            ci="github",
            prs_per_weekday=2.2,
            review_hours=3.0,
            lead_in_hours=4.0,
            jobs=(
                _lint(),
                _build(SELF_HOSTED, 2.5),
                _tests("unit-tests", ("unit", "api")),
                _tests("integration-tests", ("integration-psp",), SELF_HOSTED),
                _SCAN,
                _image(),
            ),
            suites=(SuiteSpec("unit", 60, 0.15), SuiteSpec("api", 35, 1.2), SuiteSpec("integration-psp", 25, 4.0)),
            pr_failure_rate=0.18,
            main_failure_rate=0.24,
            infra_failure_rate=0.025,
            dependency_hit_rate=0.93,
            docker_hit_rate=0.85,
            areas=("refunds", "webhooks", "ledger", "invoices", "psp-client", "fx-rates", "payouts"),
            findings_trend=0.7,
        ),
        RepoProfile(
            name="acme/storefront",
            language="typescript",
            ci="github",
            prs_per_weekday=3.8,
            review_hours=1.2,
            lead_in_hours=2.0,
            jobs=(
                _lint(),
                _build(UBUNTU, 3.0),
                _tests("unit-tests", ("unit", "components")),
                _tests("e2e", ("e2e",)),
                _SCAN,
                _image(UBUNTU),
            ),
            suites=(
                SuiteSpec("unit", 70, 0.08),
                SuiteSpec("components", 45, 0.4, flaky_cases=3, flaky_probability=0.05),
                SuiteSpec("e2e", 30, 6.0, flaky_cases=10, flaky_probability=0.3),
            ),
            pr_failure_rate=0.15,
            main_failure_rate=0.05,
            infra_failure_rate=0.02,
            dependency_hit_rate=0.9,
            docker_hit_rate=0.8,
            areas=("checkout", "cart", "product-page", "search-ui", "i18n", "seo", "account"),
        ),
        RepoProfile(
            name="acme/platform",
            language="go",
            ci="github",
            prs_per_weekday=4.0,
            review_hours=1.0,
            lead_in_hours=1.5,
            jobs=(
                _lint(),
                _build(SELF_HOSTED, 1.8),
                _tests("unit-tests", ("unit", "contract")),
                _SCAN,
                _image(),
            ),
            suites=(SuiteSpec("unit", 80, 0.05), SuiteSpec("contract", 30, 0.8)),
            pr_failure_rate=0.12,
            main_failure_rate=0.04,
            infra_failure_rate=0.03,
            dependency_hit_rate=0.95,
            docker_hit_rate=0.9,
            areas=("gateway", "routing", "ratelimit", "notifications", "flags", "tracing", "auth-proxy"),
        ),
        RepoProfile(
            name="acme/mobile-api",
            language="kotlin",
            ci="github",
            prs_per_weekday=1.8,
            review_hours=4.0,
            lead_in_hours=6.0,
            jobs=(
                _lint(),
                _build(UBUNTU, 2.0),
                _build(MACOS, 11.0, name="build-ios-sdk"),
                _tests("unit-tests", ("unit", "snapshot")),
                _SCAN,
                _image(UBUNTU),
            ),
            suites=(SuiteSpec("unit", 50, 0.2), SuiteSpec("snapshot", 40, 0.6, flaky_cases=2, flaky_probability=0.04)),
            pr_failure_rate=0.15,
            main_failure_rate=0.05,
            infra_failure_rate=0.04,
            dependency_hit_rate=0.88,
            docker_hit_rate=0.8,
            areas=("bff", "push", "sdk", "feed", "profile", "offline-sync"),
            nightly=True,
        ),
        RepoProfile(
            name="acme/data-pipeline",
            language="python",
            ci="gitlab",
            prs_per_weekday=1.3,
            review_hours=6.0,
            lead_in_hours=10.0,
            jobs=(
                _lint(),
                JobSpec("build", "build", SELF_HOSTED, "Build image", 3.0, cache="docker-layer"),
                _tests("unit-tests", ("unit",)),
                _tests("integration-tests", ("integration",), SELF_HOSTED),
                _SCAN,
                JobSpec("push-image", "publish", SELF_HOSTED, "Push image", 1.0, "docker-layer", main_only=True),
            ),
            suites=(SuiteSpec("unit", 45, 0.3), SuiteSpec("integration", 40, 9.0)),
            pr_failure_rate=0.14,
            main_failure_rate=0.07,
            infra_failure_rate=0.04,
            dependency_hit_rate=0.5,
            docker_hit_rate=0.35,
            areas=("ingest", "warehouse", "reporting", "schemas", "dbt", "backfill"),
            nightly=True,
            findings_trend=1.6,
        ),
        RepoProfile(
            name="acme/identity",
            language="go",
            ci="gitlab",
            prs_per_weekday=1.3,
            review_hours=5.0,
            lead_in_hours=8.0,
            jobs=(
                _lint(),
                _build(UBUNTU, 2.0),
                _tests("unit-tests", ("unit",)),
                _tests("conformance-tests", ("oidc-conformance",)),
                _SCAN,
                _image(),
            ),
            suites=(SuiteSpec("unit", 55, 0.1), SuiteSpec("oidc-conformance", 35, 2.5)),
            pr_failure_rate=0.12,
            main_failure_rate=0.05,
            infra_failure_rate=0.02,
            dependency_hit_rate=0.9,
            docker_hit_rate=0.82,
            areas=("oidc", "sessions", "mfa", "ldap", "saml", "tokens"),
            findings_trend=0.8,
        ),
    )
}

_KINDS = ("feat", "fix", "fix", "chore", "refactor", "perf")
_VERBS = ("add", "handle", "remove", "simplify", "validate", "log", "cache", "retry", "speed up", "harden")
_THINGS = (
    "retry budget",
    "pagination",
    "idempotency keys",
    "timeouts",
    "metrics",
    "error mapping",
    "feature flag",
    "config loading",
    "batch size",
    "connection pooling",
    "input validation",
    "trace context",
    "null handling",
    "locale fallback",
)
_TEST_VERBS = ("creates", "rejects", "retries", "parses", "renders", "expires", "refreshes", "maps", "skips")
_TEST_NOUNS = (
    "order",
    "refund",
    "token",
    "session",
    "cart",
    "invoice",
    "user",
    "batch",
    "schema",
    "webhook",
    "route",
    "payload",
)
_DEPENDENCY_TOOL = {"python": "pip", "typescript": "npm", "go": "go-mod", "kotlin": "gradle"}
_PACKAGES = (
    "openssl",
    "glibc",
    "zlib",
    "curl",
    "libxml2",
    "urllib3",
    "cryptography",
    "jinja2",
    "golang.org/x/net",
    "golang.org/x/crypto",
    "express",
    "semver",
    "netty-codec-http",
    "jackson-databind",
)
_SEMGREP_RULES = (
    "python.lang.security.audit.subprocess-shell-true",
    "python.django.security.injection.sql.sql-injection-using-raw",
    "javascript.express.security.audit.xss.direct-response-write",
    "javascript.lang.security.audit.prototype-pollution.prototype-pollution-loop",
    "go.lang.security.audit.net.use-tls",
    "go.lang.security.audit.crypto.math_random",
    "generic.secrets.security.detected-generic-secret",
    "java.lang.security.audit.crypto.weak-hash",
    "yaml.github-actions.security.run-shell-injection",
    "dockerfile.security.missing-user",
)
_TRIVY_SEVERITIES = (("critical", 0.07), ("high", 0.25), ("medium", 0.38), ("low", 0.25), ("info", 0.05))
_SEMGREP_SEVERITIES = (("high", 0.2), ("medium", 0.45), ("low", 0.25), ("info", 0.1))
_FIX_PER_WEEK = {"critical": 0.45, "high": 0.25, "medium": 0.12, "low": 0.06, "info": 0.04}
_INCIDENT_TITLES = (
    "Elevated 5xx rate on {service}",
    "{service}: p99 latency above SLO",
    "{service} error budget burn rate alert",
    "Requests to {service} timing out",
    "{service} crash-looping after rollout",
)
_INFRA_INCIDENTS = (
    "Node pool exhaustion in eu-west-1",
    "Managed Postgres failover",
    "DNS resolution failures in cluster",
    "Message broker partition leader election storm",
)
_INFRA_CHANGES = (
    "Kubernetes control plane upgraded to 1.31",
    "CI runner image rolled to ubuntu-24.04 20260915",
    "Self-hosted runner pool scaled from 12 to 20 nodes",
    "Postgres minor version upgrade",
    "Ingress controller certificate rotation",
)
_FLAGS = ("new-checkout-flow", "async-ledger-writes", "search-v2", "sso-passkeys", "batch-webhooks", "edge-cache")


@dataclass(frozen=True)
class _Case:
    classname: str
    name: str
    file: str
    seconds: float
    flaky: float
    skipped: bool


@dataclass
class _Suite:
    name: str
    cases: list[_Case]
    total_seconds: float


@dataclass
class _Commit:
    sha: str
    authored: int
    committed: int
    author: str
    message: str
    pr_number: int | None = None
    green_at: int | None = None
    """For a default-branch commit: when its CI first finished green."""
    deployment_id: str | None = None

    @property
    def order(self) -> tuple[int, str]:
        return (self.committed, self.sha)


@dataclass
class _PullRequest:
    number: int
    author: str
    title: str
    opened: int
    labels: list[str]
    commits: list[_Commit]
    first_review: int | None = None
    merged: int | None = None
    closed: int | None = None
    merge_commit: _Commit | None = None


@dataclass
class _Deploy:
    id: str
    service: str
    environment: str
    commit: _Commit
    version: str
    started: int
    finished: int
    status: str
    kind: str


@dataclass
class _RunResult:
    id: str
    status: str
    infra: bool
    finished: int | None


@dataclass
class _Step:
    name: str
    status: str
    started: int
    finished: int


@dataclass
class _JobRun:
    id: str
    run_id: str
    spec_name: str
    stage: str
    runner: tuple[str, ...]
    attempt: int
    created: int
    started: int | None
    finished: int
    status: str
    failure_reason: str | None
    steps: list[_Step]
    caches: list[tuple[int, Event]]
    """Cache events with the index of the step that restored them."""
    tests: list[Event]

    def cancel(self, at: int) -> None:
        """Cut the job short at ``at``, as a newer push on the branch does to a running pipeline."""
        self.status = "cancelled"
        self.failure_reason = None
        self.finished = at
        if self.started is not None and self.started >= at:
            self.started = None
        kept: list[_Step] = []
        for step in self.steps:
            if step.started >= at:
                break
            if step.finished > at:
                step.status, step.finished = "cancelled", at
            kept.append(step)
        self.caches = [(index, event) for index, event in self.caches if index < len(kept)]
        self.steps = kept
        self.tests = []

    def events(self) -> Iterator[Event]:
        job: Event = {
            "type": "job",
            "source": SOURCE,
            "id": self.id,
            "run_id": self.run_id,
            "name": self.spec_name,
            "stage": self.stage,
            "runner": list(self.runner),
            "status": self.status,
            "attempt": self.attempt,
            "created_at": _ts(self.created),
            "finished_at": _ts(self.finished),
        }
        if self.started is not None:
            job["started_at"] = _ts(self.started)
        if self.failure_reason:
            job["failure_reason"] = self.failure_reason
        yield job
        for number, step in enumerate(self.steps, start=1):
            yield {
                "type": "step",
                "source": SOURCE,
                "job_id": self.id,
                "name": step.name,
                "number": number,
                "status": step.status,
                "started_at": _ts(step.started),
                "finished_at": _ts(step.finished),
            }
        for _, cache in self.caches:
            yield cache
        yield from self.tests


@dataclass
class _ServiceState:
    service: str
    tier: Tier
    environments: tuple[str, ...]
    busy_until: int
    tried: tuple[int, str] = (0, "")
    last_good: _Deploy | None = None
    successes: int = 0
    done: bool = False


@dataclass
class _Counters:
    run: int = 9_400_000_000
    job: int = 26_100_000_000
    deployment: int = 0
    incident: int = 4100
    timeline: int = 0


def _ts(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def generate(*, days: int = 90, seed: int = 7, until: dt.date | None = None) -> Iterator[dict[str, Any]]:
    """Deterministic, realistic demo dataset as canonical event dicts (JSON-ready: RFC 3339 strings with 'Z')."""
    if days < 1:
        raise ValueError("days must be at least 1")
    if until is None:
        until = dt.datetime.now(dt.UTC).date()
    end = int(dt.datetime(until.year, until.month, until.day, tzinfo=dt.UTC).timestamp())
    world = _World(random.Random(seed), end - days * DAY, end)
    return world.events()


class _World:
    """State shared by every repository: the random stream, id counters and the window."""

    def __init__(self, rng: random.Random, start: int, end: int) -> None:
        self.rng = rng
        self.start = start
        self.end = end
        self.ids = _Counters()
        self.days = (end - start) // DAY

    def events(self) -> Iterator[Event]:
        for repo in REPOS:
            yield from _RepoSimulation(self, PROFILES[repo]).events()
        yield from self._operations()
        yield from _workflow_measurements(dt.datetime.fromtimestamp(self.end, dt.UTC) - dt.timedelta(hours=6))

    def next_run_id(self) -> str:
        self.ids.run += self.rng.randint(1, 40)
        return str(self.ids.run)

    def next_job_id(self) -> str:
        self.ids.job += self.rng.randint(1, 6)
        return str(self.ids.job)

    def next_incident_id(self) -> str:
        self.ids.incident += 1
        return f"INC-{self.ids.incident}"

    def next_timeline_id(self) -> str:
        self.ids.timeline += 1
        return f"tl-{self.ids.timeline:05d}"

    def sha(self) -> str:
        return f"{self.rng.getrandbits(160):040x}"

    def lognormal(self, median: float, sigma: float) -> float:
        return median * math.exp(self.rng.gauss(0.0, sigma))

    def poisson(self, mean: float) -> int:
        # Knuth's method: the means used here are small.
        limit, count, product = math.exp(-mean), 0, self.rng.random()
        while product > limit:
            count += 1
            product *= self.rng.random()
        return count

    def work_moment(self, day_start: int) -> int:
        """A moment in a (distributed) team's working day: 07:00–19:00 UTC, denser mid-day."""
        return day_start + int(HOUR * self.rng.triangular(7.0, 19.0, 13.0))

    def timeline(self, kind: str, at: int, title: str, service: str | None, details: str | None = None) -> Event:
        event: Event = {
            "type": "timeline_event",
            "source": SOURCE,
            "id": self.next_timeline_id(),
            "kind": kind,
            "at": _ts(at),
            "title": title,
        }
        if service:
            event["service"] = service
        if details:
            event["details"] = details
        return event

    def _operations(self) -> Events:
        """Incidents and timeline entries that no deployment caused: infrastructure, flags, open pages."""
        rng = self.rng
        services = list(SERVICES)
        for _ in range(max(1, self.days // 12)):
            opened = self.start + rng.randint(DAY, max(DAY + 1, self.end - self.start - DAY))
            title = rng.choice(_INFRA_INCIDENTS)
            service = rng.choice(services)
            yield self.timeline("infra", opened - rng.randint(2, 10) * MINUTE, title, None, "cloud provider event")
            resolved = opened + int(self.lognormal(2 * HOUR, 0.7))
            yield _incident(
                self.next_incident_id(),
                service,
                rng.choice(("SEV2", "SEV3")),
                title,
                opened,
                opened + rng.randint(2, 15) * MINUTE,
                resolved if resolved < self.end else None,
                ["infra-only"],
            )
        for _ in range(max(1, self.days // 7)):
            at = self.work_moment(self.start + rng.randrange(self.days) * DAY)
            flag, share = rng.choice(_FLAGS), rng.choice((5, 10, 25, 50, 100))
            title = f"Flag {flag} rolled out to {share}% of traffic"
            yield self.timeline("flag_toggle", at, title, rng.choice(services))
        for _ in range(max(1, self.days // 15)):
            at = self.work_moment(self.start + rng.randrange(self.days) * DAY)
            yield self.timeline("infra", at, rng.choice(_INFRA_CHANGES), None)
        # Pages still open when the window closes: recovery time falls back to the next good deploy for these.
        if self.days >= 3:
            for service in ("search", "ledger"):
                opened = self.end - rng.randint(4 * HOUR, 36 * HOUR)
                title = rng.choice(_INCIDENT_TITLES).format(service=service)
                yield _incident(
                    self.next_incident_id(), service, "SEV3", title, opened, opened + 9 * MINUTE, None, None
                )
            opened = self.end - rng.randint(HOUR, 10 * HOUR)
            yield _incident(
                self.next_incident_id(),
                rng.choice(services),
                "SEV2",
                "Self-hosted runners failing health checks",
                opened,
                None,
                None,
                ["infra-only"],
            )


def _incident(
    incident_id: str,
    service: str,
    severity: str,
    title: str,
    opened: int,
    acknowledged: int | None,
    resolved: int | None,
    labels: list[str] | None,
    caused_by: str | None = None,
    resolved_by: str | None = None,
) -> Event:
    event: Event = {
        "type": "incident",
        "source": SOURCE,
        "id": incident_id,
        "service": service,
        "severity": severity,
        "title": title,
        "opened_at": _ts(opened),
    }
    if acknowledged is not None:
        event["acknowledged_at"] = _ts(acknowledged)
    if resolved is not None:
        event["resolved_at"] = _ts(resolved)
    if labels:
        event["labels"] = labels
    if caused_by:
        event["caused_by_deployment_id"] = caused_by
    if resolved_by:
        event["resolved_by_deployment_id"] = resolved_by
    return event


class _RepoSimulation:
    """One repository: pull requests and their CI, the default branch, its services' deploys, its scans."""

    def __init__(self, world: _World, profile: RepoProfile) -> None:
        self.world = world
        self.rng = world.rng
        self.profile = profile
        self.start = world.start
        self.end = world.end
        self.services = [service for service, repo in SERVICES.items() if repo == profile.name]
        self.members = sorted({m for s in self.services for m in TEAM_MEMBERS[TEAMS[s]]})
        self.suites = {spec.name: self._suite(spec) for spec in profile.suites}
        self.lock_hashes = [f"{self.rng.getrandbits(48):012x}" for _ in range(world.days // 9 + 2)]
        self.branches_seen: set[str] = set()
        self.prs: list[_PullRequest] = []
        self.main: list[_Commit] = []
        self.direct_commits: list[_Commit] = []
        self.shipped: list[_Deploy] = []
        self.versions: dict[str, dict[str, str]] = {service: {} for service in self.services}
        self.version_parts: dict[str, list[int]] = {
            service: [self.rng.choice((1, 1, 2, 3)), self.rng.randint(3, 60), 0] for service in self.services
        }
        self.digests: dict[tuple[str, str], str] = {}
        self.next_pr = 1000 + self.rng.randint(0, 3000)

    # ---- overall order -------------------------------------------------------------------------------------

    def events(self) -> Events:
        yield from self._pull_requests()
        self.main.sort(key=lambda commit: commit.order)
        if self.profile.nightly:
            yield from self._nightly()
        for service in sorted(self.services, key=lambda s: ("elite", "high", "medium", "low").index(DORA_TIERS[s])):
            yield from self._deploy_service(service)
        yield from self._changes()
        yield from self._security_scans()

    # ---- tests ---------------------------------------------------------------------------------------------

    def _suite(self, spec: SuiteSpec) -> _Suite:
        rng, language, slug = self.rng, self.profile.language, self.profile.name.split("/")[1]
        cases: list[_Case] = []
        seen: set[tuple[str, str]] = set()
        flaky_left = spec.flaky_cases
        while len(cases) < spec.cases:
            noun, other = rng.choice(_TEST_NOUNS), rng.choice(_TEST_NOUNS)
            verb = rng.choice(_TEST_VERBS)
            if language == "python":
                file = f"tests/{spec.name.replace('-', '_')}/test_{noun}.py"
                classname = f"{file[:-3].replace('/', '.')}.Test{noun.title()}"
                name = f"test_{verb}_{other}_{len(cases)}"
            elif language == "typescript":
                file = classname = f"{spec.name}/{noun}.spec.ts"
                name = f"{verb} {other} #{len(cases)}"
            elif language == "go":
                file = f"internal/{noun}/{noun}_test.go"
                classname = f"github.com/acme/{slug}/internal/{noun}"
                name = f"Test{verb.title()}{other.title()}{len(cases)}"
            else:
                file = f"src/test/kotlin/com/acme/mobile/{noun.title()}Test.kt"
                classname = f"com.acme.mobile.{noun.title()}Test"
                name = f"{verb}{other.title()}{len(cases)}()"
            if (classname, name) in seen:
                continue
            seen.add((classname, name))
            flaky = spec.flaky_probability if flaky_left > 0 else 0.0005
            flaky_left -= 1
            seconds = round(self.world.lognormal(spec.median_seconds, 0.6), 3)
            cases.append(_Case(classname, name, file, seconds, flaky, rng.random() < 0.02))
        rng.shuffle(cases)
        return _Suite(spec.name, cases, sum(case.seconds for case in cases if not case.skipped))

    def _run_suites(
        self, spec: JobSpec, *, failing: bool, emit: bool, attempt: int, run_id: str, job_id: str
    ) -> tuple[int, list[Event]]:
        """Execute a test job's suites; returns the seconds they took and, when emitted, the case reports."""
        rng = self.rng
        jitter = math.exp(rng.gauss(0.0, 0.08))
        suites = [self.suites[name] for name in spec.suites]
        if not emit:
            total = sum(suite.total_seconds for suite in suites) * jitter
            return int(total * 1.05) + (rng.randint(20, 90) if failing else 0), []
        broken: set[tuple[str, int]] = set()
        if failing:
            heavy = max(suites, key=lambda suite: suite.total_seconds)
            for _ in range(rng.choice((1, 1, 2, 3))):
                index = rng.randrange(len(heavy.cases))
                if not heavy.cases[index].skipped:
                    broken.add((heavy.name, index))
            if not broken:
                broken.add((heavy.name, next(i for i, c in enumerate(heavy.cases) if not c.skipped)))
        rows: list[Event] = []
        total = 0.0

        def row(suite: str, case: _Case, seconds: float, outcome: str, case_attempt: int) -> None:
            rows.append(
                {
                    "type": "test_case",
                    "source": SOURCE,
                    "run_id": run_id,
                    "job_id": job_id,
                    "suite": suite,
                    "classname": case.classname,
                    "name": case.name,
                    "file": case.file,
                    "duration_seconds": seconds,
                    "outcome": outcome,
                    "attempt": case_attempt,
                }
            )

        for suite in suites:
            for index, case in enumerate(suite.cases):
                if case.skipped:
                    row(suite.name, case, 0.0, "skipped", attempt)
                    continue
                seconds = round(case.seconds * jitter * rng.uniform(0.9, 1.1), 3)
                total += seconds
                if (suite.name, index) in broken:
                    # A real failure: the automatic retry fails too, so the job goes red.
                    retry = round(seconds * rng.uniform(0.9, 1.1), 3)
                    total += retry
                    row(suite.name, case, seconds, rng.choice(("failed", "failed", "error")), attempt)
                    row(suite.name, case, retry, "failed", attempt + 1)
                elif rng.random() < case.flaky:
                    retry = round(seconds * rng.uniform(0.8, 1.2), 3)
                    total += retry
                    row(suite.name, case, seconds, "failed", attempt)
                    row(suite.name, case, retry, "passed", attempt + 1)
                else:
                    row(suite.name, case, seconds, "passed", attempt)
        return math.ceil(total), rows

    # ---- pipelines -----------------------------------------------------------------------------------------

    def _queue_seconds(self, runner: tuple[str, ...]) -> int:
        median, sigma = _QUEUE[runner]
        return max(1, int(self.world.lognormal(median, sigma)))

    def _cache(self, kind: str, branch: str, warm: bool, run_id: str, job_id: str, at: int) -> tuple[Event, int]:
        rng, profile = self.rng, self.profile
        rate = profile.dependency_hit_rate if kind == "dependency" else profile.docker_hit_rate
        hit = rng.random() < (rate if warm else rate * 0.6)
        if kind == "dependency":
            lock = self.lock_hashes[min(len(self.lock_hashes) - 1, (at - self.start) // (9 * DAY))]
            key = f"Linux-{_DEPENDENCY_TOOL[profile.language]}-{lock}"
            size = rng.randint(80, 600) * 1_000_000
        else:
            key = f"buildx-{profile.name.split('/')[1]}-{branch.replace('/', '-')}"
            size = rng.randint(500, 3000) * 1_000_000
        seconds = round(size / rng.uniform(80e6, 220e6) + 0.5, 2) if hit else round(rng.uniform(0.4, 2.5), 2)
        event: Event = {
            "type": "cache",
            "source": SOURCE,
            "run_id": run_id,
            "job_id": job_id,
            "kind": kind,
            "key": key,
            "hit": hit,
            "bytes": size,
            "seconds": seconds,
        }
        return event, max(1, math.ceil(seconds))

    def _job(
        self,
        spec: JobSpec,
        *,
        run_id: str,
        attempt: int,
        created: int,
        mode: str | None,
        branch: str,
        warm: bool,
        emit_tests: bool,
    ) -> _JobRun:
        rng, ci = self.rng, self.profile.ci
        job_id = self.world.next_job_id()
        started = created + self._queue_seconds(spec.runner)
        plan: list[tuple[str, int]] = [("Checkout", rng.randint(2, 12))]
        caches: list[tuple[int, Event]] = []
        hit = True
        if spec.cache:
            event, seconds = self._cache(spec.cache, branch, warm, run_id, job_id, started)
            hit = bool(event["hit"])
            caches.append((len(plan), event))
            plan.append(("Restore cache", seconds))
            if spec.cache == "dependency":
                plan.append(("Install dependencies", rng.randint(4, 20) if hit else rng.randint(45, 160)))
        tests: list[Event] = []
        if spec.suites:
            work, tests = self._run_suites(
                spec, failing=mode == "failure", emit=emit_tests, attempt=attempt, run_id=run_id, job_id=job_id
            )
            work += rng.randint(8, 30)
        else:
            work = int(self.world.lognormal(spec.work_minutes * MINUTE, 0.25))
            if spec.cache == "docker-layer" and not hit:
                work = int(work * 1.8)
        work_index = len(plan)
        plan.append((spec.work_step, work))
        plan.extend((name, rng.randint(8, 50)) for name in spec.extra_steps)
        if spec.cache and not hit:
            plan.append(("Save cache", rng.randint(3, 25)))

        status, reason, stop_at = "success", None, len(plan)
        if mode == "failure":
            status, reason, stop_at = "failure", SCRIPT_FAILURE[ci], work_index
            if not spec.suites:
                plan[work_index] = (spec.work_step, max(1, int(work * rng.uniform(0.2, 1.0))))
        elif mode == "infra":
            stop_at = rng.randrange(len(plan))
            status, reason = "failure", rng.choice(INFRA_FAILURES[ci])
            plan[stop_at] = (plan[stop_at][0], max(1, int(plan[stop_at][1] * rng.uniform(0.1, 0.9))))
            tests = []
        steps: list[_Step] = []
        moment = started + rng.randint(1, 4)
        for index, (name, seconds) in enumerate(plan[: stop_at + 1]):
            step_status = "failure" if index == stop_at and status == "failure" else "success"
            steps.append(_Step(name, step_status, moment, moment + seconds))
            moment += seconds + rng.randint(0, 1)
        finished = moment + rng.randint(1, 3)
        caches = [(index, event) for index, event in caches if index < len(steps)]
        return _JobRun(
            job_id,
            run_id,
            spec.name,
            spec.stage,
            spec.runner,
            attempt,
            created,
            started,
            finished,
            status,
            reason,
            steps,
            caches,
            tests,
        )

    def _run_event(
        self,
        *,
        run_id: str,
        attempt: int,
        workflow: str,
        trigger: str,
        branch: str,
        sha: str,
        pr_number: int | None,
        actor: str,
        status: str,
        created: int,
        started: int | None,
        finished: int | None,
    ) -> Event:
        event: Event = {
            "type": "pipeline_run",
            "source": SOURCE,
            "id": run_id,
            "repo": self.profile.name,
            "workflow": workflow,
            "trigger": trigger,
            "branch": branch,
            "default_branch": "main",
            "sha": sha,
            "actor": actor,
            "status": status,
            "attempt": attempt,
            "created_at": _ts(created),
        }
        if pr_number is not None:
            event["pr_number"] = pr_number
        if started is not None:
            event["started_at"] = _ts(started)
        if finished is not None:
            event["finished_at"] = _ts(finished)
        if self.profile.ci == "github":
            event["url"] = f"https://github.com/{self.profile.name}/actions/runs/{run_id}/attempts/{attempt}"
        else:
            event["url"] = f"https://gitlab.com/{self.profile.name}/-/pipelines/{run_id}"
        return event

    def _pipeline(
        self,
        *,
        workflow: str,
        trigger: str,
        branch: str,
        sha: str,
        pr_number: int | None,
        actor: str,
        created: int,
        jobs: Sequence[JobSpec],
        failure_rate: float,
        infra_rate: float,
        run_id: str | None = None,
        attempt: int = 1,
        cancel_at: int | None = None,
    ) -> Generator[Event, None, _RunResult]:
        """Run one CI pipeline execution and yield its run, jobs, steps, caches and test reports."""
        rng = self.rng
        run_id = run_id or self.world.next_run_id()
        warm = branch in self.branches_seen
        self.branches_seen.add(branch)
        specs = [spec for spec in jobs if branch == "main" or not spec.main_only]
        mode, failing_index, roll = None, -1, rng.random()
        if roll < infra_rate:
            # Self-hosted machines are where runners get lost.
            weights = [3.0 if spec.runner == SELF_HOSTED else 1.0 for spec in specs]
            mode, failing_index = "infra", rng.choices(range(len(specs)), weights)[0]
        elif roll < infra_rate + failure_rate:
            weights = [4.0 if spec.suites else 1.0 for spec in specs]
            mode, failing_index = "failure", rng.choices(range(len(specs)), weights)[0]
        emit_tests = rng.random() < TEST_SAMPLE_RATE
        started = created + rng.randint(2, 12)
        stages: list[str] = []
        for spec in specs:
            if spec.stage not in stages:
                stages.append(spec.stage)
        jobs_run: list[_JobRun] = []
        ready = started
        for stage in stages:
            stage_end, stage_failed = ready, False
            for index, spec in enumerate(specs):
                if spec.stage != stage:
                    continue
                job = self._job(
                    spec,
                    run_id=run_id,
                    attempt=attempt,
                    created=ready + rng.randint(0, 3),
                    mode=mode if index == failing_index else None,
                    branch=branch,
                    warm=warm,
                    emit_tests=emit_tests,
                )
                jobs_run.append(job)
                stage_end = max(stage_end, job.finished)
                stage_failed = stage_failed or job.status == "failure"
            if stage_failed:
                break
            ready = stage_end + rng.randint(1, 4)
        finished = max(job.finished for job in jobs_run) + rng.randint(1, 5)
        status = "failure" if mode else "success"
        if cancel_at is not None and started < cancel_at < finished:
            jobs_run = [job for job in jobs_run if job.created < cancel_at]
            for job in jobs_run:
                if job.finished > cancel_at:
                    job.cancel(cancel_at)
            finished, status, mode = cancel_at + rng.randint(1, 4), "cancelled", None
        common: dict[str, Any] = {
            "run_id": run_id,
            "attempt": attempt,
            "workflow": workflow,
            "trigger": trigger,
            "branch": branch,
            "sha": sha,
            "pr_number": pr_number,
            "actor": actor,
            "created": created,
        }
        if finished >= self.end:
            # Still running when the window closes: only the in-progress state is known.
            if started < self.end:
                yield self._run_event(**common, status="in_progress", started=started, finished=None)
            return _RunResult(run_id, "in_progress", False, None)
        # Some runs are reported while queued or running first, like webhooks do; the final state follows.
        early = rng.random()
        if early < 0.08:
            yield self._run_event(**common, status="queued", started=None, finished=None)
        elif early < 0.16:
            yield self._run_event(**common, status="in_progress", started=started, finished=None)
        yield self._run_event(**common, status=status, started=started, finished=finished)
        for job in jobs_run:
            yield from job.events()
        return _RunResult(run_id, status, mode == "infra", finished)

    def _main_ci(self, commit: _Commit, *, reliable: bool = False) -> Events:
        """The default-branch CI of one commit, re-run when it fails on infrastructure or looks flaky."""
        rng, profile = self.rng, self.profile
        created = commit.committed + rng.randint(3, 20)
        if created >= self.end:
            return
        failure = 0.0 if reliable else profile.main_failure_rate
        infra = 0.0 if reliable else profile.infra_failure_rate
        common: dict[str, Any] = {
            "workflow": "ci",
            "trigger": "push",
            "branch": "main",
            "sha": commit.sha,
            "pr_number": None,
            "actor": commit.author,
            "jobs": profile.jobs,
        }
        result = yield from self._pipeline(**common, created=created, failure_rate=failure, infra_rate=infra)
        if result.status == "failure" and result.finished is not None:
            if result.infra or rng.random() < 0.35:
                rerun_at = result.finished + rng.randint(3, 40) * MINUTE
                if rerun_at < self.end:
                    result = yield from self._pipeline(
                        **common,
                        created=rerun_at,
                        failure_rate=0.4 if not result.infra else failure,
                        infra_rate=infra,
                        run_id=result.id,
                        attempt=2,
                    )
        if result.status == "success":
            commit.green_at = result.finished

    def _pull_requests(self) -> Events:
        world = self.world
        openings: list[int] = []
        for day in range(world.days):
            day_start = self.start + day * DAY
            weekend = time.gmtime(day_start).tm_wday >= 5
            rate = self.profile.prs_per_weekday * (0.12 if weekend else 1.0)
            openings.extend(world.work_moment(day_start) for _ in range(world.poisson(rate)))
        for opened in sorted(openings):
            yield from self._pull_request(opened)

    def _title(self) -> str:
        rng = self.rng
        return f"{rng.choice(_KINDS)}({rng.choice(self.profile.areas)}): {rng.choice(_VERBS)} {rng.choice(_THINGS)}"

    def _new_pr(self, opened: int, author: str, title: str, labels: list[str]) -> _PullRequest:
        self.next_pr += 1
        pr = _PullRequest(self.next_pr, author, title, opened, labels, [])
        self.prs.append(pr)
        return pr

    def _pull_request(self, opened: int) -> Events:
        rng, world, profile = self.rng, self.world, self.profile
        title = self._title()
        kind = title.split("(", 1)[0]
        labels = {"feat": ["feature"], "fix": ["bug"], "perf": ["performance"]}.get(kind, [])
        if rng.random() < 0.1:
            labels.append("dependencies")
        pr = self._new_pr(opened, rng.choice(self.members), title, labels)
        branch = f"feature/{pr.number}-{title.split(': ', 1)[1].replace(' ', '-')}"
        first_authored = max(self.start, opened - int(world.lognormal(profile.lead_in_hours * HOUR, 0.8)))
        first = _Commit(
            world.sha(),
            first_authored,
            max(first_authored, opened - rng.randint(1, 10) * MINUTE),
            pr.author,
            "wip: " + title.split(": ", 1)[1],
            pr.number,
        )
        pr.commits.append(first)
        if rng.random() > 0.05:
            pr.first_review = opened + int(world.lognormal(profile.review_hours * HOUR, 0.9))
        wants_changes = pr.first_review is not None and rng.random() < 0.35
        changes_requested = wants_changes
        approved_at = pr.first_review
        push_at, head = opened, first
        green_at: int | None = None
        for _push in range(6):  # a pull request gets at most six pushes
            if push_at >= self.end:
                break
            cancel_at = push_at + rng.randint(60, 420) if rng.random() < 0.05 else None
            common: dict[str, Any] = {
                "workflow": "ci",
                "trigger": "pull_request",
                "branch": branch,
                "sha": head.sha,
                "pr_number": pr.number,
                "actor": pr.author,
                "jobs": profile.jobs,
            }
            result = yield from self._pipeline(
                **common,
                created=push_at + rng.randint(2, 15),
                failure_rate=profile.pr_failure_rate,
                infra_rate=profile.infra_failure_rate,
                cancel_at=cancel_at,
            )
            if result.finished is None:
                break
            if result.status == "failure" and result.infra:
                rerun_at = result.finished + rng.randint(2, 20) * MINUTE
                if rerun_at >= self.end:
                    break
                result = yield from self._pipeline(
                    **common,
                    created=rerun_at,
                    failure_rate=profile.pr_failure_rate / 2,
                    infra_rate=profile.infra_failure_rate,
                    run_id=result.id,
                    attempt=2,
                )
                if result.finished is None:
                    break
            assert result.finished is not None
            if result.status == "cancelled" and cancel_at is not None:
                next_push = cancel_at
                message = "fix typo"
            elif result.status == "failure":
                next_push = result.finished + int(world.lognormal(40 * MINUTE, 0.7))
                message = "fix failing build" if rng.random() < 0.5 else "fix tests"
            elif wants_changes and pr.first_review is not None:
                next_push = max(pr.first_review, result.finished) + int(world.lognormal(HOUR, 0.8))
                message = "address review comments"
                wants_changes = False
            else:
                green_at = result.finished
                if changes_requested and approved_at is not None:
                    # Re-approval after the requested changes went green.
                    approved_at = max(approved_at, result.finished + rng.randint(5, 60) * MINUTE)
                break
            if next_push >= self.end:
                break
            head = _Commit(world.sha(), next_push - 30, next_push, pr.author, message, pr.number)
            pr.commits.append(head)
            push_at = next_push
        if green_at is None or approved_at is None or rng.random() < 0.06:
            # Abandoned (closed unmerged a few days later), or still open when the window closes.
            closed = max(push_at, opened) + rng.randint(1, 6) * DAY
            if closed < self.end and rng.random() < 0.8:
                pr.closed = closed
            return
        merged = max(green_at, approved_at) + rng.randint(2, 45) * MINUTE
        if merged >= self.end:
            return
        pr.merged = merged
        commit = _Commit(world.sha(), merged, merged, pr.author, f"{title} (#{pr.number})", pr.number)
        pr.merge_commit = commit
        self.main.append(commit)
        yield from self._main_ci(commit)

    def _nightly(self) -> Events:
        rng = self.rng
        for day in range(self.world.days):
            created = self.start + day * DAY + 2 * HOUR + rng.randint(0, 300)
            head = self._latest(created)
            if head is None:
                continue
            yield from self._pipeline(
                workflow="nightly",
                trigger="schedule",
                branch="main",
                sha=head.sha,
                pr_number=None,
                actor="scheduler",
                created=created,
                jobs=self.profile.jobs,
                failure_rate=0.05,
                infra_rate=0.03,
            )

    # ---- default branch ------------------------------------------------------------------------------------

    def _latest(self, at: int, *, green: bool = False) -> _Commit | None:
        for commit in reversed(self.main):
            if commit.committed > at:
                continue
            if not green or (commit.green_at is not None and commit.green_at <= at):
                return commit
        return None

    def _add_main_commit(self, commit: _Commit, *, reliable: bool) -> Events:
        bisect.insort(self.main, commit, key=lambda c: c.order)
        yield from self._main_ci(commit, reliable=reliable)

    # ---- deployments ---------------------------------------------------------------------------------------

    def _version(self, service: str, commit: _Commit, kind: str) -> str:
        known = self.versions[service].get(commit.sha)
        if known:
            return known
        parts = self.version_parts[service]
        if kind == "hotfix":
            parts[2] += 1
        else:
            parts[1], parts[2] = parts[1] + 1, 0
        version = f"v{parts[0]}.{parts[1]}.{parts[2]}"
        self.versions[service][commit.sha] = version
        return version

    def _digest(self, service: str, sha: str) -> str:
        key = (service, sha)
        if key not in self.digests:
            self.digests[key] = f"sha256:{self.rng.getrandbits(256):064x}"
        return self.digests[key]

    def _release(
        self,
        service: str,
        commit: _Commit,
        at: int,
        *,
        kind: str,
        environments: Sequence[str],
        actor: str,
        failure_rate: float,
        rollback_of: dict[str, str] | None = None,
        version: str | None = None,
    ) -> Generator[Event, None, list[_Deploy] | None]:
        """One run of the deploy workflow: environments in order, stopping at the first failed one."""
        rng, world, tier = self.rng, self.world, DORA_TIERS[service]
        version = version or self._version(service, commit, kind)
        run_id = world.next_run_id()
        started = at + rng.randint(2, 8)
        moment = started
        deploys: list[_Deploy] = []
        jobs: list[_JobRun] = []
        for environment in environments:
            created = moment + rng.randint(1, 3)
            job_started = created + self._queue_seconds(SELF_HOSTED)
            checkout_end = job_started + rng.randint(2, 8)
            if tier == "elite":
                seconds = rng.randint(60, 180)
            else:
                seconds = rng.randint(120, 480) if environment != "production-eu" else rng.randint(90, 300)
            deploy_start = checkout_end + 1
            deploy_end = deploy_start + seconds
            # Rollbacks and hotfixes go out on a known-good path; ordinary deploys sometimes fail on staging.
            if environment == "staging":
                rate = 0.03 if kind == "deploy" else 0.0
            else:
                rate = failure_rate
            ok = rng.random() >= rate
            steps = [
                _Step("Checkout", "success", job_started, checkout_end),
                _Step("Deploy", "success" if ok else "failure", deploy_start, deploy_end),
            ]
            if ok:
                steps.append(_Step("Smoke test", "success", deploy_end + 1, deploy_end + 1 + rng.randint(20, 90)))
            job_end = steps[-1].finished + rng.randint(1, 3)
            deployment_id = f"dpl-{world.ids.deployment + 1:06d}"
            world.ids.deployment += 1
            jobs.append(
                _JobRun(
                    world.next_job_id(),
                    run_id,
                    f"{'rollback' if kind == 'rollback' else 'deploy'}-{environment}",
                    "deploy",
                    SELF_HOSTED,
                    1,
                    created,
                    job_started,
                    job_end,
                    "success" if ok else "failure",
                    None if ok else SCRIPT_FAILURE[self.profile.ci],
                    steps,
                    [],
                    [],
                )
            )
            deploys.append(
                _Deploy(
                    deployment_id,
                    service,
                    environment,
                    commit,
                    version,
                    deploy_start,
                    deploy_end,
                    "success" if ok else "failure",
                    kind,
                )
            )
            moment = job_end
            if not ok:
                break
        finished = moment + rng.randint(1, 4)
        if finished >= self.end:
            return None
        status = "success" if all(deploy.status == "success" for deploy in deploys) else "failure"
        # Continuous deployment starts on push; the others are started by hand.
        trigger = "push" if tier == "elite" and kind == "deploy" else "manual"
        yield self._run_event(
            run_id=run_id,
            attempt=1,
            workflow="deploy",
            trigger=trigger,
            branch="main",
            sha=commit.sha,
            pr_number=None,
            actor=actor,
            status=status,
            created=at,
            started=started,
            finished=finished,
        )
        for job in jobs:
            yield from job.events()
        for deploy in deploys:
            event: Event = {
                "type": "deployment",
                "source": SOURCE,
                "id": deploy.id,
                "service": service,
                "environment": deploy.environment,
                "sha": commit.sha,
                "version": version,
                "image_digest": self._digest(service, commit.sha),
                "actor": actor,
                "url": f"https://deploy.acme.example/{service}/{deploy.id}",
                "started_at": _ts(deploy.started),
                "finished_at": _ts(deploy.finished),
                "status": deploy.status,
                "kind": kind,
            }
            if rollback_of and deploy.environment in rollback_of:
                event["rollback_of"] = rollback_of[deploy.environment]
            yield event
            if deploy.status == "success" and deploy.environment.startswith("prod"):
                self.shipped.append(deploy)
        return deploys

    def _deploy_moments(self, tier: Tier) -> list[int]:
        rng, world = self.rng, self.world
        if tier == "low":
            # Two releases a quarter: the second ships weeks of accumulated changes. The first waits for a
            # green commit to exist.
            first_green = min((c.green_at for c in self.main if c.green_at is not None), default=self.end)
            return [
                max(world.work_moment(self.start + int(world.days * 0.02) * DAY), first_green + HOUR),
                world.work_moment(self.start + int(world.days * 0.95) * DAY),
            ]
        moments: list[int] = []
        day = rng.randint(0, 4) if tier == "medium" else 0
        while day < world.days:
            day_start = self.start + day * DAY
            weekday = time.gmtime(day_start).tm_wday < 5
            if tier == "high":
                if weekday and rng.random() < 0.85:
                    moments.append(day_start + rng.randint(12 * HOUR, 17 * HOUR))
                day += 1
            else:
                if weekday:
                    moments.append(day_start + rng.randint(13 * HOUR, 16 * HOUR))
                    day += rng.randint(7, 14)
                else:
                    day += 1
        return moments

    def _deploy_service(self, service: str) -> Events:
        tier = DORA_TIERS[service]
        state = _ServiceState(service, tier, ("staging", *PRODUCTION_ENVIRONMENTS[service]), self.start)
        if tier == "elite":
            # Continuous deployment: each commit that goes green is shipped a few minutes later.
            while not state.done:
                candidate = next((c for c in self.main if c.order > state.tried and c.green_at is not None), None)
                if candidate is None or candidate.green_at is None:
                    break
                at = max(candidate.green_at + self.rng.randint(2, 8) * MINUTE, state.busy_until)
                yield from self._try_release(state, at)
        else:
            for moment in self._deploy_moments(tier):
                if state.done:
                    break
                yield from self._try_release(state, max(moment, state.busy_until))

    def _try_release(self, state: _ServiceState, at: int) -> Events:
        rng, service, tier = self.rng, state.service, state.tier
        if at >= self.end - 3 * HOUR:
            state.done = True
            return
        commit = self._latest(at, green=True)
        if commit is None or commit.order <= state.tried:
            if tier == "elite":
                state.tried = max(state.tried, (at, ""))
            return
        state.tried = commit.order
        actor = commit.author if tier == "elite" else rng.choice(TEAM_MEMBERS[TEAMS[service]])
        failure_rate = {"elite": 0.0, "high": 0.03, "medium": 0.04, "low": 0.0}[tier]
        deploys = yield from self._release(
            service, commit, at, kind="deploy", environments=state.environments, actor=actor, failure_rate=failure_rate
        )
        if deploys is None:
            state.done = True
            return
        state.busy_until = deploys[-1].finished + MINUTE
        failed_on = deploys[-1].environment if deploys[-1].status == "failure" else None
        if failed_on is not None and (tier != "elite" or failed_on != "staging"):
            # A failed rollout step is retried once the cause is understood (continuous deployment just moves
            # on to the next commit when staging rejects one).
            retry_at = state.busy_until + rng.randint(15, 40) * MINUTE
            envs = tuple(env for env in state.environments if env != "staging" or failed_on == "staging")
            deploys = yield from self._release(
                service, commit, retry_at, kind="deploy", environments=envs, actor=actor, failure_rate=0.0
            )
            if deploys is None:
                state.done = True
                return
            state.busy_until = deploys[-1].finished + MINUTE
        primary = next(
            (d for d in deploys if d.environment == PRODUCTION_ENVIRONMENTS[service][0] and d.status == "success"),
            None,
        )
        if primary is None:
            return
        previous, state.last_good = state.last_good, primary
        state.successes += 1
        bad = [d for d in deploys if d.environment.startswith("prod")]
        chance = {"elite": 0.012, "high": 0.07, "medium": 0.08, "low": 0.0}[tier]
        if (tier == "low" and state.successes == 2) or rng.random() < chance:
            state.busy_until = yield from self._deploy_incident(state, bad, previous)

    def _deploy_incident(
        self, state: _ServiceState, bad: list[_Deploy], previous: _Deploy | None
    ) -> Generator[Event, None, int]:
        """A production deploy that broke something: page, then rollback, hotfix or flag, then resolution."""
        rng, world, service, tier = self.rng, self.world, state.service, state.tier
        primary = bad[0]
        opened = primary.finished + (
            rng.randint(3, 15) * MINUTE if tier == "elite" else int(world.lognormal(40 * MINUTE, 1.0))
        )
        if opened >= self.end:
            return state.busy_until
        incident_id = world.next_incident_id()
        severity = rng.choices(("SEV1", "SEV2", "SEV3"), (0.08, 0.37, 0.55))[0]
        acknowledged = opened + rng.randint(1, 4 if severity == "SEV1" else 12) * MINUTE
        oncall = rng.choice(TEAM_MEMBERS[TEAMS[service]])
        title = rng.choice(_INCIDENT_TITLES).format(service=service)
        if tier == "low":
            resolution = "manual"
        elif tier == "elite":
            resolution = rng.choice(("rollback", "flag"))
        else:
            resolution = rng.choices(("rollback", "hotfix", "flag"), (0.4, 0.4, 0.2))[0]
        if resolution == "rollback" and previous is None:
            resolution = "flag"
        resolved: int | None = None
        resolved_by: str | None = None
        busy_until = state.busy_until
        # The page comes from an Alertmanager alert carrying the deployed version, fired just before it opened.
        alert = orjson.dumps(
            {"status": "firing", "incident_id": incident_id, "labels": {"service": service, "version": primary.version}}
        ).decode()
        yield world.timeline("alert", opened - 2 * MINUTE, f"Firing: {title}", service, alert)
        if resolution == "rollback" and previous is not None:
            # While the rollback is prepared, on-call pauses the riskiest flag and scales the service out.
            flag = _FLAGS[int(incident_id.rsplit("-", 1)[-1]) % len(_FLAGS)]
            paused = f"Paused flag {flag} during {incident_id}"
            yield world.timeline("flag_toggle", acknowledged + MINUTE, paused, service)
            yield world.timeline("infra", acknowledged + 2 * MINUTE, f"Scaled {service} out from 6 to 12 pods", service)
            delay = rng.randint(4, 10) if tier == "elite" else rng.randint(15, 90)
            rollback = yield from self._release(
                service,
                previous.commit,
                acknowledged + delay * MINUTE,
                kind="rollback",
                environments=[d.environment for d in bad],
                actor=oncall,
                failure_rate=0.0,
                rollback_of={d.environment: d.id for d in bad},
                version=previous.version,
            )
            if rollback:
                state.last_good = rollback[0]
                resolved = rollback[-1].finished + rng.randint(2, 8 if tier == "elite" else 20) * MINUTE
                resolved_by = rollback[0].id
                busy_until = rollback[-1].finished + MINUTE
                # The bad change is reverted on main so the next deploy does not bring it back.
                revert_at = resolved + rng.randint(30, 180) * MINUTE
                if revert_at < self.end:
                    bad_title = primary.commit.message.split("\n", 1)[0]
                    revert = _Commit(
                        world.sha(),
                        revert_at,
                        revert_at,
                        oncall,
                        f'Revert "{bad_title}"\n\nThis reverts commit {primary.commit.sha}.',
                    )
                    self.direct_commits.append(revert)
                    yield from self._add_main_commit(revert, reliable=True)
        elif resolution == "hotfix":
            fix = yield from self._hotfix_pr(service, acknowledged + rng.randint(10, 40) * MINUTE, oncall, title)
            if fix is not None and fix.green_at is not None:
                deploys = yield from self._release(
                    service,
                    fix,
                    fix.green_at + rng.randint(2, 6) * MINUTE,
                    kind="hotfix",
                    environments=state.environments,
                    actor=oncall,
                    failure_rate=0.0,
                )
                hotfix = next((d for d in deploys or [] if d.environment == bad[0].environment), None)
                if deploys and hotfix is not None:
                    state.last_good = hotfix
                    state.tried = max(state.tried, fix.order)
                    resolved = deploys[-1].finished + rng.randint(5, 20) * MINUTE
                    resolved_by = hotfix.id
                    busy_until = deploys[-1].finished + MINUTE
        elif resolution == "flag":
            toggled = acknowledged + (rng.randint(3, 12) if tier == "elite" else rng.randint(10, 60)) * MINUTE
            if toggled < self.end:
                flag = rng.choice(_FLAGS)
                yield world.timeline("flag_toggle", toggled, f"Disabled flag {flag} during {incident_id}", service)
                resolved = toggled + rng.randint(2, 8) * MINUTE
        else:
            resolved = opened + int(world.lognormal(30 * HOUR, 0.3))
        if resolved is not None and resolved >= self.end:
            resolved, resolved_by = None, None
        if resolved is not None:
            ended = orjson.dumps({"status": "resolved", "incident_id": incident_id}).decode()
            yield world.timeline("alert", resolved - MINUTE, f"Resolved: {title}", service, ended)
        yield _incident(
            incident_id, service, severity, title, opened, acknowledged, resolved, None, primary.id, resolved_by
        )
        return max(busy_until, resolved or busy_until)

    def _hotfix_pr(
        self, service: str, opened: int, author: str, incident_title: str
    ) -> Generator[Event, None, _Commit | None]:
        rng, world, profile = self.rng, self.world, self.profile
        if opened >= self.end:
            return None
        title = f"fix({service}): hotfix for {incident_title[0].lower()}{incident_title[1:]}"
        pr = self._new_pr(opened, author, title, ["hotfix"])
        branch = f"hotfix/{pr.number}-{service}"
        first = _Commit(world.sha(), opened - rng.randint(5, 20) * MINUTE, opened - 60, author, title, pr.number)
        pr.commits.append(first)
        result = yield from self._pipeline(
            workflow="ci",
            trigger="pull_request",
            branch=branch,
            sha=first.sha,
            pr_number=pr.number,
            actor=author,
            created=opened + rng.randint(2, 10),
            jobs=profile.jobs,
            failure_rate=0.0,
            infra_rate=0.0,
        )
        if result.finished is None:
            return None
        pr.first_review = opened + rng.randint(5, 25) * MINUTE
        merged = max(pr.first_review, result.finished) + rng.randint(2, 10) * MINUTE
        if merged >= self.end:
            return None
        pr.merged = merged
        commit = _Commit(world.sha(), merged, merged, author, f"{title} (#{pr.number})", pr.number)
        pr.merge_commit = commit
        yield from self._add_main_commit(commit, reliable=True)
        return commit

    # ---- commits and pull requests -------------------------------------------------------------------------

    def _changes(self) -> Events:
        """Commits and pull requests, each commit linked to the production deploy that first shipped it."""
        shipped = sorted(self.shipped, key=lambda d: (d.finished, d.id))
        reach: list[tuple[int, str]] = []
        for deploy in shipped:
            reach.append(max(reach[-1], deploy.commit.order) if reach else deploy.commit.order)
        for commit in self.main:
            index = bisect.bisect_left(reach, commit.order)
            if index < len(shipped):
                commit.deployment_id = shipped[index].id
        for pr in self.prs:
            shipped_by = pr.merge_commit.deployment_id if pr.merge_commit else None
            for commit in pr.commits:
                commit.deployment_id = shipped_by
                yield _change(self.profile.name, commit)
            if pr.merge_commit:
                yield _change(self.profile.name, pr.merge_commit)
            event: Event = {
                "type": "pull_request",
                "source": SOURCE,
                "repo": self.profile.name,
                "number": pr.number,
                "author": pr.author,
                "opened_at": _ts(pr.opened),
                "base_branch": "main",
                "head_sha": pr.commits[-1].sha,
                "labels": pr.labels,
            }
            if pr.first_review is not None and pr.first_review < self.end:
                event["first_review_at"] = _ts(pr.first_review)
            if pr.merged is not None:
                event["merged_at"] = _ts(pr.merged)
                event["closed_at"] = _ts(pr.merged)
            elif pr.closed is not None:
                event["closed_at"] = _ts(pr.closed)
            yield event
        for commit in self.direct_commits:
            yield _change(self.profile.name, commit)

    # ---- security ------------------------------------------------------------------------------------------

    def _security_scans(self) -> Events:
        """Weekly scans; the open set evolves (new findings, fixes) and each scan reports all it still sees."""
        rng, world, profile = self.rng, self.world, self.profile
        images = [f"ghcr.io/acme/{service}:main" for service in self.services]
        open_findings: dict[str, list[Event]] = {"trivy": [], "semgrep": []}
        for tool, count in (("trivy", 18), ("semgrep", 10)):
            open_findings[tool] = [self._finding(tool, images) for _ in range(count)]
        monday = self.start + ((7 - time.gmtime(self.start).tm_wday) % 7) * DAY
        offset = REPOS.index(profile.name) * 10 * MINUTE
        for week, week_start in enumerate(range(monday, self.end, 7 * DAY)):
            created = week_start + 3 * HOUR + offset
            head = self._latest(created)
            if head is None or created >= self.end:
                continue
            result = yield from self._pipeline(
                workflow="security",
                trigger="schedule",
                branch="main",
                sha=head.sha,
                pr_number=None,
                actor="scheduler",
                created=created,
                jobs=(
                    JobSpec("trivy", "scan", UBUNTU, "Trivy scan", 2.0),
                    JobSpec("semgrep", "scan", UBUNTU, "Semgrep scan", 1.5),
                ),
                failure_rate=0.0,
                infra_rate=0.0,
            )
            if result.finished is None:
                continue
            # A new OpenSSL advisory lands in the payments images a few weeks in: criticals go up.
            forced = profile.name == "acme/payments" and week == 3
            for tool, findings in open_findings.items():
                kept = []
                for finding in findings:
                    chance = _FIX_PER_WEEK[finding["severity"]] / profile.findings_trend
                    if (forced and finding["severity"] == "critical") or rng.random() >= chance:
                        kept.append(finding)
                mean = (3.0 if tool == "trivy" else 1.5) * profile.findings_trend
                kept.extend(self._finding(tool, images) for _ in range(world.poisson(mean)))
                if forced and tool == "trivy":
                    kept.extend(self._finding(tool, images, "critical", "openssl") for _ in range(2))
                open_findings[tool] = kept
                scan_id = f"{tool}-{profile.name.split('/')[1]}-{time.strftime('%G-W%V', time.gmtime(created))}"
                for finding in kept:
                    yield {
                        **finding,
                        "scan_id": scan_id,
                        "run_id": result.id,
                        "scanned_at": _ts(result.finished),
                    }

    def _finding(self, tool: str, images: list[str], severity: str | None = None, package: str | None = None) -> Event:
        rng, profile = self.rng, self.profile
        if severity is None:
            levels = _TRIVY_SEVERITIES if tool == "trivy" else _SEMGREP_SEVERITIES
            severity = rng.choices([level for level, _ in levels], [weight for _, weight in levels])[0]
        if tool == "trivy":
            package = package or rng.choice(_PACKAGES)
            rule = f"CVE-{rng.randint(2023, 2026)}-{rng.randint(1000, 52999)}"
            target = rng.choice(images)
            location = f"{package}@{rng.randint(0, 3)}.{rng.randint(0, 30)}.{rng.randint(0, 20)}"
        else:
            rule = rng.choice(_SEMGREP_RULES)
            target = profile.name
            location = f"src/{rng.choice(profile.areas)}/{rng.choice(_TEST_NOUNS)}.py:{rng.randint(10, 900)}"
        return {
            "type": "finding",
            "source": SOURCE,
            "repo": profile.name,
            "tool": tool,
            "target": target,
            "rule_id": rule,
            "severity": severity,
            "fingerprint": f"{rng.getrandbits(128):032x}",
            "location": location,
        }


def _change(repo: str, commit: _Commit) -> Event:
    event: Event = {
        "type": "change",
        "source": SOURCE,
        "sha": commit.sha,
        "repo": repo,
        "authored_at": _ts(commit.authored),
        "committed_at": _ts(commit.committed),
        "author": commit.author,
        "message": commit.message,
    }
    if commit.pr_number is not None:
        event["pr_number"] = commit.pr_number
    if commit.deployment_id:
        event["deployment_id"] = commit.deployment_id
    return event


# ----- workflow files ----------------------------------------------------------------------------------------------


def _github_workflows(profile: RepoProfile) -> dict[str, Any]:
    """The repository's GitHub Actions workflows, shaped by its jobs: the files ``shipscope lint workflows`` reads."""
    jobs: dict[str, Any] = {}
    for spec in profile.jobs:
        steps: list[dict[str, Any]] = [{"uses": "actions/checkout@v4"}]
        if spec.cache:
            steps.append(
                {
                    "uses": "actions/cache@v4",
                    "with": {
                        "path": "~/.cache",
                        "key": f"${{{{ runner.os }}}}-{spec.cache}-${{{{ hashFiles('**/*.lock') }}}}",
                    },
                }
            )
        script = [f"make {spec.name}"] + [f"./ci/{spec.name}-{index}.sh" for index in range(int(spec.work_minutes * 2))]
        steps.append({"name": spec.work_step, "run": "\n".join(script) + "\n"})
        steps.extend({"name": name, "run": f"make {name.lower().replace(' ', '-')}\n"} for name in spec.extra_steps)
        job: dict[str, Any] = {"runs-on": list(spec.runner) if len(spec.runner) > 1 else spec.runner[0], "steps": steps}
        if spec.main_only:
            job["if"] = "github.ref == 'refs/heads/main'"
        jobs[spec.name] = job
    files = {
        ".github/workflows/ci.yml": {
            "name": "ci",
            "on": {"pull_request": None, "push": {"branches": ["main"]}},
            "jobs": jobs,
        }
    }
    if profile.nightly:
        nightly = {name: job for name, job in jobs.items() if name.endswith("tests")}
        files[".github/workflows/nightly.yml"] = {
            "name": "nightly",
            "on": {"schedule": [{"cron": "0 3 * * *"}]},
            "jobs": nightly,
        }
    return files


def _gitlab_pipeline(profile: RepoProfile) -> dict[str, Any]:
    """The repository's ``.gitlab-ci.yml``, shaped by its jobs."""
    config: dict[str, Any] = {
        "stages": list(dict.fromkeys(spec.stage for spec in profile.jobs)),
        ".runner-defaults": {"retry": {"max": 1, "when": ["runner_system_failure"]}, "interruptible": True},
    }
    for spec in profile.jobs:
        job: dict[str, Any] = {
            "stage": spec.stage,
            "extends": ".runner-defaults",
            "tags": list(spec.runner),
            "script": [f"make {spec.name}"]
            + [f"./ci/{spec.name}-{index}.sh" for index in range(int(spec.work_minutes * 2))],
        }
        if spec.cache:
            job["cache"] = {"key": spec.cache, "paths": [".cache/"]}
        if spec.main_only:
            job["rules"] = [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]
        config[spec.name] = job
    return config


def _workflow_measurements(measured_at: dt.datetime) -> Iterator[Event]:
    """Each repository's workflow files written out and measured as ``shipscope lint workflows --repo`` does."""
    import tempfile
    from pathlib import Path

    import yaml  # type: ignore[import-untyped, unused-ignore]

    from shipscope.metrics.workflows import lint_workflow, workflow_events

    for repo in REPOS:
        profile = PROFILES[repo]
        files = _github_workflows(profile) if profile.ci == "github" else {".gitlab-ci.yml": _gitlab_pipeline(profile)}
        with tempfile.TemporaryDirectory() as directory:
            root = Path(directory)
            results = []
            for name, content in files.items():
                path = root / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(yaml.safe_dump(content, sort_keys=False))
                results.extend(lint_workflow(path, repo_root=root))
        yield from workflow_events(results, repo, measured_at=measured_at)

"""Settings, declared once: each has a name, a default, an environment variable and a line of help.

Values come from, in rising precedence: the defaults below, ``shipscope.toml`` (or the file named by
``SHIPSCOPE_CONFIG``), then ``SHIPSCOPE_*`` environment variables. Secrets (API tokens) are read only from the
environment, never from the file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from shipscope.errors import ConfigError

DEFAULT_DB = "duckdb:///shipscope.duckdb"

DEFAULT_STAGE_PATTERNS: dict[str, list[str]] = {
    "checkout": ["checkout", "clone", "fetch"],
    "restore-cache": ["cache", "restore"],
    "build": ["build", "compile", "install", "setup", "bundle", "assemble"],
    "test": ["test", "spec", "pytest", "jest", "check", "lint"],
    "scan": ["scan", "codeql", "trivy", "semgrep", "sast", "audit", "security"],
    "push": ["push", "publish", "upload", "release"],
    "deploy": ["deploy", "rollout", "helm", "kubectl", "terraform apply"],
}
"""Canonical stage → substrings of a step name (case-insensitive); the first stage with a match wins."""


def _setting(default: Any, env: str | None, help: str, secret: bool = False) -> Any:
    metadata = {"env": env, "help": help, "secret": secret}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _default(setting: Any) -> Any:
    return setting.default_factory() if setting.default is MISSING else setting.default


@dataclass(frozen=True)
class Settings:
    db: str = _setting(DEFAULT_DB, "SHIPSCOPE_DB", "Database URL: duckdb:///PATH or postgresql+psycopg://…")
    host: str = _setting("127.0.0.1", "SHIPSCOPE_HOST", "Address `serve` binds.")
    port: int = _setting(8080, "SHIPSCOPE_PORT", "Port `serve` listens on.")
    max_body_bytes: int = _setting(
        10 * 1024 * 1024,
        "SHIPSCOPE_MAX_BODY_BYTES",
        "Largest request body accepted (after gunzip); more is 413.",
    )
    api_tokens: str = _setting(
        "",
        "SHIPSCOPE_API_TOKENS",
        "Space-separated TOKEN:SCOPE[,SCOPE] entries; scopes are ingest, read, admin. Environment only.",
        secret=True,
    )
    github_webhook_secrets: str = _setting(
        "",
        "SHIPSCOPE_GITHUB_WEBHOOK_SECRETS",
        "Secrets GitHub signs webhook deliveries with, comma-separated (several while rotating). Environment only.",
        secret=True,
    )
    gitlab_webhook_tokens: str = _setting(
        "",
        "SHIPSCOPE_GITLAB_WEBHOOK_TOKENS",
        "Tokens GitLab sends in X-Gitlab-Token, comma-separated. Environment only.",
        secret=True,
    )
    pagerduty_webhook_secrets: str = _setting(
        "",
        "SHIPSCOPE_PAGERDUTY_WEBHOOK_SECRETS",
        "Secrets of the PagerDuty v3 webhook subscriptions (X-PagerDuty-Signature), comma-separated. Environment only.",
        secret=True,
    )
    flag_webhook_secrets: str = _setting(
        "",
        "SHIPSCOPE_FLAG_WEBHOOK_SECRETS",
        "Secrets LaunchDarkly-style flag webhooks sign with (X-LD-Signature), comma-separated. Environment only.",
        secret=True,
    )
    api_token: str = _setting(
        "",
        "SHIPSCOPE_TOKEN",
        "Bearer token the CLI sends to a running server. Environment only.",
        secret=True,
    )
    duckdb_memory_limit: str = _setting(
        "",
        "SHIPSCOPE_DUCKDB_MEMORY_LIMIT",
        "DuckDB memory limit, e.g. 2GB; empty leaves DuckDB's default (80% of RAM).",
    )
    commit_batch_max: int = _setting(
        512, "SHIPSCOPE_COMMIT_BATCH_MAX", "Most requests the server's writer folds into one commit."
    )
    commit_gather_ms: int = _setting(
        5,
        "SHIPSCOPE_COMMIT_GATHER_MS",
        "Longest the server's writer waits for more requests to join a commit (it stops once as many have come as"
        " recent commits answered); raises throughput under load.",
    )
    stage_patterns: dict[str, list[str]] = _setting(
        DEFAULT_STAGE_PATTERNS,
        None,
        "Step-name patterns per canonical stage (shipscope.toml [stage_patterns]).",
    )

    metrics: dict[str, Any] = _setting(
        {}, None, "Metric definitions: production environment patterns, teams, classifier patterns (toml [metrics])."
    )

    thresholds: dict[str, Any] = _setting(
        {}, None, "Alert thresholds: limits, per-repo overrides, enabled flags (toml [thresholds.<name>])."
    )
    exporter: dict[str, Any] = _setting(
        {}, None, "Prometheus /metrics: series budget, label allowlists, cache, gauge window (toml [exporter])."
    )
    auto_rollback: dict[str, Any] = _setting(
        {}, None, "Automatic rollback on an SLO breach: guard window, dry run, approval, per-service strategies."
    )
    retention: dict[str, Any] = _setting(
        {}, None, 'How long each table keeps rows, e.g. raw_events = "730d" (toml [retention]); unnamed: for ever.'
    )
    alert_interval_seconds: int = _setting(
        300, "SHIPSCOPE_ALERT_INTERVAL_SECONDS", "How often the server evaluates thresholds; 0 turns it off."
    )
    alert_window: str = _setting("7d", "SHIPSCOPE_ALERT_WINDOW", "The window thresholds are evaluated over.")
    slack_webhook_urls: str = _setting(
        "",
        "SHIPSCOPE_SLACK_WEBHOOK_URLS",
        "Slack incoming webhooks for threshold notices, comma-separated.",
        secret=True,
    )
    alert_webhook_urls: str = _setting(
        "", "SHIPSCOPE_ALERT_WEBHOOK_URLS", "Generic JSON webhooks for threshold notices, comma-separated.", secret=True
    )
    dashboard_url: str = _setting("", "SHIPSCOPE_DASHBOARD_URL", "Linked from notices.")
    runbook_url: str = _setting("", "SHIPSCOPE_RUNBOOK_URL", "The rollback runbook, linked from notices and pages.")
    pagerduty_routing_key: str = _setting(
        "",
        "SHIPSCOPE_PAGERDUTY_ROUTING_KEY",
        "Events API v2 integration key: Alertmanager alerts received are forwarded to it with deploy context.",
        secret=True,
    )
    pagerduty_events_url: str = _setting(
        "https://events.pagerduty.com/v2/enqueue", "SHIPSCOPE_PAGERDUTY_EVENTS_URL", "The Events API v2 endpoint."
    )
    otlp_endpoint: str = _setting(
        "",
        "SHIPSCOPE_OTLP_ENDPOINT",
        "OTLP/HTTP endpoint (http://collector:4318) the server sends finished runs and deployments to as traces; "
        "empty turns it off.",
    )
    otlp_settle_seconds: int = _setting(
        10,
        "SHIPSCOPE_OTLP_SETTLE_SECONDS",
        "How long the live trace export waits after a run finishes, for its trailing job webhooks.",
    )

    def with_overrides(self, **values: Any) -> Settings:
        return replace(self, **{key: value for key, value in values.items() if value is not None})


def setting_table() -> list[tuple[str, str | None, Any, str]]:
    """(name, environment variable, default, help) for every setting: feeds docs and `--help` text."""
    return [(f.name, f.metadata["env"], _default(f), f.metadata["help"]) for f in fields(Settings)]


def _coerce(name: str, raw: Any, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, dict):
            if not isinstance(raw, dict):
                raise TypeError("expected a table")
            return raw
        return str(raw)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"setting {name}: {error}, got {raw!r}") from error


def load_settings(config_path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    environ = dict(os.environ) if environ is None else environ
    path = config_path or Path(environ.get("SHIPSCOPE_CONFIG", "shipscope.toml"))
    from_file: dict[str, Any] = {}
    if path.exists():
        try:
            from_file = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: {error}") from error
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name in from_file:
            if f.metadata["secret"]:
                raise ConfigError(f"{path}: {f.name} is a secret; set {f.metadata['env']} in the environment")
            values[f.name] = _coerce(f.name, from_file.pop(f.name), _default(f))
        env = f.metadata["env"]
        if env and env in environ:
            values[f.name] = _coerce(f.name, environ[env], _default(f))
    unknown = sorted(key for key in from_file)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    return Settings(**values)

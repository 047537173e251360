"""Threshold alerts: evaluate, compare with what was already announced, notify what started and what cleared.

The announced state lives in the store (the cursor table, key ``alerts:active``), so a restarted server neither
repeats a notice nor forgets to clear one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson

from shipscope.config import Settings
from shipscope.integrations.notify import NoticeState, Notifier
from shipscope.metrics.common import Filters, MetricsConfig, Window
from shipscope.metrics.thresholds import Violation, evaluate, thresholds_from_table
from shipscope.postmortems import open_items
from shipscope.store import Store

log = logging.getLogger(__name__)
STATE_KEY = "alerts:active"


def violations(store: Store, settings: Settings, window: Window, filters: Filters | None = None) -> list[Violation]:
    """The thresholds of ``settings`` violated over ``window``, and the postmortem action items past due (as of the
    window's end: a promise to prevent a recurrence is a threshold too)."""
    found = evaluate(
        store,
        window,
        filters or Filters(),
        MetricsConfig.from_table(settings.metrics),
        thresholds_from_table(settings.thresholds),
    )
    today = window.until.date()
    for item in open_items(store, today, overdue_only=True):
        days = (today - item.due).days
        found.append(
            Violation(
                "action_item_overdue",
                f"{item.incident_id}/{item.id}",
                float(days),
                0.0,
                {"owner": item.owner, "due": item.due.isoformat(), "kind": item.kind},
                f'{item.kind} item of {item.incident_id} "{item.title}" ({item.owner}) is {days} day(s) past due',
            )
        )
    return found


def _listed(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def notifier_for(settings: Settings) -> Notifier | None:
    slack, hooks = _listed(settings.slack_webhook_urls), _listed(settings.alert_webhook_urls)
    if not slack and not hooks:
        return None
    return Notifier(slack_urls=slack, webhook_urls=hooks, dashboard_url=settings.dashboard_url or None)


@dataclass
class AlertRound:
    violations: list[Violation]
    started: list[Violation] = field(default_factory=list)
    cleared: list[dict[str, object]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def alert_round(store: Store, settings: Settings, notifier: Notifier | None) -> AlertRound:
    """One evaluation: notices for what started or cleared since the last round, none while a violation holds."""
    current = violations(store, settings, Window.parse(settings.alert_window, None))
    stored = store.cursor(STATE_KEY)
    state = NoticeState.from_json(orjson.loads(stored)) if stored else NoticeState()
    started, cleared = state.update(current)
    result = AlertRound(current, started, cleared)
    if (started or cleared) and notifier is not None:
        result.warnings = notifier.send(started, cleared)
        for warning in result.warnings:
            log.warning("alert notice: %s", warning)
    store.set_cursor(STATE_KEY, orjson.dumps(state.to_json()).decode())
    return result

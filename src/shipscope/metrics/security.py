"""Security trend (DESIGN.md §3): open findings by severity at the last scan of each ISO week, per repository.

Scans. A scan is the findings sharing (source, scan_id); one scan may hold several tools (a SARIF log with several
runs), so each tool's part of it counts as that tool's scan, at the latest ``scanned_at`` of its findings. Only
scans in the window count. A scan is known only through its findings: a scan that found nothing leaves no row.

Weeks. For each repository and each ISO week (Monday 00:00 UTC) meeting the window, each tool's last scan of the
week is taken and their findings are united: the week's open findings by severity are those. A week in which no
tool scanned reports ``scanned: false`` and null counts; nothing is carried over from earlier weeks.

New and fixed, per tool. ``new`` counts fingerprints in the tool's scan of this week that were absent from that
tool's previous scan, the last one of the latest earlier week it scanned in (looking back before the window when
needed, so a gap week does not make everything new); ``fixed`` counts fingerprints of that previous scan absent
now. A tool's first scan ever has nothing to compare with and adds to neither; when none of the week's tools has
an earlier scan, ``new`` and ``fixed`` are null.

``critical_previous`` is the critical count of those previous scans (the same tools), and ``critical_up`` says the
week's critical count grew against it: the threshold alert on criticals rising week over week. With no earlier
scan of any of the week's tools, ``critical_previous`` is null and ``critical_up`` false (nothing to grow from).

``top_rules`` per repository: the most frequent (tool, rule_id) among each tool's latest scan in the window, with
the count and the highest severity seen. The service and environment filters do not apply to findings.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from shipscope.metrics.common import DEFAULT_CONFIG, NO_FILTERS, Filters, MetricsConfig, Window, teams_members
from shipscope.store import Store, schema

__all__ = ["SEVERITIES", "RuleCount", "ScanRef", "SecurityReport", "SecurityWeek", "RepoSecurity", "security_report"]

SEVERITIES = ("critical", "high", "medium", "low", "info")
"""Most severe first."""
_RANK = {severity: len(SEVERITIES) - index for index, severity in enumerate(SEVERITIES)}
TOP_RULES = 10


# ----- results ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanRef:
    tool: str
    source: str
    scan_id: str
    scanned_at: datetime
    previous_scan_id: str | None
    """The tool's scan that new and fixed compare against (None: the tool's first scan)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "source": self.source,
            "scan_id": self.scan_id,
            "scanned_at": _iso(self.scanned_at),
            "previous_scan_id": self.previous_scan_id,
        }


@dataclass(frozen=True)
class SecurityWeek:
    week: date
    """The Monday (UTC) the ISO week starts on."""
    scans: tuple[ScanRef, ...]
    open: dict[str, int] | None
    """Open findings per severity at the week's last scans; None for a week without a scan."""
    new: int | None
    fixed: int | None
    critical_previous: int | None
    critical_up: bool | None

    @property
    def scanned(self) -> bool:
        return bool(self.scans)

    def to_json(self) -> dict[str, Any]:
        iso_year, iso_week, _ = self.week.isocalendar()
        shape: dict[str, Any] = {
            "week": self.week.isoformat(),
            "iso_week": f"{iso_year}-W{iso_week:02d}",
            "scanned": self.scanned,
            "scans": [scan.to_json() for scan in self.scans],
        }
        if self.open is None:
            shape["open"] = {severity: None for severity in (*SEVERITIES, "total")}
            shape["reason"] = "no scan this week"
        else:
            shape["open"] = {**self.open, "total": sum(self.open.values())}
        shape.update(
            new=self.new,
            fixed=self.fixed,
            critical_previous=self.critical_previous,
            critical_up=self.critical_up,
        )
        return shape


@dataclass(frozen=True)
class RuleCount:
    tool: str
    rule_id: str
    count: int
    max_severity: str

    def to_json(self) -> dict[str, Any]:
        return {"tool": self.tool, "rule_id": self.rule_id, "count": self.count, "max_severity": self.max_severity}


@dataclass(frozen=True)
class RepoSecurity:
    repo: str
    weeks: tuple[SecurityWeek, ...]
    top_rules: tuple[RuleCount, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "weeks": [week.to_json() for week in self.weeks],
            "top_rules": [rule.to_json() for rule in self.top_rules],
        }


@dataclass(frozen=True)
class SecurityReport:
    window: Window
    filters: Filters
    weeks: tuple[date, ...]
    repos: tuple[RepoSecurity, ...]

    def to_json(self) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "window": self.window.to_json(),
            "filters": self.filters.to_json(),
            "weeks": [week.isoformat() for week in self.weeks],
            "repos": [repo.to_json() for repo in self.repos],
        }
        if not self.repos:
            shape["no_data"] = "no scans in the window"
        return shape


# ----- the report ------------------------------------------------------------------------------------------


def security_report(
    store: Store,
    window: Window,
    filters: Filters = NO_FILTERS,
    config: MetricsConfig = DEFAULT_CONFIG,
) -> SecurityReport:
    """The weekly security trend per repository over ``window`` (see the module docstring)."""
    weeks = _weeks(window)
    selected = _selected_scans(window, filters, config)

    scans: dict[tuple[str, date], list[ScanRef]] = defaultdict(list)
    for row in store.query(
        sa.select(selected).order_by(selected.c.repo, selected.c.week, selected.c.tool, selected.c.scan_id)
    ):
        scans[(row["repo"], _day(row["week"]))].append(
            ScanRef(row["tool"], row["source"], row["scan_id"], _utc(row["scanned_at"]), row["prev_scan_id"])
        )
    counts = {(row["repo"], _day(row["week"])): row for row in store.query(_weekly_counts(selected))}
    top: dict[str, list[RuleCount]] = defaultdict(list)
    for row in store.query(_top_rules(selected)):
        top[row["repo"]].append(
            RuleCount(row["tool"], row["rule_id"], int(row["findings"]), SEVERITIES[len(SEVERITIES) - row["rank"]])
        )

    repos: list[RepoSecurity] = []
    for repo in sorted({repo for repo, _ in scans}):
        series: list[SecurityWeek] = []
        for week in weeks:
            week_scans = tuple(scans.get((repo, week), ()))
            weekly = counts.get((repo, week))
            if not week_scans or weekly is None:
                series.append(SecurityWeek(week, (), None, None, None, None, None))
                continue
            has_baseline = any(scan.previous_scan_id is not None for scan in week_scans)
            critical_previous = int(weekly["critical_previous"]) if has_baseline else None
            series.append(
                SecurityWeek(
                    week,
                    week_scans,
                    {severity: int(weekly[severity]) for severity in SEVERITIES},
                    int(weekly["new"]) if has_baseline else None,
                    int(weekly["fixed"]) if has_baseline else None,
                    critical_previous,
                    critical_previous is not None and int(weekly["critical"]) > critical_previous,
                )
            )
        repos.append(RepoSecurity(repo, tuple(series), tuple(top.get(repo, ()))))
    return SecurityReport(window, filters, weeks, tuple(repos))


def _weeks(window: Window) -> tuple[date, ...]:
    """The Mondays of the ISO weeks meeting ``[since, until)``, in UTC."""
    first = window.since.astimezone(UTC).date()
    first -= timedelta(days=first.weekday())
    last_moment = window.until.astimezone(UTC) - timedelta(microseconds=1)
    weeks: list[date] = []
    week = first
    while week <= last_moment.date():
        weeks.append(week)
        week += timedelta(weeks=1)
    return tuple(weeks)


# ----- queries ---------------------------------------------------------------------------------------------


def _severity_rank(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.case(*((column == severity, rank) for severity, rank in _RANK.items()), else_=0)


def _selected_scans(window: Window, filters: Filters, config: MetricsConfig) -> sa.CTE:
    """Per (repo, tool, week in the window): the tool's last scan of the week and the tool's scan before it."""
    findings = schema.findings
    conditions: list[sa.ColumnElement[bool]] = [findings.c.scanned_at < window.until]
    if filters.repo is not None:
        conditions.append(findings.c.repo == filters.repo)
    members = teams_members(config, filters.team)
    if members is not None:
        conditions.append(findings.c.repo.in_(list(members)))
    tool_scans = (
        sa.select(
            findings.c.repo,
            findings.c.tool,
            findings.c.source,
            findings.c.scan_id,
            sa.func.max(findings.c.scanned_at).label("scanned_at"),
        )
        .where(*conditions)
        .group_by(findings.c.repo, findings.c.tool, findings.c.source, findings.c.scan_id)
        .subquery("tool_scans")
    )
    ts = tool_scans.c
    # Scans before the window only serve as baselines; they form their own period even in the window's first week.
    inside = sa.case((ts.scanned_at >= window.since, 1), else_=0)
    week = sa.func.date_trunc("week", ts.scanned_at)
    ranked = sa.select(
        ts.repo,
        ts.tool,
        ts.source,
        ts.scan_id,
        ts.scanned_at,
        week.label("week"),
        inside.label("inside"),
        sa.func.row_number()
        .over(
            partition_by=[ts.repo, ts.tool, week, inside],
            order_by=[ts.scanned_at.desc(), ts.source.desc(), ts.scan_id.desc()],
        )
        .label("nth"),
    ).subquery("ranked_scans")
    rk = ranked.c
    order = [rk.week, rk.inside]
    chained = (
        sa.select(
            rk.repo,
            rk.tool,
            rk.source,
            rk.scan_id,
            rk.scanned_at,
            rk.week,
            rk.inside,
            sa.func.lag(rk.source).over(partition_by=[rk.repo, rk.tool], order_by=order).label("prev_source"),
            sa.func.lag(rk.scan_id).over(partition_by=[rk.repo, rk.tool], order_by=order).label("prev_scan_id"),
        )
        .where(rk.nth == 1)
        .subquery("weekly_scans")
    )
    ch = chained.c
    return (
        sa.select(ch.repo, ch.tool, ch.source, ch.scan_id, ch.scanned_at, ch.week, ch.prev_source, ch.prev_scan_id)
        .where(ch.inside == 1)
        .cte("selected_scans")
    )


def _scan_findings(selected: sa.CTE, source: sa.ColumnElement[Any], scan_id: sa.ColumnElement[Any], side: int) -> Any:
    findings = schema.findings
    return (
        sa.select(
            selected.c.repo,
            selected.c.tool,
            selected.c.week,
            findings.c.fingerprint,
            _severity_rank(findings.c.severity).label("rank"),
            sa.literal(side).label("side"),
            sa.case((selected.c.prev_scan_id.is_not(None), 1), else_=0).label("baselined"),
        )
        .select_from(selected)
        .join(
            findings,
            sa.and_(
                findings.c.source == source,
                findings.c.scan_id == scan_id,
                findings.c.repo == selected.c.repo,
                findings.c.tool == selected.c.tool,
            ),
        )
    )


def _weekly_counts(selected: sa.CTE) -> sa.Select[Any]:
    """Per (repo, week): open findings by severity, new, fixed, and the previous scans' criticals."""
    both = sa.union_all(
        _scan_findings(selected, selected.c.source, selected.c.scan_id, 1),
        _scan_findings(selected, selected.c.prev_source, selected.c.prev_scan_id, 2),
    ).subquery("scan_findings")
    b = both.c
    per_fingerprint = (
        sa.select(
            b.repo,
            b.week,
            sa.func.max(sa.case((b.side == 1, b.rank))).label("now_rank"),
            sa.func.max(sa.case((b.side == 2, b.rank))).label("before_rank"),
            sa.func.max(b.baselined).label("baselined"),
        )
        .group_by(b.repo, b.tool, b.week, b.fingerprint)
        .subquery("fingerprints")
    )
    fp = per_fingerprint.c
    now, before = fp.now_rank.is_not(None), fp.before_rank.is_not(None)
    return sa.select(
        fp.repo,
        fp.week,
        *(sa.func.count().filter(fp.now_rank == rank).label(severity) for severity, rank in _RANK.items()),
        sa.func.count().filter(sa.and_(now, fp.before_rank.is_(None), fp.baselined == 1)).label("new"),
        sa.func.count().filter(sa.and_(before, fp.now_rank.is_(None))).label("fixed"),
        sa.func.count().filter(fp.before_rank == _RANK["critical"]).label("critical_previous"),
    ).group_by(fp.repo, fp.week)


def _top_rules(selected: sa.CTE) -> sa.Select[Any]:
    """Per repo, the most frequent (tool, rule_id) at each tool's latest scan in the window."""
    findings = schema.findings
    latest = (
        sa.select(
            selected.c.repo,
            selected.c.tool,
            selected.c.source,
            selected.c.scan_id,
            selected.c.week,
            sa.func.max(selected.c.week).over(partition_by=[selected.c.repo, selected.c.tool]).label("latest_week"),
        )
        .select_from(selected)
        .subquery("latest_candidates")
    )
    lt = latest.c
    rules = (
        sa.select(
            lt.repo,
            lt.tool,
            findings.c.rule_id,
            sa.func.count().label("findings"),
            sa.func.max(_severity_rank(findings.c.severity)).label("rank"),
        )
        .select_from(latest)
        .join(
            findings,
            sa.and_(
                findings.c.source == lt.source,
                findings.c.scan_id == lt.scan_id,
                findings.c.repo == lt.repo,
                findings.c.tool == lt.tool,
            ),
        )
        .where(lt.week == lt.latest_week)
        .group_by(lt.repo, lt.tool, findings.c.rule_id)
        .subquery("rule_counts")
    )
    rc = rules.c
    ranked = sa.select(
        *rc,
        sa.func.row_number()
        .over(partition_by=rc.repo, order_by=[rc.findings.desc(), rc.rank.desc(), rc.tool, rc.rule_id])
        .label("place"),
    ).subquery("ranked_rules")
    rr = ranked.c
    return (
        sa.select(rr.repo, rr.tool, rr.rule_id, rr.findings, rr.rank)
        .where(rr.place <= TOP_RULES)
        .order_by(rr.repo, rr.place)
    )


# ----- helpers ---------------------------------------------------------------------------------------------


def _day(value: date | datetime) -> date:
    if isinstance(value, datetime):
        return _utc(value).date()
    return value


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).isoformat().replace("+00:00", "Z")

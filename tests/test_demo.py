"""The demo dataset: deterministic, valid, and shaped so every metric and alert has something to show.

Each distribution the dashboard relies on is recomputed here with plain Python from the generated dicts,
following the definitions of DESIGN.md §3.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from itertools import islice
from statistics import median
from typing import Any

import orjson
import pytest

from shipscope.demo import DORA_TIERS, PRODUCTION_ENVIRONMENTS, REPOS, SERVICES, TEAMS, generate
from shipscope.events import parse_event

Event = dict[str, Any]

UNTIL = date(2026, 11, 1)
DAYS = 90
INFRA_REASONS = {"runner_system_failure", "The runner has received a shutdown signal", "stuck_or_timeout_failure"}
COMPLETED = {"success", "failure"}


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return list(generate(days=DAYS, seed=7, until=UNTIL))


@pytest.fixture(scope="module")
def by_type(events: list[Event]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        grouped[event["type"]].append(event)
    return grouped


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def seconds(start: str, end: str) -> float:
    return (at(end) - at(start)).total_seconds()


def percentile(values: Iterable[float], fraction: float) -> float:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def final_runs(by_type: dict[str, list[Event]]) -> dict[tuple[str, int], Event]:
    """The last reported version of each run execution (id, attempt)."""
    runs: dict[tuple[str, int], Event] = {}
    for run in by_type["pipeline_run"]:
        runs[(run["id"], run["attempt"])] = run
    return runs


def run_repos(by_type: dict[str, list[Event]]) -> dict[str, Event]:
    return {run["id"]: run for run in by_type["pipeline_run"]}


# ---- metrics, computed from the dicts --------------------------------------------------------------------


def pr_build_p95_minutes(by_type: dict[str, list[Event]]) -> dict[str, float]:
    durations: dict[str, list[float]] = defaultdict(list)
    for run in final_runs(by_type).values():
        if run["trigger"] == "pull_request" and run["status"] in COMPLETED:
            durations[run["repo"]].append(seconds(run["started_at"], run["finished_at"]))
    return {repo: percentile(values, 0.95) / 60 for repo, values in durations.items()}


def longest_suite_per_repo(by_type: dict[str, list[Event]]) -> dict[str, tuple[str, float]]:
    runs = run_repos(by_type)
    totals: dict[tuple[str, str], float] = defaultdict(float)
    repo_of_job: dict[str, str] = {}
    for case in by_type["test_case"]:
        totals[(case["job_id"], case["suite"])] += case["duration_seconds"]
        repo_of_job[case["job_id"]] = runs[case["run_id"]]["repo"]
    longest: dict[str, tuple[str, float]] = {}
    for (job_id, suite), total in totals.items():
        repo = repo_of_job[job_id]
        if total > longest.get(repo, ("", 0.0))[1]:
            longest[repo] = (suite, total)
    return longest


def default_branch_failure_rates(by_type: dict[str, list[Event]]) -> dict[str, float]:
    infra_runs = {
        (job["run_id"], job["attempt"]) for job in by_type["job"] if job.get("failure_reason") in INFRA_REASONS
    }
    tally: dict[str, Counter[str]] = defaultdict(Counter)
    for key, run in final_runs(by_type).items():
        if run["branch"] != "main" or run["status"] not in COMPLETED:
            continue
        if run["status"] == "failure" and key in infra_runs:
            tally[run["repo"]]["infra"] += 1
            continue
        tally[run["repo"]][run["status"]] += 1
    return {repo: c["failure"] / (c["failure"] + c["success"]) for repo, c in tally.items()}


def queue_medians_minutes(by_type: dict[str, list[Event]]) -> dict[tuple[str, ...], float]:
    waits: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for job in by_type["job"]:
        if "started_at" in job:
            waits[tuple(job["runner"])].append(seconds(job["created_at"], job["started_at"]))
    return {runner: median(values) / 60 for runner, values in waits.items()}


def warm_cache_hit_rates(by_type: dict[str, list[Event]]) -> dict[str, float]:
    runs = final_runs(by_type)
    first_run_on_branch: dict[tuple[str, str], datetime] = {}
    for run in runs.values():
        key = (run["repo"], run["branch"])
        created = at(run["created_at"])
        if key not in first_run_on_branch or created < first_run_on_branch[key]:
            first_run_on_branch[key] = created
    jobs = {job["id"]: job for job in by_type["job"]}
    tally: dict[str, Counter[bool]] = defaultdict(Counter)
    for cache in by_type["cache"]:
        job = jobs[cache["job_id"]]
        run = runs[(cache["run_id"], job["attempt"])]
        if at(run["created_at"]) > first_run_on_branch[(run["repo"], run["branch"])]:
            tally[run["repo"]][cache["hit"]] += 1
    return {repo: c[True] / (c[True] + c[False]) for repo, c in tally.items()}


def flaky_rates(by_type: dict[str, list[Event]]) -> dict[str, float]:
    runs = run_repos(by_type)
    outcomes: dict[tuple[str, ...], list[tuple[int, str]]] = defaultdict(list)
    executions: Counter[str] = Counter()
    for case in by_type["test_case"]:
        run = runs[case["run_id"]]
        executions[run["repo"]] += 1
        test_key = (run["repo"], run["sha"], case["suite"], case.get("classname", ""), case["name"])
        outcomes[test_key].append((case["attempt"], case["outcome"]))
    flaky: Counter[str] = Counter()
    for key, results in outcomes.items():
        passed = [attempt for attempt, outcome in results if outcome == "passed"]
        for attempt, outcome in results:
            if outcome in ("failed", "error") and any(later > attempt for later in passed):
                flaky[key[0]] += 1
    return {repo: flaky[repo] / total for repo, total in executions.items()}


def weekly_criticals(by_type: dict[str, list[Event]]) -> dict[str, list[int]]:
    """Open critical findings at the last scan of each ISO week, per repo (summed over tools)."""
    last_scan: dict[tuple[str, str, tuple[int, int]], tuple[datetime, str]] = {}
    criticals: Counter[str] = Counter()
    for finding in by_type["finding"]:
        scanned = at(finding["scanned_at"])
        iso = scanned.isocalendar()
        week = (iso.year, iso.week)
        key = (finding["repo"], finding["tool"], week)
        if key not in last_scan or scanned > last_scan[key][0]:
            last_scan[key] = (scanned, finding["scan_id"])
        if finding["severity"] == "critical":
            criticals[finding["scan_id"]] += 1
    per_week: dict[str, dict[tuple[int, int], int]] = defaultdict(lambda: defaultdict(int))
    for (repo, _tool, week), (_scanned, scan_id) in last_scan.items():
        per_week[repo][week] += criticals[scan_id]
    return {repo: [weeks[week] for week in sorted(weeks)] for repo, weeks in per_week.items()}


def dora(by_type: dict[str, list[Event]]) -> dict[str, dict[str, float]]:
    """The four keys per service, over the whole window."""
    main_shas = {run["sha"] for run in by_type["pipeline_run"] if run["branch"] == "main" and run["workflow"] == "ci"}
    changes = by_type["change"]
    first_authored: dict[tuple[str, int], datetime] = {}
    for change in changes:
        if "pr_number" in change:
            key = (change["repo"], change["pr_number"])
            authored = at(change["authored_at"])
            first_authored[key] = min(first_authored.get(key, authored), authored)
    history: dict[str, list[Event]] = defaultdict(list)
    for change in changes:
        if change["sha"] in main_shas:
            history[change["repo"]].append(change)
    for commits in history.values():
        commits.sort(key=lambda c: (c["committed_at"], c["sha"]))
    order = {c["sha"]: index for commits in history.values() for index, c in enumerate(commits)}

    prod = [d for d in by_type["deployment"] if d["environment"].startswith("prod") and d["status"] == "success"]
    prod.sort(key=lambda d: d["finished_at"])
    incidents = [i for i in by_type["incident"] if "infra-only" not in i.get("labels", [])]
    failed: set[str] = {d["rollback_of"] for d in prod if d.get("rollback_of")}
    for hotfix in (d for d in prod if d["kind"] == "hotfix"):
        before = [
            d
            for d in prod
            if d["service"] == hotfix["service"]
            and d["environment"] == hotfix["environment"]
            and d["finished_at"] < hotfix["started_at"]
        ]
        if before and seconds(before[-1]["finished_at"], hotfix["started_at"]) < 86_400:
            failed.add(before[-1]["id"])
    for incident in incidents:
        if incident.get("caused_by_deployment_id"):
            failed.add(incident["caused_by_deployment_id"])
            continue
        before = [d for d in prod if d["service"] == incident["service"] and d["finished_at"] < incident["opened_at"]]
        if before:
            failed.add(before[-1]["id"])

    result: dict[str, dict[str, float]] = {}
    for service, repo in SERVICES.items():
        deploys = [d for d in prod if d["service"] == service]
        leads: list[float] = []
        for environment in PRODUCTION_ENVIRONMENTS[service]:
            in_env = [d for d in deploys if d["environment"] == environment]
            for previous, deploy in zip(in_env, in_env[1:], strict=False):
                low, high = order[previous["sha"]], order[deploy["sha"]]
                for commit in history[repo][low + 1 : high + 1]:
                    first = first_authored.get((repo, commit.get("pr_number", -1)), at(commit["authored_at"]))
                    leads.append((at(deploy["finished_at"]) - first).total_seconds())
        recoveries: list[float] = []
        for incident in (i for i in incidents if i["service"] == service):
            if "resolved_at" in incident:
                recoveries.append(seconds(incident["opened_at"], incident["resolved_at"]))
                continue
            later = [d for d in deploys if d["finished_at"] > incident["opened_at"]]
            if later:
                recoveries.append(seconds(incident["opened_at"], later[0]["finished_at"]))
        primary = [d for d in deploys if d["environment"] == PRODUCTION_ENVIRONMENTS[service][0]]
        result[service] = {
            "deploys": len(primary),
            "per_day": len(primary) / DAYS,
            "lead_days": median(leads) / 86_400 if leads else math.inf,
            "failure_rate": sum(d["id"] in failed for d in deploys) / len(deploys) if deploys else 1.0,
            "recovery_hours": median(recoveries) / 3_600 if recoveries else 0.0,
        }
    return result


# ---- determinism and validity ----------------------------------------------------------------------------


def test_same_arguments_give_the_same_events(events: list[Event]) -> None:
    assert list(generate(days=DAYS, seed=7, until=UNTIL)) == events
    assert list(islice(generate(days=DAYS, seed=8, until=UNTIL), 2000)) != events[:2000]


def test_every_event_is_canonical_and_from_the_demo_source(events: list[Event]) -> None:
    for event in events:
        parse_event(event)
        # Workflow measurements are stored as `shipscope lint workflows` stores them.
        expected = "lint" if event.get("kind") == "workflow_complexity" else "demo"
        assert event["source"] == expected


def test_every_repository_has_measured_workflow_files(events: list[Event]) -> None:
    measured = [orjson.loads(event["details"]) for event in events if event.get("kind") == "workflow_complexity"]
    assert {details["repo"] for details in measured} == set(REPOS)
    kinds = {details["repo"]: details["kind"] for details in measured}
    assert kinds["acme/identity"] == "gitlab" and kinds["acme/payments"] == "github"
    verdicts = {(details["repo"], details["path"]): details["verdict"] for details in measured}
    assert verdicts[("acme/mobile-api", ".github/workflows/ci.yml")] == "heavy"
    assert verdicts[("acme/platform", ".github/workflows/ci.yml")] == "thin"


def test_volume_fits_and_scales_with_days(events: list[Event]) -> None:
    assert 60_000 <= len(events) <= 150_000
    month = sum(1 for _ in generate(days=30, seed=7, until=UNTIL))
    assert 0.2 < month / len(events) < 0.5


def test_the_window_ends_at_until(events: list[Event]) -> None:
    end = datetime(2026, 11, 1, tzinfo=at("2026-11-01T00:00:00Z").tzinfo)
    start = end - timedelta(days=DAYS)
    for event in events:
        for name, value in event.items():
            if isinstance(value, str) and name.endswith("_at") or name == "at":
                assert start - timedelta(days=2) <= at(value) < end, (name, event)


def test_tiny_windows_work() -> None:
    for days in (1, 3, 7):
        for event in generate(days=days, seed=1, until=UNTIL):
            parse_event(event)


# ---- shape of the data -----------------------------------------------------------------------------------


def test_repos_services_and_teams(by_type: dict[str, list[Event]]) -> None:
    assert len(REPOS) >= 5 and len(SERVICES) >= 15
    assert set(SERVICES.values()) <= set(REPOS)
    assert set(TEAMS) == set(SERVICES) == set(DORA_TIERS)
    assert any(list(SERVICES.values()).count(repo) > 1 for repo in REPOS)  # a monorepo
    assert {run["repo"] for run in by_type["pipeline_run"]} == set(REPOS)
    assert {d["service"] for d in by_type["deployment"]} == set(SERVICES)


def test_timestamps_are_consistent(by_type: dict[str, list[Event]]) -> None:
    for kind in ("pipeline_run", "job"):
        for item in by_type[kind]:
            times = [at(item[k]) for k in ("created_at", "started_at", "finished_at") if k in item]
            assert times == sorted(times), item
    for item in by_type["step"] + by_type["deployment"]:
        assert item["started_at"] <= item["finished_at"]
    for item in by_type["incident"]:
        times = [item[k] for k in ("opened_at", "acknowledged_at", "resolved_at") if k in item]
        assert times == sorted(times), item
    for item in by_type["pull_request"]:
        assert item["opened_at"] <= item.get("first_review_at", item["opened_at"])
        assert item["opened_at"] <= item.get("merged_at", item.get("closed_at", item["opened_at"]))
    for item in by_type["change"]:
        assert item["authored_at"] <= item["committed_at"]


def test_runs_are_upserted_and_rerun(by_type: dict[str, list[Event]]) -> None:
    versions: dict[tuple[str, int], list[Event]] = defaultdict(list)
    for run in by_type["pipeline_run"]:
        versions[(run["id"], run["attempt"])].append(run)
    upserted = [v for v in versions.values() if len(v) > 1]
    assert len(upserted) > 0.05 * len(versions)
    for first, *_, last in upserted:
        assert first["status"] in ("queued", "in_progress") and last["status"] in COMPLETED | {"cancelled"}
        assert set(first) <= set(last) and "finished_at" in last
    reruns = [key for key in versions if key[1] == 2]
    assert reruns
    for run_id, _ in reruns:
        first, second = versions[(run_id, 1)][-1], versions[(run_id, 2)][-1]
        assert first["status"] == "failure" and first["sha"] == second["sha"]


def test_pipelines(by_type: dict[str, list[Event]]) -> None:
    runs = list(final_runs(by_type).values())
    pr_runs = [r for r in runs if r["trigger"] == "pull_request"]
    assert pr_runs and all(r["pr_number"] and r["default_branch"] == "main" for r in pr_runs)
    assert all(r["branch"].startswith(("feature/", "hotfix/")) for r in pr_runs)
    assert sum(r["branch"].startswith("feature/") for r in pr_runs) > 0.9 * len(pr_runs)
    assert any(r["trigger"] == "push" and r["branch"] == "main" for r in runs)
    assert sum(r["trigger"] == "schedule" for r in runs) < 0.15 * len(runs)
    assert {"ci", "deploy", "nightly"} <= {r["workflow"] for r in runs}
    assert {"success", "failure", "cancelled"} <= {r["status"] for r in runs}


def test_jobs_steps_and_caches(by_type: dict[str, list[Event]]) -> None:
    jobs = {job["id"]: job for job in by_type["job"]}
    runs = run_repos(by_type)
    assert all(job["run_id"] in runs and job["stage"] for job in jobs.values())
    runners = {tuple(job["runner"]) for job in jobs.values()}
    assert {("ubuntu-latest",), ("self-hosted", "linux", "x64"), ("macos-14",)} <= runners
    reasons = Counter(job.get("failure_reason") for job in jobs.values() if job["status"] == "failure")
    assert sum(reasons[r] for r in INFRA_REASONS) > 0
    assert reasons["script_failure"] > 0 and reasons["Process completed with exit code 1"] > 0

    steps: dict[str, list[Event]] = defaultdict(list)
    for step in by_type["step"]:
        steps[step["job_id"]].append(step)
    names = {step["name"] for step in by_type["step"]}
    assert {"Checkout", "Restore cache", "Build", "Run tests", "Trivy scan", "Push image", "Deploy"} <= names
    for job_id, job_steps in steps.items():
        job = jobs[job_id]
        assert [s["number"] for s in job_steps] == list(range(1, len(job_steps) + 1))
        assert job["started_at"] <= job_steps[0]["started_at"]
        assert job_steps[-1]["finished_at"] <= job["finished_at"]

    kinds = {cache["kind"] for cache in by_type["cache"]}
    assert kinds == {"dependency", "docker-layer"}
    for cache in by_type["cache"]:
        assert jobs[cache["job_id"]]["run_id"] == cache["run_id"]
        assert cache["key"] and cache["bytes"] > 0


def test_test_cases(by_type: dict[str, list[Event]]) -> None:
    runs = run_repos(by_type)
    suites: dict[str, set[str]] = defaultdict(set)
    cases: Counter[tuple[str, str]] = Counter()
    for case in by_type["test_case"]:
        repo = runs[case["run_id"]]["repo"]
        suites[repo].add(case["suite"])
        cases[(repo, case["suite"])] += 1
    assert set(suites) == set(REPOS) and max(len(s) for s in suites.values()) >= 3
    outcomes = Counter(case["outcome"] for case in by_type["test_case"])
    assert {"passed", "failed", "skipped", "error"} <= set(outcomes)
    assert any(r > 0 for r in flaky_rates(by_type).values())


def test_findings_evolve(by_type: dict[str, list[Event]]) -> None:
    findings = by_type["finding"]
    assert {f["tool"] for f in findings} == {"trivy", "semgrep"}
    assert {f["severity"] for f in findings} == {"critical", "high", "medium", "low", "info"}
    scans: dict[str, set[str]] = defaultdict(set)
    scan_order: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for finding in findings:
        scans[finding["scan_id"]].add(finding["fingerprint"])
        entry = (finding["scanned_at"], finding["scan_id"])
        series = scan_order[(finding["repo"], finding["tool"])]
        if entry not in series:
            series.append(entry)
    new = fixed = carried = 0
    for series in scan_order.values():
        series.sort()
        assert 11 <= len(series) <= 14  # weekly
        for (_, before), (_, after) in zip(series, series[1:], strict=False):
            new += len(scans[after] - scans[before])
            fixed += len(scans[before] - scans[after])
            carried += len(scans[before] & scans[after])
    assert new and fixed and carried > new + fixed


def test_deployments(by_type: dict[str, list[Event]]) -> None:
    deployments = by_type["deployment"]
    by_id = {d["id"]: d for d in deployments}
    assert len(by_id) == len(deployments)
    environments = {d["environment"] for d in deployments}
    assert {"staging", "production", "production-eu"} <= environments
    assert {"deploy", "rollback", "hotfix"} == {d["kind"] for d in deployments}
    assert {"success", "failure"} == {d["status"] for d in deployments}
    assert all(re.fullmatch(r"v\d+\.\d+\.\d+", d["version"]) for d in deployments)
    assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", d["image_digest"]) for d in deployments)
    for rollback in (d for d in deployments if d["kind"] == "rollback"):
        target = by_id[rollback["rollback_of"]]
        assert target["service"] == rollback["service"] and target["finished_at"] <= rollback["started_at"]
        older = [
            d
            for d in deployments
            if d["service"] == rollback["service"] and d["sha"] == rollback["sha"] and d["id"] != rollback["id"]
        ]
        assert older and min(d["finished_at"] for d in older) < target["started_at"]


def test_changes_and_pull_requests(by_type: dict[str, list[Event]]) -> None:
    changes = by_type["change"]
    deployments = {d["id"]: d for d in by_type["deployment"]}
    commit_time = {c["sha"]: c["committed_at"] for c in changes}
    for deployment in deployments.values():
        assert commit_time[deployment["sha"]] <= deployment["started_at"]
    linked = [c for c in changes if "deployment_id" in c]
    assert len(linked) > 0.7 * len(changes)
    for change in linked:
        shipped_by = deployments[change["deployment_id"]]
        assert shipped_by["environment"].startswith("prod") and shipped_by["status"] == "success"
        assert change["committed_at"] <= shipped_by["finished_at"]
    reverts = [c for c in changes if c["message"].startswith('Revert "')]
    assert reverts
    for revert in reverts:
        reverted = re.search(r"This reverts commit ([0-9a-f]{40})\.", revert["message"])
        assert reverted and commit_time[reverted.group(1)] < revert["committed_at"]
    prs = by_type["pull_request"]
    assert all(pr["base_branch"] == "main" and pr["head_sha"] for pr in prs)
    assert any("hotfix" in pr["labels"] for pr in prs)
    assert sum("merged_at" in pr for pr in prs) > 0.8 * len(prs)
    assert any("closed_at" in pr and "merged_at" not in pr for pr in prs)
    assert any("closed_at" not in pr for pr in prs)


def test_incidents_and_timeline(by_type: dict[str, list[Event]]) -> None:
    incidents = by_type["incident"]
    deployments = {d["id"] for d in by_type["deployment"]}
    assert {"SEV1", "SEV2", "SEV3"} <= {i["severity"] for i in incidents}
    assert 1 <= sum("resolved_at" not in i for i in incidents) <= 5
    assert any("infra-only" in i.get("labels", []) for i in incidents)
    caused = [i for i in incidents if "caused_by_deployment_id" in i]
    assert caused and all(i["caused_by_deployment_id"] in deployments for i in caused)
    assert {"alert", "flag_toggle", "infra", "workflow_complexity"} == {t["kind"] for t in by_type["timeline_event"]}


# ---- distributions the metrics rely on -------------------------------------------------------------------


def test_dora_tiers_differ_by_service(by_type: dict[str, list[Event]]) -> None:
    keys = dora(by_type)
    for service, tier in DORA_TIERS.items():
        key = keys[service]
        if tier == "elite":
            assert key["per_day"] >= 2, (service, key)
            assert key["lead_days"] < 1 and key["failure_rate"] <= 0.05 and key["recovery_hours"] < 1, key
        elif tier == "low":
            assert key["deploys"] <= 2, (service, key)
            assert key["lead_days"] > 30 and key["failure_rate"] > 0.15, (service, key)
        else:
            assert 2 < key["deploys"] < 2 * DAYS, (service, key)
    assert {"elite", "high", "medium", "low"} == set(DORA_TIERS.values())


def test_pr_build_p95_crosses_15_minutes(by_type: dict[str, list[Event]]) -> None:
    p95 = pr_build_p95_minutes(by_type)
    assert p95["acme/mobile-api"] > 15
    assert min(p95.values()) < 15


def test_a_suite_takes_over_5_minutes_in_one_job(by_type: dict[str, list[Event]]) -> None:
    longest = longest_suite_per_repo(by_type)
    assert longest["acme/data-pipeline"][0] == "integration" and longest["acme/data-pipeline"][1] > 300
    assert min(total for _, total in longest.values()) < 300


def test_default_branch_failure_rate_crosses_10_percent(by_type: dict[str, list[Event]]) -> None:
    rates = default_branch_failure_rates(by_type)
    assert rates["acme/payments"] > 0.10
    assert min(rates.values()) < 0.10


def test_queue_time_median_crosses_3_minutes(by_type: dict[str, list[Event]]) -> None:
    medians = queue_medians_minutes(by_type)
    assert medians[("macos-14",)] > 3
    assert medians[("ubuntu-latest",)] < 1


def test_cache_hit_rate_drops_below_60_percent(by_type: dict[str, list[Event]]) -> None:
    rates = warm_cache_hit_rates(by_type)
    assert rates["acme/data-pipeline"] < 0.6
    assert max(rates.values()) > 0.8


def test_flaky_rate_crosses_1_percent(by_type: dict[str, list[Event]]) -> None:
    rates = flaky_rates(by_type)
    assert rates["acme/storefront"] > 0.01
    assert min(rates.values()) < 0.01


def test_critical_findings_go_up_week_over_week(by_type: dict[str, list[Event]]) -> None:
    weekly = weekly_criticals(by_type)
    rises = {repo for repo, counts in weekly.items() if any(b > a for a, b in zip(counts, counts[1:], strict=False))}
    assert "acme/payments" in rises

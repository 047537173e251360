"""The drop-in deploy pipelines (examples/github/deploy.yml, ci/shipscope-deploy.gitlab-ci.yml with
examples/gitlab/.gitlab-ci.yml): their steps run in the order canary → smoke + analyze → gate → promote → mark +
notify with a rollback on failure, and every shipscope command in them parses as the CLI reads it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.core
import typer.main
import yaml

from shipscope.cli.main import app
from shipscope.deploy.analysis import load_template
from shipscope.deploy.smoke import load_plan

ROOT = Path(__file__).parent.parent
GITHUB_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
SHELL_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def _parses(line: str) -> list[str]:
    """The argv of a `shipscope …` command line, checked against the CLI's options (unknown or missing ones fail)."""
    argv = shlex.split(line)
    assert argv[0] == "shipscope", line
    command = typer.main.get_command(app)
    words = argv[1:]
    while isinstance(command, typer.core.TyperGroup):
        found = command.get_command(command.context_class(command), words[0])
        assert found is not None, f"{line}: no command {words[0]!r}"
        command, words = found, words[1:]
    command.make_context(argv[1], list(words))
    return argv


def test_the_github_workflow_runs_the_steps_in_order() -> None:
    workflow = yaml.safe_load((ROOT / "examples" / "github" / "deploy.yml").read_text())
    steps: list[dict[str, Any]] = workflow["jobs"]["deploy"]["steps"]
    names = [step.get("name") for step in steps]
    order = ["deploy start", "deploy canary", "smoke", "analyze", "gate", "promote", "rollback", "finish", "mark"]
    assert [name for name in names if name in order + ["notify"]] == [*order, "notify"]

    commands: dict[str, list[str]] = {}
    for step in steps:
        run = step.get("run", "")
        if run.startswith("shipscope "):
            commands[step["name"]] = _parses(GITHUB_EXPRESSION.sub("success", run))
    assert {name: argv[1:3] for name, argv in commands.items()} == {
        "deploy start": ["deploy", "start"],
        "smoke": ["deploy", "smoke"],
        "analyze": ["deploy", "analyze"],
        "gate": ["deploy", "gate"],
        "rollback": ["deploy", "rollback"],
        "finish": ["deploy", "finish"],
        "mark": ["deploy", "mark"],
        "notify": ["deploy", "notify"],
    }
    by_name = {step.get("name"): step for step in steps}
    # The rollback runs only on a failure after the canary began; the report steps always run, so a failed or
    # cancelled deploy is still recorded.
    assert by_name["rollback"]["if"] == "failure() && steps.canary.outcome != 'skipped'"
    assert by_name["deploy canary"]["id"] == "canary"
    assert all(by_name[name]["if"] == "always()" for name in ("finish", "mark", "notify"))
    assert "${{ job.status }}" in by_name["finish"]["run"]
    for name in ("smoke", "analyze", "gate", "promote", "deploy canary"):
        assert "if" not in by_name[name] and not by_name[name].get("continue-on-error")
    assert by_name["deploy start"]["continue-on-error"] is True
    assert workflow["env"]["SHIPSCOPE_SERVICE"] and workflow["env"]["SHIPSCOPE_ENVIRONMENT"]


def _gitlab_pipeline() -> tuple[list[str], dict[str, dict[str, Any]], dict[str, str]]:
    include = yaml.safe_load((ROOT / "ci" / "shipscope-deploy.gitlab-ci.yml").read_text())
    project = yaml.safe_load((ROOT / "examples" / "gitlab" / ".gitlab-ci.yml").read_text())
    assert project["include"][0]["remote"].endswith("/ci/shipscope-deploy.gitlab-ci.yml")
    stages = [".pre", *project.get("stages", include["stages"]), ".post"]
    variables = {**include["variables"], **project["variables"]}
    merged = {**include, **project}
    jobs: dict[str, dict[str, Any]] = {}
    for name, job in merged.items():
        if name in {"include", "stages", "variables"} or name.startswith(".") or not isinstance(job, dict):
            continue
        base = merged.get(job.get("extends", ""), {})
        jobs[name] = {**base, **job}
    return stages, jobs, variables


def test_the_gitlab_include_runs_the_stages_in_order() -> None:
    stages, jobs, variables = _gitlab_pipeline()
    stage_of = {name: stages.index(job["stage"]) for name, job in jobs.items()}
    sequence = [
        ("shipscope-deploy-start",),
        ("deploy-canary",),
        ("shipscope-smoke", "shipscope-analyze"),
        ("shipscope-gate",),
        ("deploy-promote",),
        ("shipscope-deploy-succeeded", "shipscope-deploy-failed"),
    ]
    positions = [{stage_of[name] for name in group} for group in sequence]
    assert all(len(position) == 1 for position in positions), positions  # each group shares one stage
    assert [position.pop() for position in positions] == sorted({stage_of[group[0]] for group in sequence})
    assert set(stage_of) == {name for group in sequence for name in group}

    failed_rules = jobs["shipscope-deploy-failed"]["rules"]
    assert [rule.get("when") for rule in failed_rules] == ["on_failure"]
    assert all(rule.get("when", "on_success") == "on_success" for rule in jobs["shipscope-deploy-succeeded"]["rules"])
    assert jobs["shipscope-deploy-start"]["allow_failure"] is True

    def shipscope_lines(job: str) -> list[list[str]]:
        lines = []
        for line in jobs[job]["script"]:
            expanded = SHELL_VARIABLE.sub(lambda found: variables.get(found.group(1), "x"), line)
            for part in re.split(r";|\|\||\bthen\b|\bfi\b", expanded):
                if part.strip().startswith("shipscope "):
                    lines.append(_parses(part.strip())[1:3])
        return lines

    assert shipscope_lines("shipscope-deploy-start") == [["deploy", "start"]]
    assert shipscope_lines("shipscope-smoke") == [["deploy", "smoke"]]
    assert shipscope_lines("shipscope-analyze") == [["deploy", "analyze"]]
    assert shipscope_lines("shipscope-gate") == [["deploy", "gate"]]
    assert shipscope_lines("shipscope-deploy-succeeded") == [
        ["deploy", "finish"],
        ["deploy", "mark"],
        ["deploy", "notify"],
    ]
    assert shipscope_lines("shipscope-deploy-failed") == [
        ["deploy", "rollback"],
        ["deploy", "finish"],
        ["deploy", "mark"],
        ["deploy", "notify"],
    ]
    # A failed rollback still fails the job, after the failure is reported.
    assert jobs["shipscope-deploy-failed"]["script"][-1].startswith('test "${rolled_back:-yes}" = yes')


@pytest.mark.parametrize("name", ["smoke.yaml", "analysis.yaml"])
def test_the_example_deploy_files_load(name: str) -> None:
    path = ROOT / "examples" / "deploy" / name
    if name == "smoke.yaml":
        plan = load_plan(path)
        assert [check.name for check in plan.checks] == ["health", "catalogue", "add to cart"]
        assert plan.variables() == ["BASE_URL", "SMOKE_TOKEN"]
    else:
        template = load_template(path, {"service-name": "checkout"})
        assert template.name == "success-rate"

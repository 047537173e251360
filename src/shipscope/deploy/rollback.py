"""Rollback strategies, each a list of steps run in order until one fails.

- ``gitops``: revert the deploy's manifest commit in a GitOps repository and push it (the controller, Argo CD or
  Flux, then syncs the previous manifests). The commit is ``--commit``, else the last commit touching ``--path``.
- ``argocd``: ``argocd app rollback APP [HISTORY_ID]`` (ARGOCD_SERVER and ARGOCD_AUTH_TOKEN pass through).
- ``helm``: ``helm rollback RELEASE [REVISION] --namespace NS --wait``.
- ``kubectl``: ``kubectl rollout undo deployment/NAME --namespace NS [--to-revision N]``, then
  ``kubectl rollout status`` until it has rolled out.
- ``command``: any command.

A step's output is kept (its tail) and a failing step names itself and its exit code; nothing after it runs.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipscope.deploy.context import DeployInfo
from shipscope.deploy.ledger import Ledger
from shipscope.errors import InputError
from shipscope.events import DeploymentStatus

STRATEGIES = ("gitops", "argocd", "helm", "kubectl", "command")
_OUTPUT_TAIL = 2000


@dataclass(frozen=True)
class RollbackOptions:
    strategy: str
    app: str | None = None
    """argocd: the application."""
    history_id: str | None = None
    """argocd: the history id to roll back to (default: the previous one)."""
    release: str | None = None
    """helm: the release."""
    revision: str | None = None
    """helm and kubectl: the revision to go back to (default: the previous one)."""
    namespace: str | None = None
    resource: str | None = None
    """kubectl: what to undo, e.g. deployment/checkout."""
    repo: str | None = None
    """gitops: the repository (a URL or a path) to clone."""
    branch: str = "main"
    commit: str | None = None
    path: str | None = None
    command: Sequence[str] = ()
    timeout: float = 600.0
    """Seconds each step may take."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str) -> RollbackOptions:
        """From a smoke file's ``rollback:`` section (the flags' names, with - or _)."""
        known = {name.replace("_", "-"): name for name in cls.__dataclass_fields__}
        unknown = sorted(key for key in values if str(key).replace("_", "-") not in known)
        if unknown:
            raise InputError(f"{where}: unknown rollback settings {', '.join(unknown)}")
        chosen: dict[str, Any] = {known[str(key).replace("_", "-")]: value for key, value in values.items()}
        if isinstance(chosen.get("command"), str):
            raise InputError(f"{where}.command: give the command as a list of arguments")
        if "command" in chosen:
            chosen["command"] = tuple(str(part) for part in chosen["command"])
        options = cls(**chosen)
        options.validate()
        return options

    def validate(self) -> None:
        needs = {
            "argocd": ("app",),
            "helm": ("release",),
            "kubectl": ("resource",),
            "gitops": ("repo",),
            "command": ("command",),
        }
        if self.strategy not in needs:
            raise InputError(f"rollback strategy {self.strategy!r}: expected one of {', '.join(STRATEGIES)}")
        missing = [name for name in needs[self.strategy] if not getattr(self, name)]
        if missing:
            raise InputError(f"the {self.strategy} rollback needs --{missing[0].replace('_', '-')}")


@dataclass(frozen=True)
class StepResult:
    name: str
    argv: tuple[str, ...]
    exit_code: int | None
    output: str
    ok: bool
    problem: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "argv": list(self.argv),
            "exit_code": self.exit_code,
            "ok": self.ok,
            "problem": self.problem,
            "output": self.output,
        }


@dataclass
class RollbackRun:
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    @property
    def failure(self) -> str | None:
        failed = next((step for step in self.steps if not step.ok), None)
        return None if failed is None else f"{failed.name} failed: {failed.problem}"


def _run(name: str, argv: Sequence[str], *, cwd: Path | None, timeout: float) -> StepResult:
    executable = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
    if executable is None:
        return StepResult(name, tuple(argv), None, "", False, f"{argv[0]} is not on PATH")
    try:
        done = subprocess.run(
            [executable, *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return StepResult(name, tuple(argv), None, "", False, f"did not finish within {timeout:g} s")
    except OSError as error:
        return StepResult(name, tuple(argv), None, "", False, error.strerror or str(error))
    output = (done.stdout + done.stderr)[-_OUTPUT_TAIL:]
    problem = ""
    if done.returncode != 0:
        last = output.strip().splitlines()
        problem = f"exit {done.returncode}" + (f": {last[-1]}" if last else "")
    return StepResult(name, tuple(argv), done.returncode, output, done.returncode == 0, problem)


def planned_steps(options: RollbackOptions) -> list[tuple[str, list[str]]]:
    """The commands a strategy runs, for a dry run (gitops: with its working copy as ``<clone>``)."""
    namespace = ["--namespace", options.namespace] if options.namespace else []
    if options.strategy == "argocd":
        assert options.app is not None
        return [
            ("argocd app rollback", ["argocd", "app", "rollback", options.app, *filter(None, [options.history_id])])
        ]
    if options.strategy == "helm":
        assert options.release is not None
        revision = [options.revision] if options.revision else []
        return [("helm rollback", ["helm", "rollback", options.release, *revision, *namespace, "--wait"])]
    if options.strategy == "kubectl":
        assert options.resource is not None
        revision = [f"--to-revision={options.revision}"] if options.revision else []
        return [
            ("kubectl rollout undo", ["kubectl", "rollout", "undo", options.resource, *namespace, *revision]),
            (
                "kubectl rollout status",
                ["kubectl", "rollout", "status", options.resource, *namespace, f"--timeout={int(options.timeout)}s"],
            ),
        ]
    if options.strategy == "command":
        return [("command", list(options.command))]
    assert options.repo is not None
    commit = options.commit or f"<last commit touching {options.path or 'the repository'}>"
    return [
        ("git clone", ["git", "clone", "--branch", options.branch, options.repo, "<clone>"]),
        ("git revert", ["git", "-C", "<clone>", "revert", "--no-edit", commit]),
        ("git push", ["git", "-C", "<clone>", "push", "origin", f"HEAD:{options.branch}"]),
    ]


def run_rollback(options: RollbackOptions, *, message: str) -> RollbackRun:
    """Runs the strategy; ``message`` is the gitops revert commit's message."""
    run = RollbackRun()
    if options.strategy != "gitops":
        for name, argv in planned_steps(options):
            step = _run(name, argv, cwd=None, timeout=options.timeout)
            run.steps.append(step)
            if not step.ok:
                break
        return run
    with tempfile.TemporaryDirectory(prefix="shipscope-gitops-") as directory:
        clone = Path(directory) / "repo"
        assert options.repo is not None
        steps: list[tuple[str, list[str]]] = [
            ("git clone", ["git", "clone", "--quiet", "--branch", options.branch, options.repo, str(clone)])
        ]
        for name, argv in steps:
            step = _run(name, argv, cwd=None, timeout=options.timeout)
            run.steps.append(step)
            if not step.ok:
                return run
        commit = options.commit
        if commit is None:
            found = _run(
                "git log",
                ["git", "log", "-1", "--format=%H", "--", options.path or "."],
                cwd=clone,
                timeout=options.timeout,
            )
            run.steps.append(found)
            commit = found.output.strip()
            if not found.ok or not commit:
                return run
        git = ["git", "-c", "user.name=shipscope", "-c", "user.email=shipscope@localhost"]
        for name, argv in (
            ("git revert", [*git, "revert", "--no-edit", "--no-commit", commit]),
            ("git commit", [*git, "commit", "--quiet", "-m", message]),
            ("git push", ["git", "push", "--quiet", "origin", f"HEAD:{options.branch}"]),
        ):
            step = _run(name, argv, cwd=clone, timeout=options.timeout)
            run.steps.append(step)
            if not step.ok:
                break
    return run


@dataclass
class RollbackOutcome:
    rollback: DeployInfo
    """The deployment of kind rollback that was recorded."""
    rolled_back: Mapping[str, Any] | None
    target: Mapping[str, Any] | None
    run: RollbackRun
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.run.ok,
            "rollback": self.rollback.to_json(),
            "rolled_back": dict(self.rolled_back) if self.rolled_back else None,
            "target": dict(self.target) if self.target else None,
            "steps": [step.to_json() for step in self.run.steps],
            "failure": self.run.failure,
            "warnings": self.warnings,
        }


def deployed_at(event: Mapping[str, Any]) -> str:
    """A stored deployment's moment, for ordering a service's deployments."""
    return str(event.get("finished_at") or event.get("started_at") or "")


def history(
    ledger: Ledger, service: str, environment: str, of: str | None
) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """(the deployment rolled back, the last good one before it): ``of`` or the latest deploy that is not itself
    a rollback, and the latest successful deployment that finished before it started."""
    deployments = sorted(ledger.read("deployment", service=service, environment=environment), key=deployed_at)
    if of is not None:
        rolled_back = next((event for event in deployments if event["id"] == of), None)
        if rolled_back is None:
            raise InputError(f"no deployment {of!r} of {service} in {environment} is recorded")
    else:
        candidates = [event for event in deployments if event.get("kind") != "rollback"]
        rolled_back = candidates[-1] if candidates else None
    if rolled_back is None:
        return None, None
    began = str(rolled_back.get("started_at") or rolled_back.get("finished_at"))
    good = [
        event
        for event in deployments
        if event["status"] == "success" and event["id"] != rolled_back["id"] and deployed_at(event) < began
    ]
    return rolled_back, good[-1] if good else None


def roll_back(
    info: DeployInfo,
    options: RollbackOptions,
    ledger: Ledger,
    *,
    of: str | None,
    at: datetime,
    clock: Callable[[], datetime],
) -> RollbackOutcome:
    """Records a rollback deployment in progress, runs the strategy, and records how it ended, also when it is
    interrupted (a pipeline timeout's SIGTERM): a killed step leaves it in progress, never missing."""
    rolled_back, target = history(ledger, info.service, info.environment, of)
    rollback = info.with_kind(
        "rollback",
        # To the microsecond: two rollbacks of one deploy in the same second are two records, not one overwritten.
        id=f"rollback-{(rolled_back or {}).get('id', info.id)}-{at.astimezone(UTC):%Y%m%dT%H%M%S%fZ}",
        rollback_of=rolled_back["id"] if rolled_back else None,
    )
    if target is not None:
        rollback = replace(
            rollback, sha=target["sha"], version=target.get("version"), image_digest=target.get("image_digest")
        )
    ledger.write([rollback.deployment("in_progress", started_at=at)])
    run = RollbackRun()
    try:
        what = rolled_back["id"] if rolled_back else "the current deployment"
        run = run_rollback(options, message=f"Roll back {info.service} in {info.environment}: revert {what}")
    finally:
        status: DeploymentStatus = "success" if run.ok else "failure"
        ledger.write([rollback.deployment(status, started_at=at, finished_at=clock())])
    return RollbackOutcome(rollback, rolled_back, target, run)

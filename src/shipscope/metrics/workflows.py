"""Workflow complexity (DESIGN.md §3): how much logic a repository keeps in its CI files.

The core of ``shipscope lint workflows PATH…``: each GitHub Actions workflow (``.github/workflows/*.yml|yaml``) or
GitLab CI file (``.gitlab-ci.yml``, ``*.gitlab-ci.yml``) is read and counted; the elite target is a *thin* repo
workflow that delegates its logic to reusable actions and templates instead of inline shell.

What is counted
---------------
``yaml_lines``
    Lines of the file (comments and blank lines included; ``wc -l``). For GitLab, followed local includes add theirs.
``jobs``
    GitHub: entries of ``jobs``. GitLab: top-level keys whose value is a mapping, that are not GitLab keywords
    (``GITLAB_KEYWORDS``) and do not start with ``.`` (those are hidden jobs, counted as templates).
``steps``
    GitHub: entries of each job's ``steps``. GitLab: entries of ``script``, ``before_script`` and ``after_script``
    wherever they are written (jobs, hidden jobs, ``default``, the top level); nested lists are flattened and a
    ``!reference`` entry counts as one step. ``extends`` is not expanded: a script is counted where it is written.
``inline_script_lines``
    Non-blank lines of the loaded ``run:`` (GitHub) or script entries (GitLab). Lines are those of the string YAML
    produces: a ``|`` block keeps its lines, while a plain or ``>`` scalar that YAML folds into one line is one line.
``uses``
    GitHub: steps with ``uses`` plus jobs with ``uses`` (reusable workflow calls). Always 0 for GitLab.
``includes``
    GitLab: ``include`` entries (a string, a mapping, or each list item), every kind counted (``local``, ``remote``,
    ``project``, ``template``, ``component``), in the file and in the local includes it follows. 0 for GitHub.
``extends``
    GitLab: names listed under ``extends`` in jobs and hidden jobs. 0 for GitHub.
``expressions``
    Counted in the raw text, comments included. GitHub: ``${{ … }}`` occurrences. GitLab: variable references
    ``$NAME`` and ``${NAME…`` (in rules, keywords and scripts alike: GitLab expands some and the shell the rest,
    and both are logic the reader must follow) and input interpolations ``$[[ … ]]``.
``reusable_templates``
    GitHub: jobs calling a reusable workflow (job-level ``uses``) plus 1 when the workflow is itself reusable
    (a ``workflow_call`` trigger). GitLab: ``extends`` names + ``!reference`` tags + hidden ``.jobs`` + ``include``
    entries (``hidden_jobs`` and ``references`` give the two parts not reported elsewhere).

GitLab includes
---------------
Local includes (``include: 'path'``, ``- path``, ``- local: path``; a leading ``/`` and a path without one are
both relative to the repository root, ``*``/``**`` globs are expanded) are followed, recursively, and merged as
GitLab does (included files first, in order, then the including file, mappings deep-merged), so a job redefined
by the including file is one job. ``rules`` on an include are not evaluated: every local include is followed.
Remote, project, template and component includes are counted, not fetched. A file reached twice (an include
cycle, or the same file included from two places) is read once. A local include that does not exist, lies outside
the root, or names a CI variable is listed in ``unresolved_includes``.

YAML
----
Files are read with ``WorkflowLoader``, a ``yaml.SafeLoader`` that also understands GitLab's ``!reference [job,
key]`` tag (kept as a ``Reference``), reads every document of a stream (the configuration is the last one: a GitLab
file may open with a ``spec: inputs`` header document), and, in GitHub workflows, puts back the ``on`` key that
YAML 1.1 reads as the boolean True. Malformed YAML is an ``InputError`` naming the file, line and column.

Verdict
-------
``heavy`` when any of ``HEAVY_ABOVE`` is exceeded; ``thin`` when none of ``THIN_AT_MOST`` is; ``moderate``
otherwise. ``reasons`` names the limits that decided it.

Storage
-------
The canonical model (DESIGN.md §2) has no workflow table, so ``workflow_events`` turns measurements into
``timeline_event`` dicts (kind ``workflow_complexity``, source ``lint``) that go through the ordinary ingest path.
Their id is ``repo:path:date``: measuring the same file again the same day replaces that day's measurement.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
import yaml  # type: ignore[import-untyped, unused-ignore]

from shipscope.errors import InputError
from shipscope.metrics.common import DEFAULT_CONFIG, NO_FILTERS, Filters, MetricsConfig, teams_members
from shipscope.store import Store, schema
from shipscope.yamlfiles import BoundedLoader

__all__ = [
    "GITLAB_KEYWORDS",
    "HEAVY_ABOVE",
    "THIN_AT_MOST",
    "Reference",
    "WorkflowComplexity",
    "WorkflowLoader",
    "lint_paths",
    "lint_workflow",
    "stored_complexity",
    "workflow_events",
]

Kind = Literal["github", "gitlab"]
Verdict = Literal["thin", "moderate", "heavy"]

GITLAB_KEYWORDS = frozenset(
    {
        "after_script",
        "before_script",
        "cache",
        "default",
        "image",
        "include",
        "services",
        "spec",
        "stages",
        "types",
        "variables",
        "workflow",
    }
)
"""Top-level GitLab CI keys that are not jobs."""
_SCRIPT_KEYS = ("before_script", "script", "after_script")

THIN_AT_MOST: dict[str, int] = {"yaml_lines": 150, "jobs": 6, "steps": 40, "inline_script_lines": 20}
"""A workflow is thin when every one of these is at most its limit."""
HEAVY_ABOVE: dict[str, int] = {"yaml_lines": 500, "jobs": 15, "steps": 80, "inline_script_lines": 40}
"""A workflow is heavy when any one of these is above its limit."""

_GITHUB_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
_GITLAB_EXPRESSION = re.compile(r"\$\[\[.*?\]\]|\$\{?[A-Za-z_][A-Za-z0-9_]*")
_SKIPPED_DIRECTORIES = frozenset({".git", "node_modules", ".venv", "venv", "__pycache__", ".tox"})
_MAX_SCRIPT_ENTRIES = 100_000
"""More script entries than this in one file means YAML aliases multiplying a list: refused, not expanded."""


# ----- YAML ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """GitLab's ``!reference [job, key, …]``: a pointer to another part of the configuration, not resolved."""

    path: tuple[Any, ...]


class WorkflowLoader(BoundedLoader):
    """A safe loader for CI files: ``!reference`` becomes a ``Reference`` and is counted in ``references``."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.references = 0


def _construct_reference(loader: WorkflowLoader, node: Any) -> Reference:
    if not isinstance(node, yaml.SequenceNode):
        raise yaml.constructor.ConstructorError(
            None, None, "!reference expects a sequence such as [.job, script]", node.start_mark
        )
    loader.references += 1
    return Reference(tuple(loader.construct_sequence(node, deep=True)))


WorkflowLoader.add_constructor("!reference", _construct_reference)


@dataclass
class _Loaded:
    text: str
    config: dict[Any, Any]
    references: int


def _read(path: Path) -> _Loaded:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        loader = WorkflowLoader(text)  # the reader checks the characters here: a control byte is refused at once
    except yaml.YAMLError as error:
        raise InputError(f"{path}: invalid YAML: {error}") from None
    documents: list[Any] = []
    try:
        # PyYAML's stubs leave check_data untyped.
        while loader.check_data():  # type: ignore[no-untyped-call, unused-ignore]
            documents.append(loader.get_data())
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "an unknown place"
        opened = error.context_mark
        if error.problem and error.context and opened is not None and mark is not None and opened.line != mark.line:
            problem += f" ({error.context} started at line {opened.line + 1})"
        raise InputError(f"{path}: invalid YAML at {where}: {problem}") from None
    except yaml.YAMLError as error:
        raise InputError(f"{path}: invalid YAML: {error}") from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply to read") from None
    finally:
        loader.dispose()
    present = [document for document in documents if document is not None]
    config = present[-1] if present else {}
    if not isinstance(config, dict):
        raise InputError(f"{path}: a CI file holds a mapping at the top level, found a {type(config).__name__}")
    return _Loaded(text, config, loader.references)


# ----- results ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowComplexity:
    """The measurements of one workflow file (for GitLab, with the local includes it follows)."""

    path: str
    """Relative to the repository root when the file lies inside it, POSIX separators."""
    kind: Kind
    yaml_lines: int
    jobs: int
    steps: int
    inline_script_lines: int
    uses: int
    includes: int
    extends: int
    expressions: int
    reusable_templates: int
    verdict: Verdict
    reasons: tuple[str, ...] = ()
    """The limits that decided the verdict, e.g. ``inline_script_lines 107 > 40``."""
    hidden_jobs: int = 0
    """GitLab hidden ``.jobs`` (part of ``reusable_templates``)."""
    references: int = 0
    """GitLab ``!reference`` tags (part of ``reusable_templates``)."""
    triggers: tuple[str, ...] = ()
    """GitHub: the events under ``on``."""
    files: tuple[str, ...] = ()
    """GitLab: local includes followed and counted in, relative to the root."""
    unresolved_includes: tuple[str, ...] = ()
    """GitLab: local includes that could not be followed (missing, outside the root, or naming a variable)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "yaml_lines": self.yaml_lines,
            "jobs": self.jobs,
            "steps": self.steps,
            "inline_script_lines": self.inline_script_lines,
            "uses": self.uses,
            "includes": self.includes,
            "extends": self.extends,
            "expressions": self.expressions,
            "reusable_templates": self.reusable_templates,
            "hidden_jobs": self.hidden_jobs,
            "references": self.references,
            "triggers": list(self.triggers),
            "files": list(self.files),
            "unresolved_includes": list(self.unresolved_includes),
            "verdict": self.verdict,
            "reasons": list(self.reasons),
        }


@dataclass
class _Counts:
    yaml_lines: int = 0
    jobs: int = 0
    steps: int = 0
    inline_script_lines: int = 0
    uses: int = 0
    includes: int = 0
    extends: int = 0
    expressions: int = 0
    hidden_jobs: int = 0
    references: int = 0
    reusable_calls: int = 0
    triggers: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)


def _verdict(counts: _Counts) -> tuple[Verdict, tuple[str, ...]]:
    values = {name: getattr(counts, name) for name in THIN_AT_MOST}
    heavy = tuple(f"{name} {values[name]} > {limit}" for name, limit in HEAVY_ABOVE.items() if values[name] > limit)
    if heavy:
        return "heavy", heavy
    over_thin = tuple(
        f"{name} {values[name]} > {limit}" for name, limit in THIN_AT_MOST.items() if values[name] > limit
    )
    return ("moderate", over_thin) if over_thin else ("thin", ())


def _result(path: str, kind: Kind, counts: _Counts) -> WorkflowComplexity:
    verdict, reasons = _verdict(counts)
    if kind == "github":
        reusable = counts.reusable_calls + (1 if "workflow_call" in counts.triggers else 0)
    else:
        reusable = counts.extends + counts.references + counts.hidden_jobs + counts.includes
    return WorkflowComplexity(
        path=path,
        kind=kind,
        yaml_lines=counts.yaml_lines,
        jobs=counts.jobs,
        steps=counts.steps,
        inline_script_lines=counts.inline_script_lines,
        uses=counts.uses,
        includes=counts.includes,
        extends=counts.extends,
        expressions=counts.expressions,
        reusable_templates=reusable,
        verdict=verdict,
        reasons=reasons,
        hidden_jobs=counts.hidden_jobs,
        references=counts.references,
        triggers=tuple(counts.triggers),
        files=tuple(counts.files),
        unresolved_includes=tuple(counts.unresolved),
    )


# ----- counting --------------------------------------------------------------------------------------------------


def _script_lines(value: Any) -> int:
    return sum(1 for line in str(value).splitlines() if line.strip())


def _is_gitlab_name(path: Path) -> bool:
    return path.name == ".gitlab-ci.yml" or path.name.endswith((".gitlab-ci.yml", ".gitlab-ci.yaml"))


def _in_github_workflows(path: Path) -> bool:
    return path.parent.name == "workflows" and path.parent.parent.name == ".github"


def _kind(path: Path, config: dict[Any, Any]) -> Kind:
    if _is_gitlab_name(path):
        return "gitlab"
    if _in_github_workflows(path):
        return "github"
    if isinstance(config.get("jobs"), dict) and ("on" in config or True in config):
        return "github"
    return "gitlab"


def _triggers(on: Any) -> list[str]:
    if isinstance(on, str):
        return [on]
    if isinstance(on, list):
        return [str(event) for event in on]
    if isinstance(on, dict):
        return [str(event) for event in on]
    return []


def _count_github(loaded: _Loaded) -> _Counts:
    config = loaded.config
    if True in config and "on" not in config:
        # YAML 1.1 reads the bare key `on` as the boolean True.
        config["on"] = config.pop(True)
    counts = _Counts(
        yaml_lines=len(loaded.text.splitlines()),
        expressions=len(_GITHUB_EXPRESSION.findall(loaded.text)),
        triggers=_triggers(config.get("on")),
    )
    jobs = config.get("jobs")
    if not isinstance(jobs, dict):
        return counts
    for job in jobs.values():
        counts.jobs += 1
        if not isinstance(job, dict):
            continue
        if "uses" in job:
            counts.uses += 1
            counts.reusable_calls += 1
        steps = job.get("steps")
        if not isinstance(steps, list):
            continue
        for step in steps:
            counts.steps += 1
            if not isinstance(step, dict):
                continue
            if "uses" in step:
                counts.uses += 1
            if step.get("run") is not None:
                counts.inline_script_lines += _script_lines(step["run"])
    return counts


def _script_entries(value: Any, path: Path) -> Iterator[Any]:
    """The leaf entries of a GitLab script value, nested lists flattened."""
    stack: list[Any] = [value]
    produced = 0
    while stack:
        item = stack.pop()
        if item is None:
            continue
        if isinstance(item, list):
            stack.extend(reversed(item))
            continue
        produced += 1
        if produced > _MAX_SCRIPT_ENTRIES:
            raise InputError(f"{path}: more than {_MAX_SCRIPT_ENTRIES} script entries (aliases expanding a list?)")
        yield item


def _count_scripts(section: dict[Any, Any], counts: _Counts, path: Path) -> None:
    for key in _SCRIPT_KEYS:
        for entry in _script_entries(section.get(key), path):
            counts.steps += 1
            if not isinstance(entry, Reference):
                counts.inline_script_lines += _script_lines(entry)


def _extends_names(value: Any) -> int:
    if isinstance(value, str):
        return 1
    if isinstance(value, list):
        return len(value)
    return 0


def _include_entries(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _local_include(entry: Any) -> str | None:
    """The path of a local include entry; None for remote, project, template and component includes."""
    if isinstance(entry, str):
        return None if entry.startswith(("http://", "https://")) else entry
    if isinstance(entry, dict) and isinstance(entry.get("local"), str):
        local: str = entry["local"]
        return local
    return None


def _resolve_local(local: str, root: Path) -> list[Path]:
    """The files a local include names, inside ``root``; empty when it names none there."""
    relative = local.strip().lstrip("/")
    if not relative or "$" in relative:
        return []
    resolved_root = root.resolve()
    candidates = sorted(resolved_root.glob(relative)) if any(c in relative for c in "*?[") else [root / relative]
    found = []
    for candidate in candidates:
        target = candidate.resolve()
        if target.is_file() and target.is_relative_to(resolved_root):
            found.append(target)
    return found


def _merge(base: dict[Any, Any], override: dict[Any, Any]) -> dict[Any, Any]:
    """GitLab's include merge: mappings are deep-merged, anything else in ``override`` replaces."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        merged[key] = _merge(current, value) if isinstance(value, dict) and isinstance(current, dict) else value
    return merged


def _display(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _gitlab_config(path: Path, loaded: _Loaded, root: Path, seen: set[Path], counts: _Counts) -> dict[Any, Any]:
    """The configuration of ``path`` with its local includes merged in; textual counts are added to ``counts``."""
    counts.yaml_lines += len(loaded.text.splitlines())
    counts.expressions += len(_GITLAB_EXPRESSION.findall(loaded.text))
    counts.references += loaded.references
    merged: dict[Any, Any] = {}
    for entry in _include_entries(loaded.config.get("include")):
        counts.includes += 1
        local = _local_include(entry)
        if local is None:
            continue
        targets = _resolve_local(local, root)
        if not targets:
            counts.unresolved.append(local)
        for target in targets:
            if target in seen:
                continue
            seen.add(target)
            counts.files.append(_display(target, root))
            merged = _merge(merged, _gitlab_config(target, _read(target), root, seen, counts))
    own = {key: value for key, value in loaded.config.items() if key != "include"}
    return _merge(merged, own)


def _count_gitlab(path: Path, loaded: _Loaded, root: Path) -> _Counts:
    counts = _Counts()
    config = _gitlab_config(path, loaded, root, {path.resolve()}, counts)
    for key, value in config.items():
        if not isinstance(key, str):
            continue
        if key.startswith("."):
            counts.hidden_jobs += 1
        elif key in GITLAB_KEYWORDS:
            if key in ("before_script", "after_script"):
                _count_scripts({key: value}, counts, path)
            elif key == "default" and isinstance(value, dict):
                _count_scripts(value, counts, path)
            continue
        elif isinstance(value, dict):
            counts.jobs += 1
        if isinstance(value, dict):
            counts.extends += _extends_names(value.get("extends"))
            _count_scripts(value, counts, path)
    return counts


# ----- entry points ----------------------------------------------------------------------------------------------


def _default_root(path: Path) -> Path:
    if _in_github_workflows(path):
        return path.parent.parent.parent
    return path.parent


def _lint_file(path: Path, repo_root: Path | None) -> WorkflowComplexity:
    loaded = _read(path)
    root = repo_root if repo_root is not None else _default_root(path)
    kind = _kind(path, loaded.config)
    counts = _count_github(loaded) if kind == "github" else _count_gitlab(path, loaded, root)
    return _result(_display(path, root), kind, counts)


def _discover(directory: Path) -> list[Path]:
    """The workflow files under ``directory``: ``.github/workflows/*.yml|yaml`` (or the directory's own, when it is
    a ``.github/workflows`` directory) and every ``.gitlab-ci.yml`` / ``*.gitlab-ci.yml`` below it."""
    found: list[Path] = []
    own = directory.name == "workflows" and directory.parent.name == ".github"
    workflows = directory if own else directory / ".github" / "workflows"
    if workflows.is_dir():
        found.extend(sorted(p for p in workflows.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file()))
    gitlab: list[Path] = []
    for current, directories, files in os.walk(directory):
        directories[:] = sorted(d for d in directories if d not in _SKIPPED_DIRECTORIES)
        gitlab.extend(Path(current) / name for name in sorted(files) if _is_gitlab_name(Path(name)))
    found.extend(gitlab)
    return found


def lint_workflow(path: Path, *, repo_root: Path | None = None) -> list[WorkflowComplexity]:
    """The complexity of the workflow file at ``path`` (one result), or of every workflow file found in the
    directory at ``path``.

    ``repo_root`` is where GitLab local includes are resolved and what paths are reported relative to; by default
    the directory of a GitLab file, the repository holding a ``.github/workflows`` file, or the directory itself.
    """
    if path.is_dir():
        root = repo_root if repo_root is not None else path
        return [_lint_file(found, root) for found in _discover(path)]
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    return [_lint_file(path, repo_root)]


def _git_root(path: Path) -> Path | None:
    for ancestor in path.resolve().parents:
        if (ancestor / ".git").exists():
            return ancestor
    return None


def lint_paths(paths: Sequence[Path]) -> list[WorkflowComplexity]:
    """Every workflow file named by ``paths`` (files, linted whatever their name, or directories, searched as
    ``_discover`` says), each once, in the order given.

    A directory is the repository root of the files found in it; a file named directly is resolved against the
    git repository holding it, when there is one (so GitLab local includes resolve as GitLab resolves them), else
    as ``lint_workflow`` does.
    """
    results: list[WorkflowComplexity] = []
    seen: set[Path] = set()
    for path in paths:
        pairs: list[tuple[Path, Path | None]]
        if path.is_dir():
            found = _discover(path)
            if not found:
                raise InputError(
                    f"{path}: no workflow files found (looked for .github/workflows/*.yml|yaml, .gitlab-ci.yml, "
                    "*.gitlab-ci.yml)"
                )
            pairs = [(file, path) for file in found]
        elif path.exists():
            pairs = [(path, _git_root(path))]
        else:
            raise InputError(f"{path}: no such file or directory")
        for file, root in pairs:
            key = file.resolve()
            if key in seen:
                continue
            seen.add(key)
            results.append(_lint_file(file, root))
    return results


def workflow_events(results: Sequence[WorkflowComplexity], repo: str, *, measured_at: datetime) -> list[dict[str, Any]]:
    """Canonical ``timeline_event`` dicts recording ``results`` for ``repo`` (see "Storage" above).

    ``details`` is the JSON text of ``to_json()`` with the repository added.
    """
    if measured_at.tzinfo is None:
        raise InputError("measured_at needs a UTC offset")
    moment = measured_at.astimezone(UTC)
    at = moment.isoformat().replace("+00:00", "Z")
    return [
        {
            "type": "timeline_event",
            "source": "lint",
            "id": f"{repo}:{result.path}:{moment.date().isoformat()}",
            "kind": "workflow_complexity",
            "service": None,
            "at": at,
            "title": result.path,
            "details": json.dumps({"repo": repo, **result.to_json()}, sort_keys=True),
        }
        for result in results
    ]


@dataclass(frozen=True)
class StoredComplexity:
    repo: str
    measured_at: datetime
    measurement: dict[str, Any]
    """``WorkflowComplexity.to_json()`` as stored."""


def stored_complexity(
    store: Store, filters: Filters = NO_FILTERS, config: MetricsConfig = DEFAULT_CONFIG
) -> tuple[StoredComplexity, ...]:
    """The latest stored measurement of each repository's workflow files (``repo`` and ``team`` filters), by repo
    and path."""
    events = schema.timeline_events
    rows = store.query(
        sa.select(events.c.at, events.c.details)
        .where(events.c.kind == "workflow_complexity", events.c.source == "lint")
        .order_by(events.c.at)
    )
    members = teams_members(config, filters.team)
    latest: dict[tuple[str, str], StoredComplexity] = {}
    for row in rows:
        try:
            details = json.loads(row["details"] or "")
        except ValueError:
            continue  # not written by workflow_events: nothing to show
        if not isinstance(details, dict) or not isinstance(details.get("repo"), str):
            continue
        repo = details.pop("repo")
        if (filters.repo is not None and repo != filters.repo) or (members is not None and repo not in members):
            continue
        at = row["at"] if row["at"].tzinfo is not None else row["at"].replace(tzinfo=UTC)
        latest[(repo, str(details.get("path")))] = StoredComplexity(repo, at, details)
    return tuple(latest[key] for key in sorted(latest))

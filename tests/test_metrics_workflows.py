"""Workflow complexity: every fixture workflow counted by hand, GitLab includes, YAML quirks, errors, storage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

from shipscope.errors import InputError
from shipscope.events import parse_event
from shipscope.metrics.workflows import (
    Reference,
    WorkflowLoader,
    lint_paths,
    lint_workflow,
    workflow_events,
)
from shipscope.store import Store, schema
from tests.conftest import FIXTURES
from tests.factories import delivery

WORKFLOWS = FIXTURES / "workflows"

# Counted by hand from the fixture files (line numbers are the files' own).
#
# github/alertmanager.ci.yml (88 lines; `on:` bare → True; on: pull_request, workflow_call)
#   jobs test_frontend, build, test = 3
#   steps 10 (l.11,14,21,22,24,25,26,27,28,31) + 3 (l.45,48,52) + 5 (l.79,82,86,87,88) = 18
#   uses 4 + 3 + 3 = 10; run lines l.21-27 six one-liners + l.87,88 = 8; ${{ }} l.56 = 1
#   reusable: workflow_call trigger = 1
# github/codeql-action.__upload-sarif.yml (173 lines; one job upload-sarif)
#   steps l.79,81,85,90,97,102,105,112,122,125,129,139,142,152,156,159,169 = 17
#   uses l.80,82,86,92,97,105,114,130,143,160 = 10; run l.103,124,127,141,154,158,171, one line each = 7
#   ${{ }}: l.8,54 (1 each), l.55 (3), l.77,84,88,94,99,101,110,113,119 (1 each), l.121 (4), l.136 (1),
#   l.138 (4), l.149 (1), l.151 (4), l.158 (2), l.166 (1), l.168 (4) = 35; workflow_call → reusable 1
# github/flask.publish.yaml (62 lines) jobs build, create-release, publish-pypi = 3
#   steps 6 + 2 + 2 = 10; uses 4 + 1 + 2 = 7; run l.25,26,44 = 3; ${{ }} l.7,13,41,46,51,58 = 6
# github/octokit-webhooks.test.yml (65 lines; `"on":` quoted stays a string) jobs 4
#   steps 4 + 5 + 7 + 6 = 22; uses 2 per job = 8
#   run lines 2 + 3 + (4 + a 2-line block) + (3 + a 2-line block) = 16; no ${{ }}
# github/pytest.deploy.yml (136 lines) jobs package, generate-gh-release-notes, publish-to-pypi, push-tag,
#   create-github-release = 5; steps 2 + 4 + 2 + 2 + 3 = 13; uses 2 + 3 + 2 + 1 + 2 = 10
#   run lines 1 (block) + 4 (block) + 1 = 6; ${{ }} l.19,57,104,108,132,133,134 = 7
# github/pytest.test.yml (338 lines) jobs package, build, check = 3; steps 2 + 8 + 1 = 11
#   uses 2 + 6 + 1 = 9; run l.301,308 = 2; ${{ }} l.30 (2), l.50,270,284,287,294,301,308,338 (1 each) = 10
# github/trivy.reusable-release.yaml (154 lines) one job release, 17 steps, 13 uses
#   run l.57 + block l.98 + block l.103 + block l.119 = 4 lines
#   ${{ }}: l.56,62,63,69,70,76,77,96 (1 each), l.110 (2), l.112,113,125,138,141 (1 each), l.154 (3) = 18
#   on: workflow_call → reusable 1
# gitlab/gitlab-runner.gitlab-ci.yml (46 lines) keys stages, include only: 0 jobs
#   include: 17 local + 1 component + 1 project = 19 (→ reusable 19; the 17 local files are not in the fixtures)
#   $VAR: l.17 (2), l.21 (2), l.23 (1), l.39 ${CI_SERVER_FQDN} (1), l.43 (4) = 10
# gitlab/gitlab-runner.test.gitlab-ci.yml (336 lines)
#   jobs: dependency-scanning, gitlab-advanced-sast, unit test, integration test, its 3 docker variants,
#   integration test with race, fuzz variable mask, 2 × compile tests, 2 × unit tests, 2 × integration tests,
#   logging-field-validator = 16; hidden: .linux test, .linux integration test, .with outer token, .windows test,
#   .windows unit test, .windows integration test = 6; include entries 3; !reference l.12,17,205 = 3
#   extends 1+4+1+4+1+1+1+2+4+2+1+2+3+3+3+3+3+3+3 = 45 → reusable 45 + 3 + 6 + 3 = 57
#   steps (script/before_script entries): unit 2, integration 4, docker variants 4+4+4, race 2, fuzz 5,
#   .windows test before_script 17, .windows unit 1, .windows integration 11, compile 4+4, logging 1 = 63
#   script lines: unit 1+6 (a `>` block whose more-indented lines keep their breaks), integration and the docker
#   variants 3+8 each (4 × 11), race 1+9, fuzz 5, .windows test 20 (16 one-liners, a 5-line block, the !reference
#   none), .windows unit 1, .windows integration 11, compile 4+4, logging 1 → 7+44+10+5+20+1+11+8+1 = 107
#   $VAR/${VAR: l.2,3,57,76,77,96,97,118,119,138,139,173,174,186,209,216,217,219 (1 each), l.222 (2), l.224,227
#   (1 each), l.246 (4), l.258 (5), l.259 (1), l.260-263 (2 each), l.268 (4) = 44
# gitlab/omnibus-gitlab.gitlab-ci.yml (276 lines; a `spec: inputs` document, `---`, then the configuration)
#   jobs fetch-assets, generate-facts, notify:slack-fail:scheduled-master, issue-bot = 4; hidden 9
#   include entries 9 (all local, not in the fixtures); extends 1 (.docker_job) + 2 + 2 + 1 = 6
#   reusable 6 + 0 + 9 + 9 = 24
#   steps: top-level before_script 10, fetch-assets 0 + 2, generate-facts 3, .notify 1, slack 1, issue-bot 1 = 18
#   script lines: before_script 34 (block) + 9 (three plain multi-line scalars fold to one line each) = 43,
#   then 2 + 3 + 1 + 1 + 1 = 51
#   $VAR/${VAR/$[[ ]]: 76 (two $[[ inputs.skip_qa_test ]], the rest variable references)
FIXTURE_COUNTS: dict[str, dict[str, Any]] = {
    "github/alertmanager.ci.yml": dict(
        kind="github", yaml_lines=88, jobs=3, steps=18, inline_script_lines=8, uses=10, includes=0, extends=0,
        expressions=1, reusable_templates=1, verdict="thin",
    ),
    "github/codeql-action.__upload-sarif.yml": dict(
        kind="github", yaml_lines=173, jobs=1, steps=17, inline_script_lines=7, uses=10, includes=0, extends=0,
        expressions=35, reusable_templates=1, verdict="moderate",
    ),
    "github/flask.publish.yaml": dict(
        kind="github", yaml_lines=62, jobs=3, steps=10, inline_script_lines=3, uses=7, includes=0, extends=0,
        expressions=6, reusable_templates=0, verdict="thin",
    ),
    "github/octokit-webhooks.test.yml": dict(
        kind="github", yaml_lines=65, jobs=4, steps=22, inline_script_lines=16, uses=8, includes=0, extends=0,
        expressions=0, reusable_templates=0, verdict="thin",
    ),
    "github/pytest.deploy.yml": dict(
        kind="github", yaml_lines=136, jobs=5, steps=13, inline_script_lines=6, uses=10, includes=0, extends=0,
        expressions=7, reusable_templates=0, verdict="thin",
    ),
    "github/pytest.test.yml": dict(
        kind="github", yaml_lines=338, jobs=3, steps=11, inline_script_lines=2, uses=9, includes=0, extends=0,
        expressions=10, reusable_templates=0, verdict="moderate",
    ),
    "github/trivy.reusable-release.yaml": dict(
        kind="github", yaml_lines=154, jobs=1, steps=17, inline_script_lines=4, uses=13, includes=0, extends=0,
        expressions=18, reusable_templates=1, verdict="moderate",
    ),
    "gitlab/gitlab-runner.gitlab-ci.yml": dict(
        kind="gitlab", yaml_lines=46, jobs=0, steps=0, inline_script_lines=0, uses=0, includes=19, extends=0,
        expressions=10, reusable_templates=19, verdict="thin",
    ),
    "gitlab/gitlab-runner.test.gitlab-ci.yml": dict(
        kind="gitlab", yaml_lines=336, jobs=16, steps=63, inline_script_lines=107, uses=0, includes=3, extends=45,
        expressions=44, reusable_templates=57, verdict="heavy",
    ),
    "gitlab/omnibus-gitlab.gitlab-ci.yml": dict(
        kind="gitlab", yaml_lines=276, jobs=4, steps=18, inline_script_lines=51, uses=0, includes=9, extends=6,
        expressions=76, reusable_templates=24, verdict="heavy",
    ),
}  # fmt: skip


def test_every_fixture_is_counted() -> None:
    on_disk = {f"{path.parent.name}/{path.name}" for path in WORKFLOWS.glob("*/*") if path.is_file()}
    assert on_disk == set(FIXTURE_COUNTS)


@pytest.mark.parametrize("name", sorted(FIXTURE_COUNTS))
def test_fixture_counts(name: str) -> None:
    results = lint_workflow(WORKFLOWS / name)
    assert len(results) == 1
    result = results[0]
    measured = {key: getattr(result, key) for key in FIXTURE_COUNTS[name]}
    assert measured == FIXTURE_COUNTS[name]
    assert result.path == Path(name).name  # relative to its directory, the default root
    assert result.to_json()["verdict"] == FIXTURE_COUNTS[name]["verdict"]


def test_verdict_reasons_name_the_limits() -> None:
    (runner,) = lint_workflow(WORKFLOWS / "gitlab/gitlab-runner.test.gitlab-ci.yml")
    assert runner.reasons == ("jobs 16 > 15", "inline_script_lines 107 > 40")
    (codeql,) = lint_workflow(WORKFLOWS / "github/codeql-action.__upload-sarif.yml")
    assert codeql.reasons == ("yaml_lines 173 > 150",)
    (flask,) = lint_workflow(WORKFLOWS / "github/flask.publish.yaml")
    assert flask.reasons == ()


def test_on_read_as_true_is_put_back() -> None:
    path = WORKFLOWS / "github/alertmanager.ci.yml"
    # the quirk itself: YAML 1.1 reads the bare key `on` as the boolean True
    assert True in yaml.safe_load(path.read_text())
    (result,) = lint_workflow(path)
    assert result.triggers == ("pull_request", "workflow_call")
    assert result.reusable_templates == 1  # found only through the `on` key
    (quoted,) = lint_workflow(WORKFLOWS / "github/octokit-webhooks.test.yml")
    assert quoted.triggers == ("push", "pull_request")


def test_reference_tag_is_understood() -> None:
    path = WORKFLOWS / "gitlab/gitlab-runner.test.gitlab-ci.yml"
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load(path.read_text())
    config = yaml.load(path.read_text(), Loader=WorkflowLoader)  # WorkflowLoader is a SafeLoader
    assert config["dependency-scanning"]["rules"] == Reference(
        (".rules:merge_request_pipelines:no_docs:no-community-mr", "rules")
    )
    assert config[".windows test"]["before_script"][0] == Reference((".go-cache-windows", "before_script"))
    (result,) = lint_workflow(path)
    assert (result.references, result.hidden_jobs) == (3, 6)


def test_two_document_stream_uses_the_last_document() -> None:
    path = WORKFLOWS / "gitlab/omnibus-gitlab.gitlab-ci.yml"
    with pytest.raises(yaml.composer.ComposerError):
        yaml.safe_load(path.read_text())
    (result,) = lint_workflow(path)
    # the `spec:` header document is not a job; the jobs come from the second document
    assert (result.jobs, result.hidden_jobs, result.includes) == (4, 9, 9)
    assert len(result.unresolved_includes) == 9 and result.files == ()


# ----- GitLab local includes -------------------------------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


MAIN_CI = """\
include:
  - local: ci/test.yml
  - template: Jobs/SAST.gitlab-ci.yml
stages: [build, test]
build:
  stage: build
  script:
    - make build
test:
  variables:
    LEVEL: "2"
"""
TEST_YML = """\
.test-base:
  before_script:
    - echo setup
test:
  extends: .test-base
  stage: test
  script:
    - |
      make test
      make lint
"""


def test_local_include_is_followed(tmp_path: Path) -> None:
    write(tmp_path, {".gitlab-ci.yml": MAIN_CI, "ci/test.yml": TEST_YML})
    (result,) = lint_workflow(tmp_path / ".gitlab-ci.yml")
    assert result.path == ".gitlab-ci.yml"
    assert result.files == ("ci/test.yml",)
    assert result.unresolved_includes == ()
    # jobs: build, and test (defined in ci/test.yml, its variables merged from .gitlab-ci.yml: still one job)
    assert result.jobs == 2
    # steps: build 1 + .test-base before_script 1 + test 1 = 3; lines 1 + 1 + 2 (the block) = 4
    assert (result.steps, result.inline_script_lines) == (3, 4)
    # includes: the local and the template entry; extends 1; hidden 1 → reusable 1 + 0 + 1 + 2 = 4
    assert (result.includes, result.extends, result.hidden_jobs, result.reusable_templates) == (2, 1, 1, 4)
    assert result.yaml_lines == 11 + 10


@pytest.mark.parametrize("include", ["include: 'ci/test.yml'", "include:\n  - /ci/test.yml", "include: ci/*.yml"])
def test_local_include_forms(tmp_path: Path, include: str) -> None:
    write(tmp_path, {".gitlab-ci.yml": f"{include}\nbuild:\n  script: make\n", "ci/test.yml": TEST_YML})
    (result,) = lint_workflow(tmp_path / ".gitlab-ci.yml")
    assert result.files == ("ci/test.yml",)
    assert (result.jobs, result.steps, result.includes) == (2, 3, 1)


def test_include_relative_to_the_repo_root(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            ".gitlab/ci/test.gitlab-ci.yml": "include: /ci/shared.yml\nunit:\n  script: [make unit]\n",
            "ci/shared.yml": "lint:\n  script: [make lint]\n",
        },
    )
    (alone,) = lint_workflow(tmp_path / ".gitlab/ci/test.gitlab-ci.yml")  # root: its own directory
    assert (alone.jobs, alone.unresolved_includes) == (1, ("/ci/shared.yml",))
    (rooted,) = lint_workflow(tmp_path / ".gitlab/ci/test.gitlab-ci.yml", repo_root=tmp_path)
    assert (rooted.path, rooted.jobs, rooted.files) == (".gitlab/ci/test.gitlab-ci.yml", 2, ("ci/shared.yml",))


def test_include_cycle_terminates(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a.yml": "include: b.yml\njob-a:\n  script: [echo a]\n",
            "b.yml": "include:\n  - local: a.yml\njob-b:\n  script: [echo b]\n",
        },
    )
    (result,) = lint_workflow(tmp_path / "a.yml")
    assert result.kind == "gitlab"
    assert result.files == ("b.yml",)  # a.yml is not read a second time
    assert (result.jobs, result.steps, result.includes) == (2, 2, 2)


def test_unfollowed_includes(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    write(tmp_path, {"outside.yml": "stolen:\n  script: [x]\n"})
    write(
        tmp_path / "repo",
        {
            ".gitlab-ci.yml": (
                "include:\n"
                "  - https://example.com/ci.yml\n"
                "  - remote: https://example.com/other.yml\n"
                "  - project: group/templates\n    file: [a.yml, b.yml]\n"
                "  - component: $CI_SERVER_FQDN/group/comp@1.0\n"
                "  - local: missing.yml\n"
                "  - local: ../outside.yml\n"
                "  - local: $CONFIG_PATH/x.yml\n"
                "job:\n  script: [x]\n"
            )
        },
    )
    (result,) = lint_workflow(tmp_path / "repo/.gitlab-ci.yml")
    assert result.includes == 7
    assert result.files == ()
    assert result.unresolved_includes == ("missing.yml", "../outside.yml", "$CONFIG_PATH/x.yml")
    assert result.jobs == 1


# ----- GitHub specifics and verdicts -----------------------------------------------------------------------------


def test_github_reusable_workflow_call(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            ".github/workflows/release.yml": (
                "on: [push, workflow_call]\n"
                "jobs:\n"
                "  call:\n"
                "    uses: org/repo/.github/workflows/build.yml@v1\n"
                "    with:\n      ref: ${{ github.sha }}\n"
                "  check:\n"
                "    runs-on: ubuntu-latest\n"
                "    steps:\n"
                "      - uses: actions/checkout@v4\n"
                "      - run: |\n          make check\n\n          make lint\n"
            )
        },
    )
    (result,) = lint_workflow(tmp_path / ".github/workflows/release.yml")
    assert result.path == ".github/workflows/release.yml"  # the repository is the root
    assert result.triggers == ("push", "workflow_call")
    # jobs 2; steps 2; uses: the job call + the checkout step; run lines 2 (the blank line is not counted)
    assert (result.jobs, result.steps, result.uses, result.inline_script_lines) == (2, 2, 2, 2)
    assert (result.reusable_templates, result.expressions) == (2, 1)  # job-level uses + workflow_call


def test_heavy_github_workflow(tmp_path: Path) -> None:
    script = "".join(f"          echo {n}\n" for n in range(41))
    write(
        tmp_path,
        {".github/workflows/ci.yml": f"on: push\njobs:\n  build:\n    steps:\n      - run: |\n{script}"},
    )
    (result,) = lint_workflow(tmp_path / ".github/workflows/ci.yml")
    assert (result.inline_script_lines, result.verdict, result.reasons) == (
        41,
        "heavy",
        ("inline_script_lines 41 > 40",),
    )


# ----- errors ----------------------------------------------------------------------------------------------------


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text("stages: [build]\nbuild:\n  script:\n    - make\n  image: [unclosed\n")
    with pytest.raises(InputError) as caught:
        lint_workflow(path)
    assert str(path) in caught.value.message
    # the flow sequence opened on line 5 is still open when the text ends on line 6
    assert "line 6, column 1" in caught.value.message
    assert "while parsing a flow sequence started at line 5" in caught.value.message


def test_malformed_include_names_the_included_file(tmp_path: Path) -> None:
    write(tmp_path, {".gitlab-ci.yml": "include: ci/bad.yml\n", "ci/bad.yml": "job:\n  script: [a\n  b: c\n"})
    with pytest.raises(InputError, match=r"ci/bad\.yml: invalid YAML at line 3"):
        lint_workflow(tmp_path / ".gitlab-ci.yml")


def test_other_input_errors(tmp_path: Path) -> None:
    (tmp_path / "list.gitlab-ci.yml").write_text("- a\n- b\n")
    with pytest.raises(InputError, match="mapping at the top level, found a list"):
        lint_workflow(tmp_path / "list.gitlab-ci.yml")
    with pytest.raises(InputError, match="no such file"):
        lint_workflow(tmp_path / "absent.yml")
    (tmp_path / "latin1.gitlab-ci.yml").write_bytes(b"job:\n  script: [caf\xe9]\n")
    with pytest.raises(InputError, match="not UTF-8"):
        lint_workflow(tmp_path / "latin1.gitlab-ci.yml")
    (tmp_path / "tag.gitlab-ci.yml").write_text("job:\n  script: !!python/object:os.system [ls]\n")
    with pytest.raises(InputError, match="line 2"):
        lint_workflow(tmp_path / "tag.gitlab-ci.yml")


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]
    lines.append("job:\n  script: *a8")  # 10^9 entries once flattened
    (tmp_path / ".gitlab-ci.yml").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="aliases expand it to"):
        lint_workflow(tmp_path / ".gitlab-ci.yml")


# ----- discovery -------------------------------------------------------------------------------------------------


def test_lint_paths_finds_workflow_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            ".github/workflows/ci.yml": "on: push\njobs:\n  a:\n    steps: [{run: make}]\n",
            ".github/workflows/release.yaml": "on: push\njobs:\n  b:\n    uses: org/r/.github/workflows/x.yml@v1\n",
            ".github/workflows/README.md": "not a workflow",
            ".gitlab-ci.yml": "include: ci/shared.yml\nbuild:\n  script: [make]\n",
            "ci/shared.yml": "lint:\n  script: [make lint]\n",
            ".gitlab/ci/test.gitlab-ci.yml": "unit:\n  script: [make unit]\n",
            "node_modules/pkg/.gitlab-ci.yml": "ignored:\n  script: [x]\n",
        },
    )
    results = lint_paths([tmp_path, tmp_path / ".gitlab-ci.yml"])  # the file again: listed once
    assert [(r.path, r.kind, r.jobs) for r in results] == [
        (".github/workflows/ci.yml", "github", 1),
        (".github/workflows/release.yaml", "github", 1),
        (".gitlab-ci.yml", "gitlab", 2),
        (".gitlab/ci/test.gitlab-ci.yml", "gitlab", 1),
    ]
    assert [r.path for r in lint_paths([tmp_path / ".github/workflows"])] == ["ci.yml", "release.yaml"]
    assert [r.path for r in lint_workflow(tmp_path)] == [r.path for r in results]
    explicit = lint_paths([WORKFLOWS / "github/flask.publish.yaml"])
    assert [(r.path, r.jobs) for r in explicit] == [("flask.publish.yaml", 3)]


def test_lint_paths_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no workflow files found"):
        lint_paths([tmp_path])
    with pytest.raises(InputError, match="no such file"):
        lint_paths([tmp_path / "nowhere"])


# ----- storage ---------------------------------------------------------------------------------------------------


def test_workflow_events_shape() -> None:
    results = lint_workflow(WORKFLOWS / "github/flask.publish.yaml")
    measured_at = datetime(2026, 3, 2, 1, 30, tzinfo=timezone(timedelta(hours=3)))  # 2026-03-01T22:30Z
    (event,) = workflow_events(results, "pallets/flask", measured_at=measured_at)
    assert {key: value for key, value in event.items() if key != "details"} == {
        "type": "timeline_event",
        "source": "lint",
        "id": "pallets/flask:flask.publish.yaml:2026-03-01",  # the UTC date
        "kind": "workflow_complexity",
        "service": None,
        "at": "2026-03-01T22:30:00Z",
        "title": "flask.publish.yaml",
    }
    details = json.loads(event["details"])
    assert details == {"repo": "pallets/flask", **results[0].to_json()}
    parse_event(event)  # a valid canonical event
    with pytest.raises(InputError, match="UTC offset"):
        workflow_events(results, "pallets/flask", measured_at=datetime(2026, 3, 1))


def test_workflow_events_are_stored(store: Store) -> None:
    results = lint_workflow(WORKFLOWS / "gitlab/omnibus-gitlab.gitlab-ci.yml")
    day = datetime(2026, 3, 1, 12, tzinfo=UTC)
    store.ingest([delivery(event) for event in workflow_events(results, "gitlab-org/omnibus-gitlab", measured_at=day)])
    # measured again later the same day: the same id, so the row is replaced rather than added
    later = workflow_events(results, "gitlab-org/omnibus-gitlab", measured_at=day + timedelta(hours=5))
    store.ingest([delivery(event) for event in later])
    (row,) = store.rows(schema.timeline_events)
    assert (row["source"], row["id"], row["kind"], row["title"], row["service"]) == (
        "lint",
        "gitlab-org/omnibus-gitlab:omnibus-gitlab.gitlab-ci.yml:2026-03-01",
        "workflow_complexity",
        "omnibus-gitlab.gitlab-ci.yml",
        None,
    )
    assert row["at"] == day + timedelta(hours=5)
    assert json.loads(row["details"])["jobs"] == 4

"""Every parser, fed real payloads (../shared/fixtures) mutated by hypothesis (fields removed, retyped or replaced by
arbitrary JSON; XML, YAML and JSON bytes cut and spliced), either reads them or refuses them with an InputError
naming what is wrong: never another exception, never a hang (each example has a deadline)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipscope.errors import ShipscopeError
from shipscope.ingest import webhooks
from shipscope.ingest.reports import report_delivery
from shipscope.metrics.workflows import lint_workflow
from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow
FUZZ = settings(
    max_examples=300,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)

Reader = Callable[[bytes], Any]
WEBHOOKS: dict[str, tuple[str, Reader]] = {
    "github workflow_job": (
        "github/workflow_job.completed.failure.json",
        lambda body: webhooks.github_delivery(body, {"x-github-event": "workflow_job"}),
    ),
    "github workflow_run": (
        "github/workflow_run.completed.with-pull-requests.json",
        lambda body: webhooks.github_delivery(body, {"x-github-event": "workflow_run"}),
    ),
    "github pull_request": (
        "github/pull_request.opened.json",
        lambda body: webhooks.github_delivery(body, {"x-github-event": "pull_request"}),
    ),
    "github deployment_status": (
        "github/deployment_status.success.json",
        lambda body: webhooks.github_delivery(body, {"x-github-event": "deployment_status"}),
    ),
    "github push": ("github/push.tag.json", lambda body: webhooks.github_delivery(body, {"x-github-event": "push"})),
    "gitlab pipeline": (
        "gitlab/pipeline_hook.success.json",
        lambda body: webhooks.gitlab_delivery(body, {"x-gitlab-event": "Pipeline Hook"}),
    ),
    "gitlab job": ("gitlab/job_hook.success.json", lambda body: webhooks.gitlab_delivery(body, {})),
    "gitlab merge request": ("gitlab/merge_request_hook.opened.json", lambda body: webhooks.gitlab_delivery(body, {})),
    "gitlab deployment": ("gitlab/deployment_hook.success.json", lambda body: webhooks.gitlab_delivery(body, {})),
    "alertmanager": (
        "alertmanager/firing.production_example.json",
        lambda body: webhooks.alertmanager_delivery(body, {}),
    ),
    "pagerduty": ("incidents/pagerduty.v3.incident.resolved.json", lambda body: webhooks.pagerduty_delivery(body, {})),
    "opsgenie": ("incidents/opsgenie.create.json", lambda body: webhooks.opsgenie_delivery(body, {})),
    "sarif": (
        "sarif/trivy.alpine-310.sarif",
        lambda body: report_delivery("sarif", body, {"repo": "acme/shop", "scanned_at": "2026-03-01T10:00:00Z"}),
    ),
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _mutate(document: Any, path: tuple[Any, ...], replacement: Any, delete: bool) -> Any:
    if not path:
        return replacement
    *parents, last = path
    target = document
    for step in parents:
        target = target[step]
    if delete and isinstance(target, dict):
        del target[last]
    else:
        target[last] = replacement
    return document


def _refused_cleanly(read: Reader, body: bytes) -> None:
    try:
        read(body)
    except ShipscopeError as error:
        assert error.message.strip(), "a refusal must say what is wrong"


@pytest.mark.parametrize("name", sorted(WEBHOOKS))
def test_mutated_payloads_are_read_or_refused_cleanly(name: str) -> None:
    fixture, read = WEBHOOKS[name]
    original = orjson.loads((FIXTURES / fixture).read_bytes())
    paths = _paths(original)

    @FUZZ
    @given(
        mutations=st.lists(
            st.tuples(st.integers(0, len(paths) - 1), JSON_VALUES, st.booleans()), min_size=1, max_size=3
        )
    )
    def check(mutations: list[tuple[int, Any, bool]]) -> None:
        document = orjson.loads(orjson.dumps(original))
        for index, replacement, delete in mutations:
            live = _paths(document)
            document = _mutate(document, live[index % len(live)], replacement, delete)
        _refused_cleanly(read, orjson.dumps(document))

    check()


BYTE_READERS: dict[str, tuple[str, Reader]] = {
    "junit": (
        "junit/surefire.flakyFailure.xml",
        lambda body: report_delivery("junit", body, {"run_id": "r1"}),
    ),
    "junit nested": ("junit/nested.testsuite-in-testsuite.xml", lambda body: report_delivery("junit", body, {})),
    "github json": (
        "github/workflow_job.in_progress.json",
        lambda body: webhooks.github_delivery(body, {"x-github-event": "workflow_job"}),
    ),
}


@pytest.mark.parametrize("name", sorted(BYTE_READERS))
def test_cut_and_spliced_bytes_are_read_or_refused_cleanly(name: str) -> None:
    fixture, read = BYTE_READERS[name]
    original = (FIXTURES / fixture).read_bytes()

    @FUZZ
    @given(
        start=st.integers(0, len(original)),
        length=st.integers(0, 200),
        splice=st.binary(max_size=60)
        | st.sampled_from([b"<", b"&", b"]]>", b"\x00", b"<!ENTITY x SYSTEM 'file:///etc/passwd'>"]),
    )
    def check(start: int, length: int, splice: bytes) -> None:
        _refused_cleanly(read, original[:start] + splice + original[start + length :])

    check()


def test_mutated_workflows_are_linted_or_refused_cleanly(tmp_path: Path) -> None:
    original = (FIXTURES / "workflows/github/pytest.test.yml").read_text()

    @FUZZ
    @given(
        start=st.integers(0, len(original)),
        length=st.integers(0, 80),
        splice=st.text(max_size=40)
        | st.sampled_from(["&a [*a, *a]", ": :", "\t", "{{", "- *x", "!!python/object:os.system"]),
    )
    def check(start: int, length: int, splice: str) -> None:
        path = tmp_path / "ci.yml"
        path.write_text(original[:start] + splice + original[start + length :])
        _refused_cleanly(lambda body: lint_workflow(path), b"")

    check()

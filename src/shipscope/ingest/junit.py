"""JUnit XML reports → TestCase events.

One streaming pass reads every dialect CI tools write (pytest, Maven Surefire, Gradle, jest-junit, mocha,
go-junit-report, Marathon, …), so a report of hundreds of thousands of cases never becomes a whole tree in memory.
A report has no use for a DTD or entities, and they are how XML bombs and external-entity reads (XXE) work, so any
DTD is refused before anything in it is expanded.

Retries become attempts of one test: Surefire's ``<flakyFailure>``/``<rerunFailure>`` children are the failed runs
before the one the test case reports, and a test case repeated with the same suite, class and name is the next run.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from typing import IO
from xml.etree.ElementTree import Element, ParseError
from xml.parsers.expat import ErrorString

import defusedxml.ElementTree as defused_etree  # type: ignore[import-untyped, unused-ignore]
from defusedxml import DefusedXmlException  # type: ignore[import-untyped, unused-ignore]
from pydantic import ValidationError

from shipscope.errors import InputError
from shipscope.events import TestCase, TestOutcome

SOURCE = "junit"

_ROOTS = ("testsuites", "testsuite")
# When a test case carries several of these (pytest: a failing test whose teardown also errors), the one listed
# first here decides its outcome.
_OUTCOMES: tuple[tuple[str, TestOutcome], ...] = (("failure", "failed"), ("error", "error"), ("skipped", "skipped"))
# Surefire (and Marathon) record each earlier failed run of a retried test inside the test case itself.
_EARLIER_RUNS: dict[str, TestOutcome] = {
    "flakyFailure": "failed",
    "rerunFailure": "failed",
    "flakyError": "error",
    "rerunError": "error",
}
_UNNAMED_SUITE = "(unnamed)"
# "1,234.5" or "12,345": commas that group thousands (a leading "0," is a decimal comma instead).
_THOUSANDS = re.compile(r"[1-9]\d{0,2}(?:,\d{3})+(?:\.\d*)?")

TestKey = tuple[str, str | None, str]
"""(suite, classname, name): what makes two test cases of one report runs of the same test."""


def parse_junit(
    data: bytes | IO[bytes],
    *,
    run_id: str | None = None,
    job_id: str | None = None,
    source: str = SOURCE,
) -> list[TestCase]:
    """Test cases of a JUnit XML report (any of the dialects above), streamed so large files do not build a whole
    tree. Raises InputError for malformed XML (naming line and column), for a document that is not a JUnit report
    (root not testsuites/testsuite), and for any DTD, entity declaration or external entity: nothing is expanded."""
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    cases: list[TestCase] = []
    attempts: dict[TestKey, int] = {}
    try:
        for suite, element in _test_case_elements(stream):
            cases.extend(_executions(element, suite, attempts, run_id=run_id, job_id=job_id, source=source))
    except ParseError as error:
        line, column = error.position
        # expat counts columns from 0; people and editors count from 1.
        raise InputError(f"malformed XML at line {line}, column {column + 1}: {ErrorString(error.code)}") from error
    except DefusedXmlException as error:
        raise InputError(f"refused XML: a JUnit report may not declare a DTD or entities ({error})") from error
    except ValidationError as error:
        raise InputError(f"invalid test case in JUnit report: {error}") from error
    return cases


def _test_case_elements(stream: IO[bytes]) -> Iterator[tuple[str, Element]]:
    """Each complete ``<testcase>`` with the name of its innermost suite, in document order.

    A test case is read when it closes, with its children; after that it and every other finished element is cut
    from the tree, so memory holds only the open path, not the report.
    """
    events: Iterator[tuple[str, Element]] = defused_etree.iterparse(
        stream,
        events=("start", "end"),
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )
    open_elements: list[Element] = []
    suite_names: list[str] = []
    root_name = ""
    test_case: Element | None = None
    for event, element in events:
        tag = _local_name(element.tag)
        if event == "start":
            if not open_elements:
                if tag not in _ROOTS:
                    raise InputError(
                        f"not a JUnit XML report: the root element is <{tag}>, expected <testsuites> or <testsuite>"
                    )
                root_name = (element.get("name") or "").strip()
            open_elements.append(element)
            if test_case is not None:
                continue  # the content of a test case is read from its element once it closes
            if tag == "testsuite":
                suite_names.append((element.get("name") or "").strip())
            elif tag == "testcase":
                test_case = element
            continue

        open_elements.pop()
        if element is test_case:
            test_case = None
            yield _suite_name(suite_names, root_name, element), element
        elif test_case is not None:
            continue
        elif tag == "testsuite":
            suite_names.pop()
        if open_elements:
            element.clear()
            open_elements[-1].remove(element)


def _suite_name(suite_names: list[str], root_name: str, test_case: Element) -> str:
    """The innermost named enclosing suite; a case outside any named suite falls back to the report's name."""
    for name in reversed(suite_names):
        if name:
            return name
    return root_name or (test_case.get("classname") or "").strip() or _UNNAMED_SUITE


def _executions(
    element: Element,
    suite: str,
    attempts: dict[TestKey, int],
    *,
    run_id: str | None,
    job_id: str | None,
    source: str,
) -> list[TestCase]:
    """One test case element as its runs: earlier failed runs first, then the outcome the element reports."""
    name = element.get("name") or ""
    if not name.strip():
        raise InputError(f"a <testcase> in suite {suite!r} has no name")
    classname = element.get("classname") or None
    duration = _seconds(element.get("time"))

    runs: list[tuple[TestOutcome, float]] = []
    final: TestOutcome = "passed"
    final_rank = len(_OUTCOMES)
    for child in element:
        tag = _local_name(child.tag)
        earlier = _EARLIER_RUNS.get(tag)
        if earlier is not None:
            own_time = child.get("time")
            runs.append((earlier, duration if own_time is None else _seconds(own_time)))
            continue
        for rank, (outcome_tag, outcome) in enumerate(_OUTCOMES):
            if tag == outcome_tag and rank < final_rank:
                final, final_rank = outcome, rank
    runs.append((final, duration))

    key: TestKey = (suite, classname, name)
    attempt = attempts.get(key, 0)
    executions = []
    for outcome, seconds in runs:
        attempt += 1
        executions.append(
            TestCase(
                source=source,
                run_id=run_id,
                job_id=job_id,
                suite=suite,
                classname=classname,
                name=name,
                file=element.get("file") or None,
                duration_seconds=seconds,
                outcome=outcome,
                attempt=attempt,
            )
        )
    attempts[key] = attempt
    return executions


def _seconds(text: str | None) -> float:
    """A ``time`` attribute in seconds. Missing, empty, unreadable, negative or infinite times count as 0: a bad
    timing should not cost the report its outcomes."""
    if text is None:
        return 0.0
    text = text.strip()
    if "," in text:
        # "1,234.5" groups thousands; "0,5" or "1,5" is a decimal comma, as some locales write it.
        text = text.replace(",", "") if _THOUSANDS.fullmatch(text) else text.replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def _local_name(tag: str) -> str:
    """A tag without its namespace: ``{uri}testcase`` → ``testcase``."""
    return tag.rpartition("}")[2]

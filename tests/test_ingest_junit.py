"""JUnit XML → TestCase events: the dialects in the shared fixtures, retries as attempts, and hostile XML."""

from __future__ import annotations

import io
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from xml.etree.ElementTree import ParseError

import pytest
from defusedxml import DefusedXmlException  # type: ignore[import-untyped, unused-ignore]

from shipscope.errors import InputError
from shipscope.events import TestCase
from shipscope.ingest.junit import SOURCE, _test_case_elements, parse_junit
from tests.conftest import FIXTURES

JUNIT = FIXTURES / "junit"

# fixture → (passed, failed, error, skipped), tests that failed and then passed on a retry.
EXPECTED: dict[str, tuple[tuple[int, int, int, int], int]] = {
    "go-junit-report.001-pass-fail-skip.xml": ((2, 1, 0, 2), 0),
    "go-junit-report.014-panic.xml": ((0, 0, 2, 0), 0),
    "gradle.TestCase1.xml": ((2, 1, 1, 1), 0),
    "jest-junit.EnricoMi.xml": ((2, 0, 0, 0), 0),
    "jest-junit.xml": ((1, 4, 0, 1), 0),
    "marathon.flakyFailure.xml": ((1, 1, 0, 0), 1),
    "mocha.latex-utensils.xml": ((109, 0, 0, 0), 0),
    "nested.testsuite-in-testsuite.xml": ((5, 0, 0, 0), 0),
    "pytest.fail.xml": ((3, 1, 0, 1), 0),
    "pytest.report.xml": ((1, 2, 0, 0), 0),
    "retries.repeated-testcase.all-failures.xml": ((0, 2, 1, 0), 0),
    "surefire.CalcUtilsTest.xml": ((0, 2, 0, 0), 0),
    "surefire.flakyFailure.xml": ((1, 1, 0, 0), 1),
    "xunit.xml": ((2, 0, 0, 0), 0),
}


def parse_fixture(name: str) -> list[TestCase]:
    return parse_junit((JUNIT / name).read_bytes())


def flaky_tests(cases: list[TestCase]) -> set[tuple[str, str | None, str]]:
    """Tests with a failed run followed by a passed one, as DESIGN.md §3 counts a flaky test."""
    first_failure: dict[tuple[str, str | None, str], int] = {}
    flaky = set()
    for case in sorted(cases, key=lambda case: case.attempt):
        key = (case.suite, case.classname, case.name)
        if case.outcome == "failed":
            first_failure.setdefault(key, case.attempt)
        elif case.outcome == "passed" and key in first_failure:
            flaky.add(key)
    return flaky


def runs(cases: list[TestCase], name: str) -> list[tuple[int, str, float]]:
    return [(case.attempt, case.outcome, case.duration_seconds) for case in cases if case.name == name]


def test_every_junit_fixture_has_expectations() -> None:
    assert {path.name for path in JUNIT.glob("*.xml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_outcome_counts(name: str) -> None:
    (passed, failed, error, skipped), flaky = EXPECTED[name]

    cases = parse_fixture(name)

    counts = Counter(case.outcome for case in cases)
    assert (counts["passed"], counts["failed"], counts["error"], counts["skipped"]) == (passed, failed, error, skipped)
    assert len(flaky_tests(cases)) == flaky
    assert all(case.source == SOURCE and case.run_id is None and case.job_id is None for case in cases)


def test_pytest_cases_carry_suite_class_file_and_duration() -> None:
    cases = parse_fixture("pytest.fail.xml")

    failed = next(case for case in cases if case.outcome == "failed")
    assert failed == TestCase(
        source="junit",
        suite="pytest",
        classname="test.test_spark.SparkTests",
        name="test_rsh_events",
        file="test/test_spark.py",
        duration_seconds=7.541,
        outcome="failed",
        attempt=1,
    )
    assert runs(cases, "test_get_available_devices") == [(1, "skipped", 0.001)]


def test_go_panic_is_an_error_in_each_package() -> None:
    cases = parse_fixture("go-junit-report.014-panic.xml")

    assert [(case.suite, case.name, case.outcome, case.duration_seconds) for case in cases] == [
        ("package/panic", "Failure", "error", 0.0),
        ("package/panic2", "Failure", "error", 0.0),
    ]


def test_gradle_report_with_mojibake_message_parses() -> None:
    cases = parse_fixture("gradle.TestCase1.xml")

    assert [(case.name, case.outcome, case.duration_seconds) for case in cases] == [
        ("test1", "passed", 0.0),
        ("test2", "failed", 0.0),
        ("test3", "error", 0.001),
        ("test4", "skipped", 0.0),
        ("test5", "passed", 0.002),
    ]
    assert {case.suite for case in cases} == {"com.github.onozaty.junit.xml2csv.TestCase1"}


def test_jest_empty_classname_is_unset() -> None:
    cases = parse_fixture("jest-junit.xml")

    timeout = next(case for case in cases if case.name == "Timeout test")
    assert (timeout.suite, timeout.classname, timeout.outcome) == ("__tests__\\second.test.js", None, "failed")
    nested = next(case for case in cases if case.name == "Failing test")
    assert nested.classname == "Test 1 › Test 1.1"


def test_xunit_converted_report_with_byte_order_mark() -> None:
    cases = parse_fixture("xunit.xml")

    assert [(case.suite, case.name, case.duration_seconds) for case in cases] == [
        ("Rhino Collection", "mytestapp.Tests.AttriubteTests.SetTestNoFeature", 0.4540354),
        ("Rhino Collection", "mytestapp.Tests.AttriubteTests.GetTestNoFeature", 0.0039778),
    ]


def test_nested_suites_name_the_innermost_suite() -> None:
    cases = parse_fixture("nested.testsuite-in-testsuite.xml")

    assert [(case.name, case.suite, case.file) for case in cases] == [
        ("TestCase1", "TestSuite1", "/somepath"),
        ("TestCase2", "TestSuite1", "/somepath"),
        ("TestCase3", "TestSuite2.1", "/somepath"),
        ("TestCase4", "TestSuite2", "/somepath"),
        ("TestCase5", "Project Test Suite", "/somepath"),
    ]


def test_surefire_flaky_failure_is_a_failed_attempt_before_the_pass() -> None:
    cases = parse_fixture("surefire.flakyFailure.xml")

    assert runs(cases, "createWebhook") == [(1, "failed", 0.683), (2, "passed", 0.683)]
    assert flaky_tests(cases) == {
        (
            "io.sodadata.dependson.soda.integrations.msteams.MicrosoftTeamsCrudTest",
            "io.sodadata.dependson.soda.integrations.msteams.MicrosoftTeamsCrudTest",
            "createWebhook",
        )
    }


def test_marathon_flaky_failure() -> None:
    cases = parse_fixture("marathon.flakyFailure.xml")

    assert runs(cases, "testFlakyFailure") == [(1, "failed", 1.86), (2, "passed", 1.86)]
    assert {case.suite for case in cases} == {"omni"}


def test_repeated_test_case_elements_are_successive_attempts() -> None:
    cases = parse_fixture("retries.repeated-testcase.all-failures.xml")

    assert runs(cases, "test_always_fails") == [(1, "failed", 1.0), (2, "failed", 1.0), (3, "error", 1.0)]
    assert {case.file for case in cases} == {"/home/runner/work/tests/test_always_fails.py"}


def test_reruns_with_their_own_time_and_repeats_continue_the_count() -> None:
    report = b"""<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="com.example.CheckoutTest" tests="3">
  <testcase name="pays" classname="com.example.CheckoutTest" time="2.5">
    <rerunFailure message="timeout" time="3.0"><stackTrace>TimeoutException</stackTrace></rerunFailure>
    <rerunError message="connection reset"><stackTrace>IOException</stackTrace></rerunError>
    <failure message="timeout">TimeoutException</failure>
  </testcase>
  <testcase name="pays" classname="com.example.CheckoutTest" time="1.0"/>
  <testcase name="pays" classname="com.example.OtherTest" time="0.5"/>
</testsuite>"""

    cases = parse_junit(report)

    assert [(case.classname, case.attempt, case.outcome, case.duration_seconds) for case in cases] == [
        ("com.example.CheckoutTest", 1, "failed", 3.0),
        ("com.example.CheckoutTest", 2, "error", 2.5),
        ("com.example.CheckoutTest", 3, "failed", 2.5),
        ("com.example.CheckoutTest", 4, "passed", 1.0),
        ("com.example.OtherTest", 1, "passed", 0.5),
    ]


def test_failure_outranks_a_teardown_error_and_skip() -> None:
    report = b"""<testsuites><testsuite name="pytest">
  <testcase classname="t" name="both"><error message="teardown"/><failure message="assert"/></testcase>
  <testcase classname="t" name="skip_then_error"><skipped/><error message="teardown"/></testcase>
</testsuite></testsuites>"""

    assert [case.outcome for case in parse_junit(report)] == ["failed", "error"]


def test_run_job_and_source_are_passed_through() -> None:
    cases = parse_junit((JUNIT / "pytest.report.xml").read_bytes(), run_id="run-7", job_id="job-3", source="ci")

    assert {(case.run_id, case.job_id, case.source) for case in cases} == {("run-7", "job-3", "ci")}


def test_file_object_and_bytes_give_the_same_cases() -> None:
    data = (JUNIT / "jest-junit.xml").read_bytes()

    with (JUNIT / "jest-junit.xml").open("rb") as stream:
        assert parse_junit(stream) == parse_junit(data)


@pytest.mark.parametrize(
    ("time_attribute", "seconds"),
    [
        ('time="1,234.5"', 1234.5),
        ('time="12,345"', 12345.0),
        ('time="0,5"', 0.5),
        ('time="2,25"', 2.25),
        ('time=" 0.25 "', 0.25),
        ('time=""', 0.0),
        ("", 0.0),
        ('time="n/a"', 0.0),
        ('time="-1"', 0.0),
        ('time="inf"', 0.0),
        ('time="NaN"', 0.0),
    ],
)
def test_time_attribute_forms(time_attribute: str, seconds: float) -> None:
    report = f'<testsuite name="s"><testcase classname="c" name="t" {time_attribute}/></testsuite>'.encode()

    [case] = parse_junit(report)

    assert case.duration_seconds == seconds


def test_namespaced_report_and_suiteless_cases() -> None:
    report = b"""<testsuites xmlns="urn:example:junit" name="all">
  <testcase classname="loose" name="outside_any_suite"/>
  <testsuite><testcase classname="c" name="in_unnamed_suite"/></testsuite>
</testsuites>"""

    assert [(case.suite, case.name) for case in parse_junit(report)] == [
        ("all", "outside_any_suite"),
        ("all", "in_unnamed_suite"),
    ]


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE testsuites [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<testsuites><testsuite name="bomb"><testcase classname="c" name="&lol9;"/></testsuite></testsuites>
"""


def test_billion_laughs_is_refused_without_expansion() -> None:
    started = time.perf_counter()
    with pytest.raises(InputError, match="DTD") as raised:
        parse_junit(BILLION_LAUGHS)

    assert isinstance(raised.value.__cause__, DefusedXmlException)
    assert "lollollol" not in raised.value.message
    assert time.perf_counter() - started < 1.0


def test_external_entity_is_refused_and_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    for target in ("file:///etc/passwd", secret.as_uri()):
        report = f"""<?xml version="1.0"?>
<!DOCTYPE testsuites [<!ENTITY xxe SYSTEM "{target}">]>
<testsuites><testsuite name="s"><testcase classname="c" name="&xxe;"/></testsuite></testsuites>""".encode()

        with pytest.raises(InputError, match="DTD") as raised:
            parse_junit(report)

        assert isinstance(raised.value.__cause__, DefusedXmlException)
        assert "TOP-SECRET-MARKER" not in raised.value.message and "root:" not in raised.value.message


def test_external_dtd_is_refused() -> None:
    report = b"""<?xml version="1.0"?>
<!DOCTYPE testsuites SYSTEM "http://attacker.invalid/junit.dtd">
<testsuites/>"""

    with pytest.raises(InputError, match="DTD"):
        parse_junit(report)


def test_entity_without_declaration_is_malformed() -> None:
    with pytest.raises(InputError, match=r"line 1, column 21: undefined entity"):
        parse_junit(b'<testsuite name="s"><testcase classname="c" name="&xxe;"/></testsuite>')


def test_truncated_report_names_line_and_column() -> None:
    report = b'<testsuites>\n  <testsuite name="s">\n    <testcase name="a" time="1"/>\n    <testcase name="b'

    with pytest.raises(InputError) as raised:
        parse_junit(report)

    assert raised.value.message == "malformed XML at line 4, column 5: unclosed token"
    assert isinstance(raised.value.__cause__, ParseError)


def test_empty_input_is_malformed() -> None:
    with pytest.raises(InputError, match="line 1, column 1: no element found"):
        parse_junit(b"")


@pytest.mark.parametrize(
    "document",
    [
        b"<html><body><p>not a report</p></body></html>",
        # xUnit.net v2's own format is a different schema, not a JUnit dialect.
        b'<assemblies><assembly name="a.dll"><collection><test name="T.M" result="Pass" time="0.1"/>'
        b"</collection></assembly></assemblies>",
    ],
)
def test_other_xml_documents_are_not_junit_reports(document: bytes) -> None:
    with pytest.raises(InputError, match="not a JUnit XML report: the root element is <"):
        parse_junit(document)


def test_test_case_without_a_name_is_refused() -> None:
    with pytest.raises(InputError, match="has no name"):
        parse_junit(b'<testsuite name="s"><testcase classname="c" time="1"/></testsuite>')


def write_report(path: Path, suites: int, cases_per_suite: int) -> None:
    """A report where every 100th case fails once and passes on a repeated <testcase>."""
    with path.open("wb") as out:
        out.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name="big">\n')
        for suite in range(suites):
            out.write(f'  <testsuite name="suite{suite}" tests="{cases_per_suite}">\n'.encode())
            lines = []
            for case in range(cases_per_suite):
                test = f'classname="pkg.Class{suite}" name="test_{case}"'
                if case % 100 == 0:
                    lines.append(f'    <testcase {test} time="0.5"><failure message="boom">trace</failure></testcase>')
                    lines.append(f'    <testcase {test} time="0.25"/>')
                else:
                    lines.append(f'    <testcase {test} time="0.01"><system-out>ok</system-out></testcase>')
            out.write(("\n".join(lines) + "\n").encode())
            out.write(b"  </testsuite>\n")
        out.write(b"</testsuites>\n")


@pytest.mark.slow
def test_large_report_streams_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "large.xml"
    write_report(path, suites=200, cases_per_suite=1000)

    started = time.perf_counter()
    with path.open("rb") as stream:
        cases = parse_junit(stream, run_id="big-run")
    elapsed = time.perf_counter() - started

    assert len(cases) == 200 * 1000 + 200 * 10
    assert Counter(case.outcome for case in cases) == {"passed": 200_000, "failed": 2_000}
    assert len(flaky_tests(cases)) == 2_000
    assert runs([case for case in cases if case.suite == "suite199"], "test_900") == [
        (1, "failed", 0.5),
        (2, "passed", 0.25),
    ]
    assert elapsed < 10


def test_memory_stays_flat_while_streaming(tmp_path: Path) -> None:
    peaks = []
    for cases_per_suite in (2_000, 20_000):
        path = tmp_path / f"report-{cases_per_suite}.xml"
        write_report(path, suites=1, cases_per_suite=cases_per_suite)
        with path.open("rb") as stream:
            tracemalloc.start()
            try:
                for _ in _test_case_elements(stream):
                    pass
                peaks.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()

    # Ten times the test cases must not mean ten times the memory: finished elements are dropped as they close.
    assert peaks[1] < peaks[0] * 2


def test_in_memory_stream() -> None:
    cases = parse_junit(io.BytesIO(b'<testsuite name="s"><testcase name="t" time="1"/></testsuite>'))

    assert [(case.suite, case.classname, case.name, case.duration_seconds) for case in cases] == [("s", None, "t", 1.0)]

"""SARIF logs → findings: every fixture log, each step of the severity order, fingerprints and refused input."""

from __future__ import annotations

import copy
import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from shipscope.errors import InputError
from shipscope.events import Finding
from shipscope.ingest.sarif import SOURCE, fingerprint_of, parse_sarif, severity_of
from tests.conftest import FIXTURES

SARIF = FIXTURES / "sarif"
SCANNED_AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
REPO = "acme/shop"


def parse(data: bytes | dict[str, Any], **options: Any) -> list[Finding]:
    return parse_sarif(data, repo=REPO, scanned_at=SCANNED_AT, **options)


def raw(name: str) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads((SARIF / name).read_bytes())
    return value


def log(*results: dict[str, Any], rules: list[dict[str, Any]] | None = None, **run: Any) -> dict[str, Any]:
    """A minimal SARIF 2.1.0 log with one run."""
    driver: dict[str, Any] = {"name": "scanner", "rules": rules or []}
    return {"version": "2.1.0", "runs": [{"tool": {"driver": driver}, "results": list(results), **run}]}


def result(rule_id: str = "R1", **fields: Any) -> dict[str, Any]:
    return {"ruleId": rule_id, "message": {"text": "something is wrong"}, **fields}


def expected_fingerprint(source: str, raw_result: dict[str, Any], rule_id: str, location: str | None) -> str:
    """The documented recipe, written out again so a change to it (which would orphan stored history) fails."""
    parts: tuple[object, ...]
    if source == "partialFingerprints":
        parts = (source, rule_id, sorted(raw_result[source].items()))
    elif source == "fingerprints":
        key = min(raw_result[source])
        parts = (source, rule_id, key, raw_result[source][key])
    else:
        parts = ("content", rule_id, location, raw_result["message"]["text"])
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


# --- every fixture log ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    count: int
    severities: dict[str, int]
    tools: set[str]
    sample: int
    """Index of one finding in the parsed list."""
    sample_result: tuple[int, int]
    """(run, result) of the raw result behind that finding."""
    rule_id: str
    location: str | None
    fingerprint_source: str
    severity: str
    target: str | None = None


EXPECTED: dict[str, Expected] = {
    "codeql.valid-sarif.sarif": Expected(
        count=3,
        # defaultConfiguration.level "note" wins over problem.severity ("recommendation", and "warning" for one).
        severities={"low": 3},
        tools={"LGTM.com", "CodeQL command-line toolchain"},
        sample=2,
        sample_result=(1, 1),
        rule_id="js/inconsistent-use-of-new",
        location="src/promiseUtils.js:2",
        fingerprint_source="partialFingerprints",
        severity="low",
    ),
    "dockle.sarif": Expected(
        count=4,
        severities={"high": 1, "low": 3},
        tools={"Dockle"},
        sample=0,
        sample_result=(0, 0),
        rule_id="CIS-DI-0010",
        location=None,
        fingerprint_source="content",
        severity="high",
    ),
    "flawfinder.sarif": Expected(
        # 54 results, one of them kind "pass". Result levels override the rules' defaults.
        count=53,
        severities={"high": 2, "medium": 1, "low": 50},
        tools={"Flawfinder"},
        sample=0,
        sample_result=(0, 0),
        rule_id="FF1048",
        location="src/tree/param.cc:29",
        fingerprint_source="fingerprints",
        severity="high",  # kind "fail" with no level: the rule's default level, "error"
    ),
    "gitleaks.sarif_simple.sarif": Expected(
        count=1,
        severities={"medium": 1},
        tools={"gitleaks"},
        sample=0,
        sample_result=(0, 0),
        rule_id="test-rule",
        location="auth.py:1",
        fingerprint_source="partialFingerprints",
        severity="medium",
    ),
    "grype.cxf-3.4.6.sarif": Expected(
        count=22,
        severities={"critical": 1, "high": 11, "medium": 4, "low": 6},
        tools={"Grype"},
        sample=13,
        sample_result=(0, 13),
        rule_id="CVE-2019-12419-cxf-xjc-runtime",
        location="lib/cxf-xjc-runtime-3.3.1.jar:1",
        fingerprint_source="content",
        severity="critical",  # security-severity "9.8"
    ),
    "sarif-sdk.spec.Comprehensive.sarif": Expected(
        count=1,
        severities={"high": 1},
        tools={"CodeScanner"},
        sample=0,
        sample_result=(0, 0),
        rule_id="C2001",
        location="file:///home/buildAgent/src/collections/list.h:15",
        fingerprint_source="content",
        severity="high",
    ),
    "sarif-sdk.spec.RuleMetadata.sarif": Expected(
        count=0,
        severities={},
        tools=set(),
        sample=-1,
        sample_result=(-1, -1),
        rule_id="",
        location=None,
        fingerprint_source="",
        severity="",
    ),
    "semgrep-oss-1.69.0.sarif": Expected(
        count=77,
        severities={"critical": 34, "high": 1, "medium": 42},
        tools={"Semgrep OSS"},
        sample=19,
        sample_result=(0, 19),
        rule_id=(
            "vulnerability-management-registry.semgrep-rules.gitlab-rules.sast-rules.rules.lgpl.javascript.jwt"
            ".rules_lgpl_javascript_jwt_rule-hardcoded-jwt-secret"
        ),
        location="lib/insecurity.ts:56",
        fingerprint_source="fingerprints",
        severity="high",  # security-severity "HIGH"
    ),
    "trivy.alpine-310.sarif": Expected(
        count=4,
        severities={"medium": 4},
        tools={"Trivy"},
        sample=0,
        sample_result=(0, 0),
        rule_id="CVE-2019-1549",
        location="testdata/fixtures/images/alpine-310.tar.gz:1",
        fingerprint_source="content",
        severity="medium",  # security-severity "5.3"
        target="testdata/fixtures/images/alpine-310.tar.gz",
    ),
}


def test_every_fixture_log_has_expectations() -> None:
    assert {path.name for path in SARIF.iterdir()} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_log(name: str) -> None:
    expected = EXPECTED[name]
    findings = parse((SARIF / name).read_bytes())

    assert len(findings) == expected.count
    assert dict(Counter(finding.severity for finding in findings)) == expected.severities
    assert {finding.tool for finding in findings} == expected.tools
    assert {finding.target for finding in findings} <= {expected.target}
    assert len({finding.fingerprint for finding in findings}) == expected.count, "one scan, unique fingerprints"
    assert all(finding.repo == REPO and finding.source == SOURCE for finding in findings)
    assert len({finding.scan_id for finding in findings}) <= 1
    if not findings:
        return
    finding = findings[expected.sample]
    assert (finding.rule_id, finding.location, finding.severity) == (
        expected.rule_id,
        expected.location,
        expected.severity,
    )
    run_index, result_index = expected.sample_result
    raw_result = raw(name)["runs"][run_index]["results"][result_index]
    assert finding.fingerprint == expected_fingerprint(
        expected.fingerprint_source, raw_result, expected.rule_id, expected.location
    )


def test_fixture_parsed_from_bytes_or_mapping_alike() -> None:
    name = "codeql.valid-sarif.sarif"
    assert parse((SARIF / name).read_bytes()) == parse(raw(name))


def test_legacy_rules_dictionary_gives_the_default_level() -> None:
    # 2.0.0 keeps rules in run.resources.rules, keyed by what results name, with configuration.defaultLevel.
    sarif = raw("sarif-sdk.spec.RuleMetadata.sarif")
    sarif["runs"][0]["results"] = [{"ruleId": "BA2006", "message": {"text": "built with old tools"}}]
    [finding] = parse(sarif)
    assert (finding.tool, finding.rule_id, finding.severity) == ("BinaryAnalyzer", "BA2006", "medium")
    sarif["runs"][0]["resources"]["rules"]["BA2006"]["configuration"]["defaultLevel"] = "error"
    assert parse(sarif)[0].severity == "high"


def test_same_content_hash_on_two_lines_stays_two_findings() -> None:
    # Flawfinder hashes the line's text: the same call on lines 29 and 75 carries one contextHash.
    findings = parse((SARIF / "flawfinder.sarif").read_bytes())
    setstate = [finding for finding in findings if finding.rule_id == "FF1048"]
    assert [finding.location for finding in setstate] == ["src/tree/param.cc:29", "src/tree/param.cc:75"]
    assert setstate[0].fingerprint != setstate[1].fingerprint


def test_pass_results_are_not_findings() -> None:
    flawfinder = raw("flawfinder.sarif")
    assert flawfinder["runs"][0]["results"][52] == {"ruleId": "FF1013", "kind": "pass", "level": "note"}
    sarif = log(
        result(kind="pass"),
        result(kind="notApplicable"),
        result(baselineState="absent"),
        result("R2", kind="review"),
    )
    assert [(finding.rule_id, finding.severity) for finding in parse(sarif)] == [("R2", "info")]


# --- severity, step by step -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "severity"),
    [
        ("10.0", "critical"),
        ("9.0", "critical"),
        (9, "critical"),
        ("8.99", "high"),
        ("7.0", "high"),
        (7.0, "high"),
        ("6.9", "medium"),
        ("4.0", "medium"),
        (3.99, "low"),
        ("0.1", "low"),
        ("0", "info"),
        (0, "info"),
        ("0.0", "info"),
    ],
)
def test_security_severity_score(score: object, severity: str) -> None:
    assert severity_of({}, {"properties": {"security-severity": score}}) == severity


@pytest.mark.parametrize(
    ("word", "severity"),
    [
        ("CRITICAL", "critical"),
        ("High", "high"),
        ("medium", "medium"),
        ("Moderate", "medium"),
        ("low", "low"),
        ("info", "info"),
        ("Informational", "info"),
        (" none ", "info"),
    ],
)
def test_security_severity_word(word: str, severity: str) -> None:
    assert severity_of({}, {"properties": {"security-severity": word}}) == severity


@pytest.mark.parametrize("unreadable", ["n/a", "", "nan", "-1", -0.5, True, None, ["9.0"]])
def test_unreadable_security_severity_falls_through(unreadable: object) -> None:
    rule = {"properties": {"security-severity": unreadable}, "defaultConfiguration": {"level": "note"}}
    assert severity_of({}, rule) == "low"


def test_security_severity_of_the_result_before_the_rule() -> None:
    rule = {"properties": {"security-severity": "9.5"}}
    assert severity_of({"properties": {"security-severity": "2.0"}}, rule) == "low"
    assert severity_of({"properties": {}}, rule) == "critical"


def test_security_severity_before_levels() -> None:
    rule = {"properties": {"security-severity": "7.5"}, "defaultConfiguration": {"level": "note"}}
    assert severity_of({"level": "note"}, rule) == "high"


@pytest.mark.parametrize(
    ("level", "severity"), [("error", "high"), ("warning", "medium"), ("note", "low"), ("none", "info")]
)
def test_result_level(level: str, severity: str) -> None:
    assert severity_of({"level": level}, None) == severity


def test_result_level_overrides_the_rule_default() -> None:
    rule = {"defaultConfiguration": {"level": "error"}, "properties": {"problem.severity": "error"}}
    assert severity_of({"level": "note"}, rule) == "low"


def test_kind_other_than_fail_without_level_is_info() -> None:
    rule = {"defaultConfiguration": {"level": "error"}}
    assert severity_of({"kind": "review"}, rule) == "info"
    assert severity_of({"kind": "fail"}, rule) == "high"


@pytest.mark.parametrize(
    ("level", "severity"), [("error", "high"), ("warning", "medium"), ("note", "low"), ("none", "info")]
)
def test_rule_default_level(level: str, severity: str) -> None:
    assert severity_of({}, {"defaultConfiguration": {"level": level}}) == severity
    assert severity_of({}, {"configuration": {"defaultLevel": level}}) == severity  # 2.0.0


@pytest.mark.parametrize(
    ("problem_severity", "severity"), [("error", "high"), ("warning", "medium"), ("recommendation", "low")]
)
def test_problem_severity(problem_severity: str, severity: str) -> None:
    assert severity_of({}, {"properties": {"problem.severity": problem_severity}}) == severity


def test_default_level_before_problem_severity() -> None:
    # The CodeQL fixture's js/inconsistent-use-of-new: level "note", problem.severity "warning".
    rule = {"defaultConfiguration": {"level": "note"}, "properties": {"problem.severity": "warning"}}
    assert severity_of({}, rule) == "low"


def test_nothing_given_is_the_sarif_default_warning() -> None:
    assert severity_of({}, None) == "medium"
    assert severity_of({"level": "severe"}, {"defaultConfiguration": {}}) == "medium"


def test_malformed_levels_fall_through() -> None:
    rule = {"defaultConfiguration": {"level": ["error"]}, "properties": {"problem.severity": {"x": 1}}}
    assert severity_of({"level": ["error"], "kind": ["pass"]}, rule) == "medium"
    assert len(parse(log(result(level={"pass": 1}, kind=["pass"])))) == 1


# --- rules and locations ----------------------------------------------------------------------------------------


def test_rule_found_by_index_in_an_extension() -> None:
    sarif = log(
        {"rule": {"index": 0, "toolComponent": {"index": 0}}, "message": {"text": "x"}},
        {"ruleId": "EXT1", "message": {"text": "y"}},
    )
    extension = {"name": "pack", "rules": [{"id": "EXT1", "properties": {"security-severity": "9.1"}}]}
    sarif["runs"][0]["tool"]["extensions"] = [extension]
    assert [(finding.rule_id, finding.severity) for finding in parse(sarif)] == [
        ("EXT1", "critical"),
        ("EXT1", "critical"),
    ]


def test_rule_id_from_rule_reference_and_hierarchical_parent() -> None:
    rules: list[dict[str, Any]] = [{"id": "A"}, {"id": "C2001", "defaultConfiguration": {"level": "error"}}]
    sarif = log({"rule": {"id": "C2001"}, "message": {"text": "x"}}, result("C2001/1"), rules=rules)
    assert [(finding.rule_id, finding.severity) for finding in parse(sarif)] == [
        ("C2001", "high"),
        ("C2001/1", "high"),
    ]


def derived(*results: dict[str, Any], rules: list[dict[str, Any]] | None = None) -> tuple[list[str], list[str]]:
    warnings: list[str] = []
    findings = parse(log(*results, rules=rules), warnings=warnings)
    return [finding.rule_id for finding in findings], warnings


def test_a_result_without_a_rule_id_is_counted_under_a_rule_from_its_message() -> None:
    rule_ids, warnings = derived(
        {"message": {"text": "AWS Access Key secret detected"}},
        {"message": {"text": "Variable 'token' is assigned at line 12 but never used.\nSecond line."}},
        {"message": {"text": 'Variable "password" is assigned at line 40 but never used.'}},
        {"message": {"markdown": "**Weak** hash: `md5`"}},
        {"message": {"text": "Schlüssel gefunden"}},
        {"ruleId": "", "message": {"text": "empty rule id"}},
        {"message": {"text": "x" * 60 + " " + "y" * 30}},
    )
    assert rule_ids == [
        "aws-access-key-secret-detected",
        "variable-is-assigned-at-line-but-never-used",
        "variable-is-assigned-at-line-but-never-used",
        "weak-hash",
        "schlüssel-gefunden",
        "empty-rule-id",
        "x" * 60,
    ]
    assert warnings[0] == (
        "runs[0].results[0]: no ruleId, rule.id or indexed rule id; counted under 'aws-access-key-secret-detected', "
        "derived from its message"
    )
    assert len(warnings) == 7


def test_a_result_without_a_rule_id_takes_its_indexed_rule_or_is_unidentified() -> None:
    rules = [{"name": "HardcodedPassword"}, {"shortDescription": {"text": "no id, no name"}}, {"id": "R3"}]
    rule_ids, warnings = derived(
        {"ruleIndex": 0, "message": {"text": "a password"}},
        {"rule": {"index": 1}, "message": {"text": "something"}},
        {"ruleIndex": 2, "message": {"text": "fine"}},
        {"ruleIndex": 7, "message": {"text": "Index out of range"}},
        {"message": {}},
        rules=rules,
    )
    assert rule_ids == ["HardcodedPassword", "rules[1]", "R3", "index-out-of-range", "unidentified"]
    assert [warning.split(";")[1] for warning in warnings] == [
        " counted under 'HardcodedPassword', the name of the rule its index points at",
        " counted under 'rules[1]', the index of its rule, which has no id or name",
        " counted under 'index-out-of-range', derived from its message",
        " counted under 'unidentified', as it has no message text either",
    ]


def test_derived_rules_keep_severity_and_fingerprints_stable_across_scans() -> None:
    leak = {
        "message": {"text": "AWS Access Key secret detected"},
        "level": "error",
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": "prod.env"}, "region": {"startLine": 3}}}],
    }
    (first,) = parse(log(leak))
    (again,) = parse_sarif(log(copy.deepcopy(leak)), repo=REPO, scanned_at=SCANNED_AT + timedelta(days=7))
    assert first.severity == "high"
    assert first.fingerprint == again.fingerprint
    assert first.fingerprint == expected_fingerprint("content", leak, "aws-access-key-secret-detected", "prod.env:3")


def test_rule_index_that_disagrees_with_rule_id_is_not_trusted() -> None:
    rules: list[dict[str, Any]] = [{"id": "A", "defaultConfiguration": {"level": "error"}}, {"id": "B"}]
    [finding] = parse(log(result("B", ruleIndex=0), rules=rules))
    assert (finding.rule_id, finding.severity) == ("B", "medium")


@pytest.mark.parametrize(
    ("locations", "location"),
    [
        ([{"physicalLocation": {"artifactLocation": {"uri": "a.py"}, "region": {"startLine": 3}}}], "a.py:3"),
        ([{"physicalLocation": {"artifactLocation": {"uri": "a.py", "uriBaseId": "%SRCROOT%"}}}], "a.py"),
        ([{"physicalLocation": {"artifactLocation": {"index": 1}, "region": {"startLine": 9}}}], "lib/b.js:9"),
        ([{"logicalLocations": [{"name": "f"}]}, {"physicalLocation": {"artifactLocation": {"uri": "c"}}}], "c"),
        # fileLocation is 2.0.0's name for artifactLocation.
        (
            [{"physicalLocation": {"fileLocation": {"uri": "file:///src/d.c"}, "region": {"startLine": 1}}}],
            "file:///src/d.c:1",
        ),
        ([], None),
    ],
)
def test_location(locations: list[dict[str, Any]], location: str | None) -> None:
    artifacts = [{"location": {"uri": "a.py"}}, {"location": {"uri": "lib/b.js"}}]
    sarif = log(result(locations=locations), artifacts=artifacts)
    assert parse(sarif)[0].location == location


# --- fingerprints -----------------------------------------------------------------------------------------------


def test_content_fingerprint_is_stable_and_follows_the_message() -> None:
    one = result(message={"text": "buffer overflow"})
    assert fingerprint_of(one, "R1", "a.c:1") == fingerprint_of(copy.deepcopy(one), "R1", "a.c:1")
    assert fingerprint_of(one, "R1", "a.c:1") != fingerprint_of(result(message={"text": "other"}), "R1", "a.c:1")
    assert fingerprint_of(one, "R1", "a.c:1") != fingerprint_of(one, "R1", "a.c:2")
    assert fingerprint_of(one, "R1", "a.c:1") != fingerprint_of(one, "R2", "a.c:1")
    assert parse(log(one)) == parse(log(copy.deepcopy(one)))


def test_fingerprint_values_are_pinned() -> None:
    # Stored history is keyed by these: a change here turns every open finding into one fixed and one new.
    one = result(message={"text": "buffer overflow"})
    assert fingerprint_of(one, "R1", "a.c:1") == "48d77a465edbc29efafffc0cb224843bbd088583fc057dc567034414471bb5c6"


def test_tool_fingerprints_ignore_message_and_location() -> None:
    partial = result(partialFingerprints={"primaryLocationLineHash": "39fa:1", "column": "4"})
    moved = result(
        message={"text": "reworded"}, partialFingerprints={"column": "4", "primaryLocationLineHash": "39fa:1"}
    )
    assert fingerprint_of(partial, "R1", "a.js:2") == fingerprint_of(moved, "R1", "b.js:7")
    changed = result(partialFingerprints={"primaryLocationLineHash": "5061:1", "column": "4"})
    assert fingerprint_of(partial, "R1", "a.js:2") != fingerprint_of(changed, "R1", "a.js:2")

    whole = result(fingerprints={"matchBasedId/v2": "new", "matchBasedId/v1": "abc"})
    assert fingerprint_of(whole, "R1", None) == expected_fingerprint("fingerprints", whole, "R1", None)
    assert fingerprint_of(whole, "R1", None) == fingerprint_of(
        result(fingerprints={"matchBasedId/v1": "abc"}), "R1", None
    )


def test_partial_fingerprints_before_fingerprints() -> None:
    both = result(partialFingerprints={"hash": "p"}, fingerprints={"id": "f"})
    assert fingerprint_of(both, "R1", None) == expected_fingerprint("partialFingerprints", both, "R1", None)


def test_repeated_fingerprints_in_one_log_are_told_apart() -> None:
    def repeated() -> dict[str, Any]:
        same = {"contextHash/v1": "e6c1"}
        at = [{"physicalLocation": {"artifactLocation": {"uri": "a.cc"}, "region": {"startLine": 29}}}]
        return log(
            result(fingerprints=same, locations=at), result(fingerprints=same, locations=at), result(fingerprints=same)
        )

    findings = parse(repeated())
    first = repeated()["runs"][0]["results"][0]
    assert findings[0].fingerprint == fingerprint_of(first, "R1", "a.cc:29"), "the first keeps its own fingerprint"
    assert len({finding.fingerprint for finding in findings}) == 3
    assert [finding.fingerprint for finding in parse(repeated())] == [finding.fingerprint for finding in findings]


# --- scan id, options -------------------------------------------------------------------------------------------


def test_scan_id_given_or_derived_from_repo_tools_and_time() -> None:
    sarif = log(result())
    assert parse(sarif, scan_id="scan-7")[0].scan_id == "scan-7"
    derived = parse(sarif)[0].scan_id
    assert derived == parse(copy.deepcopy(sarif))[0].scan_id
    later = parse_sarif(sarif, repo=REPO, scanned_at=SCANNED_AT + timedelta(seconds=1))
    assert later[0].scan_id != derived
    same_instant = SCANNED_AT.astimezone(timezone(timedelta(hours=2)))
    assert parse_sarif(sarif, repo=REPO, scanned_at=same_instant)[0].scan_id == derived
    assert parse_sarif(sarif, repo="acme/other", scanned_at=SCANNED_AT)[0].scan_id != derived
    renamed = log(result())
    renamed["runs"][0]["tool"]["driver"]["name"] = "other-scanner"
    assert parse(renamed)[0].scan_id != derived


def test_options_reach_the_findings() -> None:
    [finding] = parse(log(result()), run_id="run-42", source="github-code-scanning")
    assert (finding.run_id, finding.source, finding.scanned_at) == ("run-42", "github-code-scanning", SCANNED_AT)


def test_byte_order_mark_and_null_runs_are_accepted() -> None:
    assert len(parse(b"\xef\xbb\xbf" + orjson.dumps(log(result())))) == 1
    assert parse({"version": "2.1.0", "runs": None}) == []


# --- refused input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"version": "2.1.0",\n "runs": [}', "invalid JSON: "),
        (b"[]", "a SARIF log is a JSON object, got list"),
        ({"version": "1.0.0", "runs": []}, "version: unsupported SARIF version '1.0.0'; expected 2.1.0 or 2.0.0"),
        ({"runs": []}, "version: unsupported SARIF version None"),
        ({"version": "2.1.0", "runs": {}}, "runs: expected an array"),
        ({"version": "2.1.0", "runs": [{"tool": {"driver": {}}}]}, "runs[0].tool.driver.name: expected a non-empty"),
        ({"version": "2.1.0", "runs": [{"results": []}]}, "runs[0].tool.driver.name: expected a non-empty string"),
        (
            log(result(), "oops"),  # type: ignore[arg-type]
            "runs[0].results[1]: expected an object",
        ),
        (log(result("R\x00")), "runs[0].results[0].ruleId: text may not contain NUL"),
    ],
)
def test_refused(data: bytes | dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as raised:
        parse(data)
    assert message in raised.value.message


def test_invalid_json_names_the_position() -> None:
    with pytest.raises(InputError) as raised:
        parse(b'{"version": "2.1.0",\n "runs": [}')
    assert raised.value.message.endswith("at line 2 column 11 (char 31)")


def test_timestamp_without_offset_is_refused() -> None:
    with pytest.raises(InputError, match="scanned_at: expected a timestamp with a UTC offset"):
        parse_sarif(log(result()), repo=REPO, scanned_at=datetime(2026, 3, 2, 9, 30))

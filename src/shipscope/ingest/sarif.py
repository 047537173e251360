"""SARIF logs (2.1.0, and the older 2.0.0) → Finding events, one per open result, across all runs.

What each finding carries:

- ``tool``: ``runs[].tool.driver.name`` (2.1.0) or ``runs[].tool.name`` (2.0.0).
- ``rule_id``: the result's ``ruleId``, else ``rule.id``, else the id of the rule its ``ruleIndex`` points at.
  SARIF makes the id a SHOULD (§3.27.5) and older scanners (gitleaks 7) leave it out, so a result with none of these
  is still a finding, under a derived rule that stays the same across scans, with a warning: the indexed rule's
  ``name`` (or ``rules[i]``) when it has no id, else the message text normalised (lower case; quoted parts and
  numbers left out, as they vary between results of one kind; other runs of punctuation become "-"; at most 80
  characters), else "unidentified". Rule metadata is looked up by index (``ruleIndex`` / ``rule.index``,
  in ``tool.extensions[rule.toolComponent]`` when the reference names one) or by id in ``tool.driver.rules``,
  ``tool.extensions[].rules`` and 2.0.0's ``run.resources.rules`` dictionary; a hierarchical id ("C2001/1") falls
  back to its parent rule ("C2001").
- ``location``: ``"uri:startLine"`` of the first physical location that names a file (``artifactLocation``, or
  2.0.0's ``fileLocation``, or the run artifact its ``index`` points at). The uri is kept as written: relative to
  its ``uriBaseId`` (``%SRCROOT%``, …), never resolved. Just ``"uri"`` without a start line; None without a file.
- ``target``: the scanned image, when the run names one (Trivy's ``run.properties.imageName``).

Severity, the first of these that gives an answer (values the step does not recognize fall through to the next):

1. ``properties.security-severity`` of the result, else of the rule: a CVSS score (number or numeric string)
   ≥ 9.0 critical, ≥ 7.0 high, ≥ 4.0 medium, > 0 low, 0 info; or a word, case-insensitive: critical, high,
   medium/moderate, low, info/informational/none.
2. the result's ``level``: error → high, warning → medium, note → low, none → info (2.0.0's open → info). SARIF
   makes a result's own level override its rule's default (§3.27.10), so it comes before the rule's.
3. a result whose ``kind`` is given and is not "fail" (open, review, informational) has level "none" → info.
4. the rule's default level: ``defaultConfiguration.level`` (2.0.0: ``configuration.defaultLevel``), same mapping.
5. the rule's ``properties["problem.severity"]`` (CodeQL): error → high, warning → medium, recommendation → low.
6. SARIF's default level, "warning" → medium.

Results that state there is no problem are not findings: ``kind`` "pass" or "notApplicable" (2.0.0: those values
of ``level``), and ``baselineState`` "absent" (seen in the baseline, gone from this run).

Fingerprint: the store keys findings by (source, scan_id, fingerprint), so it must be stable across scans and
unique within one. It is a sha256 hex of the rule id and, in this order, all of ``partialFingerprints`` (each is
only part of an identity, e.g. gitleaks' author), else the first of ``fingerprints`` by sorted key (each is a whole
identity), else the location and message text. Two results of one log that still share a fingerprint (the same
line hash on two lines, one issue from two tools) are told apart by tool and location, then by occurrence.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeVar

import orjson

from shipscope.errors import InputError
from shipscope.events import Finding, Severity
from shipscope.ingest.payload import NUL_REFUSED

SOURCE = "sarif"
SUPPORTED_VERSIONS = ("2.1.0", "2.0.0")

_T = TypeVar("_T")
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_BOM = b"\xef\xbb\xbf"

_LEVELS: dict[str, Severity] = {
    "error": "high",
    "warning": "medium",
    "note": "low",
    "none": "info",
    "open": "info",  # 2.0.0: the tool could not decide; 2.1.0 moved it to kind, whose level is "none"
}
_PROBLEM_SEVERITIES: dict[str, Severity] = {"error": "high", "warning": "medium", "recommendation": "low"}
_SEVERITY_WORDS: dict[str, Severity] = {
    "critical": "critical",
    "high": "high",
    "medium": "medium",
    "moderate": "medium",
    "low": "low",
    "info": "info",
    "informational": "info",
    "none": "info",
}
_CVSS_BANDS: tuple[tuple[float, Severity], ...] = ((9.0, "critical"), (7.0, "high"), (4.0, "medium"))
_DEFAULT_SEVERITY: Severity = "medium"  # SARIF's default level is "warning"
_NOT_A_PROBLEM = frozenset({"pass", "notApplicable"})


def parse_sarif(
    data: bytes | Mapping[str, Any],
    *,
    repo: str,
    scanned_at: datetime,
    scan_id: str | None = None,
    run_id: str | None = None,
    source: str = SOURCE,
    warnings: list[str] | None = None,
) -> list[Finding]:
    """Findings of a SARIF 2.1.0 or 2.0.0 log, one per result that reports a problem, across all runs. Raises
    shipscope.errors.InputError (naming the JSON path, e.g. "runs[0].results[3].locations[0]…") for invalid JSON,
    an unsupported version, or a result that is not one. Problems that do not refuse the log (a result counted
    under a derived rule) are appended to ``warnings``, one line each, naming the result's path."""
    if not repo:
        raise InputError("repo: must not be empty")
    if scanned_at.utcoffset() is None:
        raise InputError("scanned_at: expected a timestamp with a UTC offset")
    log = _decode(data)
    version = log.get("version")
    if version not in SUPPORTED_VERSIONS:
        expected = " or ".join(SUPPORTED_VERSIONS)
        raise InputError(f"version: unsupported SARIF version {version!r}; expected {expected}")
    runs = _runs(log)
    if scan_id is None:
        scan_id = _scan_id(repo, [run.tool for run in runs], scanned_at)
    findings: list[Finding] = []
    seen: set[str] = set()
    for run in runs:
        for path, result in _results(run):
            if not _is_problem(result):
                continue
            rule_id, rule = _rule_of(result, run.rules, path, warnings)
            location = _location_of(result, run.artifacts, path)
            fingerprint = _unique(fingerprint_of(result, rule_id, location), seen, run.tool, location)
            findings.append(
                Finding(
                    source=source,
                    scan_id=scan_id,
                    run_id=run_id,
                    repo=repo,
                    tool=run.tool,
                    target=run.target,
                    rule_id=rule_id,
                    severity=severity_of(result, rule),
                    fingerprint=fingerprint,
                    location=location,
                    scanned_at=scanned_at,
                )
            )
    return findings


def severity_of(result: Mapping[str, Any], rule: Mapping[str, Any] | None) -> Severity:
    """The severity of one result with its rule's metadata, by the order in the module docstring."""
    rule = rule or _EMPTY
    for properties in (_mapping(result.get("properties")), _mapping(rule.get("properties"))):
        severity = _security_severity(properties.get("security-severity"))
        if severity is not None:
            return severity
    level = _word_in(_LEVELS, result.get("level"))
    if level is not None:
        return level
    kind = result.get("kind")
    if isinstance(kind, str) and kind != "fail":
        return "info"
    default_level = _mapping(rule.get("defaultConfiguration")).get("level")
    if default_level is None:
        default_level = _mapping(rule.get("configuration")).get("defaultLevel")  # 2.0.0
    rule_level = _word_in(_LEVELS, default_level)
    if rule_level is not None:
        return rule_level
    rule_properties = _mapping(rule.get("properties"))
    # CodeQL writes the dotted name as one key; accept a nested object as well.
    problem_severity = rule_properties.get("problem.severity", _mapping(rule_properties.get("problem")).get("severity"))
    return _word_in(_PROBLEM_SEVERITIES, problem_severity) or _DEFAULT_SEVERITY


def fingerprint_of(result: Mapping[str, Any], rule_id: str, location: str | None) -> str:
    """A sha256 hex identifying one result across scans; see the module docstring for what it is made of."""
    partial = _string_values(result.get("partialFingerprints"))
    if partial:
        return _digest("partialFingerprints", rule_id, sorted(partial.items()))
    whole = _string_values(result.get("fingerprints"))
    if whole:
        first = min(whole)
        return _digest("fingerprints", rule_id, first, whole[first])
    message = _mapping(result.get("message")).get("text")
    return _digest("content", rule_id, location, message if isinstance(message, str) else None)


@dataclass(frozen=True, slots=True)
class _Rules:
    """The rule metadata of one run, for lookups by index and by id."""

    driver: Sequence[Mapping[str, Any]]
    extensions: Sequence[tuple[str | None, Sequence[Mapping[str, Any]]]]
    """(name, rules) of each tool extension, in order."""
    by_id: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class _Run:
    path: str
    tool: str
    target: str | None
    rules: _Rules
    artifacts: Sequence[Any]
    results: Sequence[Any]


def _decode(data: bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        return data
    try:
        # Tools on Windows often write a UTF-8 byte order mark, which JSON parsers refuse.
        value = orjson.loads(data.removeprefix(_BOM))
    except orjson.JSONDecodeError as error:
        raise InputError(
            f"invalid JSON: {error.msg} at line {error.lineno} column {error.colno} (char {error.pos})"
        ) from None
    if not isinstance(value, Mapping):
        raise InputError(f"a SARIF log is a JSON object, got {type(value).__name__}")
    return value


def _runs(log: Mapping[str, Any]) -> list[_Run]:
    runs = log.get("runs")
    if runs is None:  # SARIF allows null runs when the tool failed before it could start
        return []
    if not isinstance(runs, list):
        raise InputError("runs: expected an array")
    parsed = []
    for index, run in enumerate(runs):
        path = f"runs[{index}]"
        if not isinstance(run, Mapping):
            raise InputError(f"{path}: expected an object")
        tool = _mapping(run.get("tool"))
        driver = tool.get("driver")
        if "driver" not in tool and "name" in tool:  # 2.0.0 names the tool itself
            name_path, name = f"{path}.tool.name", tool.get("name")
        else:
            name_path, name = f"{path}.tool.driver.name", _mapping(driver).get("name")
        results = run.get("results") or []
        if not isinstance(results, list):
            raise InputError(f"{path}.results: expected an array")
        artifacts = run.get("artifacts") or []
        parsed.append(
            _Run(
                path=path,
                tool=_text(name, name_path),
                target=_target_of(run, path),
                rules=_rules_of(tool, _mapping(run.get("resources"))),
                artifacts=artifacts if isinstance(artifacts, list) else [],
                results=results,
            )
        )
    return parsed


def _results(run: _Run) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for index, result in enumerate(run.results):
        path = f"{run.path}.results[{index}]"
        if not isinstance(result, Mapping):
            raise InputError(f"{path}: expected an object")
        yield path, result


def _rules_of(tool: Mapping[str, Any], resources: Mapping[str, Any]) -> _Rules:
    driver_rules = _objects(_mapping(tool.get("driver")).get("rules"))
    extensions = []
    for extension in _objects(tool.get("extensions")):
        name = extension.get("name")
        extensions.append((name if isinstance(name, str) else None, _objects(extension.get("rules"))))
    by_id: dict[str, Mapping[str, Any]] = {}
    # 2.0.0 keeps rules in a dictionary whose keys are what results name in ruleId.
    legacy = resources.get("rules")
    if isinstance(legacy, Mapping):
        for key, rule in legacy.items():
            if isinstance(rule, Mapping):
                by_id.setdefault(str(key), rule)
        driver_rules = driver_rules or [rule for rule in legacy.values() if isinstance(rule, Mapping)]
    for rules in (driver_rules, *(rules for _, rules in extensions)):
        for rule in rules:
            if isinstance(rule.get("id"), str):
                by_id.setdefault(rule["id"], rule)
    return _Rules(driver=driver_rules, extensions=extensions, by_id=by_id)


def _rule_of(
    result: Mapping[str, Any], rules: _Rules, path: str, warnings: list[str] | None
) -> tuple[str, Mapping[str, Any] | None]:
    """The rule id of a result and its rule's metadata, when the log has any."""
    reference = _mapping(result.get("rule"))
    rule_id = _nonempty(result.get("ruleId")) or _nonempty(reference.get("id"))
    indexed = _indexed_rule(result, reference, rules)
    if rule_id is None:
        rule_id = _nonempty(indexed.get("id")) if indexed is not None else None
        if rule_id is None:
            rule_id, basis = _derived_rule_id(result, indexed)
            if warnings is not None:
                warnings.append(f"{path}: no ruleId, rule.id or indexed rule id; counted under {rule_id!r}, {basis}")
            return rule_id, indexed
    rule_id = _text(rule_id, f"{path}.ruleId")
    if indexed is not None and indexed.get("id") in (rule_id, None):
        return rule_id, indexed
    # A hierarchical id ("C2001/1") refines its parent rule ("C2001"), which holds the metadata.
    candidate = rule_id
    while True:
        if candidate in rules.by_id:
            return rule_id, rules.by_id[candidate]
        if "/" not in candidate:
            return rule_id, indexed
        candidate = candidate.rsplit("/", 1)[0]


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`|\d+")
_NOT_WORD = re.compile(r"[\W_]+")
_DERIVED_RULE_CHARS = 80


def _derived_rule_id(result: Mapping[str, Any], indexed: Mapping[str, Any] | None) -> tuple[str, str]:
    """A rule id for a result that names none, and what it was derived from."""
    if indexed is not None:
        name = _nonempty(indexed.get("name"))
        index = _index(result.get("ruleIndex"))
        if index is None:
            index = _index(_mapping(result.get("rule")).get("index"))
        if name:
            return _text(name, "the indexed rule's name"), "the name of the rule its index points at"
        return f"rules[{index}]", "the index of its rule, which has no id or name"
    message = _mapping(result.get("message"))
    text = _nonempty(message.get("text")) or _nonempty(message.get("markdown"))
    if text is not None:
        words = _NOT_WORD.sub("-", _QUOTED.sub(" ", text.splitlines()[0].lower())).strip("-")
        if len(words) > _DERIVED_RULE_CHARS:
            words = words[:_DERIVED_RULE_CHARS].rsplit("-", 1)[0]
        if words:
            return words, "derived from its message"
    return "unidentified", "as it has no message text either"


def _indexed_rule(result: Mapping[str, Any], reference: Mapping[str, Any], rules: _Rules) -> Mapping[str, Any] | None:
    index = _index(result.get("ruleIndex"))
    if index is None:
        index = _index(reference.get("index"))
    if index is None:
        return None
    component = rules.driver
    tool_component = _mapping(reference.get("toolComponent"))
    extension_index = _index(tool_component.get("index"))
    extension_name = tool_component.get("name")
    if extension_index is not None:
        if extension_index >= len(rules.extensions):
            return None
        component = rules.extensions[extension_index][1]
    elif extension_name is not None:
        named = [extension_rules for name, extension_rules in rules.extensions if name == extension_name]
        if not named:
            return None
        component = named[0]
    return component[index] if index < len(component) else None


def _location_of(result: Mapping[str, Any], artifacts: Sequence[Any], path: str) -> str | None:
    for number, location in enumerate(_objects(result.get("locations"))):
        physical = _mapping(location.get("physicalLocation"))
        file = _mapping(physical.get("artifactLocation") or physical.get("fileLocation"))
        uri = file.get("uri")
        artifact_index = _index(file.get("index"))
        if uri is None and artifact_index is not None and artifact_index < len(artifacts):
            # The location may name only an entry of run.artifacts, which holds the uri.
            uri = _mapping(_mapping(artifacts[artifact_index]).get("location")).get("uri")
        if not isinstance(uri, str) or not uri:
            continue
        uri = _text(uri, f"{path}.locations[{number}].physicalLocation.artifactLocation.uri")
        line = _index(_mapping(physical.get("region")).get("startLine"))
        return f"{uri}:{line}" if line else uri  # lines count from 1; 0 is no line
    return None


def _target_of(run: Mapping[str, Any], path: str) -> str | None:
    image = _mapping(run.get("properties")).get("imageName")  # Trivy: the image or archive it scanned
    if isinstance(image, str) and image:
        return _text(image, f"{path}.properties.imageName")
    return None


def _is_problem(result: Mapping[str, Any]) -> bool:
    stated = (result.get("kind"), result.get("level"))  # 2.0.0 said it in level, 2.1.0 in kind
    if any(isinstance(value, str) and value in _NOT_A_PROBLEM for value in stated):
        return False
    return result.get("baselineState") != "absent"


def _security_severity(value: object) -> Severity | None:
    if isinstance(value, bool):  # a bool is an int to Python, never a score
        return None
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _SEVERITY_WORDS:
            return _SEVERITY_WORDS[word]
        try:
            value = float(word)
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    for floor, severity in _CVSS_BANDS:
        if value >= floor:
            return severity
    return "low" if value > 0 else "info"


def _scan_id(repo: str, tools: Sequence[str], scanned_at: datetime) -> str:
    # Normalized to UTC so one instant written with two offsets is one scan.
    return _digest("scan", repo, list(tools), scanned_at.astimezone(UTC).isoformat())


def _unique(fingerprint: str, seen: set[str], tool: str, location: str | None) -> str:
    candidate = fingerprint
    occurrence = 1
    while candidate in seen:
        occurrence += 1
        qualifiers: list[object] = [tool, location] if occurrence == 2 else [tool, location, occurrence]
        candidate = _digest("repeat", fingerprint, *qualifiers)
    seen.add(candidate)
    return candidate


def _digest(*parts: object) -> str:
    # JSON keeps the parts apart, so ("a:b", "c") and ("a", "b:c") never hash alike.
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


def _word_in(table: Mapping[str, _T], value: object) -> _T | None:
    """``table[value]`` for a known word; None for anything else, including JSON arrays and objects."""
    return table.get(value) if isinstance(value, str) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else _EMPTY


def _objects(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _string_values(value: object) -> dict[str, str]:
    return {str(key): item for key, item in _mapping(value).items() if isinstance(item, str) and item}


def _index(value: object) -> int | None:
    """A non-negative array index; SARIF writes -1 (and bools are ints to Python) for "none"."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _nonempty(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _text(value: object, path: str) -> str:
    """A required string field; PostgreSQL text cannot hold NUL, so it is refused here as everywhere."""
    if not isinstance(value, str) or not value:
        raise InputError(f"{path}: expected a non-empty string")
    if "\x00" in value:
        raise InputError(f"{path}: {NUL_REFUSED}")
    return value

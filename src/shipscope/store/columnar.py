"""The canonical model's field rules compiled to DuckDB SQL, so a bulk import checks and shapes its lines in bulk.

A batch of NDJSON lines is staged as one Arrow table, ``stage_lines(idx, body)``. ``CHECK_LINES`` reads every line
once and says whether this path may take it (``columnar``): a line it accepts is one ``parse_event`` accepts, and
the row ``row_select`` builds from it is the one ``event_to_row`` builds (tests hold both to that). The rules are
read from the pydantic models themselves, so a field added there is checked here too, or its event type leaves
this path. Whatever the SQL cannot prove valid (a timestamp in a rarer form, a number sent as a string, a type
with rules of its own, a wrong field) the store reads with ``parse_event`` instead, so every refusal a user sees
comes from one validator, in its words.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import AwareDatetime
from pydantic.fields import FieldInfo

from shipscope.events import EVENT_TYPES, Deployment
from shipscope.store.rows import MAPPINGS

_INSTANT = (
    r"[12]\d{3}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?"
    r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)"
)
"""RFC 3339 as most tools write it. Years 1000-2999 only: both parsers agree there, and their UTC instant fits."""

DERIVED = {"step": {"stage": "name"}}
"""Columns computed at ingest that this path fills too: a step's stage, from its name (``StageMatcher``)."""


@dataclass(frozen=True)
class _Rule:
    name: str
    kind: Literal["text", "integer", "instant", "list", "text_or_list"]
    required: bool
    nullable: bool
    default: str | int | None
    non_empty: bool = False
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    items_non_empty: bool = False


def _members(annotation: Any) -> tuple[list[Any], bool]:
    if get_origin(annotation) in (Union, types.UnionType):
        members = list(get_args(annotation))
    else:
        members = [annotation]
    nullable = type(None) in members
    return [member for member in members if member is not type(None)], nullable


def _unwrapped(annotation: Any) -> tuple[Any, list[Any]]:
    """A type without its ``Annotated`` wrapper, and the constraints the wrapper carried."""
    if get_origin(annotation) is not Annotated:
        return annotation, []
    base, *extras = get_args(annotation)
    constraints: list[Any] = []
    for extra in extras:
        constraints.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
    return base, constraints


def _bounds(constraints: list[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for constraint in constraints:
        if isinstance(constraint, annotated_types.MinLen) and constraint.min_length == 1:
            found["non_empty"] = True
        elif isinstance(constraint, annotated_types.Ge):
            found["minimum"] = constraint.ge
        elif isinstance(constraint, annotated_types.Le):
            found["maximum"] = constraint.le
        else:
            found["unknown"] = True
    return found


def _rule(name: str, info: FieldInfo) -> _Rule | None:
    """The rule for one field, or None when its type is not one this path knows (its event type then stays off)."""
    members, nullable = _members(info.annotation)
    default = None if info.is_required() else info.default
    if default is not None and (nullable or not isinstance(default, str | int)):
        return None
    found = _bounds(list(info.metadata))
    shapes: set[str] = set()
    choices: tuple[str, ...] = ()
    items_non_empty = False
    for member in members:
        base, constraints = _unwrapped(member)
        found.update(_bounds(constraints))
        if base is str:
            shapes.add("text")
        elif get_origin(base) is Literal:
            shapes.add("text")
            choices = tuple(get_args(base))
        elif base is int:
            shapes.add("integer")
        elif base is AwareDatetime:
            shapes.add("instant")
        elif get_origin(base) is list:
            item, item_constraints = _unwrapped(get_args(base)[0])
            item_bounds = _bounds(item_constraints)
            if item is not str or set(item_bounds) - {"non_empty"}:
                return None
            items_non_empty = bool(item_bounds.get("non_empty"))
            shapes.add("list")
        else:
            return None
    if found.get("unknown"):
        return None
    kinds = {
        frozenset({"text"}): "text",
        frozenset({"integer"}): "integer",
        frozenset({"instant"}): "instant",
        frozenset({"list"}): "list",
        frozenset({"text", "list"}): "text_or_list",
    }
    kind = kinds.get(frozenset(shapes))
    if kind is None or (choices and len(members) > 1):
        return None
    return _Rule(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        required=info.is_required(),
        nullable=nullable,
        default=default,
        non_empty=bool(found.get("non_empty")),
        choices=choices,
        minimum=found.get("minimum"),
        maximum=found.get("maximum"),
        items_non_empty=items_non_empty,
    )


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_PLAIN_STRINGS = r'\[("[^"\\]*"(,"[^"\\]*")*)?\]'
_PLAIN_NON_EMPTY_STRINGS = r'\[("[^"\\]+"(,"[^"\\]+")*)?\]'
"""A JSON array of strings without escapes, as orjson writes it (no spaces): its text is then, byte for byte, the
JSON the row keeps (``event_to_row`` writes it with orjson)."""


def _text(value: str) -> str:
    """A JSON string's text; without escapes it is what lies between the quotes."""
    return (
        f"CASE WHEN contains({value}, '\\') THEN json_extract_string({value}, '$')"
        f" ELSE substr({value}, 2, length({value}) - 2) END"
    )


def _is_string(json: str, plain: bool = False) -> str:
    return f"starts_with({json}, '\"')" + (f" AND NOT contains({json}, '\\')" if plain else "")


def _present_check(rule: _Rule) -> str:
    """SQL that holds when a present value (JSON text, as orjson wrote it) is one the model takes as it is.

    It reads the field's JSON (``j_<name>``), its text if a string (``t_<name>``) and its typed value
    (``x_<name>``), each computed once per line by ``CHECK_LINES``."""
    json, text, typed = (f"{prefix}_{rule.name}" for prefix in "jtx")
    if rule.kind == "text":
        checks = [_is_string(json)]
        if rule.non_empty:
            checks.append(f"{json} <> '\"\"'")
        if rule.choices:
            checks.append(f"{text} IN ({', '.join(_quoted(choice) for choice in rule.choices)})")
        return " AND ".join(checks)
    if rule.kind == "integer":
        checks = [f"regexp_full_match({json}, '-?[0-9]{{1,19}}')"]
        if rule.minimum is not None:
            checks.append(f"{typed} >= {int(rule.minimum)}")
        if rule.maximum is not None:
            checks.append(f"{typed} <= {int(rule.maximum)}")
        return " AND ".join(checks)
    if rule.kind == "instant":
        return (
            f"{_is_string(json, plain=True)} AND regexp_full_match({text}, {_quoted(_INSTANT)}) AND {typed} IS NOT NULL"
        )
    pattern = _PLAIN_NON_EMPTY_STRINGS if rule.items_non_empty else _PLAIN_STRINGS
    strings = f"regexp_full_match({json}, {_quoted(pattern)})"
    if rule.kind == "list":
        return strings
    return f"({_is_string(json, plain=True)}) OR ({strings})"


def _field_check(rule: _Rule) -> str:
    """Absent and null look alike here (both SQL NULL): ``fits`` has let through only nulls the model allows."""
    absent = "false" if rule.required and rule.default is None else "true"
    return f"CASE WHEN j_{rule.name} IS NULL THEN {absent} ELSE coalesce({_present_check(rule)}, false) END"


def _typed(name: str, kind: str) -> str:
    """A field's value as its column keeps it, from its JSON (``j_``) and text (``t_``)."""
    if kind == "integer":
        return f"TRY_CAST(j_{name} AS BIGINT)"
    if kind == "instant":
        return f"TRY_CAST(t_{name} AS TIMESTAMPTZ)"
    if kind == "text":
        return f"t_{name}"
    return f"j_{name}::VARCHAR"


def _value(rule: _Rule) -> str:
    """The column's value for one event type: the typed value, or the type's default when the field is absent."""
    if rule.default is None:
        return f"x_{rule.name}"
    default = _quoted(rule.default) if isinstance(rule.default, str) else str(int(rule.default))
    return f"coalesce(x_{rule.name}, {default})"


def _deployment_rule() -> str:
    """``Deployment``'s own validator, as SQL: a finished status needs ``finished_at``."""
    finished = ", ".join(_quoted(status) for status in ("success", "failure", "cancelled"))
    return f"NOT (t_status IN ({finished}) AND j_finished_at IS NULL)"


_MODEL_RULES = {Deployment: _deployment_rule}
"""Checks for the models' own validators (``model_validator``), each the SQL twin of one."""


def _type_rules() -> dict[str, list[_Rule]]:
    found: dict[str, list[_Rule]] = {}
    for event_type, model in EVENT_TYPES.items():
        mapping = MAPPINGS[event_type]
        if mapping.derive is not None and event_type not in DERIVED:
            continue
        if model.__pydantic_decorators__.model_validators and model not in _MODEL_RULES:
            continue
        rules = [_rule(name, info) for name, info in model.model_fields.items() if name != "type"]
        known = {rule.name for rule in rules if rule is not None}
        derived = DERIVED.get(event_type, {})
        if None in rules or set(mapping.column_names) - known - set(derived):
            continue
        found[event_type] = [rule for rule in rules if rule is not None]
    return found


TYPE_RULES = _type_rules()
"""The event types this path takes, with their fields' rules."""

_ALLOWED = {event_type: frozenset({"type", *(rule.name for rule in rules)}) for event_type, rules in TYPE_RULES.items()}
_NULLABLE = {
    event_type: frozenset(rule.name for rule in rules if rule.nullable) for event_type, rules in TYPE_RULES.items()
}


def fits(value: object) -> bool:
    """Whether a decoded line has the shape this path can check: an object of a type it takes, with no field the
    type lacks and no null where the type does not allow one. (The SQL sees absent and null fields alike.)"""
    if not isinstance(value, dict) or not isinstance(event_type := value.get("type"), str):
        return False
    allowed = _ALLOWED.get(event_type)
    if allowed is None or not value.keys() <= allowed:
        return False
    return None not in value.values() or all(
        field in _NULLABLE[event_type] for field, item in value.items() if item is None
    )


def _field_kinds() -> dict[str, str]:
    kinds: dict[str, str] = {"type": "text"}
    for rules in TYPE_RULES.values():
        for rule in rules:
            if kinds.setdefault(rule.name, rule.kind) != rule.kind:
                raise TypeError(f"field {rule.name} is {kinds[rule.name]} in one event type, {rule.kind} in another")
    return kinds


_KINDS = _field_kinds()
"""Every field of the types this path takes, with its kind: one column per name in ``lines_checked``."""
_STRUCTURE = "{" + ", ".join(f'"{name}": "JSON"' for name in _KINDS) + "}"


def _type_check(event_type: str, rules: list[_Rule]) -> str:
    checks = [_field_check(rule) for rule in rules]
    model = EVENT_TYPES[event_type]
    if model in _MODEL_RULES:
        checks.append(_MODEL_RULES[model]())
    return " AND ".join(f"({check})" for check in checks)


def _check_lines() -> str:
    cases = " ".join(
        f"WHEN {_quoted(event_type)} THEN {_type_check(event_type, rules)}" for event_type, rules in TYPE_RULES.items()
    )
    json = ", ".join(f"line.{name} AS j_{name}" for name in _KINDS)
    text = ", ".join(
        f"{_text(f'j_{name}')} AS t_{name}" for name, kind in _KINDS.items() if kind in ("text", "instant")
    )
    typed = ", ".join(f"{_typed(name, kind)} AS x_{name}" for name, kind in _KINDS.items() if name != "type")
    kept = ", ".join(f"x_{name}" for name in _KINDS if name != "type")
    # Each level computes what the next reads more than once: DuckDB does not share equal subexpressions.
    return f"""
CREATE TEMPORARY TABLE lines_checked AS
SELECT idx, t_type AS type, {kept}, coalesce(fits AND CASE t_type {cases} ELSE false END, false) AS columnar
FROM (
    SELECT *, {typed}
    FROM (
        SELECT *, {text}
        FROM (
            SELECT idx, fits, {json}
            FROM (
                SELECT idx, fits, CASE WHEN fits THEN json_transform(canonical, {_quoted(_STRUCTURE)}) END AS line
                FROM stage_lines
            )
        )
    )
)
"""


CHECK_LINES = _check_lines()
"""Makes ``lines_checked(idx, type, x_<field>…, columnar)`` from ``stage_lines(idx, canonical, fits)``:
``canonical`` is a line's JSON as orjson writes it with sorted keys, ``fits`` what ``fits`` said of it, and each
``x_<field>`` the field's value as its column keeps it."""


def row_select(event_type: str) -> str:
    """The rows of ``event_type`` for the lines in ``lines_new(idx)``, with ``wave`` numbered by arrival within
    a key (see ``Store._upsert``); a step's stage joins from ``line_stages(name, stage)``."""
    mapping = MAPPINGS[event_type]
    rules = {rule.name: rule for rule in TYPE_RULES[event_type]}
    derived = DERIVED.get(event_type, {})
    values = []
    for name in mapping.column_names:
        if name in derived:
            values.append(f"line_stages.stage AS {name}")
        else:
            values.append(f"{_value(rules[name])} AS {name}")
    joins = ""
    if derived:
        (source,) = set(derived.values())
        joins = f" JOIN line_stages ON line_stages.name = {_value(rules[source])}"
    keys = ", ".join(mapping.key_columns)
    return f"""
SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY idx) - 1 AS wave
FROM (
    SELECT idx, {", ".join(values)}
    FROM lines_checked SEMI JOIN lines_new USING (idx){joins}
    WHERE lines_checked.type = {_quoted(event_type)} AND columnar
)
"""


def distinct_names(event_type: str) -> str:
    """The names a derived column is computed from, among the new lines of ``event_type``."""
    rules = {rule.name: rule for rule in TYPE_RULES[event_type]}
    (source,) = set(DERIVED[event_type].values())
    return (
        f"SELECT DISTINCT {_value(rules[source])} FROM lines_checked SEMI JOIN lines_new USING (idx)"
        f" WHERE type = {_quoted(event_type)} AND columnar"
    )

"""Argo Rollouts' condition expressions (``successCondition: result[0] >= 0.95``), evaluated without ``eval``.

Argo evaluates them with the expr language; the part conditions use is read here: numbers, strings, true, false,
nil; ``result`` and ``result[i]``; ``== != < <= > >=``, ``&& || !`` and ``and or not``, ``+ - * / % **``, ``in``;
and the functions ``len``, ``isNaN``, ``isInf``, ``asInt``, ``asFloat``, ``abs``, ``min``, ``max`` and
``default(value, fallback)``. The text is tokenised, rewritten to Python's spelling of the same operators, parsed
with ``ast`` and walked over a whitelist of node types; anything else is an error naming what is not supported.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from shipscope.errors import InputError


class ExpressionError(Exception):
    """The expression could not be evaluated on this result (an index out of range, a type mismatch)."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>&&|\|\||!=|==|<=|>=|\*\*|[!<>+\-*/%()\[\],.])
      | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_WORDS = {"true": "True", "false": "False", "nil": "None", "and": "and", "or": "or", "not": "not", "in": "in"}
_OPS = {"&&": " and ", "||": " or ", "!": " not "}


def _default(value: Any, fallback: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return fallback
    if isinstance(value, list) and not value:
        return fallback
    return value


def _is_nan(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(_is_nan(item) for item in value)
    return isinstance(value, float) and math.isnan(value)


def _is_inf(value: Any) -> bool:
    return isinstance(value, float) and math.isinf(value)


FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "len": len,
    "isNaN": _is_nan,
    "isInf": _is_inf,
    "asInt": lambda value: int(float(value)),
    "asFloat": float,
    "abs": abs,
    "min": min,
    "max": max,
    "default": _default,
}
_BINARY: Mapping[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: Mapping[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda left, right: left in right,
    ast.NotIn: lambda left, right: left not in right,
}


def _python_spelling(text: str) -> str:
    parts: list[str] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise InputError(f"condition {text!r}: cannot read it at {text[position:].strip()!r}")
        position = match.end()
        if match["string"] is not None:
            parts.append(match["string"])
        elif match["op"] is not None:
            parts.append(_OPS.get(match["op"], match["op"]))
        elif match["number"] is not None:
            parts.append(match["number"])
        else:
            parts.append(" " + _WORDS.get(match["name"], match["name"]) + " ")
    return "".join(parts).strip()


def compile_condition(text: str) -> ast.Expression:
    """The parsed condition; an InputError says what is not understood."""
    try:
        tree = ast.parse(_python_spelling(text), mode="eval")
    except SyntaxError:
        raise InputError(f"condition {text!r}: not an expression") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise InputError(f"condition {text!r}: {type(node).__name__} is not supported")
        if isinstance(node, ast.Name) and node.id != "result" and node.id not in FUNCTIONS:
            raise InputError(f"condition {text!r}: unknown name {node.id!r}; conditions read `result`")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
            raise InputError(f"condition {text!r}: only {', '.join(FUNCTIONS)} may be called")
    return tree


_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.BinOp,
    *_BINARY,
    ast.Compare,
    *_COMPARE,
    ast.Subscript,
    ast.Name,
    ast.Load,
    ast.Call,
    ast.Constant,
)


def evaluate(tree: ast.Expression, result: Any) -> bool:
    """The condition's truth for ``result``; an ExpressionError when it cannot be evaluated on it."""
    try:
        value = _walk(tree.body, result)
    except (IndexError, TypeError, ValueError, ZeroDivisionError, KeyError) as error:
        raise ExpressionError(f"{type(error).__name__}: {error}") from None
    if not isinstance(value, bool):
        raise ExpressionError(f"the condition gives {value!r}, not true or false")
    return value


def _walk(node: ast.expr, result: Any) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return result if node.id == "result" else FUNCTIONS[node.id]
    if isinstance(node, ast.BoolOp):
        values = (_walk(value, result) for value in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        operand = _walk(node.operand, result)
        if isinstance(node.op, ast.Not):
            return not operand
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_walk(node.left, result), _walk(node.right, result))
    if isinstance(node, ast.Compare):
        left = _walk(node.left, result)
        for comparison, right_node in zip(node.ops, node.comparators, strict=True):
            right = _walk(right_node, result)
            if not _COMPARE[type(comparison)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Subscript):
        container = _walk(node.value, result)
        index = _walk(node.slice, result)
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"index {index!r} is not an integer")
        if not isinstance(container, list):
            raise TypeError(f"{container!r} cannot be indexed")
        return container[index]
    if isinstance(node, ast.Call):
        function = _walk(node.func, result)
        return function(*(_walk(argument, result) for argument in node.args))
    raise TypeError(f"{type(node).__name__} is not supported")

"""Argo condition expressions, evaluated without eval: what conditions use, and refusals of everything else."""

from __future__ import annotations

import math
from typing import Any

import pytest

from shipscope.deploy.expr import ExpressionError, compile_condition, evaluate
from shipscope.errors import InputError


@pytest.mark.parametrize(
    ("condition", "result", "expected"),
    [
        ("result[0] >= 0.95", [0.96], True),
        ("result[0] >= 0.95", [0.94], False),
        ("result >= 0.95", 0.97, True),
        ("len(result) == 0 || result[0] < 0.05", [], True),
        ("len(result) == 0 || result[0] < 0.05", [0.2], False),
        ("result[0] > 0 && result[0] <= 1", [0.5], True),
        ("result[0] > 0 and result[0] <= 1", [1.5], False),
        ("!(result[0] < 0.9)", [0.95], True),
        ("not (result[0] < 0.9)", [0.5], False),
        ("isNaN(result[0]) || result[0] >= 0.9", [math.nan], True),
        ("isNaN(result)", [math.nan], True),
        ("default(result[0], 0) >= 0.9", [math.nan], False),
        ("asInt(result[0]) == 3", [3.7], True),
        ("result[0] * 100 >= 99.5", [0.996], True),
        ("result[1] - result[0] < 0.01", [0.5, 0.505], True),
        ("0.9 <= result[0] && result[0] < 1", [0.95], True),
        ("result[0] != 1", [1.0], False),
        ("max(result[0], result[1]) < 2", [1.0, 3.0], False),
        ('"a" == "a" && result[0] == 1', [1.0], True),
        ("result[0] % 2 == 1", [3.0], True),
        ("result[0] ** 2 > 3", [2.0], True),
        ("-result[0] < 0", [2.0], True),
        ("result[0] == nil || true", [1.0], True),
    ],
)
def test_conditions(condition: str, result: Any, expected: bool) -> None:
    assert evaluate(compile_condition(condition), result) is expected


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("__import__('os').system('true')", "only len, isNaN"),
        ("result.__class__", "Attribute is not supported"),
        ("[x for x in result]", "is not supported"),
        ("lambda: 1", "cannot read it at ': 1'"),
        ("open('/etc/passwd')", "only len, isNaN"),
        ("result[0] >=", "not an expression"),
        ("result[0] >= 0.9 ;", "cannot read it at ';'"),
        ("secret", "unknown name 'secret'"),
    ],
)
def test_anything_else_is_refused_before_it_runs(condition: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        compile_condition(condition)


@pytest.mark.parametrize(
    ("condition", "result", "message"),
    [
        ("result[0] >= 0.95", [], "IndexError"),
        ("result[0] >= 0.95", 0.9, "cannot be indexed"),
        ("result[0] + 1", [1.0], "not true or false"),
        ("result[0] / 0 > 1", [1.0], "ZeroDivisionError"),
    ],
)
def test_a_condition_that_cannot_be_evaluated_is_an_error(condition: str, result: Any, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        evaluate(compile_condition(condition), result)

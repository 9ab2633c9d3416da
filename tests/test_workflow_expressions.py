import pytest

from workflows.expressions import ExpressionError, evaluate, parse

VARS = {
    "greeting_complete": True,
    "score": 4,
    "name": "Ann",
    "tags": ["vip", "beta"],
    "context": {"user": {"name": "Ann", "plan": None}},
    "items": [{"sku": "a1"}],
}


@pytest.mark.parametrize(("expression", "expected"), [
    ("${greeting_complete} == true and ${score} > 3", True),
    ("${greeting_complete} == True and ${score} > 4", False),
    # `and` binds tighter than `or`, `not` tighter than both
    ("true or false and false", True),
    ("(true or false) and false", False),
    ("not false and false", False),
    ("not (false and false)", True),
    ("not ${score} == 4", False),
    ("${score} >= 4 and ${score} <= 4 and ${score} != 5 and ${score} < 4.5", True),
    ("${score} == -1 or ${score} == 4.0", True),
    # strings, both quotes, escapes
    ("${name} == 'Ann'", True),
    ('${name} == "Ann"', True),
    ("'it\\'s' == \"it's\"", True),
    ("${name} < 'Bob'", True),
    # membership
    ("'vip' in ${tags}", True),
    ("'gold' not in ${tags}", True),
    ("${tags} contains 'beta'", True),
    ("'nn' in ${name}", True),
    ("${score} in [1, 2, 4]", True),
    ("'user' in ${context}", True),
    # dotted paths into mappings and lists
    ("${context.user.name} == 'Ann'", True),
    ("${items.0.sku} == 'a1'", True),
    ("${items.5.sku} == null", True),
    # booleans are not numbers
    ("${greeting_complete} == 1", False),
])
def test_evaluate(expression: str, expected: bool) -> None:
    assert evaluate(expression, VARS) is expected


@pytest.mark.parametrize(("expression", "expected"), [
    ("${missing} == null", True),
    ("${missing} == None", True),
    ("${missing} != null", False),
    ("${missing} == false", False),
    ("${missing} > 1", False),
    ("${missing} <= 1", False),
    ("not ${missing}", True),
    ("'x' in ${missing}", False),
    ("${context.user.plan} == null", True),
    ("${context.nothing.deeper} == null", True),
    ("${name} > 3", False),  # mismatched types compare false instead of raising
    ("${score}", True),
])
def test_missing_variables_and_mismatches(expression: str, expected: bool) -> None:
    assert evaluate(expression, VARS) is expected


@pytest.mark.parametrize("expression", [
    "__import__('os').system('true')",
    "${name}.upper()",
    "${name}.__class__",
    "len(${tags})",
    "open('x')",
    "${a} + 1",
    "${a} = 1",
    "lambda: 1",
    "[x for x in ${tags}]",
    "1 < 2 < 3",
    "${a} ==",
    "(${a} == 1",
    "'unterminated",
    "${a b}",
    "",
])
def test_rejected_at_parse_time(expression: str) -> None:
    with pytest.raises(ExpressionError):
        parse(expression)


def test_error_reports_position() -> None:
    with pytest.raises(ExpressionError) as info:
        parse("${a} == 1 and foo")
    assert info.value.position == 14
    assert str(info.value) == "unknown name 'foo' (variables are written ${foo}) at position 14"


def test_parse_is_cached_and_reusable() -> None:
    tree = parse("${score} > 3")
    assert parse("${score} > 3") is tree
    assert evaluate(tree, {"score": 5}) and not evaluate(tree, {"score": 1})

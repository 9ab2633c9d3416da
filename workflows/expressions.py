"""Handoff condition expressions: a tiny language interpreted over context variables.

Workflow files are user-supplied, so conditions are never handed to Python's eval/exec: the
grammar below has no names, attribute access or calls at all, only variables, literals,
comparisons and boolean logic.

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := primary [op primary]      op: == != < <= > >= in "not in" contains
    primary    := ${a.b.c} | number | 'str' | "str" | true | false | null | ( expr ) | [ expr, … ]
"""

from __future__ import annotations

import operator
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

__all__ = ["ExpressionError", "Expr", "parse", "evaluate"]


class ExpressionError(ValueError):
    def __init__(self, reason: str, expression: str, position: int) -> None:
        super().__init__(f"{reason} at position {position}")
        self.reason = reason
        self.expression = expression
        self.position = position


class Expr(ABC):
    @abstractmethod
    def value(self, variables: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True)
class Const(Expr):
    constant: Any

    def value(self, variables: Mapping[str, Any]) -> Any:
        return self.constant


@dataclass(frozen=True)
class Var(Expr):
    path: tuple[str, ...]

    def value(self, variables: Mapping[str, Any]) -> Any:
        current: Any = variables
        for part in self.path:
            # Only mapping keys and list indexes are followed: never Python attributes.
            if isinstance(current, Mapping):
                current = current.get(part)
            elif isinstance(current, list | tuple) and part.isdigit() and int(part) < len(current):
                current = current[int(part)]
            else:
                return None
        return current


@dataclass(frozen=True)
class ListExpr(Expr):
    items: tuple[Expr, ...]

    def value(self, variables: Mapping[str, Any]) -> Any:
        return [item.value(variables) for item in self.items]


@dataclass(frozen=True)
class Not(Expr):
    operand: Expr

    def value(self, variables: Mapping[str, Any]) -> Any:
        return not self.operand.value(variables)


@dataclass(frozen=True)
class BoolOp(Expr):
    op: str  # "and" | "or"
    left: Expr
    right: Expr

    def value(self, variables: Mapping[str, Any]) -> Any:
        left = bool(self.left.value(variables))
        if self.op == "and":
            return left and bool(self.right.value(variables))
        return left or bool(self.right.value(variables))


_ORDERING = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True)
class Compare(Expr):
    op: str
    left: Expr
    right: Expr

    def value(self, variables: Mapping[str, Any]) -> Any:
        a, b = self.left.value(variables), self.right.value(variables)
        match self.op:
            case "==":
                return _equal(a, b)
            case "!=":
                return not _equal(a, b)
            case "in":
                return _contains(b, a)
            case "not in":
                return not _contains(b, a)
            case "contains":
                return _contains(a, b)
        # Ordering against null, booleans or mismatched types is simply false: conditions are
        # evaluated after every turn and must not crash a chat over a variable not yet set.
        if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
            return False
        try:
            return _ORDERING[self.op](a, b)
        except TypeError:
            return False


def _equal(a: Any, b: Any) -> bool:
    # JSON semantics: true is not 1.
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, list | tuple):
        return any(_equal(element, item) for element in container)
    if isinstance(container, Mapping):
        return isinstance(item, str) and item in container
    return False


class _Token(NamedTuple):
    kind: str  # var | number | string | op | word | end
    text: str
    pos: int


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<var>\$\{\s*[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*\s*\})
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_CONSTANTS = {"true": True, "True": True, "false": False, "False": False, "null": None, "None": None}
_KEYWORDS = {"and", "or", "not", "in", "contains", *_CONSTANTS}
_COMPARISONS = {"==", "!=", "<", "<=", ">", ">="}
_ESCAPES = {"n": "\n", "t": "\t"}


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text.startswith("${", pos):
                raise ExpressionError("invalid variable reference (expected ${name} or ${a.b})", text, pos)
            raise ExpressionError(f"unexpected character {text[pos]!r}", text, pos)
        kind = match.lastgroup or ""
        if kind == "word" and match.group() not in _KEYWORDS:
            raise ExpressionError(
                f"unknown name {match.group()!r} (variables are written ${{{match.group()}}})", text, pos
            )
        if kind != "ws":
            tokens.append(_Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0

    def parse(self) -> Expr:
        node = self._or()
        self._expect("end")
        return node

    @property
    def _current(self) -> _Token:
        return self.tokens[self.index]

    def _accept(self, text: str) -> bool:
        if self._current.kind in ("op", "word") and self._current.text == text:
            self.index += 1
            return True
        return False

    def _expect(self, kind: str, text: str | None = None) -> None:
        token = self._current
        if token.kind != kind or (text is not None and token.text != text):
            wanted = repr(text) if text else "end of expression"
            found = repr(token.text) if token.kind != "end" else "end of expression"
            raise ExpressionError(f"expected {wanted}, found {found}", self.text, token.pos)
        self.index += 1

    def _or(self) -> Expr:
        node = self._and()
        while self._accept("or"):
            node = BoolOp("or", node, self._and())
        return node

    def _and(self) -> Expr:
        node = self._not()
        while self._accept("and"):
            node = BoolOp("and", node, self._not())
        return node

    def _not(self) -> Expr:
        if self._accept("not"):
            return Not(self._not())
        return self._comparison()

    def _comparison(self) -> Expr:
        left = self._primary()
        op = self._comparison_operator()
        if op is None:
            return left
        node = Compare(op, left, self._primary())
        if self._comparison_operator() is not None:
            raise ExpressionError("comparisons cannot be chained; use 'and'", self.text, self.tokens[self.index - 1].pos)
        return node

    def _comparison_operator(self) -> str | None:
        token = self._current
        if (token.kind == "op" and token.text in _COMPARISONS) or (
            token.kind == "word" and token.text in ("in", "contains")
        ):
            self.index += 1
            return token.text
        if token.kind == "word" and token.text == "not" and self.tokens[self.index + 1].text == "in":
            self.index += 2
            return "not in"
        return None

    def _primary(self) -> Expr:
        token = self._current
        self.index += 1
        match token.kind:
            case "var":
                return Var(tuple(token.text[2:-1].strip().split(".")))
            case "number":
                return Const(float(token.text) if any(c in token.text for c in ".eE") else int(token.text))
            case "string":
                return Const(re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[1]), token.text[1:-1]))
            case "word" if token.text in _CONSTANTS:
                return Const(_CONSTANTS[token.text])
            case "op" if token.text == "(":
                node = self._or()
                self._expect("op", ")")
                return node
            case "op" if token.text == "[":
                items: list[Expr] = []
                while not self._accept("]"):
                    if items:
                        self._expect("op", ",")
                    items.append(self._or())
                return ListExpr(tuple(items))
        found = repr(token.text) if token.kind != "end" else "end of expression"
        raise ExpressionError(f"expected a value, found {found}", self.text, token.pos)


@lru_cache(maxsize=1024)
def parse(expression: str) -> Expr:
    """Parse once; the AST is immutable, so cached trees are shared safely."""
    return _Parser(expression).parse()


def evaluate(expression: Expr | str, variables: Mapping[str, Any]) -> bool:
    """Truth of an expression; a variable that is not set is null."""
    node = parse(expression) if isinstance(expression, str) else expression
    return bool(node.value(variables))

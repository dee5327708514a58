"""Worked arithmetic steps in a solution, read and checked without running any of its text.

A step is an expression and the value the text says it has. Two forms are read:

- GSM8K's calculator annotations, ``<<48/2=24>>``: when a text has any, they are its steps (the
  prose around them repeats them);
- otherwise every ``expression = number`` in the text, the expression being the run of numbers,
  operators (``+ - * / × ÷``, ``x`` between spaces) and parentheses before the ``=`` on its line (at
  most 200 characters) that holds an operator: ``3 * 4 = 12.``, ``12 + 2 = 14``; in a chain
  ``2 + 3 = 5 + 1 = 6`` each ``=`` ends a step (``2 + 3 = 5``, ``5 + 1 = 6``).

An expression is evaluated exactly (fractions) by walking its syntax tree, which may hold only
numbers, ``+ - * /`` and signs: no names, calls, powers or anything else, so nothing in a model's
text is executed. Thousands separators (``1,000``) and ``$`` are dropped first. A step is true
when the value equals the stated one, or, for a stated value with d decimals, rounds to it at d
decimals (``10/3 = 3.33``). An expression that cannot be evaluated (division by zero, a number
over 10^15, more than 200 characters) makes a false step with its reason.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from fractions import Fraction

ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
# An expression: numbers, operators and parentheses (and spaces), then "=" and the stated number.
# What an expression may hold: read leftwards from its "=" (at most MAX_CHARS), never across a line
# ("\n"; a stray "\r" is read as a space). The stated number may follow on the next line.
EXPRESSION_CHARS = frozenset("0123456789 \t\r.,+-*/×÷x()$")
STATED = re.compile(r"\s{0,16}\$?\s{0,4}(" + NUMBER + r")")  # bounded: no backtracking over long blanks
# A number, an operator (a run of them: ``**`` makes a step that cannot be evaluated, never none),
# a number: what makes a run of characters an expression.
OPERATOR = re.compile(r"\d[\s)]*(?:[+\-*/×÷]+|\sx\s)[\s($]*-?\d")
MAX_CHARS = 200
MAX_NUMBER = 10 ** 15


class Unreadable(ValueError):
    """An expression that is not plain arithmetic, or whose value cannot be computed."""


@dataclass(frozen=True)
class Step:
    """One worked step: the expression as read, the value stated for it, the value computed (None
    when it cannot be) and why not."""

    expression: str
    stated: Fraction
    value: Fraction | None
    reason: str | None = None

    @property
    def true(self) -> bool:
        """Whether the stated value is the expression's (see the module doc for rounding)."""
        return self.value is not None and agrees(self.value, self.stated)

    def to_dict(self) -> dict:
        """JSON form: the expression, both values as numbers, whether it is true (and why not)."""
        out = {"expression": self.expression, "stated": _number(self.stated),
               "value": None if self.value is None else _number(self.value), "true": self.true}
        if self.reason:
            out["reason"] = self.reason
        return out


def _number(value: Fraction) -> int | float:
    return int(value) if value.denominator == 1 else float(value)


def agrees(value: Fraction, stated: Fraction) -> bool:
    """``value`` is ``stated`` exactly, or rounds to it at the stated value's decimals."""
    if value == stated:
        return True
    decimals = 0
    while stated * 10 ** decimals != int(stated * 10 ** decimals) and decimals < 12:
        decimals += 1
    return decimals > 0 and round(value, decimals) == stated


def parse_number(text: str) -> Fraction:
    """A number as written (``1,000``, ``-2.5``, ``$12``) as an exact fraction."""
    cleaned = text.strip().replace("$", "").replace(",", "").rstrip(".")
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError) as err:
        raise Unreadable(f"not a number: {text!r}") from err


def normalise(expression: str) -> str:
    """The expression in Python's arithmetic syntax: ``×``, `` x `` → ``*``, ``÷`` → ``/``, thousands
    separators and ``$`` dropped, spaces collapsed."""
    text = expression.replace("×", "*").replace("÷", "/").replace("$", "")
    text = re.sub(r"(?<=[\d)])\s*x\s*(?=[\d(])", "*", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    return " ".join(text.split())


def evaluate(expression: str) -> Fraction:
    """The exact value of a plain arithmetic expression (see the module doc); Unreadable otherwise."""
    text = normalise(expression)
    if len(text) > MAX_CHARS:
        raise Unreadable(f"expression longer than {MAX_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise Unreadable(f"not arithmetic: {text!r}") from err
    return _value(tree.body)


def _value(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value = Fraction(str(node.value))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _value(node.operand)
        value = -value if isinstance(node.op, ast.USub) else value
    elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise Unreadable("division by zero")
        value = {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}.get(type(node.op))
        value = left / right if value is None else value
    else:
        raise Unreadable(f"{type(node).__name__} is not plain arithmetic")
    if abs(value) > MAX_NUMBER:
        raise Unreadable(f"a number above {MAX_NUMBER:.0e}")
    return value


def make_step(expression: str, stated_text: str) -> Step | None:
    """The step of an expression and its stated value; None when the stated value is no number."""
    try:
        stated = parse_number(stated_text)
    except Unreadable:
        return None
    expression = " ".join(expression.split())
    try:
        return Step(expression, stated, evaluate(expression))
    except Unreadable as err:
        return Step(expression, stated, None, str(err))


def steps(text: str) -> list[Step]:
    """The worked steps of a text, in order (see the module doc)."""
    annotations = ANNOTATION.findall(text)
    if annotations:
        found = [make_step(expression, stated) for expression, stated in annotations]
    else:
        found = [make_step(expression, stated) for expression, stated in _line_steps(text)]
    return [step for step in found if step is not None]


def _line_steps(text: str) -> list[tuple[str, str]]:
    """(expression, stated number) of every ``expression = number``: for each "=" followed by a
    number, the run of expression characters before it (at most MAX_CHARS, within its line; in a
    chain the previous step's stated number starts the next expression). Linear in the text: a
    regular expression over the whole text backtracks cubically on long runs of digits."""
    out = []
    for equals in (i for i, char in enumerate(text) if char == "="):
        stated = STATED.match(text, equals + 1)
        if stated is None:
            continue
        start = equals
        while start > 0 and equals - start < MAX_CHARS and text[start - 1] in EXPRESSION_CHARS:
            start -= 1
        expression = re.split(r"[.,]\s", text[start:equals])[-1]  # a sentence or list before it is not part of it
        expression = re.sub(r"^[^\d(\-]+", "", expression).strip()
        if OPERATOR.search(expression):
            out.append((expression, stated.group(1)))
    return out

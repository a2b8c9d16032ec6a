"""Refuse, cheaply, answers whose symbolic evaluation would blow up.

sympy evaluates integer powers and factorials eagerly, so ``10^{10^{10}}`` or
``100000!`` would run until the worker's deadline (or memory cap) every time
such an answer shows up. These are never real answers to the benchmarks'
problems; recognising them with a regex lets the grader mark them wrong at
once instead of spending the whole time bound.
"""
from __future__ import annotations

import math
import re

# Numbers with more digits than this are not evaluated.
MAX_RESULT_DIGITS = 100_000
MAX_FACTORIAL = 20000
MAX_BINOMIAL = 20000
# Benchmark answers are at most 4x4 matrices; parsing a 30x30 one takes seconds.
MAX_MATRIX_ENTRIES = 64
# Real answers nest brackets a few levels deep (\\frac{\\sqrt{a+\\sqrt{b}}}{c}).
MAX_NESTING_DEPTH = 12
# The LaTeX parser's time grows steeply with nested parentheses (interval or
# grouping?), ~0.1 s per level: sin(sin(sin(...))) ten deep takes a second.
MAX_PARENTHESIS_DEPTH = 6

# A number raised to a chain of numeric exponents: 10^{10^{10}}, 2^{100}, 9^9.
_POWER_CHAIN = re.compile(r"\d+(?:\.\d+)?(?:\s*\^\s*\{?\s*\d+(?:\.\d+)?)+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_FACTORIAL = re.compile(r"(\d+)\s*\)?\s*!")
_BINOMIAL = re.compile(r"\\binom\s*\{?\s*(\d+)")


def _log10(number: str) -> float:
    """log10 of a non-negative decimal numeral, without overflowing on long ones."""
    integer = number.split(".")[0].lstrip("0")
    if len(integer) > 15:
        return len(integer) - 1 + math.log10(float(integer[:15]) / 1e14)
    value = float(number)
    return math.log10(value) if value > 0 else -math.inf


def _tower_digits(numbers: list[str]) -> float:
    """Decimal digits of ``numbers[0] ^ numbers[1] ^ ...`` (right-associative), or inf."""
    exponent_digits = 0.0 if len(numbers) == 1 else _log10(numbers[-1])
    for base in reversed(numbers[1:-1]):
        if exponent_digits > 6:
            return math.inf
        exponent_digits = 10**exponent_digits * _log10(base)
    if len(numbers) == 1 or exponent_digits > 6:
        return math.inf if len(numbers) > 1 else _log10(numbers[0])
    return 10**exponent_digits * max(_log10(numbers[0]), 0.0)


def _max_depth(text: str, openers: str = "{([", closers: str = "})]") -> int:
    depth = deepest = 0
    for char in text:
        if char in openers:
            depth += 1
            deepest = max(deepest, depth)
        elif char in closers:
            depth = max(depth - 1, 0)
    return deepest


def too_complex(expression: str) -> str | None:
    """Why ``expression`` should not be evaluated symbolically, or None if it may be."""
    for match in _POWER_CHAIN.finditer(expression):
        numbers = _NUMBER.findall(match.group(0))[:64]
        if _tower_digits(numbers) > MAX_RESULT_DIGITS:
            return f"power {match.group(0)[:40]!r} has over {MAX_RESULT_DIGITS} digits"
    for match in _FACTORIAL.finditer(expression):
        if len(match.group(1)) > 6 or int(match.group(1)) > MAX_FACTORIAL:
            return f"factorial {match.group(0)[:40]!r}"
    for match in _BINOMIAL.finditer(expression):
        if len(match.group(1)) > 7 or int(match.group(1)) > MAX_BINOMIAL:
            return f"binomial {match.group(0)[:40]!r}"
    if expression.count("&") >= MAX_MATRIX_ENTRIES:
        return f"matrix with over {MAX_MATRIX_ENTRIES} entries"
    if _max_depth(expression) > MAX_NESTING_DEPTH:
        return f"brackets nested over {MAX_NESTING_DEPTH} deep"
    if _max_depth(expression, "([", ")]") > MAX_PARENTHESIS_DEPTH:
        return f"parentheses nested over {MAX_PARENTHESIS_DEPTH} deep"
    return None

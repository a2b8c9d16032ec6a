"""Float evaluation of simple LaTeX expressions, to reject wrong answers cheaply.

Most wrong answers are closed forms or short polynomials (``3\\sqrt{13}``
vs ``\\frac{14}{3}``, ``x^3+3x-6`` vs ``x^3+3x-5``). Parsing both with
math-verify costs tens of milliseconds; evaluating them in floats at a couple of
points costs microseconds and, when the values clearly differ, settles the
comparison. Equal values only mean "maybe": the symbolic comparison decides.

The grammar is a deliberately small subset: numbers, variables (a letter or
Greek letter, possibly subscripted), ``e``, ``i``, ``\\pi``, ``+ - * / ^``, ``\\cdot``, ``\\times``,
implicit products, ``\\frac``, ``\\sqrt`` (and ``\\sqrt[n]``), a few functions,
and brackets. Anything else (sets, relations, subscripts, ``\\pm``, ...) is
"not supported" and left to math-verify. Inputs are short (at most
MAX_EXPRESSION_CHARS) and nesting is bounded, and all arithmetic is in
floats, so evaluation takes microseconds and cannot hang on ``10^{10^{10}}``
(it overflows to "unknown" instead). Fractional powers of negative numbers
are "unknown" too: real and principal roots disagree there.
"""
from __future__ import annotations

import cmath
import re
from collections.abc import Callable

MAX_EXPRESSION_CHARS = 300
MAX_DEPTH = 30
# The probes of the whole grader (this evaluator and the worker's sympy probe):
# two points, irrational-looking so that different expressions rarely agree by
# accident. A variable's coordinate is cycled from a point's values, plus its index.
PROBE_POINTS = ((0.5772156649, 1.3247179572, 0.9159655942), (1.6180339887, 0.3183098862, 2.7182818285))
# Float evaluation is good to ~1e-15; a larger relative gap is a real difference.
RELATIVE_GAP = 1e-8

_SUBSCRIPT = r"_(?:\{[a-zA-Z0-9]+\}|[a-zA-Z0-9])"
_TOKEN = re.compile(
    r"\s*(\d+\.?\d*|\.\d+|(?:[a-zA-Z]|\\[a-zA-Z]+)" + _SUBSCRIPT + r"|\\[a-zA-Z]+|[a-zA-Z]|[-+*/^(){}\[\]])"
)
_GREEK = (
    "alpha|beta|gamma|delta|epsilon|varepsilon|zeta|eta|theta|vartheta|iota|kappa|lambda|mu|nu|xi|rho|sigma|"
    "tau|upsilon|phi|varphi|chi|psi|omega|Gamma|Delta|Theta|Lambda|Xi|Sigma|Phi|Psi|Omega|hbar|ell"
)
# A variable: one letter or Greek letter, possibly subscripted (``v_{0}``, ``\\omega_n``).
_VARIABLE = re.compile(r"^(?:[a-zA-Z]|\\(?:" + _GREEK + r"))(?:" + _SUBSCRIPT + r")?$")
_FUNCTIONS: dict[str, Callable[[complex], complex]] = {
    "\\sin": cmath.sin, "\\cos": cmath.cos, "\\tan": cmath.tan, "\\ln": cmath.log,
    "\\exp": cmath.exp, "\\sec": lambda x: 1 / cmath.cos(x), "\\csc": lambda x: 1 / cmath.sin(x),
    "\\cot": lambda x: 1 / cmath.tan(x), "\\arcsin": cmath.asin, "\\arccos": cmath.acos, "\\arctan": cmath.atan,
}
_CONSTANTS = {"\\pi": cmath.pi, "e": cmath.e, "i": 1j}
_PRODUCT_COMMANDS = ("\\cdot", "\\times")
_OPENING = {"(": ")", "{": "}", "[": "]"}


class Unsupported(Exception):
    """The expression is outside the grammar (or does not evaluate to a finite number)."""


class _Parser:
    """Recursive descent over the tokens, evaluating as it goes at one point."""

    def __init__(self, tokens: list[str], point: dict[str, float]) -> None:
        self.tokens = tokens
        self.position = 0
        self.point = point
        self.depth = 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise Unsupported(f"expected {expected!r}, got {token!r}")
        self.position += 1
        return token

    def expression(self) -> complex:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Unsupported("too deep")
        value = self.term()
        while self.peek() in ("+", "-"):
            value = value + self.term() if self.take() == "+" else value - self.term()
        self.depth -= 1
        return value

    def term(self) -> complex:
        value = self.signed()
        while True:
            token = self.peek()
            if token in ("*", "/") or token in _PRODUCT_COMMANDS:
                self.take()
                operand = self.signed()
                value = value / operand if token == "/" else value * operand
            elif token is not None and self._starts_factor(token):
                value = value * self.power()
            else:
                return value

    def _starts_factor(self, token: str) -> bool:
        return (
            token[0].isdigit() or token[0] == "." or token in ("(", "{", "[") or bool(_VARIABLE.match(token))
            or token in _CONSTANTS or token in _FUNCTIONS or token in ("\\frac", "\\sqrt")
        )

    def signed(self) -> complex:
        if self.peek() == "-":
            self.take()
            value = self.signed()
            # ``+ 0.0`` drops the sign of a zero imaginary part: cmath's branch cuts see it.
            return complex(-value.real, -value.imag + 0.0)
        if self.peek() == "+":
            self.take()
            return self.signed()
        return self.power()

    def power(self) -> complex:
        base = self.primary()
        if self.peek() == "^":
            self.take()
            return _power(base, self.exponent())
        return base

    def exponent(self) -> complex:
        """``x^2``, ``x^{n+1}``, ``x^-1``: one token unless braced."""
        token = self.peek()
        if token in ("{", "("):
            return self.primary()
        if token == "-":
            self.take()
            return -self.exponent()
        if token is not None and token[0].isdigit() and len(token) > 1 and "." not in token:
            # LaTeX reads ``x^23`` as ``x^2 \cdot 3``: the other digits become the next factor.
            self.take()
            self.tokens.insert(self.position, token[1:])
            return complex(float(token[0]))
        return self.primary()

    def _mixed_fraction(self, whole: str) -> complex:
        """The 1/4 of the mixed number ``2\\frac{1}{4}`` (an integer, then a proper fraction of integers)."""
        ahead = self.tokens[self.position : self.position + 7]
        if not whole.isdigit() or len(ahead) < 7 or ahead[0] != "\\frac":
            return 0j
        if [ahead[1], ahead[3], ahead[4], ahead[6]] != ["{", "}", "{", "}"]:
            return 0j
        numerator, denominator = ahead[2], ahead[5]
        if not (numerator.isdigit() and denominator.isdigit() and 0 < int(numerator) < int(denominator)):
            return 0j
        self.position += 7
        return complex(int(numerator) / int(denominator))

    def group(self) -> complex:
        opening = self.take()
        if opening not in _OPENING:
            raise Unsupported(f"expected a group, got {opening!r}")
        value = self.expression()
        self.take(_OPENING[opening])
        return value

    def primary(self) -> complex:
        token = self.peek()
        if token is None:
            raise Unsupported("unexpected end")
        if token in _OPENING:
            return self.group()
        self.take()
        if token[0].isdigit() or token[0] == ".":
            return complex(float(token)) + self._mixed_fraction(token)
        if token in _CONSTANTS:
            return _CONSTANTS[token]
        if _VARIABLE.match(token):
            if token not in self.point:
                raise Unsupported(f"no value for {token!r}")
            return complex(self.point[token])
        if token == "\\frac":
            numerator = self.group() if self.peek() == "{" else self.primary()
            denominator = self.group() if self.peek() == "{" else self.primary()
            return numerator / denominator
        if token == "\\sqrt":
            index = 2.0
            if self.peek() == "[":
                index = self.group().real
            radicand = self.group() if self.peek() == "{" else self.primary()
            return _power(radicand, complex(1 / index)) if index != 2 else cmath.sqrt(radicand)
        if token in _FUNCTIONS:
            argument = self.group() if self.peek() in _OPENING else self.power()
            return _FUNCTIONS[token](argument)
        raise Unsupported(f"token {token!r}")


def _power(base: complex, exponent: complex) -> complex:
    if base.imag == 0 and base.real < 0 and (exponent.imag != 0 or not float(exponent.real).is_integer()):
        raise Unsupported("fractional power of a negative number")
    try:
        return base**exponent
    except (OverflowError, ZeroDivisionError) as error:
        raise Unsupported(str(error)) from error


def _tokens(text: str) -> list[str]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            if text[position:].strip():
                raise Unsupported(f"character {text[position]!r}")
            break
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def variables(text: str) -> frozenset[str]:
    """Variables of a supported expression (``e``, ``i`` and ``\\pi`` are constants)."""
    return frozenset(token for token in _tokens(text) if _VARIABLE.match(token) and token not in _CONSTANTS)


def evaluate(text: str, point: dict[str, float]) -> complex:
    """Value of ``text`` with variables set from ``point``; Unsupported if it has none."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise Unsupported("too long")
    parser = _Parser(_tokens(text), point)
    try:
        value = parser.expression()
    except (ZeroDivisionError, OverflowError, ValueError) as error:
        raise Unsupported(str(error)) from error
    if parser.peek() is not None:
        raise Unsupported(f"trailing {parser.peek()!r}")
    if value != value or abs(value) == float("inf"):
        raise Unsupported("not finite")
    return value


def probe_values(names: list[str]) -> list[tuple[float, ...]]:
    """The coordinates of each probe point for the variables ``names`` (in that order)."""
    return [tuple(probe[index % len(probe)] + index for index in range(len(names))) for probe in PROBE_POINTS]


def values_differ(first: complex, second: complex, rel_tol: float = 0.0) -> bool:
    """Whether two probe values differ by more than float noise and twice ``rel_tol``."""
    gap = max(RELATIVE_GAP, 2 * rel_tol)
    return abs(first - second) > gap * max(1.0, abs(first), abs(second))


def clearly_different(first: str, second: str, rel_tol: float = 0.0) -> bool | None:
    """True when two expressions differ at some probe point (or in their variables).

    Values count as different when their relative gap exceeds twice
    ``rel_tol`` (and float noise): nearer values are for the exact comparison
    to judge. False means "same values at the probes" (maybe equal); None
    means at least one is outside the grammar, so nothing was learnt.
    """
    try:
        first_variables, second_variables = variables(first), variables(second)
    except Unsupported:
        return None
    names = sorted(first_variables | second_variables)
    learnt = False
    for coordinates in probe_values(names):
        point = dict(zip(names, coordinates))
        try:
            first_value, second_value = evaluate(first, point), evaluate(second, point)
        except Unsupported:
            continue
        learnt = True
        if values_differ(first_value, second_value, rel_tol):
            return True
    if not learnt:
        return None
    return first_variables != second_variables

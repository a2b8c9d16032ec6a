"""Symbolic equivalence of two normalised answers, via math-verify and sympy.

This module is imported only inside the grading worker process
(``eglr.grading.slow.worker``), which bounds its run time: nothing here has a
timeout of its own. math-verify's signal-based timeouts are switched off
(``parsing_timeout=None``, ``timeout_seconds=None``) because signals only
work on the main thread.

Before math-verify's ``verify`` (whose ``simplify`` can take seconds on two
unrelated expressions), plain expressions get a numeric probe: evaluated in
floats at the fast path's probe points (``eglr.grading.fast.numeric``),
clearly different values (or different free variables) settle "not equal";
everything else, and relations, sets, tuples, matrices and words, goes to
``verify``.

math-verify's own unit stripping is off: it drops trailing letters such as
``m``, ``s`` or ``t`` as units (``\\frac{37}{4} m`` would become 37/4), where in
these answers they are variables. Units are removed before, by
``eglr.grading.normalize``, only where they are spelled as units.
"""
from __future__ import annotations

import logging
from functools import lru_cache

import sympy
from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from eglr.grading.fast.numeric import probe_values, values_differ

logging.getLogger("math_verify").setLevel(logging.ERROR)
logging.getLogger("latex2sympy2_extended").setLevel(logging.ERROR)

_NORMALIZATION = NormalizationConfig(
    basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all", equations=False
)
_EXTRACTION = (
    LatexExtractionConfig(boxed_match_priority=0, normalization_config=_NORMALIZATION),
    ExprExtractionConfig(),
)
_PARSE_CACHE_SIZE = 4096


# One comparison per kind of answer the LaTeX parser meets: ANTLR builds its
# prediction tables lazily, so the first parse of each construct costs 2-4x more.
WARM_UP_PAIRS = (
    ("(0,1)\\cup(2,3)", "(0,2]\\cup[3,4)"),
    ("2x+3y=5", "y=2x+1"),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&0\\\\0&1\\end{pmatrix}"),
    ("\\{1,2\\}", "1,2"),
    ("x\\le 5", "5\\ge x"),
    ("\\frac{\\sqrt{3}}{2}", "\\sin(\\pi/3)"),
    ("1\\pm\\sqrt{2}", "(3,4)"),
)


@lru_cache(maxsize=_PARSE_CACHE_SIZE)
def parse_answer(answer: str) -> tuple:
    """math-verify's parse of one answer: sympy objects, then its raw string."""
    return tuple(parse(f"${answer}$", extraction_config=list(_EXTRACTION), parsing_timeout=None))


def _is_plain_expression(value) -> bool:
    return isinstance(value, sympy.Expr) and not isinstance(value, (sympy.Tuple, sympy.MatrixBase))


def _is_text_like(value) -> bool:
    """A symbol or a product of symbols: how math-verify reads words such as ``Evelyn``."""
    if isinstance(value, sympy.Symbol):
        return True
    return isinstance(value, sympy.Mul) and all(isinstance(factor, sympy.Symbol) for factor in value.args)


def _float_values(expression, symbols: list, points) -> list[complex | None]:
    """``expression`` at each point, in machine floats; None where that fails.

    Plain floats (via ``lambdify``) rather than sympy's ``evalf``: a tower of
    ``exp`` overflows at once instead of being evaluated to ever more digits.
    """
    try:
        function = sympy.lambdify(symbols, expression, modules="cmath")
    except Exception:  # noqa: BLE001 - an expression lambdify cannot compile is just not probed
        return [None] * len(points)
    values: list[complex | None] = []
    for point in points:
        try:
            value = complex(function(*point[: len(symbols)]))
        except Exception:  # noqa: BLE001 - overflow, domain errors: no evidence at this point
            value = None
        if value is not None and (value != value or abs(value) == float("inf")):
            value = None
        values.append(value)
    return values


def _numeric_probe(pred, gold) -> bool | None:
    """False when numeric evidence shows the answers differ, else None (undecided)."""
    if not (_is_plain_expression(pred) and _is_plain_expression(gold)):
        return None
    if _is_text_like(pred) or _is_text_like(gold):
        return None
    if pred.free_symbols != gold.free_symbols:
        # Strict comparison: ``x + 1`` and ``y + 1`` are different answers.
        return False
    symbols = sorted(gold.free_symbols, key=str)
    points = probe_values([str(symbol) for symbol in symbols])
    for pred_value, gold_value in zip(_float_values(pred, symbols, points), _float_values(gold, symbols, points)):
        if pred_value is not None and gold_value is not None and values_differ(pred_value, gold_value):
            return False
    return None


def _numerically_close(pred, gold, rel_tol: float) -> bool:
    """Relative-tolerance match of two closed-form real numbers."""
    if not (_is_plain_expression(pred) and _is_plain_expression(gold)):
        return False
    if pred.free_symbols or gold.free_symbols:
        return False
    (pred_value,), (gold_value,) = _float_values(pred, [], [()]), _float_values(gold, [], [()])
    if pred_value is None or gold_value is None or pred_value.imag or gold_value.imag:
        return False
    return abs(pred_value.real - gold_value.real) <= rel_tol * max(abs(pred_value.real), abs(gold_value.real))


def warm_up() -> None:
    """Run the warm-up comparisons, then forget their parses."""
    for pred, gold in WARM_UP_PAIRS:
        symbolic_equal(pred, gold, 1e-6)
    parse_answer.cache_clear()


def symbolic_equal(pred: str, gold: str, rel_tol: float) -> bool:
    """Whether ``pred`` equals ``gold`` mathematically (gold-first, as math-verify expects)."""
    gold_parsed = parse_answer(gold)
    pred_parsed = parse_answer(pred)
    if not gold_parsed or not pred_parsed:
        return False
    if _numeric_probe(pred_parsed[0], gold_parsed[0]) is False:
        return _numerically_close(pred_parsed[0], gold_parsed[0], rel_tol)
    if verify(list(gold_parsed), list(pred_parsed), timeout_seconds=None):
        return True
    return _numerically_close(pred_parsed[0], gold_parsed[0], rel_tol)

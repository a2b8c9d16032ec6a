"""Cheap structural comparison of tuples, intervals, matrices and answer lists.

A wrong answer often has the wrong shape (a number for a pair, an open
interval for a half-open one, a 2-vector for a 3-vector) or one wrong entry.
Splitting the normalised text at its top-level commas and comparing the parts
with the scalar fast path settles such pairs without the symbolic worker.
Only clear cases are decided; anything unusual returns None.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from eglr.grading.extract import split_top_level
from eglr.grading.fast.numeric import RELATIVE_GAP, Unsupported, evaluate, variables

_MATRIX = re.compile(r"^\\begin\{([pbvBV]?matrix)\}(.*)\\end\{\1\}$", re.DOTALL)
_OPENERS, _CLOSERS = "([{", ")]}"
_LESS = r"(<|\\le)"
_GREATER = r"(>|\\ge)"
# A bound holds no relation; each character is read once (a backslash with the next one).
_BOUND = r"((?:[^<>=\\]|\\(?!(?:le|ge|ne)(?![a-zA-Z])).)*)"
_VARIABLE = r"\s*([a-zA-Z])\s*"
_INCREASING_CHAIN = re.compile("^" + _BOUND + _LESS + _VARIABLE + _LESS + _BOUND + "$")
_DECREASING_CHAIN = re.compile("^" + _BOUND + _GREATER + _VARIABLE + _GREATER + _BOUND + "$")
_VARIABLE_FIRST = re.compile("^" + _VARIABLE + r"(<|>|\\le|\\ge)" + _BOUND + "$")
_BOUND_FIRST = re.compile("^" + _BOUND + r"(<|>|\\le|\\ge)" + _VARIABLE + "$")
_INEQUALITY_SIGN = re.compile(r"<|>|\\[lg]e(?![a-zA-Z])")
_FLIPPED = {"<": ">", ">": "<", "\\le": "\\ge", "\\ge": "\\le"}

ItemVerdict = Callable[[str, str], "bool | None"]


@dataclass(frozen=True)
class Wrapped:
    """``(a, b]`` as its brackets and items."""

    opening: str
    closing: str
    items: tuple[str, ...]


def wrapped(text: str) -> Wrapped | None:
    """A tuple or interval: one ``(``/``[`` ... ``)``/``]`` pair around 2+ items."""
    if len(text) < 2 or text[0] not in "([" or text[-1] not in ")]":
        return None
    inner = text[1:-1]
    if _closes_early(inner):
        return None
    items = split_top_level(inner)
    return Wrapped(text[0], text[-1], tuple(items)) if len(items) >= 2 else None


def _closes_early(inner: str) -> bool:
    """Whether the first bracket closes before the end (``(0,1)\\cup(2,3)``)."""
    depth = 0
    for char in inner:
        depth += (char in _OPENERS) - (char in _CLOSERS)
        if depth < 0:
            return True
    return depth != 0


def matrix_cells(text: str) -> list[list[str]] | None:
    match = _MATRIX.match(text)
    if match is None or "\\begin" in match.group(2) or "\\end" in match.group(2):
        return None
    rows = [row for row in match.group(2).split("\\\\") if row.strip()]
    return [split_top_level(row, "&") for row in rows]


def _expand_plus_minus(item: str) -> list[str] | None:
    parts = split_top_level(item, "\\pm")
    if len(parts) == 1:
        return [item]
    if len(parts) != 2:
        return None
    head, tail = parts
    return [f"{head}+{tail}", f"{head}-{tail}"] if head else [tail, f"-{tail}"]


def closed_form_values(text: str) -> list[complex] | None:
    """Values of a list of closed forms (``1, -2``, ``\\{1\\pm\\sqrt{5}, -2\\}``, ``3``), else None."""
    if text.startswith("\\{") and text.endswith("\\}"):
        text = text[2:-2]
    values = []
    for item in split_top_level(text):
        expanded = _expand_plus_minus(item)
        if expanded is None:
            return None
        for part in expanded:
            try:
                if variables(part):
                    return None
                values.append(evaluate(part, {}))
            except Unsupported:
                return None
    return values


def is_scalar(text: str) -> bool:
    """An expression the float evaluator understands (so not a tuple, set or matrix)."""
    try:
        names = sorted(variables(text))
        evaluate(text, {name: 1.25 + index for index, name in enumerate(names)})
    except Unsupported:
        return False
    return True


def _pairwise(pred_items: list[str], gold_items: list[str], item_verdict: ItemVerdict) -> bool | None:
    verdicts = [item_verdict(pred, gold) for pred, gold in zip(pred_items, gold_items)]
    if False in verdicts:
        return False
    return True if all(verdicts) else None


_SET_GAP = 1e3 * RELATIVE_GAP


def _close(first: complex, second: complex) -> bool:
    return abs(first - second) <= _SET_GAP * max(1.0, abs(first), abs(second))


def _distinct(values: list[complex]) -> list[complex]:
    """The values as a set (answer lists are sets: ``2, 2`` is ``2``), sorted."""
    distinct: list[complex] = []
    for value in sorted(values, key=lambda value: (value.real, value.imag)):
        if not distinct or not _close(distinct[-1], value):
            distinct.append(value)
    return distinct


def _interval(lower: str, upper: str, closed_lower: bool, closed_upper: bool) -> str | None:
    lower, upper = lower.strip(), upper.strip()
    if not lower or not upper:
        return None
    return f"{'[' if closed_lower else '('}{lower},{upper}{']' if closed_upper else ')'}"


def inequality_interval(text: str) -> tuple[str, str] | None:
    """A one-variable inequality as its variable and the interval it describes, else None.

    ``-2\\le x<7`` -> (``x``, ``[-2,7)``); ``x>3`` -> (``x``, ``(3,\\infty)``).
    """
    if not _INEQUALITY_SIGN.search(text):
        return None
    match = _INCREASING_CHAIN.match(text)
    if match:
        lower, lower_op, name, upper_op, upper = match.groups()
        interval = _interval(lower, upper, lower_op == "\\le", upper_op == "\\le")
        return (name, interval) if interval else None
    match = _DECREASING_CHAIN.match(text)
    if match:
        upper, upper_op, name, lower_op, lower = match.groups()
        interval = _interval(lower, upper, lower_op == "\\ge", upper_op == "\\ge")
        return (name, interval) if interval else None
    match = _VARIABLE_FIRST.match(text)
    if match:
        name, relation, bound = match.groups()
    else:
        match = _BOUND_FIRST.match(text)
        if match is None:
            return None
        bound, relation, name = match.groups()
        relation = _FLIPPED[relation]
    if relation in ("<", "\\le"):
        interval = _interval("-\\infty", bound, False, relation == "\\le")
    else:
        interval = _interval(bound, "\\infty", relation == "\\ge", False)
    return (name, interval) if interval else None


def is_interval_set(text: str) -> bool:
    """An interval or a union of intervals (``[0,1)``, ``(-\\infty,0)\\cup(1,\\infty)``)."""
    parts = [wrapped(part) for part in text.split("\\cup")]
    return all(part is not None and len(part.items) == 2 for part in parts)


def compare_structures(pred: str, gold: str, item_verdict: ItemVerdict) -> bool | None:
    """True/False when the shapes (or entries) of two answers settle it, else None."""
    pred_wrapped, gold_wrapped = wrapped(pred), wrapped(gold)
    if pred_wrapped and gold_wrapped:
        if len(pred_wrapped.items) != len(gold_wrapped.items):
            return False
        if (pred_wrapped.opening, pred_wrapped.closing) != (gold_wrapped.opening, gold_wrapped.closing):
            return False
        return _pairwise(list(pred_wrapped.items), list(gold_wrapped.items), item_verdict)
    pred_matrix, gold_matrix = matrix_cells(pred), matrix_cells(gold)
    if pred_matrix and gold_matrix:
        if [len(row) for row in pred_matrix] != [len(row) for row in gold_matrix]:
            return False
        return _pairwise(sum(pred_matrix, []), sum(gold_matrix, []), item_verdict)
    pred_values, gold_values = closed_form_values(pred), closed_form_values(gold)
    if pred_values is not None and gold_values is not None and max(len(pred_values), len(gold_values)) > 1:
        pred_set, gold_set = _distinct(pred_values), _distinct(gold_values)
        if len(pred_set) != len(gold_set) or not all(map(_close, pred_set, gold_set)):
            return False
        return None
    pred_structured, gold_structured = _structured(pred), _structured(gold)
    if (pred_structured and not gold_structured and is_scalar(gold)) or (
        gold_structured and not pred_structured and is_scalar(pred)
    ):
        return False
    return None


def _structured(text: str) -> bool:
    """A tuple, interval, union, matrix or list: never equal to a single expression."""
    return bool(
        wrapped(text) or matrix_cells(text) or "\\cup" in text or len(split_top_level(text)) >= 2
    )

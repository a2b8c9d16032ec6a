"""The fast path: cheap rules that settle most comparisons without sympy.

``fast_verdict`` tries, in order: choice letters, equal canonical strings,
numerals in a base, plain numbers under the benchmark's ``NumericPolicy``,
bare lists of numbers, one-variable inequalities against intervals, shapes and
entries of tuples, intervals, matrices and lists (``structure``), an equation
against a value, plain words, and float probes of simple expressions
(``numeric``). It answers True/False when a rule decides and None when the
symbolic comparison is needed.
"""
from __future__ import annotations

import re

from eglr.grading.fast.numeric import clearly_different
from eglr.grading.fast.structure import compare_structures, inequality_interval, is_interval_set
from eglr.grading.normalize import RELATION, NormalizedAnswer
from eglr.grading.numbers import INTEGER, half_unit_in_last_place, parse_number
from eglr.grading.policy import NumericPolicy

# Tuples of tuples are compared entry by entry down to this depth.
MAX_STRUCTURE_DEPTH = 3

_PLAIN_WORDS = re.compile(r"^[A-Za-z][A-Za-z ]{2,}$")
_BASE_NUMERAL = re.compile(r"^([0-9A-Za-z]+)_\{?(\d{1,2})\}?$")
_LIST_BRACKETS = re.compile(r"[()\[\]{}]|\\[{}]")
_LETTER = re.compile(r"^[A-E]$")


def _plain(text: str) -> NormalizedAnswer:
    return NormalizedAnswer(text, text)


def _choices_match(pred: NormalizedAnswer, gold: NormalizedAnswer) -> bool | None:
    """``(C) Plane`` against ``C`` or ``(C)``: the letters decide. None unless a letter meets a letter."""
    if pred.choice is None and gold.choice is None:
        return None
    pred_letter = pred.choice or (pred.text if _LETTER.match(pred.text) else None)
    gold_letter = gold.choice or (gold.text if _LETTER.match(gold.text) else None)
    if pred_letter is None or gold_letter is None:
        return None
    return pred_letter == gold_letter


def _numbers_match(pred: NormalizedAnswer, gold: NormalizedAnswer, policy: NumericPolicy) -> bool | None:
    """Whether two plain numbers are equal under ``policy``; None if either is not one.

    ``28%`` also equals ``0.28`` when either side carried the percent sign.
    """
    pred_value, gold_value = parse_number(pred.text), parse_number(gold.text)
    if pred_value is None or gold_value is None:
        return None
    both_integers = bool(INTEGER.match(pred.text) and INTEGER.match(gold.text))
    half_unit = half_unit_in_last_place(gold.text) if policy.significant_figures else None
    if policy.close(pred_value, gold_value, both_integers, half_unit):
        return True
    if gold.percent and policy.close(pred_value, gold_value / 100):
        return True
    return pred.percent and policy.close(pred_value / 100, gold_value)


def _lists_match(pred: NormalizedAnswer, gold: NormalizedAnswer, policy: NumericPolicy) -> bool | None:
    """Compare bare lists of plain numbers (``1,2,3``) as sets; None if not such lists."""
    if "," not in pred.text or "," not in gold.text:
        return None
    if _LIST_BRACKETS.search(pred.text) or _LIST_BRACKETS.search(gold.text):
        return None
    pred_values = [parse_number(item) for item in pred.text.split(",")]
    gold_values = [parse_number(item) for item in gold.text.split(",")]
    if None in pred_values or None in gold_values:
        return None
    pred_set, gold_set = sorted(set(pred_values)), sorted(set(gold_values))
    if len(pred_set) != len(gold_set):
        return False
    return all(policy.close(p, g) for p, g in zip(pred_set, gold_set))


def _base_numerals_match(pred: NormalizedAnswer, gold: NormalizedAnswer) -> bool | None:
    """``52_8`` (a numeral in base 8): same digits and base; a bare ``52`` counts.

    math-verify drops the subscript and would accept ``52_9`` for ``52_8``.
    """
    pred_match, gold_match = _BASE_NUMERAL.match(pred.text), _BASE_NUMERAL.match(gold.text)
    if pred_match is None and gold_match is None:
        return None
    pred_digits, pred_base = (pred_match.group(1), pred_match.group(2)) if pred_match else (pred.text, None)
    gold_digits, gold_base = (gold_match.group(1), gold_match.group(2)) if gold_match else (gold.text, None)
    if pred_base is not None and gold_base is not None and int(pred_base) != int(gold_base):
        return False
    return pred_digits.lower() == gold_digits.lower()


def _inequality_against_interval(
    pred: NormalizedAnswer, gold: NormalizedAnswer, policy: NumericPolicy, depth: int
) -> bool | None:
    """``-2 \\le x \\le 7`` against ``[-2,7]`` (or another inequality in ``x``): as intervals."""
    pred_interval, gold_interval = inequality_interval(pred.text), inequality_interval(gold.text)
    if pred_interval is None and gold_interval is None:
        return None
    if pred_interval is not None and gold_interval is not None:
        if pred_interval[0] != gold_interval[0]:
            return None
        return fast_verdict(_plain(pred_interval[1]), _plain(gold_interval[1]), policy, depth + 1)
    if pred_interval is not None and is_interval_set(gold.text):
        return fast_verdict(_plain(pred_interval[1]), gold, policy, depth + 1)
    if gold_interval is not None and is_interval_set(pred.text):
        return fast_verdict(pred, _plain(gold_interval[1]), policy, depth + 1)
    return None


def _equation_sides(text: str) -> tuple[str, str] | None:
    """``lhs = rhs`` when ``text`` is one equation (no other relation, no list)."""
    if RELATION.findall(text) != ["="] or "," in text:
        return None
    left, right = text.split("=")
    return (left, right) if left and right else None


def _equation_against_value(
    pred: NormalizedAnswer, gold: NormalizedAnswer, policy: NumericPolicy, depth: int
) -> bool | None:
    """A predicted equation ``lhs = rhs`` against a gold value: wrong if ``rhs`` is.

    math-verify compares such a prediction by its right side, so a right side
    the fast path rejects settles it; anything else is left undecided.
    """
    sides = _equation_sides(pred.expression)
    if sides is None or RELATION.search(gold.expression):
        return None
    return False if fast_verdict(_plain(sides[1]), gold, policy, depth + 1) is False else None


def fast_verdict(pred: NormalizedAnswer, gold: NormalizedAnswer, policy: NumericPolicy, depth: int = 0) -> bool | None:
    """True/False when cheap rules decide, None when symbolic work is needed."""
    verdict = _choices_match(pred, gold)
    if verdict is not None:
        return verdict
    if pred.text == gold.text:
        return bool(pred.text)
    verdict = _base_numerals_match(pred, gold)
    if verdict is None:
        verdict = _numbers_match(pred, gold, policy)
    if verdict is None:
        verdict = _lists_match(pred, gold, policy)
    if verdict is not None:
        return verdict
    if depth < MAX_STRUCTURE_DEPTH:
        verdict = _inequality_against_interval(pred, gold, policy, depth)
        if verdict is None:
            verdict = compare_structures(
                pred.text, gold.text, lambda p, g: fast_verdict(_plain(p), _plain(g), policy, depth + 1)
            )
        if verdict is None:
            verdict = _equation_against_value(pred, gold, policy, depth)
        if verdict is not None:
            return verdict
    if _PLAIN_WORDS.match(pred.text) and _PLAIN_WORDS.match(gold.text):
        return pred.text.lower() == gold.text.lower()
    if not (pred.percent or gold.percent) and clearly_different(pred.text, gold.text, policy.rel_tol):
        return False
    return None

"""Table-driven checks of ``is_equiv`` and ``answer_key`` (cases in grading_cases.py)."""
from __future__ import annotations

import pytest

from eglr.grading import answer_key, is_equiv
from grading_cases import CASES, all_cases

TIMEOUT_S = 10.0


def test_table_is_large_and_two_sided():
    cases = all_cases()
    assert len(cases) >= 150
    for group, group_cases in CASES.items():
        verdicts = {expected for _, _, expected, _ in group_cases}
        assert verdicts == {True, False}, f"group {group!r} needs equal and unequal cases"


@pytest.mark.parametrize("case", [case for _, case in all_cases()], ids=[name for name, _ in all_cases()])
def test_is_equiv(case):
    pred, gold, expected, benchmark = case
    assert is_equiv(pred, gold, benchmark=benchmark, timeout_s=TIMEOUT_S) is expected


@pytest.mark.parametrize(
    "answers",
    [
        ("016", "16", "16.0", "\\text{16}", "$16$", "\\boxed{16}", "\\frac{32}{2}"),
        ("\\frac{1}{2}", "\\dfrac12", "0.5", "1/2", ".5"),
        ("1000", "1,000", "1{,}000", "1000.0"),
        ("90", "90^\\circ", "90^{\\circ}"),
        ("(3,\\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\dfrac{\\pi}{2})"),
        ("C", "(C)", "\\text{(C)}"),
    ],
)
def test_answer_key_groups_spellings_of_one_answer(answers):
    assert len({answer_key(answer) for answer in answers}) == 1


@pytest.mark.parametrize(
    "first, second",
    [("16", "61"), ("\\frac{1}{2}", "\\frac{1}{3}"), ("(1,2)", "(2,1)"), ("x+1", "x-1"), ("1,000", "1,001")],
)
def test_answer_key_separates_different_answers(first, second):
    assert answer_key(first) != answer_key(second)


def test_answer_key_of_no_answer_is_empty():
    assert answer_key(None) == ""
    assert answer_key("5") != ""


def test_gold_may_be_a_number():
    assert is_equiv("27", 27.0)
    assert is_equiv("70", 70)
    assert not is_equiv("71", 70)


@pytest.mark.parametrize("gold", ["", "   "])
def test_empty_gold_is_rejected(gold):
    with pytest.raises(ValueError, match="empty"):
        is_equiv("5", gold)


def test_non_string_prediction_is_rejected():
    with pytest.raises(TypeError, match="pred must be a str"):
        is_equiv(5, "5")  # type: ignore[arg-type]

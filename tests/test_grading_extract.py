"""Final-answer extraction from model responses."""
from __future__ import annotations

import pytest

from eglr.grading import extract_answer
from eglr.grading.extract import last_boxed


@pytest.mark.parametrize(
    "response, benchmark, expected",
    [
        ("so the answer is \\boxed{5}.", None, "5"),
        ("first \\boxed{3}, then finally \\boxed{\\frac{1}{2}}", None, "\\frac{1}{2}"),
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", None, "\\frac{\\sqrt{3}}{2}"),
        ("\\fbox{7}", None, "7"),
        ("$\\framebox{204}$ minutes", None, "204"),
        ("The answer is $\\boxed 5$.", None, "5"),
        ("\\boxed{\\boxed{8}}", None, "8"),
        ("\\boxed{1} and \\boxed{2}", None, "1, 2"),
        ("$\\boxed{(1, 2)}$, $\\boxed{(2, 1)}$", None, "(1, 2), (2, 1)"),
        ("\\boxed{3} is wrong, let me redo it. The result is \\boxed{4}", None, "4"),
        ("\\boxed{5} ... \\boxed{7", None, "5"),
        ("We get \\boxed{12}. Final Answer: The final answer is $13$. I hope it is correct.", None, "13"),
        ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "minerva_math", "\\frac{3}{4}"),
        ("Therefore the final answer is 42.", None, "42"),
        ("Answer: 3.5.", None, "3.5"),
        ("The largest possible value. Final answer: The largest $n$ is 34.", None, "34"),
        ("So Janet makes **18** dollars.", "gsm8k", "18"),
        ("Step 1 ... the total is **$1,250**", None, "$1,250"),
        ("thus $x = 7$", None, "x = 7"),
        ("we get \\(\\frac{2}{3}\\) as the probability", None, "\\frac{2}{3}"),
        ("She pays 16 - 3 = 13.\n#### 13", "gsm8k", "13"),
        ("#### Step 2\nwe find 12 apples, so 12 + 5 = 17 apples", "gsm8k", "17"),
        ("It costs 1,250 dollars in total", "gsm8k", "1,250"),
        ("3 + 4 = 7 and then 7 * 2 = 14", "arith", "14"),
        ("3 + 4 = 7 and then 7 * 2 = 14 in the end", "math500", None),
        ("\\frac{10}{9}", "math500", "\\frac{10}{9}"),
        ("28 percent", None, "28 percent"),
        ("", None, None),
        ("I do not know how to solve this problem, sorry about that.", "math500", None),
    ],
)
def test_extract_answer(response, benchmark, expected):
    assert extract_answer(response, benchmark) == expected


def test_last_boxed_keeps_nested_braces():
    assert last_boxed("\\boxed{\\left\\{ 1, \\frac{2}{3} \\right\\}}") == "\\left\\{ 1, \\frac{2}{3} \\right\\}"


def test_last_boxed_does_not_join_boxes_separated_by_prose():
    assert last_boxed("\\boxed{1} because of the parity argument \\boxed{2}") == "2"
    assert last_boxed("\\boxed{1} and \\boxed{2}", join_adjacent=False) == "2"


def test_unbalanced_last_box_falls_back_to_previous_box():
    assert last_boxed("\\boxed{\\frac{1}{2}} but wait \\boxed{\\frac{3}{") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{\\frac{3}{") is None


def test_non_string_response_is_rejected():
    with pytest.raises(TypeError, match="response must be a str"):
        extract_answer(42)  # type: ignore[arg-type]


def test_blank_response_states_no_answer() -> None:
    from eglr.grading import extract_answer, grade

    assert extract_answer("\n\n \t\n", "math500") is None
    result = grade("\n\n\n", "p - q", benchmark="math500")
    assert result.extracted is None and not result.correct and result.reason == "no_answer"

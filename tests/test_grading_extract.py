"""Final-answer extraction from model responses."""
from __future__ import annotations

import pytest

from eglr.grading import extract_answer, grade
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


# (response, benchmark, gold, correct): each rule of eglr.grading.extract, in both directions.
GRADED_RESPONSES = {
    "bold_after_final_answer": [
        ("... so 18 in all.\n**Final Answer:** **18**", "gsm8k", "18", True),
        ("... so 18 in all.\n**Final Answer: 18**", "gsm8k", "18", True),
        ("... so 18 in all.\n**Final Answer**: $\\frac{3}{4}$", "math500", "\\frac34", True),
        ("... so 18 in all.\nFinal Answer: **18 dollars**", "gsm8k", "18", True),
        ("... we had 18 before.\n**Final Answer:** **17**", "gsm8k", "18", False),
        ("... so 18 in all.\n**Final Answer: 17**", "gsm8k", "18", False),
    ],
    "word_answers_in_bold": [
        ("Comparing the three distances, **Evelyn** ran the farthest.", "math500", "\\text{Evelyn}", True),
        ("Comparing the three distances, **Evelyn** ran the farthest.", "math500", "\\text{Briana}", False),
        ("**Step 1: compare.** Evelyn wins. The winner is **Evelyn**.", None, "Evelyn", True),
    ],
    "several_boxes_for_several_answers": [
        ("So $n = \\boxed{1}$ and $n = \\boxed{-2}$.", "math500", "1,-2", True),
        ("So $n = \\boxed{1}$ and $n = \\boxed{-2}$.", "math500", "1", False),
        ("She uses \\boxed{1} paper and \\boxed{2} bins.", "math500", "1,2", True),
        ("$$\\boxed{(3, 3)} \\text{ for part (a) and } \\boxed{(1, 1)}$$", "olympiadbench", "(3,3),(1,1)", True),
        ("$$\\boxed{(3, 3)} \\text{ for part (a) and } \\boxed{(1, 1)}$$", "olympiadbench", "(1,1)", False),
        ("First \\boxed{1}, so thus but then \\boxed{2} and \\boxed{3}", "math500", "2,3", True),
        ("First \\boxed{1}, so thus but then \\boxed{2} and \\boxed{3}", "math500", "1,2,3", False),
        ("\\boxed{3} is wrong. The result is \\boxed{4}", "math500", "4", True),
    ],
    "box_then_another_value_in_the_last_sentence": [
        ("Hence the total is \\boxed{12}. That is 3 more than the 9 we started with.", "gsm8k", "12", True),
        ("Hence the total is \\boxed{12}. That is 3 more than the 9 we started with.", "gsm8k", "9", False),
        ("Hence $x = \\boxed{5}$, and then $x^2 = 25$.", "math500", "5", True),
        ("Hence $x = \\boxed{5}$, and then $x^2 = 25$.", "math500", "25", False),
        ("We get \\boxed{12}.\nFinal Answer: The final answer is $13$.", "math500", "13", True),
        ("We get \\boxed{12}.\nFinal Answer: The final answer is $13$.", "math500", "12", False),
    ],
    "adjacent_math_spans": [
        ("The solutions are $1$ and $2$ and $3$.", None, "1,2,3", True),
        ("The solutions are $21,16$ or $11$.", None, "11,16,21", True),
        ("The solutions are $1$ and $2$ and $3$.", None, "3", False),
        ("We used $x$ twice, so the value is $3$.", None, "3", True),
    ],
    "currency_is_not_a_math_delimiter": [
        ("She makes $18 every day. But she spends $2 on food, so she keeps 16.", "gsm8k", "16", True),
        ("She makes $18 every day. But she spends $2 on food, so she keeps 16.", "gsm8k", "18", False),
        ("She makes $18 every day. But she spends $2 on food.", "gsm8k", "2", True),
        ("She makes $18 every day. But she spends $2 on food.", "gsm8k", "18", False),
    ],
}


def _graded_cases():
    return [
        pytest.param(*case, id=f"{group}-{index}")
        for group, cases in GRADED_RESPONSES.items()
        for index, case in enumerate(cases)
    ]


def test_graded_tables_are_two_sided():
    for group, cases in GRADED_RESPONSES.items():
        assert {correct for *_, correct in cases} == {True, False}, group


@pytest.mark.parametrize("response, benchmark, gold, correct", _graded_cases())
def test_extraction_rules_decide_the_verdict(response, benchmark, gold, correct):
    result = grade(response, gold, benchmark, timeout_s=10)
    assert result.correct is correct, result


def test_benchmark_may_be_a_name_a_spec_or_a_policy():
    from eglr.benchmarks import get_benchmark
    from eglr.grading import AnswerFormat, GradingPolicy

    response = "It costs 1,250 dollars in total"
    assert extract_answer(response, "gsm8k") == "1,250"
    assert extract_answer(response, get_benchmark("gsm8k")) == "1,250"
    assert extract_answer(response, GradingPolicy(AnswerFormat.NUMBER)) == "1,250"
    assert extract_answer(response, GradingPolicy(AnswerFormat.EXPRESSION)) is None
    with pytest.raises(ValueError, match="unknown benchmark 'gsm9k'"):
        extract_answer(response, "gsm9k")
    with pytest.raises(TypeError, match="benchmark must be"):
        extract_answer(response, 3)  # type: ignore[arg-type]

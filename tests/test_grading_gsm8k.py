"""GSM8K responses without a box: the final stated amount decides the verdict.

Every response below has the same reasoning, which states other amounts
(money among them) before its final sentence; only the final sentence
changes: its phrasing, and how the amount is written (bare, with a currency
sign, with a unit or count word, in a math span, with thousands separators).
Each response is graded against its final amount (must be correct) and
against an amount the reasoning states earlier (must be wrong), so neither
an earlier amount nor a currency sign read as a math delimiter can decide.
"""
from __future__ import annotations

import itertools

import pytest

from eglr.grading import extract_answer, grade

REASONING = (
    "Janet's ducks lay 16 eggs per day. She eats 3 for breakfast every morning and bakes muffins "
    "with 4. She sells the rest at the farmers' market for $2 per egg, so she makes $18 every day. "
    "But she spends $5 on feed, and her neighbour pays her 7 dollars for the muffins."
)
EARLIER_AMOUNTS = ("18", "5", "7", "2")

# How the final amount is written; ``{n}`` is the number.
RENDERINGS = (
    "{n}",
    "${n}",
    "\\${n}",
    "{n} dollars",
    "${n}.00",
    "{n} eggs",
    "{n} gold coins",
    "{n} miles per hour",
    "$\\${n}$",
    "${n}$ dollars",
)
# Final sentences; ``{a}`` is the rendered amount.
FINAL_SENTENCES = (
    "So she has {a} left.",
    "Therefore, Janet keeps {a} every day.",
    "In total: 18 + 7 - 5 = {a}.",
    "She ends up with {a} after paying for the feed.\nI hope it is correct.",
    "She saves {a} in 4 weeks.",
    "The answer is {a}.",
    "Answer: {a}",
    "**Final Answer:** {a}",
    "Final Answer: **{a}**",
    "**Final Answer: {a}**",
    "Janet makes **{a}** a day.",
    "#### {a}",
)
FINAL_AMOUNTS = ("13", "1,250", "-3")


def _cases() -> list[tuple[str, str]]:
    cases = []
    for sentence, rendering, number in itertools.product(FINAL_SENTENCES, RENDERINGS, FINAL_AMOUNTS):
        if number.startswith("-") and "$" in rendering:
            continue  # "$-3" is not how an amount of money is written
        cases.append((f"{REASONING} {sentence.format(a=rendering.format(n=number))}", number.replace(",", "")))
    return cases


CASES = _cases()


def test_cases_cover_the_phrasings():
    assert len(CASES) >= len(FINAL_SENTENCES) * len(RENDERINGS) * 2
    assert len({response for response, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("response, final_amount", CASES)
def test_final_stated_amount_is_graded_correct(response, final_amount):
    result = grade(response, final_amount, "gsm8k")
    assert result.correct, result


@pytest.mark.parametrize("response, final_amount", CASES)
def test_earlier_amounts_are_graded_wrong(response, final_amount):
    for earlier in EARLIER_AMOUNTS:
        result = grade(response, earlier, "gsm8k")
        assert not result.correct, (earlier, result)


@pytest.mark.parametrize(
    "response, expected",
    [
        # Currency signs are not math delimiters: the final amount, not the span "18 every day. But she spends ".
        ("She makes $18 every day. But she spends $2 on food, so she keeps 16.", "16"),
        ("It costs $5, $10 and $15 in turn, so the last one is $15.", "15"),
        # A real math span after currency signs is still read.
        ("She pays $3 and then $4, so she pays $3 + 4 = 7$ in all.", "7"),
        # A trailing time span yields to the amount before it; a leading one does not.
        ("She saves 52 dollars in 4 weeks.", "52"),
        ("After 3 days, she has 12 eggs.", "12"),
        ("He reads 30 pages for 2 hours.", "30"),
        # An equation is read as its result.
        ("She makes $9 \\times 2 = 18$ dollars.", "18"),
        # A boxed answer wins over an amount restated after it (see eglr.grading.extract).
        ("So she keeps \\boxed{13}. That is 2 more than the 11 she kept yesterday.", "13"),
        # ... but a later "final answer" marker wins over the box.
        ("So she keeps \\boxed{11}. Wait, I forgot the feed. Final answer: 13", "13"),
        ("So she keeps \\boxed{11}.\n#### 13", "13"),
        # Markdown headings are not answers.
        ("**Step 2:** She sells 9 eggs.\n**Step 3:** 9 * 2 = 18", "18"),
    ],
)
def test_extraction_of_unboxed_responses(response, expected):
    assert extract_answer(response, "gsm8k") == expected

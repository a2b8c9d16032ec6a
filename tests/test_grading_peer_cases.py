"""Our verdicts on the answer pairs that public graders' test suites assert.

The 366 cases are read at test time from shared/data/grader_peer_cases (see
its README); they are not copied into this repository. Where a harness
extracts answers from both sides (Math-Verify, lighteval), so do we: the gold
through ``extract_answer`` and the prediction through ``grade``. Otherwise both
sides are already answers and go to ``is_equiv``.

Out of scope: the 15 multiple-choice letter rows (``category``), since no
benchmark of this study is multiple choice. Every other disagreement is listed
in ALLOWED_DISAGREEMENTS with its reason; the test fails on any other one, and
on any listed case that we now agree with (so the list stays exact).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eglr.grading import extract_answer, grade, is_equiv

CASES_PATH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "grader_peer_cases" / "cases.jsonl"
TIMEOUT_S = 5.0
EXPECTED_CASES = 366

_DECIMAL_COMMA = "a decimal comma reads as a list separator here (ambiguous in English answers)"
_PRECISION = "upstream lowers the float precision (2-4 digits); we require 6 significant digits"
_SPREAD = "the answer is spread over boxes or math spans separated by prose; we read the final one"
_NO_MARKER = "prose conclusion with no answer marker; Math-Verify's whole-text parse finds the number"
_FOREIGN_ANCHOR = "answer introduced by a non-English anchor word (Réponse, 答案) that we do not look for"

ALLOWED_DISAGREEMENTS: dict[int, str] = {
    5: _DECIMAL_COMMA,
    6: _DECIMAL_COMMA,
    7: _DECIMAL_COMMA,
    15: _DECIMAL_COMMA,
    28: "newlines inside $...$: Math-Verify's regex rejects it, we accept the 9",
    29: "newlines inside \\(...\\): Math-Verify's regex rejects it, we accept the 9",
    127: _PRECISION,
    133: _PRECISION,
    185: _PRECISION,
    364: _PRECISION,
    136: _NO_MARKER,
    157: _NO_MARKER,
    180: "needs allow_set_relation_comp=True (non-default); by default a set gold rejects a relation",
    186: _SPREAD,
    206: _SPREAD,
    212: _SPREAD,
    231: _SPREAD,
    241: _SPREAD,
    243: _SPREAD,
    246: "needs strict=False (non-default): f(x) and f(y) are different answers to us",
    256: "label_questionable upstream: 1 - 1/e is not 1 + 1/e",
    287: _FOREIGN_ANCHOR,
    289: _FOREIGN_ANCHOR,
    298: "malformed delimiters ('$? just about 1$'): the math span holds no answer",
    299: "Math-Verify itself fails it: semicolon-separated groups of assignments",
    303: "hendrycks compares strings; an unordered list of solutions is equal to us in any order",
    310: "hendrycks compares strings; an unordered list of solutions is equal to us in any order",
}


@pytest.fixture(scope="module")
def peer_cases() -> list[dict]:
    if not CASES_PATH.is_file():
        pytest.skip(f"peer cases {CASES_PATH} are absent (shared data not mounted)")
    with CASES_PATH.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def our_verdict(case: dict) -> bool:
    gold, pred = case["gold"], case["pred"]
    if pred is None:
        return False
    if case["grader_extracts_answer"]:
        extracted_gold = extract_answer(str(gold)) or str(gold)
        return grade(str(pred), extracted_gold, timeout_s=TIMEOUT_S).correct
    return is_equiv(str(pred), gold, timeout_s=TIMEOUT_S)


def test_agrees_with_peer_graders_except_listed_cases(peer_cases):
    assert len(peer_cases) == EXPECTED_CASES
    disagreements, newly_agreeing = {}, []
    in_scope = [(index, case) for index, case in enumerate(peer_cases) if "category" not in case]
    for index, case in in_scope:
        agrees = our_verdict(case) == case["equal"]
        if not agrees and index not in ALLOWED_DISAGREEMENTS:
            disagreements[index] = (case["equal"], str(case["gold"])[:80], str(case["pred"])[:80])
        if agrees and index in ALLOWED_DISAGREEMENTS:
            newly_agreeing.append(index)
    assert disagreements == {}
    assert newly_agreeing == [], "remove these from ALLOWED_DISAGREEMENTS"
    agreement = 1 - len(ALLOWED_DISAGREEMENTS) / len(in_scope)
    print(f"agreement with peer graders: {agreement:.1%} of {len(in_scope)} in-scope cases")
    assert len(in_scope) == EXPECTED_CASES - 15


def test_allow_list_is_small_and_every_reason_given():
    assert len(ALLOWED_DISAGREEMENTS) <= 30
    assert all(reason.strip() for reason in ALLOWED_DISAGREEMENTS.values())

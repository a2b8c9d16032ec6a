"""Reference solutions graded against their own gold answers, and against others'.

Every MATH-500, GSM8K and Minerva reference solution must be graded correct
against its own gold. Paired with another problem's gold (a fixed random
derangement), each must be graded incorrect, except where the two golds are
themselves mathematically equal: both our ``is_equiv`` and plain math-verify
accept them, in both directions. Those pairs are counted and skipped.
"""
from __future__ import annotations

import random

import pytest
from math_verify import parse, verify

from eglr.benchmarks import load_benchmark, local_path
from eglr.grading import grade_many, is_equiv

TIMEOUT_S = 3.0
EXPECTED_ROWS = {"math500": 500, "gsm8k": 1319, "minerva_math": 272}


def _require_local(name: str) -> None:
    if not local_path(name).is_file():
        pytest.skip(f"local benchmark file {local_path(name)} is absent (shared data not mounted)")


def derangement(size: int, seed: int = 2024) -> list[int]:
    """A permutation without fixed points (Sattolo's algorithm: one random cycle)."""
    rng = random.Random(seed)
    order = list(range(size))
    for index in range(size - 1, 0, -1):
        other = rng.randrange(index)
        order[index], order[other] = order[other], order[index]
    return order


def _math_verify_equal(first: str, second: str) -> bool:
    first_parsed, second_parsed = parse(f"${first}$"), parse(f"${second}$")
    return verify(first_parsed, second_parsed) and verify(second_parsed, first_parsed)


def golds_equal(first: str, second: str, benchmark: str) -> bool:
    """Equal under our grader and under plain math-verify, both ways round."""
    ours = is_equiv(first, second, benchmark, TIMEOUT_S) and is_equiv(second, first, benchmark, TIMEOUT_S)
    return ours and _math_verify_equal(first, second)


def test_derangement_has_no_fixed_points():
    order = derangement(500)
    assert sorted(order) == list(range(500))
    assert all(index != target for index, target in enumerate(order))
    assert order == derangement(500)


@pytest.mark.parametrize("name", list(EXPECTED_ROWS))
def test_reference_solutions_match_their_gold_and_no_other(name):
    _require_local(name)
    problems = load_benchmark(name)
    assert len(problems) == EXPECTED_ROWS[name]
    solutions = [problem.metadata["solution"] for problem in problems]
    golds = [problem.answer for problem in problems]

    own = grade_many(solutions, golds, name, timeout_s=TIMEOUT_S)
    wrong_own = [(problem.id, problem.answer, result) for problem, result in zip(problems, own) if not result.correct]
    assert wrong_own == []

    order = derangement(len(problems))
    swapped = grade_many(solutions, [golds[target] for target in order], name, timeout_s=TIMEOUT_S)
    skipped, false_positives = 0, []
    for index, result in enumerate(swapped):
        if not result.correct:
            continue
        if golds_equal(golds[index], golds[order[index]], name):
            skipped += 1
        else:
            false_positives.append((problems[index].id, golds[index], golds[order[index]], result))
    print(f"{name}: {skipped} of {len(problems)} swapped pairs skipped (golds equal)")
    assert false_positives == []
    assert skipped <= len(problems) // 50

"""The cheap rules in front of the symbolic worker: evaluator, shapes, guard."""
from __future__ import annotations

import cmath
import logging
import random
import time

import pytest
from math_verify import parse, verify

from eglr.benchmarks import load_benchmark, local_path
from eglr.grading import NumericPolicy
from eglr.grading.extract import split_top_level
from eglr.grading.fast import fast_verdict
from eglr.grading.fast.numeric import Unsupported, clearly_different, evaluate, variables
from eglr.grading.fast.structure import closed_form_values, compare_structures, matrix_cells, wrapped
from eglr.grading.normalize import normalize_answer
from eglr.grading.slow.guard import too_complex


@pytest.mark.parametrize(
    "text, point, value",
    [
        ("2\\sqrt{3}", {}, 2 * 3**0.5),
        ("\\frac{14}{3}", {}, 14 / 3),
        ("\\frac{9}{4}\\pi", {}, 9 / 4 * cmath.pi),
        ("\\sqrt[3]{8}", {}, 2),
        ("x^23", {"x": 2.0}, 12),  # LaTeX: x^2 times 3
        ("x^{23}", {"x": 2.0}, 2**23),
        ("2\\frac{1}{4}", {}, 2.25),  # a mixed number
        ("2\\frac{\\pi}{4}", {}, cmath.pi / 2),  # a product
        ("6-5i", {}, 6 - 5j),
        ("\\sqrt{-4}", {}, 2j),
        ("(x+1)(x-1)", {"x": 3.0}, 8),
        ("-\\frac{1}{2}\\cdot 4", {}, -2),
        ("\\sin(\\pi/2)+e^0", {}, 2),
    ],
)
def test_evaluate(text, point, value):
    assert evaluate(text, point) == pytest.approx(value)


@pytest.mark.parametrize(
    "text",
    [
        "1,2", "\\pm 2", "(-8)^{1/3}", "\\sqrt[3]{-8}", "10^{10^{10}}", "\\frac{1}{0}", "x \\le 1", "\\infty",
        "5!", "|x|", "2" * 400,
    ],
)
def test_evaluate_refuses_what_it_does_not_cover(text):
    started = time.perf_counter()
    with pytest.raises(Unsupported):
        evaluate(text, {})
    assert time.perf_counter() - started < 0.1


def test_variables_exclude_constants():
    assert variables("e^{i\\pi x} + y + \\omega_{n} + v_0") == frozenset({"x", "y", "\\omega_{n}", "v_0"})


@pytest.mark.parametrize(
    "first, second, expected",
    [
        ("3\\sqrt{13}", "\\frac{14}{3}", True),
        ("x^3+3x-6", "x^3+3x-5", True),
        ("2n+1", "2m+1", True),
        ("(x+1)^2", "x^2+2x+1", False),
        ("\\sqrt{12}", "2\\sqrt{3}", False),
        ("0.866025", "\\frac{\\sqrt{3}}{2}", True),
        ("(3,4)", "5", None),
        ("1\\pm\\sqrt{2}", "3", None),
    ],
)
def test_clearly_different(first, second, expected):
    assert clearly_different(first, second) is expected


def test_clearly_different_leaves_near_values_to_the_exact_comparison():
    assert clearly_different("0.866025", "\\frac{\\sqrt{3}}{2}", rel_tol=1e-6) is False


def test_split_and_wrap():
    assert split_top_level("(1,2),\\{3,4\\},[5,6)") == ["(1,2)", "\\{3,4\\}", "[5,6)"]
    assert wrapped("(3,\\frac{\\pi}{2}]").items == ("3", "\\frac{\\pi}{2}")
    assert wrapped("(0,1)\\cup(2,3)") is None
    assert wrapped("(x+1)") is None
    assert matrix_cells("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}") == [["1", "2"], ["3", "4"]]
    assert matrix_cells("\\begin{pmatrix}1\\end{pmatrix}+\\begin{pmatrix}2\\end{pmatrix}") is None
    assert closed_form_values("1\\pm\\sqrt{4}") == [3, -1]
    assert closed_form_values("(1,2)") is None


def _exact(first: str, second: str) -> bool | None:
    return True if first == second else None


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("(1,2,3)", "(1,2)", False),
        ("[0,1)", "(0,1)", False),
        ("(1,2)", "(1,2)", True),
        ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1&2\\end{pmatrix}", False),
        ("1,-2", "3", False),
        ("2021", "\\pm 2021", False),
        ("2,-2", "\\pm 2", None),
        ("2, 2", "2", None),
        ("5", "(2,4)", False),
        ("5", "(0,1)\\cup(2,3)", False),
        ("\\{1,2\\}", "(1,2)", None),
    ],
)
def test_compare_structures(pred, gold, expected):
    assert compare_structures(pred, gold, _exact) is expected


@pytest.mark.parametrize(
    "expression",
    ["10^{10^{10^{10}}}", "3^{3^{3^{3}}}", "10^{1000000}", "100000!", "(123456789)!", "\\binom{100000}{50000}",
     "{" * 20 + "1" + "}" * 20, "\\sin(" * 8 + "x" + ")" * 8, " & ".join("1" * 70)],
)
def test_guard_refuses_explosive_answers(expression):
    assert too_complex(expression)


def test_guard_accepts_every_real_gold():
    for name in ("math500", "olympiadbench", "minerva_math"):
        if not local_path(name).is_file():
            pytest.skip(f"local benchmark file {local_path(name)} is absent (shared data not mounted)")
        for problem in load_benchmark(name):
            assert too_complex(normalize_answer(problem.answer).expression) is None, problem.answer


def test_fast_verdicts_agree_with_math_verify_on_random_gold_pairs():
    """Wherever the fast path decides a pair of real golds, plain math-verify agrees."""
    if not local_path("math500").is_file() or not local_path("olympiadbench").is_file():
        pytest.skip("local benchmark files are absent (shared data not mounted)")
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    golds = [problem.answer for name in ("math500", "olympiadbench") for problem in load_benchmark(name)]
    rng = random.Random(7)
    decided, disagreements = 0, []
    for _ in range(400):
        pred, gold = rng.choice(golds), rng.choice(golds)
        verdict = fast_verdict(normalize_answer(pred), normalize_answer(gold), NumericPolicy())
        if verdict is None:
            continue
        decided += 1
        if verdict != verify(parse(f"${gold}$"), parse(f"${pred}$")):
            disagreements.append((pred, gold, verdict))
    assert decided >= 300
    assert disagreements == []

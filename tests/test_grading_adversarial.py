"""1000 adversarial responses: the grader answers each one, within its time bound.

The responses come from a seeded generator: deep nesting, power towers, huge
factorials, unbalanced braces, megabyte strings, random unicode and LaTeX
soup. None may raise, and none may take longer than the time bound plus a
small allowance for the parent's own (linear-time) extraction work.
"""
from __future__ import annotations

import random
import time

import pytest

from eglr.grading import GradeResult, SymbolicWorker, grade

TIME_BOUND_S = 1.5
# Extraction and normalisation of a megabyte response run in this process.
PARENT_ALLOWANCE_S = 1.0
N_RESPONSES = 1000
GOLDS = ("5", "\\frac{1}{2}", "(1,2)", "x^2+1", "[0,1)", "\\text{Evelyn}", "2,3", "10^{10}")
LATEX_TOKENS = (
    "\\frac", "\\sqrt", "^", "_", "{", "}", "\\left(", "\\right)", "\\int", "\\sum", "\\lim", "\\infty",
    "\\pm", "x", "y", "2", "10", "!", "\\cdot", "+", "-", "=", "\\begin{pmatrix}", "\\end{pmatrix}",
    "&", "\\\\", "\\text{", "$", "\\boxed{", "(", ")", "[", "]", ",", "\\log", "e", "\\pi", "\\infty",
)


def _boxed(content: str) -> str:
    return f"Reasoning ... so the answer is \\boxed{{{content}}}."


def _deep_nesting(rng: random.Random) -> str:
    depth = rng.choice([50, 500, 5000, 50000])
    opener, closer = rng.choice([("{", "}"), ("(", ")"), ("\\sqrt{", "}"), ("\\frac{1}{", "}"), ("[", "]")])
    return _boxed(opener * depth + str(rng.randint(0, 9)) + closer * depth)


def _power_tower(rng: random.Random) -> str:
    height = rng.randint(3, 6)
    base = str(rng.randint(2, 99))
    return _boxed("^{".join([base] * height) + "}" * (height - 1))


def _huge_factorial(rng: random.Random) -> str:
    n = rng.choice([10**5, 10**6, 123456789, 10**12])
    forms = [f"{n}!", f"({n})!", f"\\frac{{{n}!}}{{{n - 1}!}}", f"{n}!!", f"\\binom{{{n}}}{{{n // 2}}}"]
    return _boxed(rng.choice(forms))


def _huge_power(rng: random.Random) -> str:
    return _boxed(f"{rng.randint(2, 10**6)}^{{{rng.randint(10**7, 10**12)}}}")


def _unbalanced(rng: random.Random) -> str:
    text = "".join(rng.choice("{}{{\\boxed{\\frac{1}{2") for _ in range(rng.randint(1, 400)))
    return f"so \\boxed{{{text}"


def _megabyte(rng: random.Random) -> str:
    size = rng.randint(500_000, 1_200_000)
    unit = rng.choice(["a", "$", "{", "\\boxed{", "**", "1,", "answer is ", " ", "\\(", "####"])
    text = (unit * (size // len(unit) + 1))[:size]
    return text + rng.choice(["", "\\boxed{5}", "The final answer is $5$.", "}" * 10])


def _random_unicode(rng: random.Random) -> str:
    length = rng.randint(0, 3000)
    return "".join(chr(rng.choice([rng.randint(0, 0x2FFF), rng.randint(0xE000, 0x10FFFF)])) for _ in range(length))


def _latex_soup(rng: random.Random) -> str:
    return _boxed(" ".join(rng.choice(LATEX_TOKENS) for _ in range(rng.randint(1, 300))))


def _long_number(rng: random.Random) -> str:
    digits = rng.choice([100, 5000, 50000, 500000])
    return _boxed(f"{rng.getrandbits(4 * digits):x}".translate(str.maketrans("abcdef", "012345"))[:digits])


def _many_boxes(rng: random.Random) -> str:
    return " and ".join(f"\\boxed{{{rng.randint(0, 9)}}}" for _ in range(rng.randint(10, 20000)))


def _huge_matrix(rng: random.Random) -> str:
    size = rng.randint(10, 60)
    rows = " \\\\ ".join(" & ".join(str(rng.randint(-9, 9)) for _ in range(size)) for _ in range(size))
    return _boxed(f"\\begin{{pmatrix}}{rows}\\end{{pmatrix}}")


def _nested_functions(rng: random.Random) -> str:
    depth = rng.randint(5, 30)
    function = rng.choice(["\\sin(", "\\exp(", "\\log(", "\\Gamma(", "\\tan(", "\\zeta("])
    return _boxed(function * depth + "x" + ")" * depth)


GENERATORS = (
    _deep_nesting, _power_tower, _huge_factorial, _huge_power, _unbalanced, _megabyte, _random_unicode,
    _latex_soup, _long_number, _many_boxes, _huge_matrix, _nested_functions,
)


def adversarial_responses(count: int, seed: int = 1234) -> list[str]:
    """``count`` adversarial responses, the same ones for the same seed."""
    rng = random.Random(seed)
    return [rng.choice(GENERATORS)(rng) for _ in range(count)]


def test_generator_is_deterministic_and_varied():
    first, second = adversarial_responses(50), adversarial_responses(50)
    assert first == second
    assert len(set(first)) > 40
    assert max(len(response) for response in adversarial_responses(200)) > 500_000


@pytest.fixture(scope="module")
def worker():
    symbolic_worker = SymbolicWorker()
    yield symbolic_worker
    symbolic_worker.close()


def _startup_seconds() -> float:
    """How long a fresh worker takes to start and answer (sympy import included)."""
    started = time.perf_counter()
    fresh = SymbolicWorker()
    try:
        fresh.run([("x", "x", 1e-6)], timeout_s=30)
    finally:
        fresh.close()
    return time.perf_counter() - started


def test_adversarial_responses_are_graded_within_the_time_bound(worker):
    """Each call takes at most the time bound; right after another call timed out,
    it may also wait for the replacement worker's start-up."""
    rng = random.Random(99)
    responses = adversarial_responses(N_RESPONSES)
    startup_s = _startup_seconds()
    grade("\\boxed{x^2}", "x^2+0", timeout_s=TIME_BOUND_S, worker=worker)
    slowest = 0.0
    reasons: dict[str, int] = {}
    previous_call_restarted = False
    for index, response in enumerate(responses):
        gold = rng.choice(GOLDS)
        restarts_before = worker.restarts
        started = time.perf_counter()
        result = grade(response, gold, timeout_s=TIME_BOUND_S, worker=worker)
        elapsed = time.perf_counter() - started
        assert isinstance(result, GradeResult)
        bound = TIME_BOUND_S + PARENT_ALLOWANCE_S + (2 * startup_s if previous_call_restarted else 0.0)
        previous_call_restarted = worker.restarts > restarts_before
        assert elapsed < bound, (index, elapsed, result.reason, response[:120])
        slowest = max(slowest, elapsed)
        reason = result.reason.split(":")[0]
        reasons[reason] = reasons.get(reason, 0) + 1
    print(f"slowest {slowest:.2f} s; reasons {reasons}; worker restarts {worker.restarts}")
    assert sum(reasons.values()) == N_RESPONSES
    assert reasons.get("error", 0) > 0 and reasons.get("mismatch", 0) > 0

"""Grade model responses against gold answers.

A comparison goes through three stages, cheapest first:

1. a memo of earlier verdicts, keyed on the normalised pair (sampled rollouts
   repeat the same few answers);
2. a fast path in this process: equal canonical strings, exact/relative
   comparison of plain numbers and of bare lists of numbers, case-insensitive
   comparison of plain words, shapes and entries of tuples, intervals,
   matrices and lists (``eglr.grading.structure``), and float evaluation of
   simple expressions, which rejects answers whose values clearly differ
   (``eglr.grading.numeric``);
3. math-verify/sympy in the worker process (``eglr.grading.worker``), bounded
   by ``timeout_s``. A timeout or parser error is a wrong answer with a reason,
   never an exception or a hang. Answers that would explode sympy
   (``10^{10^{10}}``, see ``eglr.grading.guard``) are refused before that.
"""
from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from eglr.grading.extract import extract_answer
from eglr.grading.guard import too_complex
from eglr.grading.normalize import NormalizedAnswer, half_unit_in_last_place, normalize_answer, parse_number
from eglr.grading.numeric import clearly_different
from eglr.grading.structure import compare_structures
from eglr.grading.worker import JobOutcome, SymbolicWorker, default_worker

# Bump whenever a verdict can change; the runner records it with every grade.
GRADER_VERSION = "1.0"
DEFAULT_TIMEOUT_S = 5.0
# Longer answers are compared as strings only (no real answer is this long).
MAX_SYMBOLIC_CHARS = 2000
CACHE_SIZE = 200_000
# Tuples of tuples are compared entry by entry down to this depth.
MAX_STRUCTURE_DEPTH = 3

_PLAIN_WORDS = re.compile(r"^[A-Za-z][A-Za-z ]{2,}$")
_WRITTEN_INTEGER = re.compile(r"^[+-]?\d+$")
_BASE_NUMERAL = re.compile(r"^([0-9A-Za-z]+)_\{?(\d{1,2})\}?$")
_LIST_BRACKETS = re.compile(r"[()\[\]{}]|\\[{}]")
_RELATION = re.compile(r"=|<|>|\\(?:le|ge|leq|geq|ne|neq|in|approx|equiv)(?![a-zA-Z])")


@dataclass(frozen=True)
class GradeResult:
    """Verdict on one response: ``reason`` is "match", "mismatch", "no_answer",
    "timeout" or "error: <message>"."""

    correct: bool
    extracted: str | None
    reason: str


@dataclass(frozen=True)
class NumericPolicy:
    """When two different numbers count as the same answer.

    ``rel_tol`` admits decimal renderings of exact values (0.333333 for 1/3);
    two numbers written as integers must match exactly. With
    ``significant_figures``, a gold written as a measured value (``1.6``,
    ``4.5e33``) also accepts any prediction that rounds to it, i.e. lies
    within half a unit of its last digit.
    """

    rel_tol: float = 1e-6
    significant_figures: bool = False

    def close(
        self, pred: Fraction, gold: Fraction, both_integers: bool = False, gold_half_unit: Fraction | None = None
    ) -> bool:
        if pred == gold:
            return True
        if both_integers:
            return False
        difference = abs(pred - gold)
        if difference <= Fraction(str(self.rel_tol)) * max(abs(pred), abs(gold)):
            return True
        return self.significant_figures and gold_half_unit is not None and difference <= gold_half_unit


DEFAULT_POLICY = NumericPolicy()
# Minerva's science answers are rounded to a few significant figures.
BENCHMARK_POLICIES = {"minerva_math": NumericPolicy(rel_tol=1e-4, significant_figures=True)}


def numeric_policy(benchmark: str | None) -> NumericPolicy:
    """The numeric tolerance used for ``benchmark``."""
    return BENCHMARK_POLICIES.get(benchmark or "", DEFAULT_POLICY)


def _gold_text(gold: str | int | float) -> str:
    if isinstance(gold, bool) or not isinstance(gold, (str, int, float)):
        raise TypeError(f"gold must be a str, int or float, got {type(gold).__name__}: {gold!r}")
    text = str(gold).strip()
    if not text:
        raise ValueError(f"gold answer is empty: {gold!r}")
    return text


def _numbers_match(pred: NormalizedAnswer, gold: NormalizedAnswer, policy: NumericPolicy) -> bool | None:
    """Whether two plain numbers are equal under ``policy``; None if either is not one.

    ``28%`` also equals ``0.28`` when either side carried the percent sign.
    """
    pred_value, gold_value = parse_number(pred.text), parse_number(gold.text)
    if pred_value is None or gold_value is None:
        return None
    both_integers = bool(_WRITTEN_INTEGER.match(pred.text) and _WRITTEN_INTEGER.match(gold.text))
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
    pred_items, gold_items = pred.text.split(","), gold.text.split(",")
    pred_values = [parse_number(item) for item in pred_items]
    gold_values = [parse_number(item) for item in gold_items]
    if None in pred_values or None in gold_values:
        return None
    pred_set, gold_set = sorted(set(pred_values)), sorted(set(gold_values))
    if len(pred_set) != len(gold_set):
        return False
    return all(policy.close(p, g) for p, g in zip(pred_set, gold_set))


def _base_numerals_match(pred: NormalizedAnswer, gold: NormalizedAnswer, policy: NumericPolicy) -> bool | None:
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


def _equation_sides(text: str) -> tuple[str, str] | None:
    """``lhs = rhs`` when ``text`` is one equation (no other relation, no list)."""
    relations = _RELATION.findall(text)
    if relations != ["="] or "," in text:
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
    if sides is None or _RELATION.search(gold.expression):
        return None
    right = sides[1]
    return False if _fast_verdict(NormalizedAnswer(right, right), gold, policy, depth + 1) is False else None


def _fast_verdict(
    pred: NormalizedAnswer, gold: NormalizedAnswer, policy: NumericPolicy, depth: int = 0
) -> bool | None:
    """True/False when cheap rules decide, None when symbolic work is needed."""
    if pred.text == gold.text:
        return bool(pred.text)
    for rule in (_base_numerals_match, _numbers_match, _lists_match):
        verdict = rule(pred, gold, policy)
        if verdict is not None:
            return verdict
    if depth < MAX_STRUCTURE_DEPTH:

        def item_verdict(pred_item: str, gold_item: str) -> bool | None:
            return _fast_verdict(
                NormalizedAnswer(pred_item, pred_item), NormalizedAnswer(gold_item, gold_item), policy, depth + 1
            )

        verdict = compare_structures(pred.text, gold.text, item_verdict)
        if verdict is None:
            verdict = _equation_against_value(pred, gold, policy, depth)
        if verdict is not None:
            return verdict
    if _PLAIN_WORDS.match(pred.text) and _PLAIN_WORDS.match(gold.text):
        return pred.text.lower() == gold.text.lower()
    if not (pred.percent or gold.percent) and clearly_different(pred.text, gold.text, policy.rel_tol):
        return False
    return None


class _VerdictCache:
    """Bounded, thread-safe memo of (normalised pred, normalised gold, tol) -> verdict."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple, tuple[bool, str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, timeout_s: float) -> tuple[bool, str] | None:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            return None
        correct, reason, timeout_used = entry
        # A timeout is only final for calls that do not allow more time.
        if reason == "timeout" and timeout_s > timeout_used:
            return None
        return correct, reason

    def put(self, key: tuple, correct: bool, reason: str, timeout_s: float) -> None:
        with self._lock:
            self._entries[key] = (correct, reason, timeout_s)
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_CACHE = _VerdictCache(CACHE_SIZE)


def clear_cache() -> None:
    """Forget memoised verdicts (e.g. to time the grader cold)."""
    _CACHE.clear()
    normalize_answer.cache_clear()


def _check_timeout(timeout_s: float | None) -> float:
    if timeout_s is None:
        return DEFAULT_TIMEOUT_S
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    return float(timeout_s)


def _cheap_verdict(pred: NormalizedAnswer, gold: NormalizedAnswer, policy: NumericPolicy) -> tuple[bool, str] | None:
    """The verdict of the fast path or the complexity guard, or None to go symbolic."""
    try:
        fast = _fast_verdict(pred, gold, policy)
    except (ArithmeticError, ValueError, TypeError, RecursionError):
        fast = None  # an odd input to a cheap rule: let the bounded worker judge it
    if fast is None and max(len(pred.expression), len(gold.expression)) > MAX_SYMBOLIC_CHARS:
        fast = False
    if fast is not None:
        return fast, "match" if fast else "mismatch"
    refusal = too_complex(pred.expression) or too_complex(gold.expression)
    if refusal is not None:
        return False, f"error: too complex to compare: {refusal}"
    return None


def _outcome_verdict(outcome: JobOutcome) -> tuple[bool, str]:
    if outcome.status == "ok":
        return outcome.equal, "match" if outcome.equal else "mismatch"
    if outcome.status == "timeout":
        return False, "timeout"
    return False, f"error: {outcome.message}"


def _compare_many(
    pairs: Sequence[tuple[str, str, str | None]], timeout_s: float, worker: SymbolicWorker | None
) -> list[tuple[bool, str]]:
    """(correct, reason) for (extracted, gold, benchmark) triples; one worker batch for the rest."""
    verdicts: list[tuple[bool, str] | None] = [None] * len(pairs)
    unresolved: dict[tuple, list[int]] = {}
    for index, (extracted, gold, benchmark) in enumerate(pairs):
        pred_norm, gold_norm, policy = normalize_answer(extracted), normalize_answer(gold), numeric_policy(benchmark)
        key = (pred_norm, gold_norm, policy)
        verdicts[index] = _CACHE.get(key, timeout_s)
        if verdicts[index] is None:
            verdicts[index] = _cheap_verdict(pred_norm, gold_norm, policy)
            if verdicts[index] is not None and not verdicts[index][1].startswith("error"):
                _CACHE.put(key, *verdicts[index], timeout_s)
        if verdicts[index] is None:
            unresolved.setdefault(key, []).append(index)
    if not unresolved:
        return verdicts  # type: ignore[return-value]
    keys = list(unresolved)
    jobs = [(pred_norm.expression, gold_norm.expression, policy.rel_tol) for pred_norm, gold_norm, policy in keys]
    try:
        outcomes = (worker or default_worker()).run(jobs, timeout_s)
    except RuntimeError as error:
        outcomes = [JobOutcome("error", message=str(error))] * len(keys)
    for key, outcome in zip(keys, outcomes):
        verdict = _outcome_verdict(outcome)
        if outcome.status != "error":
            _CACHE.put(key, *verdict, timeout_s)
        for index in unresolved[key]:
            verdicts[index] = verdict
    return verdicts  # type: ignore[return-value]


def is_equiv(
    pred: str,
    gold: str | int | float,
    benchmark: str | None = None,
    timeout_s: float | None = None,
    worker: SymbolicWorker | None = None,
) -> bool:
    """Whether the extracted answer ``pred`` equals ``gold`` mathematically."""
    if not isinstance(pred, str):
        raise TypeError(f"pred must be a str, got {type(pred).__name__}: {pred!r}")
    return _compare_many([(pred, _gold_text(gold), benchmark)], _check_timeout(timeout_s), worker)[0][0]


def grade_many(
    responses: Sequence[str | None],
    golds: Sequence[str | int | float],
    benchmark: str | None | Sequence[str | None] = None,
    timeout_s: float | None = None,
    worker: SymbolicWorker | None = None,
) -> list[GradeResult]:
    """Grade many responses at once (one worker round trip for the uncached ones).

    ``benchmark`` is one name for all responses or one per response;
    ``timeout_s`` bounds each symbolic comparison.
    """
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} golds")
    if benchmark is None or isinstance(benchmark, str):
        benchmarks: Sequence[str | None] = [benchmark] * len(responses)
    else:
        benchmarks = benchmark
        if len(benchmarks) != len(responses):
            raise ValueError(f"{len(responses)} responses but {len(benchmarks)} benchmarks")
    timeout_s = _check_timeout(timeout_s)
    gold_texts = [_gold_text(gold) for gold in golds]
    extracted = [extract_answer(response, name) for response, name in zip(responses, benchmarks)]
    answered = [index for index, answer in enumerate(extracted) if answer is not None]
    verdicts = _compare_many(
        [(extracted[index], gold_texts[index], benchmarks[index]) for index in answered], timeout_s, worker
    )
    results = [GradeResult(False, None, "no_answer")] * len(responses)
    for index, (correct, reason) in zip(answered, verdicts):
        results[index] = GradeResult(correct, extracted[index], reason)
    return results


def grade(
    response: str | None,
    gold: str | int | float,
    benchmark: str | None = None,
    timeout_s: float | None = None,
    worker: SymbolicWorker | None = None,
) -> GradeResult:
    """Extract the final answer of ``response`` and compare it with ``gold``."""
    return grade_many([response], [gold], benchmark, timeout_s, worker)[0]

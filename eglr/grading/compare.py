"""Compare extracted answers with golds: memo, fast path, then the bounded symbolic worker.

A comparison goes through three stages, cheapest first:

1. a memo of earlier verdicts, keyed on the normalised pair and the numeric
   policy (sampled rollouts repeat the same few answers);
2. the fast path in this process (``eglr.grading.fast``);
3. math-verify/sympy in the worker process (``eglr.grading.slow``), bounded
   by ``timeout_s``. A timeout or parser error is a wrong answer with a reason,
   never an exception or a hang. Answers that would explode sympy
   (``10^{10^{10}}``) are refused before that.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from eglr.grading.fast import fast_verdict
from eglr.grading.normalize import NormalizedAnswer, normalize_answer
from eglr.grading.policy import NumericPolicy
from eglr.grading.slow.guard import too_complex
from eglr.grading.slow.worker import JobOutcome, SymbolicWorker, default_worker

# Longer answers are compared as strings only (no real answer is this long).
MAX_SYMBOLIC_CHARS = 2000
CACHE_SIZE = 200_000

Verdict = tuple[bool, str]


class _VerdictCache:
    """Bounded, thread-safe memo of (normalised pred, normalised gold, policy) -> verdict."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple, tuple[bool, str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, timeout_s: float) -> Verdict | None:
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


def _cheap_verdict(pred: NormalizedAnswer, gold: NormalizedAnswer, policy: NumericPolicy) -> Verdict | None:
    """The verdict of the fast path or the complexity guard, or None to go symbolic."""
    try:
        fast = fast_verdict(pred, gold, policy)
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


def _outcome_verdict(outcome: JobOutcome) -> Verdict:
    if outcome.status == "ok":
        return outcome.equal, "match" if outcome.equal else "mismatch"
    if outcome.status == "timeout":
        return False, "timeout"
    return False, f"error: {outcome.message}"


def compare_many(
    pairs: Sequence[tuple[str, str, NumericPolicy]], timeout_s: float, worker: SymbolicWorker | None
) -> list[Verdict]:
    """(correct, reason) for (extracted, gold, policy) triples; one worker batch for the rest."""
    verdicts: list[Verdict | None] = [None] * len(pairs)
    unresolved: dict[tuple, list[int]] = {}
    for index, (extracted, gold, policy) in enumerate(pairs):
        key = (normalize_answer(extracted), normalize_answer(gold), policy)
        verdict = _CACHE.get(key, timeout_s)
        if verdict is None:
            verdict = _cheap_verdict(key[0], key[1], policy)
            if verdict is not None and not verdict[1].startswith("error"):
                _CACHE.put(key, *verdict, timeout_s)
        if verdict is None:
            unresolved.setdefault(key, []).append(index)
        verdicts[index] = verdict
    if unresolved:
        keys = list(unresolved)
        jobs = [(pred.expression, gold.expression, policy.rel_tol) for pred, gold, policy in keys]
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

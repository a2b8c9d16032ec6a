"""The grader's public functions: ``grade``, ``grade_many`` and ``is_equiv``.

``benchmark`` may be a benchmark name (looked up in ``eglr.benchmarks``'
registry), a registry spec, a ``GradingPolicy`` or None (answer format not
known, default numeric tolerance); see ``eglr.grading.policy``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eglr.grading.compare import compare_many
from eglr.grading.extract import extract_answer
from eglr.grading.policy import BenchmarkLike, GradingPolicy, resolve_policy
from eglr.grading.slow.worker import SymbolicWorker

# Bump whenever a verdict can change; the runner records it with every grade.
GRADER_VERSION = "2.0"
DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class GradeResult:
    """Verdict on one response: ``reason`` is "match", "mismatch", "no_answer",
    "timeout" or "error: <message>"."""

    correct: bool
    extracted: str | None
    reason: str


def _gold_text(gold: str | int | float) -> str:
    if isinstance(gold, bool) or not isinstance(gold, (str, int, float)):
        raise TypeError(f"gold must be a str, int or float, got {type(gold).__name__}: {gold!r}")
    text = str(gold).strip()
    if not text:
        raise ValueError(f"gold answer is empty: {gold!r}")
    return text


def _check_timeout(timeout_s: float | None) -> float:
    if timeout_s is None:
        return DEFAULT_TIMEOUT_S
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
    return float(timeout_s)


def _policies(benchmark: BenchmarkLike | Sequence[BenchmarkLike], count: int) -> list[GradingPolicy]:
    """One policy per response from one benchmark for all or one per response."""
    if benchmark is None or isinstance(benchmark, str) or not isinstance(benchmark, Sequence):
        return [resolve_policy(benchmark)] * count
    if len(benchmark) != count:
        raise ValueError(f"{count} responses but {len(benchmark)} benchmarks")
    resolved: dict[BenchmarkLike, GradingPolicy] = {}
    for item in benchmark:
        if item not in resolved:
            resolved[item] = resolve_policy(item)
    return [resolved[item] for item in benchmark]


def is_equiv(
    pred: str,
    gold: str | int | float,
    benchmark: BenchmarkLike = None,
    timeout_s: float | None = None,
    worker: SymbolicWorker | None = None,
) -> bool:
    """Whether the extracted answer ``pred`` equals ``gold`` mathematically."""
    if not isinstance(pred, str):
        raise TypeError(f"pred must be a str, got {type(pred).__name__}: {pred!r}")
    policy = resolve_policy(benchmark)
    return compare_many([(pred, _gold_text(gold), policy.numeric)], _check_timeout(timeout_s), worker)[0][0]


def grade_many(
    responses: Sequence[str | None],
    golds: Sequence[str | int | float],
    benchmark: BenchmarkLike | Sequence[BenchmarkLike] = None,
    timeout_s: float | None = None,
    worker: SymbolicWorker | None = None,
) -> list[GradeResult]:
    """Grade many responses at once (one worker round trip for the uncached ones).

    ``benchmark`` is one benchmark for all responses or one per response;
    ``timeout_s`` bounds each symbolic comparison.
    """
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} golds")
    policies = _policies(benchmark, len(responses))
    timeout_s = _check_timeout(timeout_s)
    gold_texts = [_gold_text(gold) for gold in golds]
    extracted = [extract_answer(response, policy) for response, policy in zip(responses, policies)]
    answered = [index for index, answer in enumerate(extracted) if answer is not None]
    verdicts = compare_many(
        [(extracted[index], gold_texts[index], policies[index].numeric) for index in answered], timeout_s, worker
    )
    results = [GradeResult(False, None, "no_answer")] * len(responses)
    for index, (correct, reason) in zip(answered, verdicts):
        results[index] = GradeResult(correct, extracted[index], reason)
    return results


def grade(
    response: str | None,
    gold: str | int | float,
    benchmark: BenchmarkLike = None,
    timeout_s: float | None = None,
    worker: SymbolicWorker | None = None,
) -> GradeResult:
    """Extract the final answer of ``response`` and compare it with ``gold``."""
    return grade_many([response], [gold], benchmark, timeout_s, worker)[0]

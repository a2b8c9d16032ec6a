"""What a benchmark tells the grader: how its answers are written and how close numbers must be.

The grader knows no benchmark names. Each benchmark's entry in the registry
(``eglr.benchmarks.registry.BenchmarkSpec``) carries an ``AnswerFormat`` and a
``NumericPolicy``; the grading functions take them as a ``GradingPolicy``, and
accept a benchmark name or spec for convenience (``resolve_policy``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction
from typing import Any


class AnswerFormat(str, Enum):
    """How a benchmark's answers are written, which decides where extraction looks.

    ``NUMBER``: a plain number (GSM8K). Besides boxes and answer phrases,
    extraction reads GSM8K's ``#### X`` and, failing all else, the final
    stated amount of the response.

    ``EXPRESSION``: a LaTeX expression (MATH, AIME, Minerva, ...). Only boxes,
    answer phrases, bold and math spans count; a number in the prose does not.

    ``ANY``: not known; every fallback is tried. The default when no benchmark is given.
    """

    NUMBER = "number"
    EXPRESSION = "expression"
    ANY = "any"


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

    def __post_init__(self) -> None:
        if not 0 <= self.rel_tol < 1:
            raise ValueError(f"rel_tol must be in [0, 1), got {self.rel_tol!r}")

    def close(
        self, pred: Fraction, gold: Fraction, both_integers: bool = False, gold_half_unit: Fraction | None = None
    ) -> bool:
        """Whether the exact values ``pred`` and ``gold`` are the same answer."""
        if pred == gold:
            return True
        if both_integers:
            return False
        difference = abs(pred - gold)
        if difference <= Fraction(str(self.rel_tol)) * max(abs(pred), abs(gold)):
            return True
        return self.significant_figures and gold_half_unit is not None and difference <= gold_half_unit


@dataclass(frozen=True)
class GradingPolicy:
    """Everything about a benchmark that changes a verdict."""

    answer_format: AnswerFormat = AnswerFormat.ANY
    numeric: NumericPolicy = field(default_factory=NumericPolicy)


DEFAULT_POLICY = GradingPolicy()

# What callers may pass as ``benchmark``: a name, a registry spec, a policy, or None.
BenchmarkLike = Any


def resolve_policy(benchmark: BenchmarkLike = None) -> GradingPolicy:
    """The grading policy of ``benchmark``.

    ``None`` gives ``DEFAULT_POLICY``; a name is looked up in the benchmark
    registry (ValueError naming the known benchmarks if it is not there); a
    registry spec gives its ``grading_policy``; a ``GradingPolicy`` is used as is.
    """
    if benchmark is None:
        return DEFAULT_POLICY
    if isinstance(benchmark, GradingPolicy):
        return benchmark
    if isinstance(benchmark, str):
        from eglr.benchmarks.registry import get_benchmark

        return get_benchmark(benchmark).grading_policy
    policy = getattr(benchmark, "grading_policy", None)
    if isinstance(policy, GradingPolicy):
        return policy
    raise TypeError(
        f"benchmark must be a name, a BenchmarkSpec, a GradingPolicy or None, got {type(benchmark).__name__}"
    )

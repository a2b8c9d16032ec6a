"""The study's benchmarks: where each one lives on the hub, how its rows read, how it is graded.

| name | hub id (config) | split | rows | answer format | numeric policy |
| --- | --- | --- | ---: | --- | --- |
| math500 | HuggingFaceH4/MATH-500 | test | 500 | expression | default |
| gsm8k | openai/gsm8k (main) | test | 1319 | number | default |
| aime24 | HuggingFaceH4/aime_2024 | train | 30 | expression | default |
| aime25 | math-ai/aime25 | test | 30 | expression | default |
| amc23 | math-ai/amc23 | test | 40 | expression | default |
| minerva_math | math-ai/minervamath | test | 272 | expression | significant figures, rel. 1e-4 |
| olympiadbench | Hothan/OlympiadBench (OE_TO_maths_en_COMP) | train | 675 | expression | default |
| arith | none: ``eglr.benchmarks.arith.test_rows()`` | - | - | number | default |

The local copies under ``shared/data/benchmarks`` come from the Qwen2.5-Math
and AReaL evaluation harnesses (see their README) and are preferred when
present, so runs do not depend on the network. Adding a benchmark is one
entry here plus one config in ``configs/benchmark``; the grader reads its
rules (``eglr.grading.policy``) from the entry and knows no benchmark names.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eglr.benchmarks import records
from eglr.benchmarks.records import Problem
from eglr.grading.policy import AnswerFormat, GradingPolicy, NumericPolicy


@dataclass(frozen=True)
class BenchmarkSpec:
    """How to find, read and grade one benchmark.

    ``row_to_problem(row, index)`` reads both the local JSONL schema and the hub
    schema; ``expected_rows`` is the size of the full test set. ``label`` is
    the name tables and figures show. ``answer_format`` and ``numeric_policy``
    are the benchmark's grading rules (``eglr.grading.policy``): the grader
    reads them from here and knows no benchmark names.
    """

    name: str
    hub_id: str | None
    split: str
    row_to_problem: Callable[[dict[str, Any], int], Problem]
    label: str
    answer_format: AnswerFormat = AnswerFormat.EXPRESSION
    numeric_policy: NumericPolicy = NumericPolicy()
    hub_config: str | None = None
    expected_rows: int | None = None
    description: str = ""

    @property
    def grading_policy(self) -> GradingPolicy:
        """The rules ``eglr.grading`` applies to this benchmark's answers."""
        return GradingPolicy(self.answer_format, self.numeric_policy)


# Minerva's science answers are rounded to a few significant figures.
_MEASURED_VALUES = NumericPolicy(rel_tol=1e-4, significant_figures=True)


_SPECS = (
    BenchmarkSpec("math500", "HuggingFaceH4/MATH-500", "test", records.math500_row, "MATH-500",
                  expected_rows=500, description="MATH-500 (PRM800K test split of MATH)"),
    BenchmarkSpec("gsm8k", "openai/gsm8k", "test", records.gsm8k_row, "GSM8K",
                  answer_format=AnswerFormat.NUMBER, hub_config="main",
                  expected_rows=1319, description="GSM8K grade-school word problems"),
    BenchmarkSpec("aime24", "HuggingFaceH4/aime_2024", "train", records.aime_row, "AIME 2024",
                  expected_rows=30, description="AIME 2024 I and II"),
    BenchmarkSpec("aime25", "math-ai/aime25", "test", records.aime_row, "AIME 2025",
                  expected_rows=30, description="AIME 2025 I and II"),
    BenchmarkSpec("amc23", "math-ai/amc23", "test", records.amc_row, "AMC 2023",
                  expected_rows=40, description="AMC 2023 (12A/12B)"),
    BenchmarkSpec("minerva_math", "math-ai/minervamath", "test", records.minerva_row, "Minerva Math",
                  numeric_policy=_MEASURED_VALUES,
                  expected_rows=272, description="Minerva OCWCourses STEM problems"),
    BenchmarkSpec("olympiadbench", "Hothan/OlympiadBench", "train", records.olympiadbench_row, "OlympiadBench",
                  hub_config="OE_TO_maths_en_COMP", expected_rows=675,
                  description="OlympiadBench, English text-only open-ended maths"),
    BenchmarkSpec("arith", None, "test", records.arith_row, "Arith (synthetic)",
                  answer_format=AnswerFormat.NUMBER,
                  description="synthetic arithmetic (eglr.benchmarks.arith)"),
)
_REGISTRY = {spec.name: spec for spec in _SPECS}


def list_benchmarks() -> list[str]:
    """Names of all registered benchmarks."""
    return list(_REGISTRY)


def get_benchmark(name: str) -> BenchmarkSpec:
    """The spec of benchmark ``name``; ValueError naming the known ones otherwise."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown benchmark {name!r}; known benchmarks: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]

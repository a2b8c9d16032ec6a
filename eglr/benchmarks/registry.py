"""The study's benchmarks: where each one lives on the hub and how its rows read.

| name | hub id (config) | split | rows |
| --- | --- | --- | ---: |
| math500 | HuggingFaceH4/MATH-500 | test | 500 |
| gsm8k | openai/gsm8k (main) | test | 1319 |
| aime24 | HuggingFaceH4/aime_2024 | train | 30 |
| aime25 | math-ai/aime25 | test | 30 |
| amc23 | math-ai/amc23 | test | 40 |
| minerva_math | math-ai/minervamath | test | 272 |
| olympiadbench | Hothan/OlympiadBench (OE_TO_maths_en_COMP) | train | 675 |
| arith | none: ``eglr.benchmarks.arith.test_rows()`` | - | - |

The local copies under ``shared/data/benchmarks`` come from the Qwen2.5-Math
and AReaL evaluation harnesses (see their README) and are preferred when
present, so runs do not depend on the network.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eglr.benchmarks import records
from eglr.benchmarks.records import Problem


@dataclass(frozen=True)
class BenchmarkSpec:
    """How to find and read one benchmark.

    ``row_to_problem(row, index)`` reads both the local JSONL schema and the hub
    schema; ``expected_rows`` is the size of the full test set.
    """

    name: str
    hub_id: str | None
    split: str
    row_to_problem: Callable[[dict[str, Any], int], Problem]
    hub_config: str | None = None
    expected_rows: int | None = None
    description: str = ""


_SPECS = (
    BenchmarkSpec("math500", "HuggingFaceH4/MATH-500", "test", records.math500_row,
                  expected_rows=500, description="MATH-500 (PRM800K test split of MATH)"),
    BenchmarkSpec("gsm8k", "openai/gsm8k", "test", records.gsm8k_row, hub_config="main",
                  expected_rows=1319, description="GSM8K grade-school word problems"),
    BenchmarkSpec("aime24", "HuggingFaceH4/aime_2024", "train", records.aime_row,
                  expected_rows=30, description="AIME 2024 I and II"),
    BenchmarkSpec("aime25", "math-ai/aime25", "test", records.aime_row,
                  expected_rows=30, description="AIME 2025 I and II"),
    BenchmarkSpec("amc23", "math-ai/amc23", "test", records.amc_row,
                  expected_rows=40, description="AMC 2023 (12A/12B)"),
    BenchmarkSpec("minerva_math", "math-ai/minervamath", "test", records.minerva_row,
                  expected_rows=272, description="Minerva OCWCourses STEM problems"),
    BenchmarkSpec("olympiadbench", "Hothan/OlympiadBench", "train", records.olympiadbench_row,
                  hub_config="OE_TO_maths_en_COMP", expected_rows=675,
                  description="OlympiadBench, English text-only open-ended maths"),
    BenchmarkSpec("arith", None, "test", records.arith_row,
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

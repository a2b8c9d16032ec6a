"""Grading of math answers: extraction, normalisation, time-bounded equivalence.

``grade`` is the entry point for one response, ``grade_many`` for a batch;
``answer_key`` is the cheap canonical form used to group answers for majority
voting. ``python -m eglr.grading`` re-grades a rollout file.
"""
from eglr.grading.extract import extract_answer
from eglr.grading.grader import (
    DEFAULT_TIMEOUT_S,
    GRADER_VERSION,
    GradeResult,
    clear_cache,
    grade,
    grade_many,
    is_equiv,
)
from eglr.grading.normalize import answer_key, normalize_answer
from eglr.grading.worker import SymbolicWorker

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "GRADER_VERSION",
    "GradeResult",
    "SymbolicWorker",
    "answer_key",
    "clear_cache",
    "extract_answer",
    "grade",
    "grade_many",
    "is_equiv",
    "normalize_answer",
]

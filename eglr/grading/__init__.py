"""Grading of math answers: extraction, normalisation, time-bounded equivalence.

``grade`` is the entry point for one response, ``grade_many`` for a batch,
``is_equiv`` compares an extracted answer with a gold, ``extract_answer``
finds the final answer. Each takes ``benchmark`` as a name, a registry spec
or a ``GradingPolicy`` (the benchmark's answer format and numeric policy);
the grader itself knows no benchmark names. ``answer_key`` is the cheap
canonical form used to group answers for majority voting.
``python -m eglr.grading`` re-grades a rollout file.

Layout: ``extract`` (every scan of LaTeX text), ``normalize`` and ``numbers``
(canonical spelling, exact numbers), ``fast`` (rules, structures, float
probes), ``slow`` (math-verify in a bounded worker process), ``compare``
(memo, then fast, then slow), ``api`` (the functions below), ``policy``.
"""
from eglr.grading.api import DEFAULT_TIMEOUT_S, GRADER_VERSION, GradeResult, grade, grade_many, is_equiv
from eglr.grading.compare import clear_cache
from eglr.grading.extract import extract_answer
from eglr.grading.normalize import answer_key, normalize_answer
from eglr.grading.policy import AnswerFormat, GradingPolicy, NumericPolicy
from eglr.grading.slow.worker import SymbolicWorker

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "GRADER_VERSION",
    "AnswerFormat",
    "GradeResult",
    "GradingPolicy",
    "NumericPolicy",
    "SymbolicWorker",
    "answer_key",
    "clear_cache",
    "extract_answer",
    "grade",
    "grade_many",
    "is_equiv",
    "normalize_answer",
]

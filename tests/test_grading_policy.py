"""Benchmark rules live in the registry; the grader takes them as a policy and knows no names."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from eglr.benchmarks import get_benchmark, list_benchmarks
from eglr.grading import AnswerFormat, GradingPolicy, NumericPolicy, grade, grade_many, is_equiv
from eglr.grading.policy import DEFAULT_POLICY, resolve_policy

GRADING_PACKAGE = Path(__file__).resolve().parents[1] / "eglr" / "grading"


def _code_strings(path: Path) -> list[str]:
    """String constants and names of a module, docstrings excepted."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.append(node.value)
        elif isinstance(node, ast.Name):
            found.append(node.id)
    return found


def test_grading_code_names_no_benchmark():
    names = re.compile(r"(?<![A-Za-z0-9_])(?:" + "|".join(map(re.escape, list_benchmarks())) + r")(?![A-Za-z0-9_])")
    modules = sorted(GRADING_PACKAGE.rglob("*.py"))
    assert len(modules) >= 10
    offenders = {
        str(path.relative_to(GRADING_PACKAGE)): hits
        for path in modules
        if (hits := [text for text in _code_strings(path) if names.search(text)])
    }
    assert offenders == {}


def test_every_benchmark_carries_its_rules_and_label():
    labels = set()
    for name in list_benchmarks():
        spec = get_benchmark(name)
        assert spec.label and spec.label != name
        labels.add(spec.label)
        assert isinstance(spec.answer_format, AnswerFormat)
        assert spec.grading_policy == GradingPolicy(spec.answer_format, spec.numeric_policy)
        assert resolve_policy(name) == resolve_policy(spec) == spec.grading_policy
    assert len(labels) == len(list_benchmarks())
    assert get_benchmark("gsm8k").answer_format is AnswerFormat.NUMBER
    assert get_benchmark("math500").answer_format is AnswerFormat.EXPRESSION
    assert get_benchmark("minerva_math").numeric_policy.significant_figures


def test_resolve_policy():
    assert resolve_policy(None) is DEFAULT_POLICY
    policy = GradingPolicy(AnswerFormat.NUMBER, NumericPolicy(rel_tol=1e-3))
    assert resolve_policy(policy) is policy
    with pytest.raises(ValueError, match="unknown benchmark 'math5000'; known benchmarks: math500"):
        resolve_policy("math5000")
    with pytest.raises(TypeError, match="benchmark must be a name"):
        resolve_policy(1.5)
    with pytest.raises(ValueError, match="rel_tol"):
        NumericPolicy(rel_tol=-1)


def test_name_spec_and_policy_give_the_same_verdicts():
    spec = get_benchmark("minerva_math")
    for benchmark in ("minerva_math", spec, spec.grading_policy):
        assert is_equiv("1.57", "1.6", benchmark)
        assert grade("so \\boxed{1.57}", "1.6", benchmark).correct
    assert not is_equiv("1.57", "1.6")  # the default policy wants 6 significant digits
    assert not is_equiv("1.57", "1.6", "math500")


def test_answer_format_comes_from_the_policy():
    response = "She has 3 + 4 = 7 apples"
    assert grade(response, "7", "gsm8k").correct
    assert grade(response, "7", GradingPolicy(AnswerFormat.NUMBER)).correct
    assert grade(response, "7", "math500").reason == "no_answer"
    assert grade(response, "7", GradingPolicy(AnswerFormat.EXPRESSION)).reason == "no_answer"


def test_one_benchmark_per_response():
    results = grade_many(["It is 7 apples", "It is 7 apples"], ["7", "7"], ["gsm8k", get_benchmark("math500")])
    assert [result.reason for result in results] == ["match", "no_answer"]
    with pytest.raises(ValueError, match="2 responses but 1 benchmarks"):
        grade_many(["a", "b"], ["1", "2"], ["gsm8k"])

"""Benchmark registry and loaders, on the real local files and on hub-schema rows."""
from __future__ import annotations

import dataclasses
import json

import pytest

from eglr.benchmarks import Problem, get_benchmark, list_benchmarks, load_benchmark, local_path
from eglr.benchmarks import records
from eglr.benchmarks.records import repair_escapes

EXPECTED_ROWS = {
    "math500": 500,
    "gsm8k": 1319,
    "aime24": 30,
    "amc23": 40,
    "minerva_math": 272,
    "olympiadbench": 675,
    "aime25": 30,
}


def _require_local(name: str) -> None:
    if not local_path(name).is_file():
        pytest.skip(f"local benchmark file {local_path(name)} is absent (shared data not mounted)")


def _by_id(name: str) -> dict[str, Problem]:
    _require_local(name)
    return {problem.id: problem for problem in load_benchmark(name)}


def test_registry_lists_the_study_benchmarks():
    assert set(list_benchmarks()) == set(EXPECTED_ROWS) | {"arith"}
    for name in EXPECTED_ROWS:
        spec = get_benchmark(name)
        assert spec.name == name and spec.hub_id and spec.split
    assert get_benchmark("gsm8k").hub_config == "main"
    assert get_benchmark("arith").hub_id is None


def test_unknown_benchmark_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown benchmark 'math5000'.*math500.*olympiadbench"):
        get_benchmark("math5000")
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_benchmark("MATH")


@pytest.mark.parametrize("name", list(EXPECTED_ROWS))
def test_row_counts_and_stable_unique_ids(name):
    _require_local(name)
    problems = load_benchmark(name)
    assert len(problems) == EXPECTED_ROWS[name]
    ids = [problem.id for problem in problems]
    assert len(set(ids)) == len(ids) and all(isinstance(problem_id, str) for problem_id in ids)
    assert [problem.id for problem in load_benchmark(name, path=local_path(name))] == ids
    for problem in problems:
        assert problem.problem.strip() and problem.answer.strip() and isinstance(problem.answer, str)
        assert problem.metadata["benchmark"] == name


def test_ids_follow_the_source_fields():
    assert "test/precalculus/807.json" in _by_id("math500")
    assert set(_by_id("gsm8k")) == {str(index) for index in range(1319)}
    assert {"60", "89"} <= set(_by_id("aime24"))
    assert set(_by_id("aime25")) == {str(index) for index in range(30)}
    assert "1606" in _by_id("olympiadbench")


def test_gsm8k_gold_is_after_hashes_without_commas():
    problems = _by_id("gsm8k")
    assert problems["0"].answer == "18"
    with_commas = [problem for problem in problems.values() if "," in problem.metadata["solution"].split("####")[-1]]
    assert with_commas, "expected some GSM8K golds written with thousands commas"
    for problem in with_commas:
        assert problem.answer == problem.metadata["solution"].split("####")[-1].strip().replace(",", "")
        assert problem.answer.isdigit()


def test_aime24_leading_zeros_are_dropped():
    problems = _by_id("aime24")
    zero_padded = [problem for problem in problems.values() if str(problem.metadata["raw_answer"]).startswith("0")]
    assert len(zero_padded) >= 5
    for problem in zero_padded:
        assert problem.answer == str(int(problem.metadata["raw_answer"]))
    assert {"25", "73", "80"} <= {problem.answer for problem in zero_padded}


def test_amc23_float_answers_become_integers():
    problems = _by_id("amc23")
    assert problems["0"].answer == "27" and problems["0"].metadata["raw_answer"] == 27.0
    assert all("." not in problem.answer for problem in problems.values())
    assert "-1" in {problem.answer for problem in problems.values()}


def test_aime25_broken_escapes_are_repaired():
    problems = _by_id("aime25")
    for problem in problems.values():
        assert "\x0c" not in problem.problem and "\t" not in problem.problem
    assert "\\frac{\\log_k (5^{k^2 - 1})}" in problems["18"].problem
    assert "$\\frac{m}{n}$" in problems["27"].problem
    assert "$\\triangle DEF$" in problems["19"].problem
    assert problems["0"].answer == "70"


def test_minerva_gold_is_the_last_box_of_the_solution():
    problems = _by_id("minerva_math")
    assert problems["0"].answer == "1.6"
    for problem in problems.values():
        solution = problem.metadata["solution"]
        last_box = "".join(solution[solution.rindex("\\boxed") :].split())
        assert last_box.startswith("\\boxed{" + "".join(problem.answer.split()) + "}")


def test_olympiadbench_dollars_stripped_multi_answers_and_units():
    problems = _by_id("olympiadbench")
    assert all("$" not in problem.answer for problem in problems.values())
    assert problems["1664"].answer == "69,84"
    assert problems["1664"].metadata["is_multiple_answer"] is True
    assert problems["1618"].answer == "(1,8,19), (2,7,13), (4,5,7)"
    assert problems["1606"].answer == "2" and problems["1606"].metadata["is_multiple_answer"] is False
    assert problems["2426"].answer == "\\frac{600}{7}" and problems["2426"].metadata["unit"] == "km/h"
    assert sum(problem.metadata["is_multiple_answer"] for problem in problems.values()) == 94


def test_limit_keeps_file_order():
    _require_local("math500")
    first = load_benchmark("math500", limit=5)
    assert [problem.id for problem in first] == [problem.id for problem in load_benchmark("math500")[:5]]
    assert load_benchmark("math500", limit=0) == []


def test_data_dir_override(tmp_path, monkeypatch):
    (tmp_path / "amc23").mkdir()
    rows = [{"id": 7, "problem": "What is 1+1?", "answer": 2.0, "url": "u"}]
    (tmp_path / "amc23" / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    monkeypatch.setenv("EGLR_DATA_DIR", str(tmp_path))
    [problem] = load_benchmark("amc23")
    assert (problem.id, problem.answer) == ("7", "2")
    assert problem.metadata["source"] == str(tmp_path / "amc23" / "test.jsonl")


def test_missing_local_file_with_forced_local_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="benchmark file not found"):
        load_benchmark("math500", source="local", data_dir=tmp_path)


def test_hub_source_uses_the_registered_dataset(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, revision=None, cache_dir=None):
        calls.append((path, name, split))
        return [{"question": "Q1", "answer": "work <<1+1=2>>\n#### 1,234"}, {"question": "Q2", "answer": "#### 5"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    problems = load_benchmark("gsm8k", source="hub")
    assert calls == [("openai/gsm8k", "main", "test")]
    summary = [(problem.id, problem.problem, problem.answer) for problem in problems]
    assert summary == [("0", "Q1", "1234"), ("1", "Q2", "5")]
    assert problems[0].metadata["source"] == "hf:openai/gsm8k"


def test_another_hub_copy_skips_the_local_file(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, revision=None, cache_dir=None):
        calls.append((path, name, split))
        return [{"problem": "P", "answer": "25", "id": "0"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    [problem] = load_benchmark("aime25", hub_id="someone/aime2025", split="train", path=None)
    assert calls == [("someone/aime2025", None, "train")]
    assert (problem.id, problem.answer, problem.metadata["source"]) == ("0", "25", "hf:someone/aime2025")


def test_hub_schemas_are_normalised():
    minerva = records.minerva_row({"question": "Find v.", "answer": "3.0 \\times 10^{8}"}, 4)
    assert (minerva.id, minerva.problem, minerva.answer) == ("4", "Find v.", "3.0 \\times 10^{8}")
    olympiad = records.olympiadbench_row(
        {"id": 2000, "question": "Q", "final_answer": ["2,3,4"], "solution": ["a", "b"], "is_multiple_answer": True}, 0
    )
    assert (olympiad.id, olympiad.answer, olympiad.metadata["solution"]) == ("2000", "2,3,4", "a\n\nb")
    aime = records.aime_row({"id": 60, "problem": "P", "answer": "025", "solution": "s", "url": "u", "year": "2024"}, 0)
    assert (aime.id, aime.answer) == ("60", "25")
    math500 = records.math500_row(
        {"problem": "P", "solution": "so \\boxed{\\frac{1}{2}}", "unique_id": "test/x.json"}, 0
    )
    assert (math500.id, math500.answer) == ("test/x.json", "\\frac{1}{2}")


def test_repair_escapes():
    assert repair_escapes("$\x0crac{1}{2}$ and $\triangle ABC$") == "$\\frac{1}{2}$ and $\\triangle ABC$"
    assert repair_escapes("a\tb") == "a\\tb"
    assert repair_escapes("tab\t1 and newline\nkept") == "tab\t1 and newline\nkept"


def test_malformed_rows_and_options_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="has no '####'"):
        records.gsm8k_row({"question": "Q", "answer": "no marker"}, 3)
    with pytest.raises(ValueError, match="none of the fields"):
        records.amc_row({"id": 1, "question": "Q"}, 0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "P", "answer": "1", "unique_id": "a"}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: invalid JSON"):
        load_benchmark("math500", path=bad)
    duplicate = tmp_path / "duplicate.jsonl"
    duplicate.write_text('{"problem": "P", "answer": "1", "unique_id": "a"}\n' * 2)
    with pytest.raises(ValueError, match="duplicate problem id 'a'"):
        load_benchmark("math500", path=duplicate)
    with pytest.raises(ValueError, match="limit must be"):
        load_benchmark("math500", limit=-1)
    with pytest.raises(ValueError, match="source must be one of"):
        load_benchmark("math500", source="web")
    with pytest.raises(TypeError, match="unknown load_benchmark option"):
        load_benchmark("math500", shuffle=True)


def test_problem_is_frozen():
    problem = Problem("1", "P", "2", {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.answer = "3"  # type: ignore[misc]


def test_arith_is_registered_lazily():
    try:
        import eglr.benchmarks.arith  # noqa: F401
    except ImportError:
        pytest.skip("eglr.benchmarks.arith is not written yet")
    problems = load_benchmark("arith", limit=3)
    assert len(problems) == 3
    assert all(problem.answer and problem.metadata["source"] == "eglr.benchmarks.arith" for problem in problems)

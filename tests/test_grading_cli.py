"""``python -m eglr.grading``: re-grading a rollout file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from eglr.grading import GRADER_VERSION
from eglr.grading.__main__ import main

REPO_ROOT = Path(__file__).resolve().parents[1]
ROLLOUTS = [
    {"response": "so \\boxed{\\frac{1}{2}}", "gold": "0.5", "benchmark": "math500", "model": "m", "sample": 0},
    {"response": "it is \\boxed{3}", "gold": "4", "benchmark": "math500", "model": "m", "sample": 1},
    {"response": "16 - 3 = 13\n#### 13", "gold": "13", "benchmark": "gsm8k", "model": "m", "sample": 0},
    {"response": "no idea", "gold": "7", "model": "m", "sample": 2},
]


def _write_jsonl(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_regrade_adds_verdicts_and_keeps_fields(tmp_path, capsys):
    source, target = tmp_path / "rollouts.jsonl", tmp_path / "out" / "graded.jsonl"
    _write_jsonl(source, [json.dumps(record) for record in ROLLOUTS])
    assert main(["--input", str(source), "--output", str(target)]) == 0
    graded = _read_jsonl(target)
    assert [record["correct"] for record in graded] == [True, False, True, False]
    assert [record["extracted"] for record in graded] == ["\\frac{1}{2}", "3", "13", None]
    assert [record["grade_reason"] for record in graded] == ["match", "mismatch", "match", "no_answer"]
    assert {record["grader_version"] for record in graded} == {GRADER_VERSION}
    for original, record in zip(ROLLOUTS, graded):
        assert {key: record[key] for key in original} == original
    assert not list(target.parent.glob(".*.tmp"))
    assert "graded 4 records" in capsys.readouterr().err


def test_default_benchmark_applies_to_records_without_one(tmp_path):
    source, target = tmp_path / "rollouts.jsonl", tmp_path / "graded.jsonl"
    _write_jsonl(source, [json.dumps({"response": "so 3 + 4 = 7 apples", "gold": "7"})])
    assert main(["--input", str(source), "--output", str(target), "--benchmark", "math500"]) == 0
    assert _read_jsonl(target)[0]["grade_reason"] == "no_answer"
    assert main(["--input", str(source), "--output", str(target), "--benchmark", "gsm8k"]) == 0
    assert _read_jsonl(target)[0]["correct"] is True


def test_bad_lines_are_reported_and_kept_aside(tmp_path, capsys):
    source, target = tmp_path / "rollouts.jsonl", tmp_path / "graded.jsonl"
    bad_lines = ['{"response": "\\\\boxed{1}"', '{"gold": "1"}', '{"response": "\\\\boxed{1}", "gold": ""}', "[1, 2]"]
    _write_jsonl(source, [json.dumps(ROLLOUTS[0]), *bad_lines, json.dumps(ROLLOUTS[2])])
    assert main(["--input", str(source), "--output", str(target)]) == 1
    assert [record["correct"] for record in _read_jsonl(target)] == [True, True]
    rejects = tmp_path / "graded.jsonl.rejects"
    assert rejects.read_text(encoding="utf-8").splitlines() == bad_lines
    errors = capsys.readouterr().err
    for line_number, problem in [(2, "invalid JSON"), (3, "'response'"), (4, "gold field"), (5, "JSON object")]:
        assert f"rollouts.jsonl:{line_number}: skipped" in errors and problem in errors
    assert "4 bad lines" in errors


def test_non_utf8_bytes_spoil_only_their_own_line(tmp_path, capsys):
    source, target = tmp_path / "rollouts.jsonl", tmp_path / "graded.jsonl"
    bad_bytes = b'{"response": "\\boxed{1} caf\xe9", "gold": "1"}\n'
    unknown = json.dumps({"response": "\\boxed{1}", "gold": "1", "benchmark": "gsm9k"}).encode() + b"\n"
    good = [json.dumps(record).encode() + b"\n" for record in ROLLOUTS[:3]]
    source.write_bytes(good[0] + bad_bytes + good[1] + unknown + good[2])
    assert main(["--input", str(source), "--output", str(target)]) == 1
    assert [record["correct"] for record in _read_jsonl(target)] == [True, False, True]
    assert (tmp_path / "graded.jsonl.rejects").read_bytes() == bad_bytes + unknown
    errors = capsys.readouterr().err
    assert "rollouts.jsonl:2: skipped: not UTF-8 (byte 27: b'\\xe9')" in errors
    assert "rollouts.jsonl:4: skipped: unknown benchmark 'gsm9k'" in errors
    assert "2 bad lines" in errors


def test_unknown_default_benchmark_is_a_usage_error(tmp_path, capsys):
    source = tmp_path / "rollouts.jsonl"
    _write_jsonl(source, [json.dumps(ROLLOUTS[3])])
    assert main(["--input", str(source), "--output", str(tmp_path / "out.jsonl"), "--benchmark", "gsm9k"]) == 2
    assert "unknown benchmark 'gsm9k'" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_input_is_not_overwritten_without_in_place(tmp_path, capsys):
    source = tmp_path / "rollouts.jsonl"
    _write_jsonl(source, [json.dumps(record) for record in ROLLOUTS])
    before = source.read_text(encoding="utf-8")
    assert main(["--input", str(source), "--output", str(source)]) == 2
    assert source.read_text(encoding="utf-8") == before
    assert "--in-place" in capsys.readouterr().err


def test_in_place_replaces_the_input_atomically(tmp_path):
    source = tmp_path / "rollouts.jsonl"
    _write_jsonl(source, [json.dumps(record) for record in ROLLOUTS])
    inode_before = source.stat().st_ino
    assert main(["--input", str(source), "--output", str(source), "--in-place"]) == 0
    assert [record["correct"] for record in _read_jsonl(source)] == [True, False, True, False]
    assert source.stat().st_ino != inode_before
    assert [path.name for path in tmp_path.iterdir()] == ["rollouts.jsonl"]


def test_missing_input_is_an_error(tmp_path, capsys):
    assert main(["--input", str(tmp_path / "absent.jsonl"), "--output", str(tmp_path / "out.jsonl")]) == 2
    assert "input file not found" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_module_entry_point(tmp_path):
    source, target = tmp_path / "rollouts.jsonl", tmp_path / "graded.jsonl"
    _write_jsonl(source, [json.dumps(ROLLOUTS[2])])
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    environment = dict(os.environ, PYTHONPATH=python_path)
    completed = subprocess.run(
        [sys.executable, "-m", "eglr.grading", "--input", str(source), "--output", str(target)],
        capture_output=True, text=True, env=environment, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert _read_jsonl(target)[0]["correct"] is True

"""load_rollouts: directories, shards, truncated lines, duplicates, dtypes, errors."""
from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

from eglr.metrics import ANALYSIS_COLUMNS, load_rollouts


def record(problem_id: str = "1", layer_span: int = 0, temperature: float = 0.0, sample: int = 0,
           correct: bool = True, **fields) -> dict:
    return {"model": "tiny-math", "benchmark": "arith", "problem_id": problem_id, "layer_span": layer_span,
            "temperature": temperature, "sample": sample, "correct": correct, "extracted": "4",
            "gold": "4", "response": "so \\boxed{4}", "num_tokens": 10, "num_gated": 2,
            "num_iterations": 3, "num_layers": 4, **fields}


def write_lines(path, records, tail: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item) + "\n" for item in records) + tail)


def test_directories_are_searched_recursively_and_shards_concatenated(tmp_path):
    write_lines(tmp_path / "tiny-math" / "arith" / "rollouts.shard0-of-2.jsonl", [record("1"), record("2")])
    write_lines(tmp_path / "tiny-math" / "arith" / "rollouts.shard1-of-2.jsonl", [record("3")])
    write_lines(tmp_path / "other" / "gsm8k" / "rollouts.jsonl", [record("1", benchmark="gsm8k")])
    rollouts = load_rollouts([tmp_path])
    assert len(rollouts) == 4
    assert sorted(rollouts.loc[rollouts["benchmark"] == "arith", "problem_id"]) == ["1", "2", "3"]


def test_dtypes_are_set_and_absent_optional_fields_added(tmp_path):
    write_lines(tmp_path / "r.jsonl", [record("7", temperature=0.7000000001, sample=1, correct=False)])
    rollouts = load_rollouts(tmp_path / "r.jsonl")
    assert isinstance(rollouts["model"].dtype, pd.CategoricalDtype)
    assert isinstance(rollouts["problem_id"].dtype, pd.CategoricalDtype)
    assert rollouts["layer_span"].dtype == "int64" and rollouts["sample"].dtype == "int64"
    assert rollouts["correct"].dtype == bool and not rollouts["correct"].iloc[0]
    assert rollouts["temperature"].iloc[0] == 0.7
    assert rollouts["mean_logprob"].isna().all()  # old files lack it
    assert rollouts["num_tokens"].iloc[0] == 10


def test_integer_problem_ids_become_strings(tmp_path):
    items = [record(), record()]
    items[0]["problem_id"], items[1]["problem_id"] = 12, 3
    write_lines(tmp_path / "r.jsonl", items)
    assert sorted(load_rollouts(tmp_path).problem_id.astype(str)) == ["12", "3"]


def test_truncated_last_line_is_dropped_with_a_warning(tmp_path):
    write_lines(tmp_path / "r.jsonl", [record("1"), record("2")], tail='{"model": "tiny-math", "benchm')
    with pytest.warns(UserWarning, match="truncated last line"):
        rollouts = load_rollouts(tmp_path)
    assert list(rollouts["problem_id"].astype(str)) == ["1", "2"]


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record("1")) + "\n" + json.dumps(record("2")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_rollouts(path)) == 2


def test_duplicates_keep_the_last_record_and_warn(tmp_path):
    write_lines(tmp_path / "a" / "r.jsonl", [record("1", correct=False), record("2")])
    write_lines(tmp_path / "b" / "r.jsonl", [record("1", correct=True, settings_hash="new")])
    with pytest.warns(UserWarning, match="dropped 1 duplicate"):
        rollouts = load_rollouts([tmp_path / "a", tmp_path / "b"])
    assert len(rollouts) == 2
    first = rollouts.loc[rollouts["problem_id"] == "1"].iloc[0]
    assert first["correct"] and first["settings_hash"] == "new"


def test_mixed_json_types_fall_back_to_the_standard_parser(tmp_path):
    write_lines(tmp_path / "r.jsonl", [record("1", gold="025"), record("2", gold=70)])
    rollouts = load_rollouts(tmp_path)
    assert list(rollouts["gold"]) == ["025", "70"]


def test_date_like_answers_stay_strings(tmp_path):
    write_lines(tmp_path / "r.jsonl", [record("1", extracted="2024-01-01"), record("2", extracted="2024-01-02")])
    assert list(load_rollouts(tmp_path)["extracted"]) == ["2024-01-01", "2024-01-02"]


def test_columns_restricts_the_frame_but_keeps_the_key(tmp_path):
    write_lines(tmp_path / "r.jsonl", [record()])
    rollouts = load_rollouts(tmp_path, columns=ANALYSIS_COLUMNS)
    assert "response" not in rollouts and {"problem_id", "correct", "num_layers"} <= set(rollouts)


def test_missing_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_rollouts([tmp_path / "nowhere"])


def test_directory_without_rollouts_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no \\*.jsonl"):
        load_rollouts(tmp_path)


def test_ungraded_rollouts_are_an_error(tmp_path):
    write_lines(tmp_path / "r.jsonl", [record("1"), record("2", correct=None)])
    with pytest.raises(ValueError, match="'correct' is null in 1"):
        load_rollouts(tmp_path)


def test_missing_required_field_is_named(tmp_path):
    item = record()
    del item["layer_span"]
    write_lines(tmp_path / "r.jsonl", [item])
    with pytest.raises(ValueError, match="layer_span"):
        load_rollouts(tmp_path)


def test_corrupt_line_inside_a_file_names_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record("1")) + "\n{not json\n" + json.dumps(record("2")) + "\n")
    with pytest.raises(ValueError, match="r.jsonl:2"):
        load_rollouts(path)
